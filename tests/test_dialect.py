"""Simulator dialects (``lp.sandbox.start(..., dialect=...)``): what no source settles, varied. Every vendor's
round trip and re-run run under each of its settings alone and under all of them changed at once: an adapter
that bet on one form of an unsettled fact fails here."""

from __future__ import annotations

import collections
from typing import Any

import labelport as lp
import pytest

VENDORS = lp.vendors()


def round_trip_settings(vendor: str) -> list[dict[str, Any]]:
    """The settings a round trip must survive: all but ``drop_*`` ones, which remove what labelport sends and
    must stop an upload with a typed error instead (each vendor's own tests prove that error)."""
    return [s for s in lp.sandbox.dialect_settings(vendor) if not s["name"].startswith("drop_")]


def dialects() -> list[Any]:
    """(vendor, dialect) pairs: the default, each setting alone, and every setting changed at once."""
    out = []
    for vendor in VENDORS:
        settings = round_trip_settings(vendor)
        out.append(pytest.param(vendor, {}, id=f"{vendor}-default"))
        for s in settings:
            out.append(pytest.param(vendor, {s["name"]: s["changed"]}, id=f"{vendor}-{s['name']}"))
        if len(settings) > 1:
            out.append(pytest.param(vendor, lp.sandbox.all_changed(vendor), id=f"{vendor}-all-changed"))
    return out


#: More than two pages under a page cap of 250, and six of Sama's task list (100): every setting's round trip
#: pages its lists.
RECORDS = 600


@pytest.mark.parametrize(("vendor", "dialect"), dialects())
def test_round_trip_and_rerun_under_the_dialect(vendor, dialect):
    n = RECORDS
    records, key = lp.sandbox.sample_records(vendor, n, prefix="d")
    with lp.sandbox.start(vendor, seed=11, dialect=dialect) as sb, sb.client() as client:
        batch = client.create_batch("dialect", exist_ok=True)
        job = batch.upload(records, key=key).wait(timeout=120)
        assert job["state"] == "completed" and job["failed"] == 0, job
        final = batch.wait(timeout=120, poll_interval=0.1)
        assert final["done"] is True and final["total"] == n and final["completed"] == n, final
        results = batch.results().to_list()
        assert sorted(r["key"] for r in results) == sorted(r[key] for r in records)
        assert all(r["status"] == "completed" and r["output"] is not None for r in results)
        # Re-run: every key is already there, so nothing is sent twice.
        again = batch.upload(records, key=key).wait(timeout=120)
        assert again["skipped"] == n, again
        created = collections.Counter(sb.stats()["records_created"])
        assert set(created) == {r[key] for r in records}
        assert max(created.values()) == 1, created.most_common(3)


def test_every_setting_is_described():
    for vendor in VENDORS:
        for s in lp.sandbox.dialect_settings(vendor):
            assert s["doc"] and s["name"] and "changed" in s, s
    assert lp.sandbox.all_changed("alegion")["page_cap"] == 250


def test_unknown_dialect_settings_name_the_ones_that_exist():
    with pytest.raises(lp.LabelportError, match="settings: page_cap"):
        lp.sandbox.start("alegion", dialect={"pagecap": 250})
    with pytest.raises(lp.LabelportError, match="must be a whole number of at least 1"):
        lp.sandbox.start("alegion", dialect={"page_cap": 0})

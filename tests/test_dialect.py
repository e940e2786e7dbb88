"""Simulator dialects (``lp.sandbox.start(..., dialect=...)``): what no source settles, varied, and the
round trip under each."""

from __future__ import annotations

import labelport as lp
import pytest


def test_alegion_round_trip_under_a_page_cap_of_250(make_records):
    with lp.sandbox.start("alegion", seed=11, dialect={"page_cap": 250}) as sb, sb.client() as client:
        batch = client.create_batch("capped")
        records = make_records(600)
        batch.upload(records, key="image_id").wait(timeout=60)
        final = batch.wait(timeout=60, poll_interval=0.1)
        assert final["total"] == 600 and final["completed"] == 600
        results = batch.results().to_list()
        assert sorted(r["key"] for r in results) == sorted(r["image_id"] for r in records)
        # Re-run: the key check before an upload reads every page, so nothing is sent twice.
        batch.upload(records, key="image_id").wait(timeout=60)
        assert batch.wait(timeout=60, poll_interval=0.1)["total"] == 600


def test_unknown_dialect_settings_name_the_ones_that_exist():
    with pytest.raises(lp.LabelportError, match="settings: page_cap"):
        lp.sandbox.start("alegion", dialect={"pagecap": 250})
    with pytest.raises(lp.LabelportError, match="settings: none"):
        lp.sandbox.start("sama", dialect={"page_cap": 250})

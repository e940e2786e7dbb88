"""``labelport check`` / ``client.check()``: the read-only probe of an account against the vendor's ledger, run
against each sandbox and each dialect: what a dialect changes, the probe must report."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import labelport as lp
import pytest
from labelport import _check

VENDORS = lp.vendors()


def checked(vendor: str, dialect: dict[str, Any] | None = None, n: int = 30) -> tuple[_check.Report, str]:
    """A sandbox holding one finished batch of ``n`` records, probed read-only; the report and the batch id."""
    records, key = lp.sandbox.sample_records(vendor, n, prefix="chk")
    with lp.sandbox.start(vendor, seed=3, dialect=dialect) as sb, sb.client() as client:
        batch = client.create_batch("probed", exist_ok=True)
        batch.upload(records, key=key).wait(timeout=120)
        batch.wait(timeout=120, poll_interval=0.1)
        before = sb.stats()["requests"]
        report = client.check(batch=batch.id)
        after = sb.stats()["requests"]
        writes = {
            k: v - before.get(k, 0)
            for k, v in after.items()
            if not k.startswith(("GET ", "HEAD ")) and v != before.get(k, 0) and "/_sim/" not in k
        }
        # Login is a POST on some vendors, and TaskMonk reads a batch through an export job it POSTs
        # (`/output/file`, as batch.records() and results() do); nothing else may be written.
        assert all("login" in k or "token" in k or "/output/" in k for k in writes), (
            f"the probe wrote: {writes}"
        )
        secrets = list(sb.credentials.values())
        # Deepen's batch id before the first upload is a reservation; re-attached, the batch has its dataset's id.
        return report, "\n".join(secrets) + "\n" + client.batch(batch.id).id


@pytest.mark.parametrize("vendor", VENDORS)
def test_the_probe_reads_every_vendor_and_redacts_its_secrets(vendor):
    report, extra = checked(vendor)
    secrets, _, batch_id = extra.rpartition("\n")
    text = report.to_text()
    assert f"check: {vendor} at" in text and "read-only" in text and "summary:" in text
    counts = report.counts()
    assert counts.get("failed", 0) == 0, text
    assert counts.get("ok", 0) >= 2 and counts.get("confirmed", 0) >= 1, text
    assert batch_id in text
    for s in secrets.split("\n"):
        if s:
            assert s not in text and s not in json.dumps(report.to_dict()), (
                f"a secret is in the report:\n{text}"
            )


def test_a_page_cap_is_reported_with_the_size_served():
    report, _ = checked("alegion", {"page_cap": 250}, n=600)
    capped = [f for f in report.findings if f.what.startswith("paging") and f.verdict == "contradicted"]
    assert capped and all("at most 250" in f.detail for f in capped), report.to_text()
    plain, _ = checked("alegion", n=600)
    assert not [f for f in plain.findings if f.what.startswith("paging") and f.verdict == "contradicted"], (
        plain
    )


def test_secrets_are_redacted_even_where_a_server_echoes_them():
    report = _check.Report("sama", "https://api.example", "p", False, secrets=["s3cr3t-key"])
    report.add("failed", "GET /x", "VendorError: 401 for access_key=s3cr3t-key")
    assert "s3cr3t-key" not in report.to_text() and "***" in report.to_text()


def test_field_lookup_reads_lists_maps_and_types():
    body = {"tasks": [{"task_id": 1}, {"task_id": 2.0}], "m": {"a": {"x": 1}}, "empty": []}
    assert _check.lookup(body, "tasks[].task_id") == ("present", "in 2 item(s), as float/integer")
    assert _check.lookup(body, "tasks[].status")[0] == "absent"
    assert _check.lookup(body, "{id}.x")[0] == "absent"  # the body's values are not all objects with x
    assert _check.lookup(body["m"], "{id}.x")[0] == "present"
    assert _check.lookup(body, "empty[].x")[0] == "empty"
    assert _check.lookup([{"a": 1}], "[].a")[0] == "present"
    assert _check.lookup(body, "not a path")[0] == "skip"


def test_the_command_line_prints_the_report(tmp_path):
    records, key = lp.sandbox.sample_records("alegion", 5, prefix="cli")
    with lp.sandbox.start("alegion") as sb, sb.client() as client:
        client.create_batch("probed").upload(records, key=key).wait(timeout=60)
        env = {**os.environ, **sb.env()}
        done = subprocess.run(
            [sys.executable, "-m", "labelport", "check", "--vendor", "alegion"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "summary:" in done.stdout and "FAILED" not in done.stdout, done.stdout
        wrote = subprocess.run(
            [sys.executable, "-m", "labelport", "check", "--vendor", "alegion", "--write", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert wrote.returncode == 0, wrote.stderr
        assert "creating one batch" in wrote.stderr
        assert json.loads(wrote.stdout)["wrote"] is True
        assert len(client.batches()) == 2


@pytest.mark.parametrize("vendor", VENDORS)
def test_the_probe_runs_under_every_setting_changed_and_reports_what_changed(vendor):
    changed = lp.sandbox.all_changed(vendor)
    # 300 records: more than a page under a page cap of 250.
    report, _ = checked(vendor, changed, n=300)
    assert report.counts().get("failed", 0) == 0, report.to_text()
    plain, _ = checked(vendor, n=300)

    def seen(r: _check.Report) -> set[tuple[str, str, str]]:
        return {
            (f.verdict, f.what, re.sub(r"\d+", "N", f.detail))
            for f in r.findings
            if not f.what.startswith("batch ")
        }

    # Settings that change only what the server accepts or when it answers are invisible to a read-only probe;
    # every vendor has at least one that changes what it answers.
    assert seen(report) != seen(plain), f"{changed} changed nothing the probe reports:\n{report.to_text()}"

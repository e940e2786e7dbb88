"""``labelport check`` / ``client.check()``: the read-only probe of an account against the vendor's ledger, run
against each sandbox and each dialect: what a dialect changes, the probe must report."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import labelport as lp
import pytest
from labelport import _check

VENDORS = lp.vendors()


def checked(vendor: str, dialect: dict[str, Any] | None = None, n: int = 30) -> tuple[_check.Report, str]:
    """A sandbox holding one finished batch of ``n`` records, probed read-only; the report and the batch id."""
    records, key = lp.sandbox.sample_records(vendor, n, prefix="chk")
    with lp.sandbox.start(vendor, seed=3, dialect=dialect) as sb, sb.client() as client:
        if vendor == "sama":
            # Sama's one-per-second limit on its multi-task status (tests/test_sama.py) only slows the probe here.
            sb.hook("/_sim/config", {"creation_s": 0.0, "status_rate_limit": False})
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
    # The simulator as it starts holds nothing the ledger contradicts: a contradiction here is the probe's own
    # (an id it filled wrongly, a flag it left out, a fallback name taken for a required one).
    assert counts.get("contradicted", 0) == 0, text
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


def seen(r: _check.Report) -> set[tuple[str, str, str]]:
    """A report's findings with batch ids and numbers left out: what two sandboxes' reports can share."""
    return {
        (f.verdict, re.sub(r"^batch \S+", "batch B", f.what), re.sub(r"\d+", "N", f.detail))
        for f in r.findings
    }


#: The settings a read-only probe does not see, each with why. Every other setting must change the report,
#: and none of these may (when the probe learns to see one, it leaves this list).
UNSEEN = {
    ("alegion", "strict_status_filter"): (
        "refuses a status filter value; the probe sends no filter, and the adapter reads a refused count as 0 "
        "(docs/vendors/alegion.md, the `error` row)"
    ),
    ("taskmonk", "page_cap"): "caps the output/dictionary listing, which labelport does not read",
    ("taskmonk", "output_job_counts_rows"): "changes an output job's counts only for an empty selection",
    ("taskmonk", "refuse_start_time_update"): "refuses a write (a batch update)",
    ("taskmonk", "drop_key_column"): (
        "the upload stops with a typed error naming the key (tests/test_taskmonk_truth.py): there is no batch to probe"
    ),
    ("playment", "attachments"): (
        "the form of the attachments answer: the probe reads result files through the adapter, which reads the "
        "three forms alike"
    ),
    ("playment", "require_label"): "refuses a write (create-batch)",
    ("playment", "details_lag"): "delays a new batch in the details by one read; the probed batch is not new",
    ("playment", "jobs_per_page"): (
        "a page's size chosen by the server (no parameter asks for one): the report counts what it holds, and "
        "the adapter follows page_token whatever it is"
    ),
    ("sama", "drop_key_input"): (
        "the upload stops with a typed error naming the key (tests/test_sama_truth.py): there is no batch to probe"
    ),
}


@pytest.mark.parametrize("vendor", VENDORS)
def test_the_probe_reports_what_each_setting_changes(vendor):
    """Each dialect setting alone against the plain simulator, all at once (sandboxes are independent, and the
    waits are the vendors' pacing, not work)."""
    settings = lp.sandbox.dialect_settings(vendor)
    # A drop_* setting stops the upload, so it has no batch to probe; it must still be listed with its reason.
    runnable = [s for s in settings if not s["name"].startswith("drop_")]
    assert all((vendor, s["name"]) in UNSEEN for s in settings if s not in runnable)
    # 300 records: more than a page under a page cap of 250.
    dialects = [None] + [{s["name"]: s["changed"]} for s in runnable]
    with ThreadPoolExecutor(max_workers=len(dialects)) as pool:
        reports = list(pool.map(lambda d: checked(vendor, d, n=300)[0], dialects))
    plain, changed = reports[0], dict(zip([s["name"] for s in runnable], reports[1:], strict=True))
    wrong = []
    for name, report in changed.items():
        assert report.counts().get("failed", 0) == 0, f"{name}:\n{report.to_text()}"
        differs = seen(report) != seen(plain)
        if differs == ((vendor, name) in UNSEEN):
            wrong.append(f"{name}: {'reported, though listed as unseen' if differs else 'changed nothing'}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("vendor", VENDORS)
def test_the_probe_runs_under_every_setting_changed_and_reports_what_changed(vendor):
    changed = lp.sandbox.all_changed(vendor)
    # 300 records: more than a page under a page cap of 250.
    report, _ = checked(vendor, changed, n=300)
    assert report.counts().get("failed", 0) == 0, report.to_text()
    plain, _ = checked(vendor, n=300)
    # Settings that change only what the server accepts or when it answers are invisible to a read-only probe;
    # every vendor has at least one that changes what it answers.
    assert seen(report) != seen(plain), f"{changed} changed nothing the probe reports:\n{report.to_text()}"

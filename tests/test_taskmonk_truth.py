"""TaskMonk's vendor truth (issue 20; docs/vendors/taskmonk.md, "Findings"): each test runs the sandbox under the
dialect setting that serves the other documented or reasonable form of one unsettled wire fact, and fails on an
adapter that bet on one form."""

from __future__ import annotations

import collections
import datetime as dt
import json
import time
import urllib.error
import urllib.request
from typing import Any

import labelport as lp
import pytest

IMPORT = "POST /api/project/v2/{projectId}/batch/{batchId}/tasks/import"
OUTPUT_FIELDS = {"label", "confidence", "is_occluded"}


def imports(sb: lp.sandbox.Sandbox) -> int:
    """File imports the sandbox has taken (any status)."""
    return sum(n for k, n in sb.stats()["requests"].items() if k.rpartition(" ")[0] == IMPORT)


def created(sb: lp.sandbox.Sandbox) -> collections.Counter[str]:
    return collections.Counter({str(k): int(n) for k, n in sb.stats()["records_created"].items()})


def records(prefix: str, n: int) -> list[dict[str, Any]]:
    return [{"image_id": f"{prefix}{i:05d}", "url": f"https://img/{prefix}/{i}.jpg"} for i in range(n)]


# ---- finding 1: the import body is base64 text, sent as text/plain ----------------------------------------


def test_the_import_is_sent_as_text_plain_and_json_is_refused():
    with lp.sandbox.start("taskmonk", seed=31) as sb, sb.client() as c:
        b = c.create_batch("text")
        # The sandbox refuses a JSON content type on the import, as a body parser chosen by Content-Type does.
        token = json.loads(
            urllib.request.urlopen(
                urllib.request.Request(
                    sb.url
                    + "/api/oauth2/token?grant_type=client_credentials"
                    + "".join(f"&{k}={v}" for k, v in sb.credentials.items()),
                    data=b"",
                    method="POST",
                ),
                timeout=10,
            ).read()
        )["access_token"]
        url = f"{sb.url}/api/project/v2/{sb.project}/batch/{b.id}/tasks/import?fileType=CSV"
        refused = urllib.request.Request(
            url,
            data=b"H4sIAAAAAAAAA0vUSUzUyc3PyywpKkosLgEAlpCrOQ4AAAA=",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(refused, timeout=10)
        assert info.value.code == 415
        # labelport sends text/plain, like both official SDKs and the Postman collection.
        job = b.upload(records("t", 20), key="image_id").wait(timeout=30)
        assert job["state"] == "completed" and job["done"] == 20, job
        assert sb.stats()["requests"].get(IMPORT + " 200") == 1, sb.stats()["requests"]


# ---- finding 2: the key column is read back after the first import ---------------------------------------


def test_a_dropped_key_column_stops_the_upload_after_the_first_import():
    with (
        lp.sandbox.start("taskmonk", seed=32, dialect={"drop_key_column": True}) as sb,
        sb.client() as c,
    ):
        b = c.create_batch("dropped")
        with pytest.raises(lp.UnsupportedOperation) as info:
            b.upload(records("k", 2500), key="image_id")
        e = info.value
        assert e.code == "key_column_dropped"
        assert e.field == "external_id"
        assert "external_id" in str(e) and "input field" in str(e)
        assert e.details["imported"] == 1000, e.details
        # Only the first import job went out: the other 1,500 records were never sent.
        assert imports(sb) == 1
        assert sum(created(sb).values()) == 1000
        # A re-run finds tasks without the key column and stops before sending anything.
        with pytest.raises(lp.UnsupportedOperation) as again:
            b.upload(records("k", 2500), key="image_id")
        assert again.value.code == "key_column_dropped"
        assert imports(sb) == 1


def test_a_kept_key_column_is_read_back_once_and_the_rest_follows():
    with lp.sandbox.start("taskmonk", seed=33) as sb, sb.client() as c:
        b = c.create_batch("kept")
        job = b.upload(records("r", 2500), key="image_id").wait(timeout=60)
        assert job["done"] == 2500 and job["failed"] == 0, job
        assert imports(sb) == 3
        assert set(created(sb).values()) == {1}


# ---- finding 4: completion dates under other spellings -----------------------------------------------------


@pytest.mark.parametrize("spelling", ["level_user", "spaced", "lower_snake", "unprefixed"])
def test_completion_dates_under_each_spelling_give_status_and_time(spelling):
    with (
        lp.sandbox.start("taskmonk", seed=34, complete_after=100, dialect={"date_columns": spelling}) as sb,
        sb.client() as c,
    ):
        b = c.create_batch("dates")
        b.upload([{"external_id": f"d{i}", "x": i} for i in range(4)], key="external_id").wait(timeout=30)
        sb.advance(60)
        assert {r["status"] for r in b.records()} == {"in_progress"}
        sb.advance(60)
        first = b.results()
        got = first.to_list()
        assert len(got) == 4
        for r in got:
            assert r["completed_at"] is not None, r
            dt.datetime.fromisoformat(r["completed_at"].replace("Z", "+00:00"))
            assert set(r["output"]) == OUTPUT_FIELDS, r
            assert r["input"] == {"x": r["key"][1:]}, r
        mark = first.watermark
        assert mark is not None
        assert b.results(since=mark).to_list() == []


# ---- finding 5: an output job of an empty selection reports 0 of 0 -----------------------------------------


def test_an_output_job_reporting_zero_of_zero_is_done():
    with (
        lp.sandbox.start("taskmonk", seed=35, dialect={"output_job_counts_rows": True}) as sb,
        sb.client(stall_timeout=3) as c,
    ):
        sb.hook("/_sim/auto-complete", {"enabled": False})
        b = c.create_batch("nothing done")
        b.upload([{"external_id": f"z{i}"} for i in range(5)], key="external_id").wait(timeout=30)
        started = time.monotonic()
        assert b.results().to_list() == []
        assert time.monotonic() - started < 3
        empty = c.create_batch("empty")
        assert empty.records().to_list() == []


# ---- finding 6: a priority update does not re-send start_time ----------------------------------------------


def test_upload_priority_sends_no_start_time():
    with (
        lp.sandbox.start("taskmonk", seed=36, dialect={"refuse_start_time_update": True}) as sb,
        sb.client() as c,
    ):
        b = c.create_batch("started", start_time="2026-01-01")
        b.upload([{"external_id": "p"}], key="external_id", priority=9).wait(timeout=30)
        listed = {x.id: x for x in c.batches()}[b.id]
        assert listed.raw["priority"] == 9
        assert listed.raw["start_time"] == "2026-01-01"


# ---- finding 7: counts as numeric strings, the not-started count under either name or none ----------------


@pytest.mark.parametrize(
    "dialect",
    [
        {"counts_as_strings": True},
        {"batch_status_new": "not_started"},
        {"batch_status_new": "none"},
        {"counts_as_strings": True, "batch_status_new": "none"},
    ],
    ids=["strings", "not_started", "none", "strings-none"],
)
def test_batch_counts_in_every_form(dialect):
    with (
        lp.sandbox.start("taskmonk", seed=37, complete_after=100, dialect=dialect) as sb,
        sb.client() as c,
    ):
        b = c.create_batch("counts")
        b.upload([{"external_id": f"c{i}"} for i in range(6)], key="external_id").wait(timeout=30)
        s = b.status()
        assert (s["total"], s["pending"], s["in_progress"], s["completed"]) == (6, 6, 0, 0), s
        sb.advance(60)
        s = b.status()
        assert (s["total"], s["pending"], s["in_progress"], s["completed"]) == (6, 0, 6, 0), s
        sb.advance(60)
        s = b.status()
        assert (s["total"], s["completed"], s["done"]) == (6, 6, True), s


# ---- finding 8: no batch import progress: a re-run right after an upload still sends nothing twice --------


def test_a_re_run_right_after_an_upload_without_batch_import_progress():
    with (
        lp.sandbox.start("taskmonk", seed=38, dialect={"no_batch_import_progress": True}) as sb,
        sb.client() as c,
    ):
        sb.hook("/_sim/ingestion", {"rows_per_second": 400})
        b = c.create_batch("slow")
        rs = records("s", 800)
        b.upload(rs, key="image_id")
        # The same client at once, then another client (another process) while rows are still ingesting.
        again = b.upload(rs, key="image_id").wait(timeout=60)
        assert again["skipped"] == 800, again
        other = sb.client().batch(b.id).upload(rs, key="image_id").wait(timeout=60)
        assert other["skipped"] == 800, other
        assert imports(sb) == 1
        assert set(created(sb).values()) == {1}


def test_another_client_re_running_while_rows_ingest_without_batch_import_progress():
    with (
        lp.sandbox.start("taskmonk", seed=39, dialect={"no_batch_import_progress": True}) as sb,
        sb.client() as c,
    ):
        sb.hook("/_sim/ingestion", {"rows_per_second": 400})
        b = c.create_batch("slow")
        rs = records("o", 800)
        b.upload(rs, key="image_id")
        other = sb.client().batch(b.id).upload(rs, key="image_id").wait(timeout=60)
        assert other["skipped"] == 800, other
        assert imports(sb) == 1
        assert set(created(sb).values()) == {1}

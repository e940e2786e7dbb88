"""TaskMonk end to end against its sandbox over real sockets: the Alegion script with only the Client line
changed, idempotent uploads, import jobs, stalls, token renewal, CSV and Excel output files, secrets, faults."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from typing import Any

import labelport as lp
import pytest

TOKEN = "POST /api/oauth2/token"
IMPORT = "POST /api/project/v2/{projectId}/batch/{batchId}/tasks/import"
OUTPUT_FIELDS = {"label", "confidence", "is_occluded"}
ENVELOPE_KEYS = {
    "id",
    "batch_id",
    "key",
    "status",
    "input",
    "output",
    "created_at",
    "completed_at",
    "vendor",
}


@pytest.fixture(scope="module")
def sandbox():
    """Overrides conftest's: a TaskMonk sandbox whose tasks complete as soon as they are ingested."""
    with lp.sandbox.start("taskmonk", seed=11) as sb:
        yield sb


def as_cells(record: dict[str, Any]) -> dict[str, str]:
    """A record as TaskMonk's CSV holds it: every value a string."""
    return {
        k: (
            ""
            if v is None
            else v
            if isinstance(v, str)
            else json.dumps(v)
            if isinstance(v, (dict, list, bool))
            else str(v)
        )
        for k, v in record.items()
    }


def test_round_trip_with_only_the_client_line_changed(sandbox, created, counter, unique):
    # The Alegion script; only this line differs.
    client = lp.Client("taskmonk", project=sandbox.project, base_url=sandbox.url, **sandbox.credentials)
    name = f"cars-{unique}"
    batch = client.create_batch(name, exist_ok=True)
    again = client.create_batch(name, exist_ok=True)
    assert again.id == batch.id
    assert [b.id for b in client.batches()].count(batch.id) == 1
    assert [b.name for b in client.batches()].count(name) == 1
    assert batch.id.isdigit()

    records = [
        {
            "image_id": f"{unique}-{i:05d}",
            "url": f"https://example.com/cars/{i:05d}.jpg",
            "index": i,
        }
        for i in range(2000)
    ]
    counter.start()
    job = batch.upload(records, key="image_id")
    assert isinstance(job, lp.Job)
    assert counter.since_start(IMPORT, 200) == 2  # 1,000 rows per import job
    final_job = job.wait(timeout=60)
    assert final_job == {
        "state": "completed",
        "done": 2000,
        "total": 2000,
        "failed": 0,
        "skipped": 0,
    }
    final = batch.wait(timeout=60, poll_interval=0.1)
    assert final["done"] is True
    assert (final["total"], final["completed"]) == (2000, 2000)

    results = batch.results().to_list()
    assert len(results) == 2000
    by_key = {r["image_id"]: r for r in records}
    assert {r["key"] for r in results} == set(by_key)
    for r in results:
        assert set(r) == ENVELOPE_KEYS
        assert r["status"] == "completed"
        assert r["vendor"] == "taskmonk"
        assert r["batch_id"] == batch.id
        assert r["id"] == r["key"]
        assert r["input"] == as_cells(by_key[r["key"]])
        assert set(r["output"]) == OUTPUT_FIELDS
        assert r["output"]["label"] in {"car", "truck", "bus", "bicycle"}
        assert r["created_at"] is None
        dt.datetime.fromisoformat(r["completed_at"].replace("Z", "+00:00"))
    stamps = [r["completed_at"] for r in results]
    assert stamps == sorted(stamps), "oldest completion first"
    json.dumps(results)

    listed = batch.records().to_list()
    assert len(listed) == 2000 and {r["status"] for r in listed} == {"completed"}
    assert batch.status() == {
        "total": 2000,
        "pending": 0,
        "in_progress": 0,
        "completed": 2000,
        "exception": 0,
        "canceled": 0,
        "rejected": 0,
        "failed": 0,
        "done": True,
    }

    # Re-running the same upload sends nothing: each key was created exactly once.
    counter.start()
    rerun = batch.upload(records, key="image_id")
    assert rerun.status()["skipped"] == 2000
    assert rerun.wait(timeout=10)["state"] == "completed"
    assert counter.since_start(IMPORT) == 0
    mine = {k: n for k, n in created().items() if k.startswith(unique)}
    assert len(mine) == 2000 and set(mine.values()) == {1}


def test_a_partial_re_upload_sends_only_the_missing_rows(client, batch, created, counter, unique):
    records = [{"external_id": f"{unique}-{i}", "n": i} for i in range(30)]
    batch.upload(records[:10], key="external_id").wait(timeout=30)
    counter.start()
    job = batch.upload(records, key="external_id")
    assert job.wait(timeout=30)["skipped"] == 10
    assert counter.since_start(IMPORT) == 1
    mine = {k: n for k, n in created().items() if k.startswith(unique)}
    assert len(mine) == 30 and set(mine.values()) == {1}
    # key == the key column: it is the key, and the rest is the input.
    r = batch.results().to_list()[0]
    assert r["input"] == {"n": r["key"].rsplit("-", 1)[1]}


def test_records_without_a_key_are_keyed_by_content(client, batch, created, counter):
    records = [{"caption": f"content keyed {i}", "n": i} for i in range(5)]
    batch.upload(records).wait(timeout=30)
    counter.start()
    batch.upload(list(reversed(records))).wait(timeout=30)
    assert counter.since_start(IMPORT) == 0
    keys = {r["key"] for r in batch.results()}
    assert len(keys) == 5 and all(k.startswith("sha256-") for k in keys)


def test_batch_wait_right_after_upload_counts_rows_still_being_ingested(sandbox, client, unique):
    sandbox.hook("/_sim/ingestion", {"rows_per_second": 200})
    try:
        b = client.create_batch(f"slow-{unique}")
        b.upload([{"external_id": f"{unique}-{i}"} for i in range(400)], key="external_id", wait=False)
        first = b.status()
        assert first["total"] == 400, first
        assert first["done"] is False
        assert b.wait(timeout=30, poll_interval=0.1)["completed"] == 400
    finally:
        sandbox.hook("/_sim/ingestion", {"rows_per_second": 5000})


def test_job_status_moves_and_ends_at_total(sandbox, client, unique):
    sandbox.hook("/_sim/ingestion", {"rows_per_second": 400})
    try:
        b = client.create_batch(f"progress-{unique}")
        job = b.upload([{"external_id": f"{unique}-{i}"} for i in range(600)], key="external_id", wait=False)
        first = job.status()
        assert first["state"] == "running" and first["total"] == 600
        assert first["done"] < 600
        assert job.wait(timeout=30, poll_interval=0.1)["done"] == 600
    finally:
        sandbox.hook("/_sim/ingestion", {"rows_per_second": 5000})


def test_a_stalled_import_raises_stalled(sandbox, unique):
    client = sandbox.client(stall_timeout=1.0)
    b = client.create_batch(f"stall-{unique}")
    sandbox.hook("/_sim/ingestion", {"stall": True})
    try:
        job = b.upload([{"external_id": f"{unique}-{i}"} for i in range(20)], key="external_id", wait=False)
    finally:
        sandbox.hook("/_sim/ingestion", {"stall": False})
    started = time.monotonic()
    with pytest.raises(lp.Stalled) as info:
        job.wait(timeout=60, poll_interval=0.1)
    assert time.monotonic() - started < 20
    assert info.value.vendor == "taskmonk"
    assert "10 of 20" in str(info.value)


def test_tasks_that_never_finish_time_out_and_show_as_pending(sandbox, client, unique):
    sandbox.hook("/_sim/auto-complete", {"enabled": False})
    try:
        b = client.create_batch(f"never-{unique}")
        b.upload([{"external_id": f"{unique}-{i}"} for i in range(6)], key="external_id").wait(timeout=30)
    finally:
        sandbox.hook("/_sim/auto-complete", {"enabled": True})
    with pytest.raises(lp.Timeout):
        b.wait(timeout=0.5, poll_interval=0.1)
    assert b.status()["pending"] == 6
    assert {r["status"] for r in b.records()} == {"pending"}
    assert b.records(status="completed").to_list() == []
    assert b.results().to_list() == []
    sandbox.hook(f"/_sim/batch/{b.id}/complete", {"outputs": {"label": "bus"}})
    results = b.results().to_list()
    assert len(results) == 6 and {r["output"]["label"] for r in results} == {"bus"}


def test_progress_through_statuses_and_results_since():
    with (
        lp.sandbox.start("taskmonk", seed=3, complete_after=100) as sb,
        sb.client() as c,
    ):
        b = c.create_batch("clock")
        b.upload([{"external_id": f"c{i}", "x": i} for i in range(4)], key="external_id").wait(timeout=30)
        assert b.status()["pending"] == 4
        sb.advance(60)
        assert b.status()["in_progress"] == 4
        assert {r["status"] for r in b.records()} == {"in_progress"}
        sb.advance(60)
        first = b.results()
        got = first.to_list()
        assert len(got) == 4
        mark = first.watermark
        assert mark is not None
        assert b.results(since=mark).to_list() == []
        b.upload([{"external_id": "late", "x": 9}], key="external_id").wait(timeout=30)
        sb.advance(101)
        later = b.results(since=mark).to_list()
        assert [r["key"] for r in later] == ["late"]


def test_excel_output_is_parsed_like_csv(sandbox, client, batch, unique):
    records = [
        {"external_id": f"{unique}-{i}", "caption": f'a "quoted", line {i}', "n": i} for i in range(25)
    ]
    batch.upload(records, key="external_id").wait(timeout=30)
    batch.wait(timeout=30, poll_interval=0.1)
    excel = sandbox.client(export_format="excel")
    assert excel.capabilities["export_format"] == "excel"
    as_csv = batch.results(include_raw=True).to_list()
    as_xlsx = excel.batch(batch.id).results(include_raw=True).to_list()
    assert len(as_csv) == 25
    assert as_xlsx == as_csv


def test_declared_output_fields(sandbox, batch, unique):
    c = sandbox.client(output_fields=["label"])
    b = c.batch(batch.id)
    b.upload([{"external_id": f"{unique}-x", "n": 1}], key="external_id").wait(timeout=30)
    (r,) = b.results().to_list()
    assert r["output"] == {"label": r["output"]["label"]}
    assert set(r["input"]) == {"n", "confidence", "is_occluded"}


def test_token_renewal_mid_run(unique):
    with (
        lp.sandbox.start("taskmonk", seed=2, faults={"token_ttl": 2}) as sb,
        sb.client() as c,
    ):
        b = c.create_batch(f"renew-{unique}")
        b.upload([{"external_id": f"r{i}"} for i in range(10)], key="external_id").wait(timeout=30)
        time.sleep(2.2)  # past the first token's renewal point: renewed before it expires
        assert b.status()["total"] == 10
        sb.expire_tokens()  # refused mid-run: renewed and replayed once
        assert len(b.results().to_list()) == 10
        counts = sb.stats()["requests"]
        grants = sum(n for k, n in counts.items() if k.startswith(TOKEN + " 200"))
        refused = sum(n for k, n in counts.items() if k.endswith(" 401"))
        assert grants >= 3, counts
        assert refused == 1, counts


def test_bad_credentials_and_a_foreign_project_are_auth_errors(sandbox):
    with pytest.raises(lp.AuthError) as info:
        sandbox.client(client_secret="wrong").create_batch("nope")
    assert info.value.status == 401
    assert info.value.code == "invalid_client"
    with pytest.raises(lp.AuthError) as info:
        sandbox.client(project="4520").batches()
    assert info.value.status == 403
    with pytest.raises(lp.NotFound):
        sandbox.client().batch("999999")


def test_the_client_secret_appears_in_no_exception_and_no_log(sandbox, caplog, unique):
    secret = sandbox.credentials["client_secret"]
    caplog.set_level(logging.DEBUG, logger="labelport")
    lp.reset_log_cache()
    try:
        bad = f"{secret}-wrong"
        errors: list[BaseException] = []
        for c in (sandbox.client(client_secret=bad), sandbox.client(project="4520")):
            with pytest.raises(lp.LabelportError) as info:
                c.create_batch(f"secret-{unique}")
            errors.append(info.value)
        good = sandbox.client()
        b = good.create_batch(f"secret-{unique}")
        b.upload([{"external_id": f"{unique}-s"}], key="external_id").wait(timeout=30)
        b.results().to_list()
        for e in errors:
            shown = " ".join([str(e), repr(e), repr(e.args), repr(vars(e))])
            assert secret not in shown and bad not in shown, shown
        for r in [repr(good), repr(good.capabilities), repr(b)]:
            assert secret not in r
        assert caplog.records, "no log records were captured at DEBUG"
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert "token granted" in logged  # the grant itself was logged...
        assert "/tasks/import?fileType=" in logged  # ...and every request line
        assert secret not in logged
    finally:
        caplog.set_level(logging.WARNING, logger="labelport")
        lp.reset_log_cache()


def test_bad_input_is_refused_before_anything_is_sent(sandbox, client, batch, counter):
    counter.start()
    with pytest.raises(lp.InvalidInput) as info:
        batch.upload([{"external_id": "a", "id": "b"}], key="id")
    assert info.value.field == "external_id"
    with pytest.raises(lp.InvalidInput):
        batch.upload([{"x": 1}], colour="red")
    with pytest.raises(lp.InvalidInput):
        client.create_batch("opts", priority="high")
    with pytest.raises(lp.InvalidInput):
        sandbox.client(export_format="pdf")
    with pytest.raises(lp.InvalidInput):
        sandbox.client(stall_timeout=-1)
    assert counter.since_start(IMPORT) == 0
    assert counter.since_start("POST /api/project/{projectId}/batch") == 0


def test_batch_options_and_upload_priority(client, unique):
    b = client.create_batch(f"opts-{unique}", priority=5, comments="be careful")
    assert b.raw["priority"] == 5
    listed = {x.id: x for x in client.batches()}[b.id]
    assert listed.raw["comments"] == "be careful"
    b.upload([{"external_id": f"{unique}-p"}], key="external_id", priority=9).wait(timeout=30)
    assert {x.id: x for x in client.batches()}[b.id].raw["priority"] == 9
    with pytest.raises(lp.DuplicateRecord):
        client.create_batch(f"opts-{unique}")
    with pytest.raises(lp.UnsupportedOperation):
        b.cancel()


def test_request_escape_hatch(client, batch):
    batches = client.request("GET", "batch")
    assert any(x["id"] == batch.id for x in batches)
    assert batch.id in {x["id"] for x in client.request("GET", "batch", paginate=True)}
    status = client.request("GET", f"/api/project/{client.project}/batch/{batch.id}/status")
    assert set(status) == {"new_count", "in_progress", "completed", "total"}


def test_faults_every_key_created_once_and_returned_once(unique):
    faults = {
        "server_error": 0.1,
        "commit_then_fail": 0.05,
        "reset": 0.02,
        "rate_limit": 0.05,
    }
    with (
        lp.sandbox.start("taskmonk", seed=7, faults=faults) as sb,
        sb.client(max_retries=8) as c,
    ):
        # On top of the seeded faults, the two ambiguous ones on imports for sure: stored then a 500,
        # and a dropped connection (nothing stored).
        sb.hook("/_sim/faults", {"status": 500, "path": "/tasks/import", "commit": True})
        sb.hook("/_sim/faults", {"reset": True, "path": "/tasks/import"})
        b = c.create_batch(f"faults-{unique}", exist_ok=True)
        records = [{"external_id": f"f{i:04d}", "n": i} for i in range(300)]
        # In slices, as a cron job would, then all of it again: each slice is one import job.
        for start in range(0, 300, 50):
            for attempt in range(3):
                try:
                    b.upload(records[start : start + 50], key="external_id").wait(timeout=120)
                    break
                except lp.VendorError:
                    if attempt == 2:
                        raise
        again = b.upload(records, key="external_id")
        assert again.wait(timeout=120)["skipped"] == 300
        b.wait(timeout=120, poll_interval=0.1)
        results = b.results().to_list()
        keys = [r["key"] for r in results]
        assert sorted(keys) == sorted(r["external_id"] for r in records)
        created = sb.stats()["records_created"]
        assert len(created) == 300 and set(created.values()) == {1}, created
        assert len(c.batches()) == 1
        requests = sb.stats()["requests"]
        assert requests[IMPORT + " 500"] >= 1 and requests[IMPORT + " reset"] >= 1, requests
        faulted = sum(n for k, n in requests.items() if k.rsplit(" ", 1)[1] in {"429", "503"})
        assert faulted >= 3, requests


def test_a_project_schema_refuses_unknown_columns_and_collect_keeps_the_rest(unique):
    with lp.sandbox.start("taskmonk", seed=4) as sb, sb.client() as c:
        sb.hook("/_sim/project/schema", {"input_fields": ["url", "external_id"]})
        b = c.create_batch(f"schema-{unique}")
        records = [{"external_id": f"s{i}", "url": f"u{i}"} for i in range(8)]
        records[3]["colour"] = "red"
        records[6]["colour"] = "blue"
        with pytest.raises(lp.InvalidInput) as info:
            b.upload(records, key="external_id")
        assert info.value.code == "invalid_field"
        assert "colour" in str(info.value)
        assert sb.stats()["records_created"] == {}

        job = b.upload(records, key="external_id", on_error="collect")
        failures = job.failures()
        assert sorted(f["key"] for f in failures) == ["s3", "s6"]
        assert {f["code"] for f in failures} == {"invalid_field"}
        final = job.wait(timeout=30)
        assert final["state"] == "failed" and final["failed"] == 2
        assert sorted(sb.stats()["records_created"]) == [f"s{i}" for i in (0, 1, 2, 4, 5, 7)]


def test_async_mirror(sandbox, unique):
    import asyncio

    async def run() -> list[dict[str, Any]]:
        creds = sandbox.credentials
        async with lp.AsyncClient("taskmonk", project=sandbox.project, base_url=sandbox.url, **creds) as c:
            b = await c.create_batch(f"async-{unique}", exist_ok=True)
            job = await b.upload(
                [{"external_id": f"{unique}-a{i}", "n": i} for i in range(20)],
                key="external_id",
            )
            assert (await job.wait(timeout=30))["done"] == 20
            await b.wait(timeout=30, poll_interval=0.1)
            return [r async for r in b.results()]

    got = asyncio.run(run())
    assert sorted(r["key"] for r in got) == sorted(f"{unique}-a{i}" for i in range(20))

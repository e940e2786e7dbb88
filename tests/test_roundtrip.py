"""Alegion end to end against its sandbox: upload, wait, results, envelopes, paging, re-attaching."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

import labelport as lp

IMPORT = "POST /api/v1/batches/{batchId}/records/import"
RESULTS = "GET /api/v1/batches/{batchId}/results"
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
NEUTRAL = {
    "pending",
    "in_progress",
    "completed",
    "exception",
    "canceled",
    "rejected",
    "failed",
}


def parse_time(value: object) -> dt.datetime:
    assert isinstance(value, str), f"not an RFC 3339 string: {value!r}"
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None, f"no time zone in {value!r}"
    return parsed


def test_full_round_trip(client, batch, make_records):
    records = make_records(50)
    job = batch.upload(records, key="image_id")
    assert isinstance(job, lp.Job)
    assert job.batch_id == batch.id

    job_status = job.wait(timeout=60)
    assert job_status["state"] == "completed"
    assert job_status["total"] == 50
    assert job_status["done"] == 50
    assert job_status["failed"] == 0
    assert job_status["skipped"] == 0

    final = batch.wait(timeout=60, poll_interval=0.1)
    assert final["done"] is True
    assert final["total"] == 50
    assert final["completed"] == 50

    results = batch.results().to_list()
    assert len(results) == 50
    by_key = {r["image_id"]: r for r in records}
    assert {r["key"] for r in results} == set(by_key)
    for r in results:
        assert type(r) is dict
        assert r["status"] == "completed"
        assert r["vendor"] == "alegion"
        assert r["batch_id"] == batch.id
        assert r["input"] == by_key[r["key"]]
        assert isinstance(r["output"], dict) and r["output"], r
    json.dumps(results)  # plain Python values only


def test_envelope_shape(client, batch, make_records, upload_and_wait):
    records = make_records(5)
    upload_and_wait(batch, records)

    plain = sorted(batch.results().to_list(), key=lambda r: r["id"])
    assert len(plain) == 5
    for r in plain:
        assert set(r) == ENVELOPE_KEYS, sorted(r)
        uuid.UUID(r["id"])
        assert r["status"] == "completed"
        assert r["vendor"] == "alegion"
        assert isinstance(r["key"], str)
        created, completed = parse_time(r["created_at"]), parse_time(r["completed_at"])
        assert created <= completed

    raw = sorted(batch.results(include_raw=True).to_list(), key=lambda r: r["id"])
    assert len(raw) == 5
    for r, p in zip(raw, plain, strict=True):
        assert set(r) == ENVELOPE_KEYS | {"raw"}, sorted(r)
        assert {k: v for k, v in r.items() if k != "raw"} == p
        vendor_obj = r["raw"]
        # Alegion's own result object, untouched: the result id, resultData and the embedded input record.
        assert vendor_obj["resultData"] == r["output"]
        assert vendor_obj["inputRecord"]["id"] == r["id"]  # the neutral id is the input record id
        assert vendor_obj["inputRecord"]["metadata"] == r["key"]
        assert vendor_obj["inputRecord"]["data"] == r["input"]
        assert vendor_obj["id"] != vendor_obj["inputRecord"]["id"]
        assert parse_time(vendor_obj["createdAt"]) == parse_time(r["completed_at"])


def test_keys_come_back_as_the_result_key_as_strings(client, batch, upload_and_wait, unique):
    records = [{"n": i, "caption": f"{unique} number {i}"} for i in (7, 42, 1000)]
    upload_and_wait(batch, records, key="n")
    results = batch.results().to_list()
    assert sorted(r["key"] for r in results) == ["1000", "42", "7"]
    for r in results:
        assert r["input"]["n"] == int(r["key"])


def test_2500_records_go_up_as_three_import_calls(client, batch, make_records, counter):
    counter.start()
    job = batch.upload(make_records(2500), key="image_id")
    status = job.wait(timeout=60)
    assert status["total"] == 2500
    assert counter.since_start(IMPORT, 200) == 3
    assert counter.since_start(IMPORT) == 3  # and no other import attempt, successful or not
    assert batch.status()["total"] == 2500


def test_results_over_more_than_five_pages_come_back_exactly_once(
    client, batch, make_records, counter, upload_and_wait
):
    n = 5500  # the client asks for the vendor's maximum page of 1,000: six pages
    records = make_records(n)
    upload_and_wait(batch, records)

    counter.start()
    stream = batch.results()
    results = list(stream)
    assert counter.since_start(RESULTS, 200) > 5

    assert len(results) == n
    ids = [r["id"] for r in results]
    assert len(set(ids)) == n
    keys = [r["key"] for r in results]
    assert len(set(keys)) == n
    assert set(keys) == {r["image_id"] for r in records}
    assert stream.watermark is not None
    assert parse_time(stream.watermark) == max(parse_time(r["completed_at"]) for r in results)


def test_to_jsonl_writes_every_result(client, batch, make_records, upload_and_wait, tmp_path):
    records = make_records(30)
    upload_and_wait(batch, records)
    path = tmp_path / "results.jsonl"
    assert batch.results().to_jsonl(path) == 30
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 30
    assert {json.loads(line)["key"] for line in lines} == {r["image_id"] for r in records}


def test_reattach_from_a_second_client_sees_the_same_results(
    sandbox, client, batch, make_records, upload_and_wait
):
    upload_and_wait(batch, make_records(30))
    first = sorted(batch.results().to_list(), key=lambda r: r["id"])
    assert len(first) == 30

    with sandbox.client() as other:
        again = other.batch(batch.id)
        assert again.id == batch.id
        assert again.name == batch.name
        assert again.vendor == "alegion"
        assert again.status() == batch.status()
        second = sorted(again.results().to_list(), key=lambda r: r["id"])
    assert second == first


def test_status_counts_add_up_and_done_after_wait(client, batch, make_records, upload_and_wait):
    upload_and_wait(batch, make_records(25))
    status = batch.status()
    assert set(status) == NEUTRAL | {"total", "done"}
    assert status["total"] == 25
    assert sum(status[s] for s in NEUTRAL) == status["total"]
    assert status["done"] is True
    assert status["completed"] == 25


def test_records_lists_every_record_with_neutral_statuses(client, batch, make_records, upload_and_wait):
    records = make_records(40)
    upload_and_wait(batch, records)
    listed = batch.records().to_list()
    assert len(listed) == 40
    assert {r["key"] for r in listed} == {r["image_id"] for r in records}
    assert {r["status"] for r in listed} <= NEUTRAL
    assert {r["status"] for r in listed} == {"completed"}
    for r in listed:
        assert r["batch_id"] == batch.id
        assert r["vendor"] == "alegion"
    assert len(batch.records(status="completed").to_list()) == 40
    assert batch.records(status="exception").to_list() == []


def test_results_since_excludes_results_completed_at_or_before_it(
    client, batch, make_records, upload_and_wait
):
    first = make_records(20)
    upload_and_wait(batch, first)
    stream = batch.results()
    first_results = list(stream)
    assert len(first_results) == 20
    watermark = stream.watermark
    assert watermark is not None

    assert batch.results(since=watermark).to_list() == []  # exclusive: nothing completed after it yet

    time.sleep(0.05)  # completion times have millisecond precision
    second = make_records(20, start=20)
    upload_and_wait(batch, second)

    newer = batch.results(since=watermark).to_list()
    assert {r["key"] for r in newer} == {r["image_id"] for r in second}
    assert all(parse_time(r["completed_at"]) > parse_time(watermark) for r in newer)

    as_datetime = batch.results(since=parse_time(watermark)).to_list()
    assert {r["key"] for r in as_datetime} == {r["image_id"] for r in second}

    # A bound equal to one result's completion time excludes that result.
    everything = batch.results().to_list()
    assert len(everything) == 40
    pivot = min(parse_time(r["completed_at"]) for r in newer)
    expected = {r["key"] for r in everything if parse_time(r["completed_at"]) > pivot}
    got = {r["key"] for r in batch.results(since=pivot).to_list()}
    assert got == expected


def test_closing_a_result_stream_stops_fetching(client, batch, make_records, counter, upload_and_wait):
    n = 20_000  # twenty pages of 1,000: far more than the stream reads ahead
    upload_and_wait(batch, make_records(n))
    counter.start()
    stream = batch.results()
    first = next(stream)
    assert first["status"] == "completed"
    stream.close()
    time.sleep(0.3)
    fetched = counter.since_start(RESULTS)
    time.sleep(0.5)
    assert counter.since_start(RESULTS) == fetched  # nothing fetched after close
    assert fetched < n // 1000

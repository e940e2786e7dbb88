"""Alegion against what its sources say and leave open (docs/vendors/alegion.md): each test starts the sandbox
under a dialect setting that serves the other documented or reasonable form, and the adapter must read it."""

from __future__ import annotations

import collections
from typing import Any

import labelport as lp


def make(n: int, tag: str) -> list[dict[str, Any]]:
    return [{"id": f"{tag}-{i:04d}", "text": f"record {i}"} for i in range(n)]


RECORDS = "GET /api/v1/batches/{batchId}/records"


# Finding 1: a server serving 250 a page (whatever pageSize asks) loses nothing, and plans in its page size.
def test_a_server_capping_pages_at_250_loses_nothing():
    with lp.sandbox.start("alegion", seed=41, dialect={"page_cap": 250}) as sb, sb.client() as c:
        batch = c.create_batch("capped")
        records = make(600, "cap")
        batch.upload(records, key="id")
        assert batch.result_pages() == {"total": 600, "page_size": 250, "pages": 3}
        keys = sorted(r["id"] for r in records)
        assert sorted(r["key"] for r in batch.results().to_list()) == keys
        assert sorted(r["key"] for r in batch.records().to_list()) == keys
        # The key check before an upload read every page: nothing is imported twice.
        assert batch.upload(records, key="id").status()["skipped"] == 600
        created = collections.Counter(sb.stats()["records_created"])
        assert set(created) == set(keys) and max(created.values()) == 1


# Finding 2: a server refusing `status=error` (a UI's word) with 422 still gives the batch's counts.
def test_status_counts_survive_a_server_refusing_the_error_filter(stat_count):
    with (
        lp.sandbox.start(
            "alegion", seed=42, exception_rate=0.2, dialect={"strict_status_filter": True}
        ) as sb,
        sb.client() as c,
    ):
        batch = c.create_batch("strict")
        batch.upload(make(50, "s"), key="id")
        st = batch.wait(timeout=30, poll_interval=0.1)
        assert st["total"] == 50 and st["done"] is True
        assert st["completed"] + st["exception"] == 50 and st["exception"] > 0 and st["failed"] == 0
        assert stat_count(sb, RECORDS, "422") > 0  # the error count was refused, and read as 0


# Finding 5: `records(status="completed")` no longer sends `status=complete`; a strict server is not asked it.
def test_completed_records_are_filtered_here_not_by_a_word_the_server_may_refuse(stat_count):
    with (
        lp.sandbox.start(
            "alegion", seed=43, exception_rate=0.2, dialect={"strict_status_filter": True}
        ) as sb,
        sb.client() as c,
    ):
        batch = c.create_batch("filtered")
        batch.upload(make(50, "f"), key="id")
        st = batch.wait(timeout=30, poll_interval=0.1)
        refused = stat_count(sb, RECORDS, "422")
        completed = batch.records(status="completed").to_list()
        assert len(completed) == st["completed"] and {r["status"] for r in completed} == {"completed"}
        exceptions = batch.records(status="exception").to_list()
        assert len(exceptions) == st["exception"] and {r["status"] for r in exceptions} == {"exception"}
        assert batch.records(status="failed").to_list() == []
        assert stat_count(sb, RECORDS, "422") == refused


# Finding 4: a finished record whose status reads `completed` (not the UI's `complete`) is Completed.
def test_a_record_reading_completed_is_completed():
    with lp.sandbox.start("alegion", seed=44, dialect={"complete_word": "completed"}) as sb, sb.client() as c:
        batch = c.create_batch("words")
        batch.upload(make(20, "w"), key="id")
        batch.wait(timeout=30, poll_interval=0.1)
        assert {r["status"] for r in batch.records().to_list()} == {"completed"}
        assert len(batch.records(status="completed").to_list()) == 20


# Spring writes an enum by its constant's name unless mapped: `COMPLETE`, `IN_PROGRESS` read as their words.
def test_status_words_written_as_enum_constants_are_read():
    with (
        lp.sandbox.start("alegion", seed=45, complete_after=5, dialect={"enum_case_status": True}) as sb,
        sb.client() as c,
    ):
        batch = c.create_batch("enum-words")
        batch.upload(make(20, "e"), key="id")
        raw = {r["raw"]["status"] for r in batch.records(include_raw=True).to_list()}
        assert raw and all(w == w.upper() for w in raw), raw  # the dialect is in force
        assert {r["status"] for r in batch.records().to_list()} <= {"pending", "in_progress"}
        sb.advance(10)
        records = batch.records().to_list()
        assert {r["status"] for r in records} == {"completed"}
        assert all(r["output"] is not None for r in records)
        assert len(batch.records(status="completed").to_list()) == 20

"""Sama against the forms of its API that no public source settles (docs/vendors/sama.md, "Findings"): each
test starts the simulator in a dialect that serves the other documented or reasonable form, and would fail
against an adapter that bet on one form."""

from __future__ import annotations

import datetime as dt
from typing import Any

import labelport as lp
import pytest

CREATE = "POST /v2/projects/{projectId}/batches.json"


def records(prefix: str, n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"image_id": f"{prefix}{i:05d}", "url": f"u{i}"} for i in range(start, start + n)]


def requests_to(sb: lp.sandbox.Sandbox, template: str) -> int:
    """How many requests the sandbox answered on `template` (any status)."""
    return sum(n for k, n in sb.stats()["requests"].items() if k.rsplit(" ", 1)[0] == template)


# ---- finding 1: the creation job's state and counts --------------------------------------------------------


@pytest.mark.parametrize(
    "dialect",
    [
        {"job_state_field": "status"},
        {"job_state_field": "none"},
        {"job_counts": "missing"},
        {"job_state_field": "none", "job_counts": "missing"},
    ],
    ids=["state-as-status", "no-state", "no-counts", "neither"],
)
def test_a_job_finishes_whatever_its_answer_names_its_state_and_counts(dialect):
    with lp.sandbox.start("sama", seed=31, dialect=dialect) as sb, sb.client() as c:
        b = c.create_batch("jobs", exist_ok=True)
        good = records("j", 20)
        bad = [{"image_id": "bogus", "url": "u", "output_bogus": "x"}]  # Sama fails to create this task
        job = b.upload(good + bad, key="image_id")
        status = job.wait(timeout=30)
        assert status["state"] == "failed", status
        assert (status["done"], status["failed"], status["total"]) == (20, 1, 21)
        assert [f["key"] for f in job.failures()] == ["bogus"]


@pytest.mark.parametrize(
    "dialect", [{"job_state_field": "none"}, {"job_state_field": "none", "job_counts": "missing"}]
)
def test_cancel_stops_a_job_whose_answer_names_no_state(dialect):
    """`cancel()` acted only on jobs reading `waiting`, `processing` or `queued`: without a state word it
    silently canceled nothing."""
    with lp.sandbox.start("sama", seed=32, dialect=dialect) as sb, sb.client() as c:
        sb.hook("/_sim/config", {"creation_s": 100.0})
        b = c.create_batch("stop-me", exist_ok=True)
        job = b.upload(records("c", 10), key="image_id", wait=False)
        sb.advance(35)
        b.cancel()
        status = job.wait(timeout=30)
        assert status["state"] == "failed"
        assert status["done"] < 10 and status["done"] + status["failed"] == 10, status
        assert {f["code"] for f in job.failures()} == {"canceled"}


def test_a_stalled_part_of_a_chunked_upload_stops_with_stalled_naming_it():
    """An upload over 50,000 records from a stream goes in parts, each waited for before the next: a part
    whose job never moves stopped nothing (the wait had no bound)."""
    with lp.sandbox.start("sama", seed=33) as sb, sb.client(stall_timeout=1.5) as c:
        b = c.create_batch("stalled", exist_ok=True)
        b.upload(records("p", 1), key="image_id").wait(timeout=30)  # the batch keeps its key input
        sb.hook("/_sim/config", {"creation_s": 1e7})  # from now on, creation jobs create nothing for hours
        stream = iter(records("s", 50_001))
        with pytest.raises(lp.Stalled) as info:
            b.upload(stream, key="image_id")
        assert "part 1 of the upload" in str(info.value)
        assert info.value.details["part"] == 1
        assert requests_to(sb, CREATE) == 1 + 10  # the primer, then part 1's ten jobs; part 2 never went


# ---- finding 2: the delivery time ----------------------------------------------------------------------------


def test_results_read_the_delivery_time_under_its_other_name():
    with (
        lp.sandbox.start("sama", seed=34, dialect={"delivery_time_field": "completion_date"}) as sb,
        sb.client() as c,
    ):
        b = c.create_batch("dated", exist_ok=True)
        b.upload(records("d", 10), key="image_id").wait(timeout=30)
        b.wait(timeout=30, poll_interval=0.1)
        stream = b.results()
        first = stream.to_list()
        assert len(first) == 10 and all(r["completed_at"] for r in first)
        mark = stream.watermark
        assert mark is not None
        assert b.results(since=mark).to_list() == []
        sb.advance(2)
        b.upload(records("d", 5, start=10), key="image_id").wait(timeout=30)
        b.wait(timeout=30, poll_interval=0.1)
        assert sorted(r["key"] for r in b.results(since=mark)) == [f"d{i:05d}" for i in range(10, 15)]


def test_results_without_a_delivery_time_are_each_read_once():
    """No Sama example shows a delivery time on a task: without one, the watermark never moved (so every
    incremental read re-delivered the whole batch)."""
    with lp.sandbox.start("sama", seed=35, dialect={"delivery_time_field": "none"}) as sb, sb.client() as c:
        b = c.create_batch("undated", exist_ok=True)
        b.upload(records("u", 10), key="image_id").wait(timeout=30)
        b.wait(timeout=30, poll_interval=0.1)
        stream = b.results()
        first = stream.to_list()
        assert len(first) == 10 and all(r["completed_at"] is None for r in first)
        mark = stream.watermark
        assert mark is not None
        assert b.results(since=mark).to_list() == []
        b.upload(records("u", 5, start=10), key="image_id").wait(timeout=30)
        b.wait(timeout=30, poll_interval=0.1)
        newer = b.results(since=mark).to_list()
        assert sorted(r["key"] for r in newer) == [f"u{i:05d}" for i in range(10, 15)]


# ---- finding 3: delivered tasks reading "completed" ----------------------------------------------------------


def test_a_batch_whose_delivered_tasks_read_completed_finishes():
    """Over 100 tasks, counts come from the delivered list, whose tasks read `state: "completed"` in Sama's
    own examples: they were counted as in progress, and `wait()` never ended."""
    with (
        lp.sandbox.start("sama", seed=36, dialect={"delivered_reads_completed": True}) as sb,
        sb.client() as c,
    ):
        b = c.create_batch("big", exist_ok=True)
        b.upload(records("b", 150), key="image_id").wait(timeout=30)
        final = b.wait(timeout=30, poll_interval=0.1)
        assert (final["done"], final["completed"], final["in_progress"]) == (True, 150, 0)


# ---- findings 5 and 6: the key and client-batch inputs must survive ----------------------------------------


def test_an_upload_stops_after_the_first_job_when_sama_drops_the_key_input():
    with lp.sandbox.start("sama", seed=37, dialect={"drop_key_input": True}) as sb, sb.client() as c:
        b = c.create_batch("keyless", exist_ok=True)
        with pytest.raises(lp.InvalidInput) as info:
            b.upload(records("k", 6000), key="image_id")
        assert info.value.field == "key_field"
        assert info.value.code == "key_not_kept"
        assert "labelport_key" in str(info.value)
        assert requests_to(sb, CREATE) == 1, "a second creation job was sent"
        # A later upload to the batch refuses too, before sending anything.
        with pytest.raises(lp.InvalidInput) as again:
            b.upload(records("k", 6000), key="image_id")
        assert again.value.field == "key_field"
        assert requests_to(sb, CREATE) == 1


def test_a_small_upload_whose_key_input_is_dropped_fails_its_wait_and_is_never_sent_twice():
    with lp.sandbox.start("sama", seed=38, dialect={"drop_key_input": True}) as sb, sb.client() as c:
        b = c.create_batch("keyless-small", exist_ok=True)
        with pytest.raises(lp.InvalidInput) as info:
            b.upload(records("m", 10), key="image_id")  # upload() waits for the job, whose tasks lack the key
        assert info.value.field == "key_field"
        with pytest.raises(lp.InvalidInput):
            b.upload(records("m", 10), key="image_id")
        assert requests_to(sb, CREATE) == 1
        assert len(b.records().to_list()) == 10


def test_an_upload_stops_after_the_first_job_when_the_client_batch_input_is_not_the_projects():
    with lp.sandbox.start("sama", seed=39) as sb, sb.client(client_batch_field="lot") as c:
        b = c.create_batch("lot-1", exist_ok=True)
        with pytest.raises(lp.InvalidInput) as info:
            b.upload(records("l", 6000), key="image_id")
        assert info.value.field == "client_batch_field"
        assert info.value.code == "client_batch_not_kept"
        assert requests_to(sb, CREATE) == 1


# ---- findings 7, 8, 11: one task, job ids, created_at ----------------------------------------------------------


def test_reject_reads_a_single_task_under_tasks():
    with lp.sandbox.start("sama", seed=40, dialect={"single_task_under": "tasks"}) as sb, sb.client() as c:
        b = c.create_batch("reject", exist_ok=True)
        b.upload(records("r", 3), key="image_id").wait(timeout=30)
        b.wait(timeout=30, poll_interval=0.1)
        target = b.results().to_list()[0]
        b.reject([target["id"]], reason="redo")  # read the task's batch first: it was "not in batch"
        assert requests_to(sb, "PUT /v2/projects/{projectId}/tasks/{taskId}/reject.json") == 1


def test_creation_job_ids_may_be_strings():
    with lp.sandbox.start("sama", seed=41, dialect={"ids_as_strings": True}) as sb, sb.client() as c:
        b = c.create_batch("ids", exist_ok=True)
        job = b.upload(records("i", 6000), key="image_id")
        assert len(job.id.split(",")) == 2
        assert job.wait(timeout=60)["done"] == 6000
        assert b.wait(timeout=60, poll_interval=0.2)["completed"] == 6000


def test_created_at_in_samas_zoneless_form_comes_out_as_rfc3339():
    with lp.sandbox.start("sama", seed=42, dialect={"created_at_zoneless": True}) as sb, sb.client() as c:
        b = c.create_batch("zoneless", exist_ok=True)
        b.upload(records("z", 3), key="image_id").wait(timeout=30)
        b.wait(timeout=30, poll_interval=0.1)
        for r in list(b.results()) + list(b.records()):
            when = dt.datetime.fromisoformat(r["created_at"].replace("Z", "+00:00"))
            assert when.tzinfo is not None
            assert abs((dt.datetime.now(dt.timezone.utc) - when).total_seconds()) < 3600


# ---- page caps -----------------------------------------------------------------------------------------------


def test_every_listing_reads_past_a_page_cap_of_250():
    with lp.sandbox.start("sama", seed=43, dialect={"page_cap": 250}) as sb, sb.client() as c:
        b = c.create_batch("capped", exist_ok=True)
        bad = [{"image_id": f"bogus{i}", "url": "u", "output_bogus": "x"} for i in range(300)]
        job = b.upload(records("c", 600) + bad, key="image_id")
        status = job.wait(timeout=60)
        assert (status["done"], status["failed"]) == (600, 300)  # failures read from 4 pages of the job
        assert len(job.failures()) == 300
        assert b.wait(timeout=60, poll_interval=0.2)["completed"] == 600
        assert len(b.results().to_list()) == 600
        assert len(b.results(consumer="etl").to_list()) == 600


def test_a_continue_lost_on_a_job_that_names_no_state_is_sent_again():
    """After an ambiguous `continue`, a job answer without a `state` was read as "started": the job was never
    continued, its tasks never created, and the upload's wait never ended."""
    with lp.sandbox.start("sama", seed=44, dialect={"job_state_field": "none"}) as sb, sb.client() as c:
        sb.hook("/_sim/faults", {"status": 500, "method": "POST", "path": "continue.json", "commit": False})
        b = c.create_batch("lost-continue", exist_ok=True)
        status = b.upload(records("lc", 5), key="image_id").wait(timeout=30)
        assert (status["state"], status["done"]) == ("completed", 5)
        assert requests_to(sb, "POST /v2/projects/{projectId}/batches/{batchId}/continue.json") == 2

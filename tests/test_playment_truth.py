"""Playment against what its sources say and leave open (docs/vendors/playment.md): each test starts the sandbox
under a dialect setting that serves the other documented or reasonable form, and the adapter must read it."""

from __future__ import annotations

from typing import Any

import labelport as lp
import pytest

CREATE_BATCH = "POST /v1/project/{projectId}/batch"
DETAILS = "GET /v0/projects/{projectId}/details"
JOBS_PAGE = "GET /v0/projects/{projectId}/batch/{batchId}"
CREATE_V1 = "POST /v1/projects/{projectId}/jobs"


def make(n: int, tag: str) -> list[dict[str, Any]]:
    return [
        {"image_id": f"{tag}-{i:04d}", "image_url": f"https://example.com/cars/{i:04d}.jpg"} for i in range(n)
    ]


def done_results(dialect: dict[str, Any], n: int = 12, **start: Any) -> list[dict[str, Any]]:
    with lp.sandbox.start("playment", seed=31, dialect=dialect, **start) as sb, sb.client() as c:
        batch = c.create_batch("truth")
        batch.upload(make(n, "t"), key="image_id")
        return batch.results().to_list()


# Finding 3: create-batch sends label and project_id, as both code samples do, and goes by data.batch_id.
def test_create_batch_sends_label_and_project_id_and_keeps_the_returned_batch_id(stat_count):
    dialect = {"require_label": True, "details_lag": True}
    with lp.sandbox.start("playment", seed=32, dialect=dialect) as sb, sb.client() as c:
        batch = c.create_batch("labelled", description="cars")
        # The details did not list it yet: the id came from the create's answer.
        assert stat_count(sb, CREATE_BATCH, "200") == 1
        assert batch.name == "labelled" and batch.id
        job = batch.upload(make(5, "l"), key="image_id")
        assert job.status()["done"] == 5
        # Listed from the next details read on, under the same id.
        assert c.batch(batch.id).name == "labelled"
        assert c.create_batch("labelled", exist_ok=True).id == batch.id
        assert stat_count(sb, CREATE_BATCH) == 1


# Finding 2: /v1/attachments may answer 200 with the file, or with JSON naming the signed URL.
@pytest.mark.parametrize("form", ["file", "json_url"])
def test_attachments_answered_200_are_read(form):
    results = done_results({"attachments": form})
    assert len(results) == 12
    for r in results:
        assert r["output"]["annotations"]["rectangles"], r
        assert r["input"]["image_url"].startswith("https://example.com/cars/")
        assert r["completed_at"].endswith("Z")


# Finding 6: labels under `annotations_data` (the segmentation page's name) are the output, not the input.
def test_labels_under_annotations_data_are_the_output():
    results = done_results({"labels_key": "annotations_data"})
    assert len(results) == 12
    for r in results:
        assert r["output"]["annotations_data"]["rectangles"], r
        assert "annotations_data" not in r["input"]


# Finding 4: the callback's words (PENDING, PROCESSING, COMPLETED, FAILED) read as the neutral statuses.
def test_other_job_status_words_are_read():
    dialect = {"status_words": "callback"}
    with (
        lp.sandbox.start("playment", seed=4, complete_after=10, exception_rate=0.3, dialect=dialect) as sb,
        sb.client() as c,
    ):
        batch = c.create_batch("words")
        batch.upload(make(40, "w"), key="image_id")
        assert batch.status()["pending"] == 40
        sb.advance(5)
        assert batch.status()["in_progress"] == 40
        assert len(batch.records(status="in_progress").to_list()) == 40
        sb.advance(5)
        st = batch.status()
        assert st["done"] is True and st["completed"] + st["failed"] == 40 and 0 < st["failed"] < 40
        assert len(batch.results().to_list()) == st["completed"]
        assert len(batch.records(status="failed").to_list()) == st["failed"]


# Finding 5: without Last-Modified there is no completion time; `since` then keeps every result (nothing lost).
def test_results_without_last_modified_lose_nothing():
    dialect = {"no_last_modified": True}
    with lp.sandbox.start("playment", seed=5, complete_after=1, dialect=dialect) as sb, sb.client() as c:
        batch = c.create_batch("undated")
        batch.upload(make(5, "u"), key="image_id")
        sb.advance(2)
        first = batch.results().to_list()
        assert len(first) == 5 and all(r["completed_at"] is None for r in first)
        later = batch.results(since="2000-01-01T00:00:00Z").to_list()
        assert sorted(r["key"] for r in later) == sorted(r["key"] for r in first)


# Finding 7: v1 jobs take priority_weight 1-9; a 10 with work_flow_id is refused before anything is sent.
def test_priority_weight_10_on_the_v1_path_is_refused_before_sending(stat_count):
    with lp.sandbox.start("playment", seed=33) as sb, sb.client() as c:
        batch = c.create_batch("weights")
        with pytest.raises(lp.InvalidInput) as e:
            batch.upload(make(3, "p"), key="image_id", work_flow_id="wf-1", priority_weight=10)
        assert e.value.field == "priority_weight"
        assert stat_count(sb, CREATE_V1) == 0
        # 9 on v1 and 10 on v0 (tag) go through.
        assert (
            batch.upload(make(2, "p9"), key="image_id", work_flow_id="wf-1", priority_weight=9).status()[
                "done"
            ]
            == 2
        )
        assert batch.upload(make(2, "p10"), key="image_id", priority_weight=10).status()["done"] == 2


# Finding 10: a finished batch's status is one details read, not a walk of its job list; without the counts
# in the details, the walk still answers.
@pytest.mark.parametrize("counts", [True, False])
def test_a_finished_batch_status_reads_the_details_counts(counts, stat_count):
    dialect = {} if counts else {"no_batch_counts": True}
    with lp.sandbox.start("playment", seed=34, dialect=dialect) as sb, sb.client() as c:
        batch = c.create_batch("counted")
        batch.upload(make(250, "c"), key="image_id")
        before = stat_count(sb, JOBS_PAGE)
        st = batch.status()
        assert (st["total"], st["completed"], st["done"]) == (250, 250, True)
        walked = stat_count(sb, JOBS_PAGE) - before
        assert walked == (0 if counts else 3)


# A job list paged in another size than the documented 100 is read whole.
def test_job_pages_of_another_size_are_read_whole(stat_count):
    with lp.sandbox.start("playment", seed=35, dialect={"jobs_per_page": 7}) as sb, sb.client() as c:
        batch = c.create_batch("pages")
        records = make(30, "pg")
        batch.upload(records, key="image_id")
        assert sorted(r["key"] for r in batch.records().to_list()) == sorted(r["image_id"] for r in records)
        assert batch.upload(records, key="image_id").status()["skipped"] == 30
        # Pages of 7: the records and the re-run each walked 5 of them.
        assert stat_count(sb, JOBS_PAGE) >= 2 * 5


# Issue 20 item 7: the documented 5 requests per second is the default on Playment's real host only.
def test_the_documented_rate_limit_is_the_default_off_loopback_only():
    with lp.sandbox.start("playment", seed=36) as sb:
        assert sb.client().capabilities["rate_limit"] is None
        assert sb.client(rate_limit=20).capabilities["rate_limit"] == 20
        assert sb.client(rate_limit=0).capabilities["rate_limit"] is None
    real = lp.Client("playment", project="p", api_key="k", tag="t")
    assert real.capabilities["rate_limit"] == 5
    assert (
        lp.Client("playment", project="p", api_key="k", tag="t", rate_limit=0).capabilities["rate_limit"]
        is None
    )

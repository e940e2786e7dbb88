"""Deepen's adapter against what the sources say (docs/vendors/deepen.md, "Findings"): the dataset lifecycle
(created with its files declared and sized by the first upload), status from the dataset's stage, results from
the final labels, and every undocumented form the simulator's dialect settings vary. Each test names the
finding it proves."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import labelport as lp
import pytest

CREATE = "POST /api/v2/clients/{clientId}/datasets"
PUT = "PUT /_sim/storage/upload"
PROCESS = "POST /api/v2/datasets/{datasetId}/process_uploaded_data"


def records(prefix: str, n: int, start: int = 0) -> list[dict]:
    return [
        {"name": f"{prefix}-{i:05d}.jpg", "file": b"\xff\xd8\xff" + i.to_bytes(4, "big")}
        for i in range(start, n)
    ]


def count(sb, endpoint: str) -> int:
    return sum(int(n) for k, n in sb.stats()["requests"].items() if k.rpartition(" ")[0] == endpoint)


@contextlib.contextmanager
def round_trip(dialect: dict, n: int = 30) -> Iterator[tuple[list[dict], Any, Any]]:
    """Upload, wait, read results under ``dialect``: the results, the batch and the client, while the sandbox
    runs."""
    with lp.sandbox.start("deepen", seed=4, dialect=dialect) as sb, sb.client() as client:
        batch = client.create_batch("truth")
        assert batch.upload(records("t", n), key="name").wait(timeout=60)["state"] == "completed"
        final = batch.wait(timeout=60, poll_interval=0.1)
        assert final["done"] is True and final["completed"] == n, final
        results = batch.results().to_list()
        assert sorted(r["key"] for r in results) == [f"t-{i:05d}.jpg" for i in range(n)]
        yield results, batch, client


# Finding 1: the dataset is created with its files declared and sized, by the first upload.


def test_the_first_upload_creates_the_dataset_with_every_zip_declared_and_sized():
    with lp.sandbox.start("deepen", seed=1) as sb, sb.client() as client:
        batch = client.create_batch("sized")
        assert batch.id.startswith("reserved:") and count(sb, CREATE) == 0
        job = batch.upload(records("s", 2500), key="name").wait(timeout=60)
        assert job["state"] == "completed" and job["done"] == 2500
        assert count(sb, CREATE) == 1 and count(sb, PUT) == 3
        dataset = client.batch(batch.id).raw
        sizes = [f["file_size"] for f in dataset["files"]]
        assert len(sizes) == 3 and all(isinstance(s, int) and s > 0 for s in sizes)
        assert len(sb.stats()["records_created"]) == 2500
        # No endpoint adds files to an existing dataset: the simulator refuses what no source shows.
        with pytest.raises(lp.LabelportError) as info:
            client.request(
                "POST", f"/datasets/{dataset['dataset_id']}/files", json={"files": [{"file_size": 1}]}
            )
        assert info.value.status == 405


def test_a_later_upload_of_new_files_is_unsupported_and_a_rerun_sends_nothing():
    with lp.sandbox.start("deepen", seed=1) as sb, sb.client() as client:
        batch = client.create_batch("once")
        first = records("o", 20)
        batch.upload(first, key="name").wait(timeout=30)
        puts = count(sb, PUT)
        with pytest.raises(lp.UnsupportedOperation, match="new batch") as info:
            batch.upload(records("o", 25), key="name")
        assert info.value.vendor == "deepen"
        assert count(sb, PUT) == puts and count(sb, CREATE) == 1
        again = batch.upload(first, key="name").wait(timeout=30)
        assert again["skipped"] == 20 and count(sb, PUT) == puts


REATTACH = textwrap.dedent(
    """
    import json, sys
    import labelport as lp
    env = json.loads(sys.argv[1])
    client = lp.Client("deepen", project=env["project"], base_url=env["url"], **env["credentials"])
    batch = client.create_batch("reattach")
    job = batch.upload([{"name": f"r-{i}.jpg", "file": b"x" * i} for i in range(1, 6)], key="name")
    print(json.dumps({"reserved": batch.id, "job": job.wait(timeout=30)}))
    """
)


def test_a_fresh_process_reattaches_by_name_and_by_either_id():
    """One id from create_batch on: before the first upload the reserved id is NotFound (no dataset carries
    it); after it, the reserved id finds the dataset in any process and stays the batch's id (create_batch
    with exist_ok, client.batch, batches()); the dataset's own id works as a batch id too."""
    with lp.sandbox.start("deepen", seed=1) as sb, sb.client() as client:
        reserved = client.create_batch("reattach").id
        assert client.create_batch("reattach", exist_ok=True).id == reserved
        for call in (lambda: client.batch(reserved), client.create_batch("reattach", exist_ok=True).status):
            with pytest.raises(lp.NotFound, match="first upload"):
                call()
        env = {"url": sb.url, "project": sb.project, "credentials": sb.credentials}
        out = subprocess.run(
            [sys.executable, "-c", REATTACH, json.dumps(env)], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout.strip().splitlines()[-1])
        assert report["reserved"] == reserved and report["job"]["done"] == 5
        with sb.client() as fresh:
            again = fresh.create_batch("reattach", exist_ok=True)
            assert (again.id, again.name) == (reserved, "reattach")
            assert fresh.batch(reserved).id == reserved
            assert [b.id for b in fresh.batches() if b.name == "reattach"] == [reserved]
            dataset_id = fresh.batch(reserved).raw["dataset_id"]
            assert not dataset_id.startswith("reserved:") and fresh.batch(dataset_id).id == dataset_id
            assert fresh.batch(reserved).status()["total"] == 5 == fresh.batch(dataset_id).status()["total"]
            with pytest.raises(lp.DuplicateRecord, match="reserved:"):
                fresh.create_batch("reattach")


def test_an_upload_cut_short_fills_the_archives_it_declared():
    with lp.sandbox.start("deepen", seed=1) as sb, sb.client() as client:
        batch = client.create_batch("resume")
        recs = records("c", 1500)
        sb.inject(status=400, method="POST", path="/process_uploaded_data")
        with pytest.raises(lp.LabelportError, match="run the same upload again"):
            batch.upload(recs, key="name")
        job = batch.upload(recs, key="name").wait(timeout=60)
        assert job["state"] == "completed" and job["done"] == 1500
        created = sb.stats()["records_created"]
        assert len(created) == 1500 and set(created.values()) == {1}
        assert count(sb, CREATE) == 1
        assert len(client.batch(batch.id).raw["files"]) == 2


def test_two_datasets_of_one_name_are_named_not_guessed_between():
    """Finding 12: Deepen does not say names are unique; a name held twice is an error naming both ids."""
    with lp.sandbox.start("deepen", seed=1) as sb, sb.client() as client:
        body = {"dataset_name": "twin", "dataset_type": "images", "files": [{"file_size": 10}]}
        ids = [
            client.request("POST", f"/clients/{sb.project}/datasets", json=body)["dataset_id"]
            for _ in range(2)
        ]
        with pytest.raises(lp.InvalidInput) as info:
            client.create_batch("twin", exist_ok=True)
        assert all(i in str(info.value) for i in ids)


def test_a_datasets_map_without_ids_lists_by_its_keys():
    """Finding 12: each field name of the datasets map is a dataset id."""
    with (
        lp.sandbox.start("deepen", seed=1, dialect={"datasets_map_without_ids": True}) as sb,
        sb.client() as c,
    ):
        batch = c.create_batch("mapped")
        batch.upload(records("m", 3), key="name").wait(timeout=30)
        listed = [b for b in c.batches() if b.name == "mapped"]
        assert [b.id for b in listed] == [c.batch(batch.id).id]


def test_video_batches_are_refused():
    """Finding 9: a video dataset takes one mp4; labelport sends zips."""
    with lp.sandbox.start("deepen", seed=1) as sb, sb.client() as client:
        with pytest.raises(lp.UnsupportedOperation, match="mp4"):
            client.create_batch("clip", dataset_type="video")


# Findings 2-6: status from the dataset, tasks parsed loosely, results from the final labels.


def test_tasks_without_ids_or_times_still_give_status_results_and_times():
    """Findings 2 and 5: no TaskResource field is documented; completion times come from the labels."""
    with round_trip({"bare_tasks": True}) as (results, batch, client):
        assert all(r["completed_at"] for r in results)
        stream = batch.results()
        assert len(stream.to_list()) == 30
        assert batch.results(since=stream.watermark).to_list() == []


@pytest.mark.parametrize("word", ["Accepted", "done", "finished"])
def test_a_finished_task_may_read_other_words(word):
    """Finding 3: the word a finished last-stage task reads is not documented."""
    with round_trip({"finished_task_word": word}):
        pass


@pytest.mark.parametrize("stage", ["audit_done", "labelling_done"])
def test_the_dataset_stage_says_when_labelling_is_over(stage):
    """Findings 3 and 4: finished by the dataset's current_stage / current_stage_status, whatever the tasks
    read (here tasks carry neither ids nor a word labelport knows)."""
    with round_trip({"finished_stage": stage, "bare_tasks": True, "finished_task_word": "finished"}):
        pass


def test_float_timestamps_are_read():
    """Finding 6: DatasetResource types its timestamps "float"."""
    with round_trip({"float_timestamps": True}) as (results, batch, client):
        assert all(r["created_at"] and r["completed_at"] for r in results)
        assert client.batch(batch.id).created_at


@pytest.mark.parametrize("form", ["paths", "objects"])
def test_a_processed_archive_is_recognised_in_any_uploaded_files_form(form):
    """Finding 7: after a commit-then-fail of process_uploaded_data, uploaded_files says it was done."""
    with lp.sandbox.start("deepen", seed=1, dialect={"uploaded_files": form}) as sb, sb.client() as client:
        batch = client.create_batch("reconcile")
        # Two archives, so "past Processing" alone cannot say which one was processed.
        recs = records("u", 1200)
        sb.inject(status=500, method="POST", path="/process_uploaded_data", commit=True)
        assert batch.upload(recs, key="name").wait(timeout=60)["done"] == 1200
        assert count(sb, PROCESS) == 2  # the committed one was not sent again
        assert set(sb.stats()["records_created"].values()) == {1}


def test_a_failed_preprocessing_fails_the_job_with_deepens_message():
    """Finding 8: processing_status preprocessing_error (older DatasetResource page) ends the job."""
    with lp.sandbox.start("deepen", seed=1) as sb, sb.client() as client:
        sb.hook("/_sim/deepen/preprocessing_error", {"message": "corrupt archive"})
        batch = client.create_batch("broken")
        job = batch.upload(records("p", 5), key="name")
        assert job.wait(timeout=10)["state"] == "failed"
        (failure,) = job.failures()
        assert failure["code"] == "preprocessing_error" and failure["message"] == "corrupt archive"


@pytest.mark.parametrize("form", ["strings", "objects"])
def test_the_records_own_fields_come_back_from_the_dataset_tags_in_any_tag_form(form):
    """Finding 15: Deepen keeps the file, not the record. The create call carries each record's own fields (the
    record without its file) as a dataset tag, and ``input`` of results() and records() is read back from the
    tags, with JSON types, whether Deepen answers the tags as strings or as objects (dialect ``tag_form``)."""
    recs = [
        {**r, "caption": f"car {i}", "count": i, "score": i + 0.5, "flag": i % 2 == 0, "note": None}
        for i, r in enumerate(records("in", 4))
    ]
    with lp.sandbox.start("deepen", seed=4, dialect={"tag_form": form}) as sb, sb.client() as client:
        batch = client.create_batch("inputs")
        batch.upload(recs, key="name").wait(timeout=30)
        batch.wait(timeout=60, poll_interval=0.1)
        want = {r["name"]: {k: v for k, v in r.items() if k != "file"} for r in recs}
        for envelope in batch.results().to_list() + batch.records().to_list():
            got = envelope["input"]
            assert got == want[envelope["key"]], got
            assert [type(got[k]) for k in ("count", "score", "flag")] == [int, float, bool], got
        tags = client.batch(batch.id).raw["tags"]
        assert len(tags) == 1 + len(recs), tags  # the batch id, and one per record
        # Read through the dataset's own id (another process, say): the same inputs.
        dataset_id = client.batch(batch.id).raw["dataset_id"]
        assert {r["key"]: r["input"] for r in client.batch(dataset_id).records()} == want

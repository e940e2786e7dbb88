"""Playment end to end against its sandbox over real sockets: one create per record, idempotent by reference_id."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from typing import Any

import labelport as lp
import pytest

CREATE = "POST /v0/projects/{projectId}/jobs"
ATTACH = "GET /v1/attachments"


def created(sb: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in sb.stats()["records_created"].items()}


def make(n: int, tag: str, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "image_id": f"{tag}-{i:05d}",
            "image_url": f"https://example.com/cars/{i:05d}.jpg",
            "caption": f"car number {i}",
        }
        for i in range(start, start + n)
    ]


@pytest.fixture(scope="module")
def sb():
    with lp.sandbox.start("playment", seed=3) as s:
        yield s


@pytest.fixture(scope="module")
def client(sb):
    with sb.client() as c:
        yield c


def round_trip(client: lp.Client, name: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """A user's script: nothing here names a vendor."""
    batch = client.create_batch(name, exist_ok=True)
    again = client.create_batch(name, exist_ok=True)
    assert again.id == batch.id
    job = batch.upload(records, key="image_id")
    st = job.wait(timeout=60)
    final = batch.wait(timeout=60, poll_interval=0.1)
    results = batch.results().to_list()
    listed = batch.records().to_list()
    rerun = batch.upload(records, key="image_id").wait(timeout=60)
    return {"batch": batch, "job": st, "final": final, "results": results, "records": listed, "rerun": rerun}


@pytest.mark.parametrize("vendor", ["alegion", "playment"])
def test_the_same_script_runs_on_both_vendors(vendor):
    records = make(120, vendor)
    with lp.sandbox.start(vendor, seed=9) as s, s.client() as c:
        out = round_trip(c, "cars-2026-11", records)
        assert out["job"]["state"] == "completed"
        assert out["job"]["done"] == 120 and out["job"]["failed"] == 0
        assert out["final"]["done"] is True
        assert out["final"]["total"] == 120 and out["final"]["completed"] == 120
        by_key = {r["image_id"]: r for r in records}
        assert sorted(r["key"] for r in out["results"]) == sorted(by_key)
        for r in out["results"]:
            assert r["vendor"] == vendor
            assert r["status"] == "completed"
            assert r["batch_id"] == out["batch"].id
            assert r["input"] == by_key[r["key"]]
            assert isinstance(r["output"], dict) and r["output"]
        assert sorted(r["key"] for r in out["records"]) == sorted(by_key)
        assert {r["status"] for r in out["records"]} == {"completed"}
        # The rerun sent nothing: every key was created exactly once.
        assert out["rerun"]["skipped"] == 120
        counts = created(s)
        assert set(counts) == set(by_key) and set(counts.values()) == {1}
        json.dumps(out["results"])


def test_envelope_and_result_behind_the_redirect(sb, client, stat_count):
    batch = client.create_batch(f"env-{uuid.uuid4().hex[:8]}")
    before = stat_count(sb, ATTACH, "302")
    batch.upload(make(130, "env"), key="image_id")
    raw = batch.results(include_raw=True).to_list()
    assert len(raw) == 130
    assert stat_count(sb, ATTACH, "302") - before == 130
    for r in raw:
        assert set(r) == {
            "id",
            "batch_id",
            "key",
            "status",
            "input",
            "output",
            "created_at",
            "completed_at",
            "vendor",
            "raw",
        }
        uuid.UUID(r["id"])
        assert r["raw"]["job"]["job_id"] == r["id"]
        assert r["raw"]["job"]["reference_id"] == r["key"]
        assert r["raw"]["job"]["status"] == "completed"
        rects = r["output"]["annotations"]["rectangles"]
        assert rects and all(0 <= p["x"] <= 1 for rect in rects for p in rect["coordinates"])
        assert r["created_at"] is None and r["completed_at"].endswith("Z")
    # Paging past 100 jobs: every key once.
    assert len({r["key"] for r in raw}) == 130
    # The signed storage URL never saw the key (the sandbox refuses it with 400).
    assert stat_count(sb, "GET /_sim/signed/{file}", "400") == 0


def test_status_counts_and_records_follow_the_sandbox_clock():
    with lp.sandbox.start("playment", seed=4, complete_after=10, exception_rate=0.3) as s, s.client() as c:
        batch = c.create_batch("slow")
        batch.upload(make(40, "slow"), key="image_id")
        st = batch.status()
        assert (st["total"], st["pending"], st["done"]) == (40, 40, False)
        assert batch.results().to_list() == []
        s.advance(5)
        assert batch.status()["in_progress"] == 40
        assert len(batch.records(status="in_progress").to_list()) == 40
        s.advance(5)
        st = batch.status()
        assert st["done"] is True and st["completed"] + st["failed"] == 40 and 0 < st["failed"] < 40
        results = batch.results().to_list()
        assert len(results) == st["completed"]
        failed = batch.records(status="failed").to_list()
        assert len(failed) == st["failed"]
        assert not {r["key"] for r in failed} & {r["key"] for r in results}


def test_results_since_is_exclusive_and_watermarked():
    with lp.sandbox.start("playment", seed=5, complete_after=1) as s, s.client() as c:
        batch = c.create_batch("since")
        batch.upload(make(5, "a"), key="image_id")
        # Read 3 s after they finished: their second has settled, so the watermark is theirs and `since` excludes
        # them (read sooner, they come again: docs/contract.md, `since_second_repeats`).
        s.advance(4)
        first = batch.results()
        assert len(first.to_list()) == 5
        mark = first.watermark
        assert mark
        s.advance(5)
        batch.upload(make(3, "b"), key="image_id")
        s.advance(2)
        later = batch.results(since=mark).to_list()
        assert sorted(r["key"] for r in later) == [f"b-{i:05d}" for i in range(3)]


def test_options_and_bad_input_fail_before_anything_is_sent(sb, client, stat_count):
    batch = client.create_batch(f"bad-{uuid.uuid4().hex[:8]}")
    total = sb.stats()["records_total"]
    creates = stat_count(sb, CREATE)
    with pytest.raises(lp.InvalidInput) as e:
        batch.upload([{"image_id": "x1", "url": "https://e.com/a/b.jpg"}], key="image_id")
    assert e.value.key == "x1"
    with pytest.raises(lp.InvalidInput):
        batch.upload(make(2, "opt"), key="image_id", colour="red")
    with pytest.raises(lp.InvalidInput):
        batch.upload(make(2, "opt"), key="image_id", priority_weight=11)
    with pytest.raises(lp.InvalidInput):
        client.create_batch("x", tag="t")
    with pytest.raises(lp.InvalidInput):
        lp.Client(
            "playment", project=sb.project, base_url=sb.url, api_key=sb.credentials["api_key"]
        ).create_batch("untagged", exist_ok=True).upload(make(1, "untagged"), key="image_id")
    assert sb.stats()["records_total"] == total
    assert stat_count(sb, CREATE) == creates
    # priority_weight and work_flow_id reach Playment (v1 path for work_flow_id).
    job = batch.upload(make(2, "wf"), key="image_id", work_flow_id="wf-1", priority_weight=9)
    assert job.status()["done"] == 2
    assert stat_count(sb, "POST /v1/projects/{projectId}/jobs", "200") >= 2
    with pytest.raises(lp.DuplicateRecord):
        client.create_batch(batch.name)


def test_bad_key_and_other_project(sb):
    with pytest.raises(lp.AuthError) as e:
        sb.client(api_key="wrong").create_batch("x", exist_ok=True)
    assert "wrong" not in str(e.value)
    with pytest.raises(lp.AuthError):
        sb.client(api_key=sb.credentials["api_key"] + "-other").batches()
    with pytest.raises(lp.NotFound):
        sb.client(project=str(uuid.uuid4())).batches()


def test_a_key_used_in_another_batch_is_a_duplicate(sb, client):
    a = client.create_batch(f"dup-a-{uuid.uuid4().hex[:6]}")
    b = client.create_batch(f"dup-b-{uuid.uuid4().hex[:6]}")
    recs = make(3, f"dup{uuid.uuid4().hex[:4]}")
    a.upload(recs, key="image_id")
    with pytest.raises(lp.DuplicateRecord) as e:
        b.upload(recs, key="image_id")
    assert e.value.code == "FS_0001"
    job = b.upload(recs, key="image_id", on_error="collect")
    assert job.status()["failed"] == 3
    assert {f["key"] for f in job.failures()} == {r["image_id"] for r in recs}
    assert all(created(sb)[r["image_id"]] == 1 for r in recs)


def test_lost_answers_are_recovered_from_the_batch_list(sb, client, stat_count):
    batch = client.create_batch(f"lost-{uuid.uuid4().hex[:8]}")
    recs = make(10, f"lost{uuid.uuid4().hex[:4]}")
    sb.inject(status=500, method="POST", path="/jobs", commit=True, times=4)
    job = batch.upload(recs, key="image_id")
    st = job.status()
    assert st["done"] == 10 and st["failed"] == 0
    assert stat_count(sb, CREATE, "400") >= 4  # the resends met FS_0001
    assert all(created(sb)[r["image_id"]] == 1 for r in recs)
    assert batch.status()["total"] == 10


def test_faults_create_nothing_twice_and_return_everything_once(stat_count):
    faults = {"server_error": 0.1, "commit_then_fail": 0.05, "reset": 0.02, "rate_limit": 0.05}
    recs = make(300, "fault")
    with lp.sandbox.start("playment", seed=21, faults=faults) as s, s.client(max_retries=8) as c:
        batch = c.create_batch("faulty", exist_ok=True)
        job = batch.upload(recs, key="image_id")
        assert job.status()["done"] == 300
        counts = created(s)
        assert len(counts) == 300 and set(counts.values()) == {1}
        results = batch.results().to_list()
        assert sorted(r["key"] for r in results) == sorted(r["image_id"] for r in recs)
        assert stat_count(s, CREATE, "500") > 0 and stat_count(s, CREATE, "429") > 0


def test_rate_limit_caps_every_one_second_window():
    with lp.sandbox.start("playment", seed=1) as s, s.client(rate_limit=20) as c:
        t0 = time.monotonic()
        batch = c.create_batch("paced")
        batch.upload(make(60, "paced"), key="image_id")
        elapsed = time.monotonic() - t0
        sent = s.stats()["requests_total"]
        assert sent >= 62
        # At most rate + the documented burst of 1 in any one-second window.
        assert s.stats()["peak_rps"] <= 21, s.stats()["peak_rps"]
        assert elapsed >= (sent - 1) / 20 - 0.1


CHILD = textwrap.dedent(
    """
    import os, signal, labelport as lp
    signal.signal(signal.SIGINT, signal.default_int_handler)
    c = lp.Client("playment", project=os.environ["P"], base_url=os.environ["U"], api_key=os.environ["K"], tag="t")
    b = c.create_batch("killed", exist_ok=True)
    recs = [{"k": f"k{i:05d}", "image_url": f"https://e.com/i/{i}.jpg"} for i in range(3000)]
    b.upload(recs, key="k")
    """
)


def test_an_upload_killed_halfway_and_rerun_ends_with_exactly_3000_jobs(tmp_path):
    with lp.sandbox.start("playment", seed=8, latency=0.005) as s:
        env = {**os.environ, "P": s.project, "U": s.url, "K": s.credentials["api_key"]}
        child = subprocess.Popen([sys.executable, "-c", CHILD], env=env)
        deadline = time.monotonic() + 120
        while s.stats()["records_total"] < 1500 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.02)
        assert child.poll() is None, "the upload finished before it could be killed"
        child.send_signal(signal.SIGKILL)
        child.wait()
        halfway = s.stats()["records_total"]
        assert 1000 < halfway < 3000
        with s.client() as c:
            b = c.create_batch("killed", exist_ok=True)
            job = b.upload(
                [{"k": f"k{i:05d}", "image_url": f"https://e.com/i/{i}.jpg"} for i in range(3000)], key="k"
            )
            st = job.status()
            assert st["done"] == 3000 and st["skipped"] >= halfway - 64
            assert b.status()["total"] == 3000
        counts = created(s)
        assert len(counts) == 3000 and set(counts.values()) == {1}

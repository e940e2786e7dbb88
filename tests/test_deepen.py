"""Deepen AI end to end against its sandbox over real sockets: files in (zips of small generated PNGs), labels
out, through the dataset's stages, with rejections, faults and a 500-file zip that never sits in memory.

Deepen records carry their file under ``file``: a path on disk, or the file's bytes.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib

import labelport as lp
import pytest

PUT = "PUT /_sim/storage/upload"
CREATE = "POST /api/v2/clients/{clientId}/datasets"
PROCESS = "POST /api/v2/datasets/{datasetId}/process_uploaded_data"
ENVELOPE_KEYS = {"id", "batch_id", "key", "status", "input", "output", "created_at", "completed_at", "vendor"}
NEUTRAL = {"pending", "in_progress", "completed", "exception", "canceled", "rejected", "failed"}


def png(seed: int, size: int = 4) -> bytes:
    """A small valid PNG (size x size, grey level from ``seed``)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    raw = b"".join(b"\x00" + bytes([seed % 256]) * size for _ in range(size))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def count(sb, endpoint: str, status: int | str | None = None) -> int:
    total = 0
    for key, n in sb.stats()["requests"].items():
        ep, _, st = key.rpartition(" ")
        if ep == endpoint and (status is None or st == str(status)):
            total += int(n)
    return total


@pytest.fixture(scope="module")
def sandbox():
    with lp.sandbox.start("deepen", seed=8) as sb:
        yield sb


@pytest.fixture(scope="module")
def client(sandbox):
    with sandbox.client() as c:
        yield c


@pytest.fixture
def files(tmp_path, unique):
    """``files(n, start=0)``: records of ``n`` PNG files on disk, ``name`` unique to the test."""

    def make(n: int, start: int = 0) -> list[dict]:
        out = []
        for i in range(start, start + n):
            path = tmp_path / f"{i:05d}.png"
            path.write_bytes(png(i))
            out.append({"name": f"{unique}-{i:05d}.png", "file": str(path), "camera": "front"})
        return out

    return make


def parse_time(value: object) -> dt.datetime:
    assert isinstance(value, str), value
    t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert t.tzinfo is not None
    return t


def test_full_round_trip(sandbox, client, files, unique):
    name = f"round-{unique}"
    # Deepen creates a dataset with its files: create_batch reserves the name, the first upload creates it.
    batch = client.create_batch(name, exist_ok=True)
    again = client.create_batch(name, exist_ok=True)
    assert again.id == batch.id and batch.name == name
    assert sum(1 for b in client.batches() if b.name == name) == 0

    records = files(20)
    job = batch.upload(records, key="name")
    assert job.batch_id == batch.id
    assert job.wait(timeout=60) == {"state": "completed", "done": 20, "total": 20, "failed": 0, "skipped": 0}
    assert sum(1 for b in client.batches() if b.name == name) == 1
    with pytest.raises(lp.DuplicateRecord):
        client.create_batch(name)
    final = batch.wait(timeout=60, poll_interval=0.1)
    assert final["done"] is True and final["total"] == 20 and final["completed"] == 20

    # Uploading the same records again sends nothing: no zip, no processing, every key created once.
    puts = count(sandbox, PUT)
    rerun = batch.upload(records, key="name")
    assert rerun.status()["skipped"] == 20
    assert count(sandbox, PUT) == puts
    created = sandbox.stats()["records_created"]
    assert all(created[r["name"]] == 1 for r in records)

    results = batch.results().to_list()
    assert sorted(r["key"] for r in results) == sorted(r["name"] for r in records)
    for r in results:
        assert set(r) == ENVELOPE_KEYS
        assert r["id"] == r["key"]  # the result id is the file id
        assert r["status"] == "completed" and r["vendor"] == "deepen" and r["batch_id"] == batch.id
        # The record as uploaded, without its file (kept in the dataset's tags: docs/vendors/deepen.md).
        assert r["input"] == {"name": r["key"], "camera": "front"}, r["input"]
        labels = r["output"]["labels"]
        assert labels and all(x["file_id"] == r["key"] and x["stage_id"] == "QA" for x in labels)
        assert parse_time(r["created_at"]) <= parse_time(r["completed_at"])
    json.dumps(results)

    listed = batch.records().to_list()
    assert {r["status"] for r in listed} == {"completed"} and len(listed) == 20
    status = batch.status()
    assert set(status) == NEUTRAL | {"total", "done"}
    assert status["total"] == 20 == status["completed"] and status["done"] is True

    with sandbox.client() as other:
        same = other.batch(batch.id)
        assert same.name == name and same.status() == status
        # The reserved id finds the dataset the upload created; the dataset's own id works as well.
        assert (
            other.batch(same.id).status() == status and other.create_batch(name, exist_ok=True).id == same.id
        )


def test_files_given_as_bytes_arrive_whole(client, unique):
    """A record's ``file`` may be bytes (an image already in memory): the zip entry holds exactly them."""
    batch = client.create_batch(f"bytes-{unique}")
    recs = [{"name": f"{unique}-mem-{i}.png", "file": png(i, size=8 + i)} for i in range(3)]
    assert batch.upload(recs).wait(timeout=30)["done"] == 3
    dataset_id = client.batch(batch.id).raw["dataset_id"]
    for r in recs:
        stored = client.request("GET", f"/datasets/{dataset_id}/files/{r['name']}")
        assert stored["file_size"] == len(r["file"]), (r["name"], stored)
    assert {r["key"] for r in batch.results()} == {r["name"] for r in recs}


def test_key_defaults_to_name_and_other_keys_name_the_entry(client, files, unique):
    batch = client.create_batch(f"keys-{unique}")
    recs = files(3)
    batch.upload(recs).wait(timeout=30)  # no key: the record's name
    got = {r["key"] for r in batch.results()}
    assert got == {r["name"] for r in recs}

    other = client.create_batch(f"keys2-{unique}")
    recs = [{**r, "image_id": f"img-{i}"} for i, r in enumerate(files(3, start=10))]
    other.upload(recs, key="image_id").wait(timeout=30)
    assert {r["key"] for r in other.results()} == {"img-0", "img-1", "img-2"}


def test_job_follows_processing_and_stages_follow_the_clock(files, unique):
    with lp.sandbox.start("deepen", seed=2, complete_after=100.0) as sb:
        batch = sb.client().create_batch("slow")
        job = batch.upload(files(4), key="name", wait=False)  # the default waits for processing
        assert job.status()["state"] == "running"  # processing
        assert batch.status()["pending"] == 4
        sb.advance(10)
        assert job.wait(timeout=5)["state"] == "completed"
        sb.advance(30)
        assert batch.status()["in_progress"] == 4
        assert batch.results().to_list() == []
        sb.advance(70)
        assert batch.status()["completed"] == 4
        stream = batch.results()
        assert len(list(stream)) == 4
        assert batch.results(since=stream.watermark).to_list() == []


def test_one_rejection_on_the_way_to_final_labels(sandbox, client, files, unique):
    """Manual mode: the labeller submits, the reviewer rejects through batch.reject, the rework is accepted
    through batch.accept, and QA finishes: the file's final labels arrive."""
    sandbox.hook("/_sim/deepen/mode", {"mode": "manual"})
    try:
        batch = client.create_batch(f"review-{unique}")
        rec = files(1)[0]
        batch.upload([rec], key="name").wait(timeout=30)
        fid = rec["name"]

        def tasks():
            return {t["stage_id"]: t for t in batch.tasks()}

        assert batch.status()["pending"] == 1
        lab, qa = tasks()["Labelling"], tasks()["QA"]
        with pytest.raises(lp.InvalidInput, match="no submitted task"):
            batch.accept([fid])  # nothing submitted yet
        client.request("POST", f"/tasks/{lab['task_id']}/submit")
        batch.reject([fid], reason="boxes too loose")
        now = tasks()
        assert now["Labelling"]["status"] == "rejected" and now["Labelling"]["rejection_count"] == 1
        assert now["Labelling"]["rejection_reason"] == "boxes too loose"
        assert now["QA"]["status"] == "waiting"
        # Sent back: rejected (not finished) until the labeller submits the rework.
        assert batch.status()["rejected"] == 1 and batch.results().to_list() == []
        assert [r["status"] for r in batch.records()] == ["rejected"]

        client.request("POST", f"/tasks/{lab['task_id']}/submit")
        batch.accept([fid])
        assert tasks()["Labelling"]["status"] == "accepted"
        client.request("POST", f"/tasks/{qa['task_id']}/submit")  # the last stage: Finish
        assert batch.wait(timeout=10, poll_interval=0.1)["completed"] == 1
        (result,) = batch.results().to_list()
        assert result["id"] == fid and result["output"]["labels"]
        with pytest.raises(lp.NotFound):
            batch.reject(["nope.png"])
    finally:
        sandbox.hook("/_sim/deepen/mode", {"mode": "auto"})


def test_reject_once_mode_reworks_every_file_then_completes(files):
    with lp.sandbox.start("deepen", seed=3) as sb:
        sb.hook("/_sim/deepen/mode", {"mode": "reject_once"})
        client = sb.client()
        batch = client.create_batch("rework")
        batch.upload(files(5), key="name").wait(timeout=30)
        assert batch.wait(timeout=30, poll_interval=0.1)["completed"] == 5
        tasks = client.request("GET", f"/datasets/{client.batch(batch.id).raw['dataset_id']}/tasks")["tasks"]
        assert [t["rejection_count"] for t in tasks if t["stage_id"] == "Labelling"] == [1] * 5
        assert len(batch.results().to_list()) == 5


def test_task_lists_per_batch_per_user_and_delayed(files):
    """batch.tasks(), client.user_tasks(email) and client.delayed_tasks() return Deepen's task resources as
    dicts, sync and async; a week on the sandbox clock makes unaccepted tasks delayed."""
    with lp.sandbox.start("deepen", seed=5) as sb:
        sb.hook("/_sim/deepen/mode", {"mode": "manual"})
        client = sb.client()
        batch = client.create_batch("tasks")
        batch.upload(files(2), key="name").wait(timeout=30)

        tasks = batch.tasks()
        assert isinstance(tasks, list) and all(isinstance(t, dict) for t in tasks)
        assert collections.Counter(t["stage_id"] for t in tasks) == {"Labelling": 2, "QA": 2}
        assert {t["dataset_id"] for t in tasks} == {client.batch(batch.id).raw["dataset_id"]}

        mine = client.user_tasks("sim-labeller@example.com")
        assert set(mine) == {"file_tasks", "label_tasks"}
        assert {t["task_id"] for t in mine["file_tasks"]} == {
            t["task_id"] for t in tasks if t["stage_id"] == "Labelling"
        }
        assert client.user_tasks("nobody@example.com") == {"file_tasks": [], "label_tasks": []}

        assert client.delayed_tasks() == []
        sb.advance(8 * 24 * 3600)
        delayed = client.delayed_tasks()
        assert sorted(t["task_id"] for t in delayed) == sorted(t["task_id"] for t in tasks)

        async def via_async():
            async with lp.AsyncClient("deepen", sb.project, base_url=sb.url, **sb.credentials) as ac:
                ab = await ac.batch(batch.id)
                return (
                    await ab.tasks(),
                    await ac.user_tasks("sim-labeller@example.com"),
                    await ac.delayed_tasks(),
                )

        a_tasks, a_mine, a_delayed = asyncio.run(via_async())
        assert sorted(t["task_id"] for t in a_tasks) == sorted(t["task_id"] for t in tasks)
        assert a_mine["file_tasks"] == mine["file_tasks"] and len(a_delayed) == len(delayed)


def test_task_lists_are_unsupported_where_the_vendor_has_none():
    with lp.sandbox.start("alegion") as sb, sb.client() as client:
        batch = client.create_batch("no-tasks")
        with pytest.raises(lp.UnsupportedOperation, match="alegion"):
            batch.tasks()
        with pytest.raises(lp.UnsupportedOperation):
            client.user_tasks("someone@example.com")
        with pytest.raises(lp.UnsupportedOperation):
            client.delayed_tasks()


def test_bad_credentials_are_an_auth_error(sandbox):
    bad = lp.Client("deepen", project=sandbox.project, base_url=sandbox.url, api_token="nope")
    with pytest.raises(lp.AuthError) as info:
        bad.batches()
    assert info.value.status == 401 and info.value.vendor == "deepen"
    assert "nope" not in str(info.value)


def test_bad_input_is_refused_before_anything_is_sent(sandbox, client, files, unique, tmp_path):
    batch = client.create_batch(f"bad-{unique}")
    before = (count(sandbox, PUT), count(sandbox, CREATE), count(sandbox, PROCESS))
    good = files(2)
    for bad, field in [
        ({"name": "x.png"}, "file"),
        ({"name": "x.png", "file": str(tmp_path / "missing.png")}, "file"),
        ({"name": "x.png", "file": str(tmp_path)}, "file"),
        ({"name": "../x.png", "file": good[0]["file"]}, "name"),
    ]:
        with pytest.raises(lp.InvalidInput) as info:
            batch.upload([good[1], bad], key="name")
        assert info.value.field == field, info.value
    with pytest.raises(lp.InvalidInput):
        batch.upload(good, key="name", priority=3)
    with pytest.raises(lp.InvalidInput):
        client.create_batch(f"bad-type-{unique}", dataset_type="pdf")
    with pytest.raises(lp.InvalidInput):
        client.create_batch(f"bad-option-{unique}", priority=1)
    with pytest.raises(lp.NotFound):
        client.create_batch(f"bad-profile-{unique}", labelling_profile_id="prof_missing")
    assert (count(sandbox, PUT), count(sandbox, CREATE), count(sandbox, PROCESS)) == before
    with pytest.raises(lp.NotFound, match="first upload"):  # still only a reservation
        batch.status()
    with pytest.raises(lp.UnsupportedOperation):
        batch.cancel()


def test_options_reach_the_dataset(client, unique):
    profiles = client.request("GET", f"/clients/{client.project}/labelling_profiles")["profiles"]
    batch = client.create_batch(
        f"opts-{unique}", dataset_type="3d", labelling_profile_id=profiles[0]["profile_id"]
    )
    # Until the first upload the batch is a reservation carrying the options; the upload creates the dataset.
    assert batch.raw["dataset_type"] == "3d" and batch.raw["reserved"] is True
    assert batch.raw["labelling_profile_id"] == profiles[0]["profile_id"]
    batch.upload([{"name": f"{unique}.pcd", "file": b"pcd"}]).wait(timeout=30)
    dataset = client.batch(batch.id).raw
    assert dataset["dataset_type"] == "3d" and dataset["dataset_format"] == "default"
    assert dataset["labelling_profile_id"] == profiles[0]["profile_id"]


def test_fault_run_every_key_created_once_and_returned_once(files):
    faults = {"server_error": 0.1, "commit_then_fail": 0.05, "reset": 0.02, "rate_limit": 0.05}
    with lp.sandbox.start("deepen", seed=5, faults=faults) as sb:
        client = sb.client()
        batch = client.create_batch("faulty", exist_ok=True)
        recs = files(300)
        job = batch.upload(recs, key="name")
        job.wait(timeout=120)
        batch.wait(timeout=120, poll_interval=0.1)
        created = sb.stats()["records_created"]
        assert set(created) == {r["name"] for r in recs}
        assert set(created.values()) == {1}
        returned = collections.Counter(r["key"] for r in batch.results())
        assert set(returned) == set(created) and set(returned.values()) == {1}
        faulted = sum(n for k, n in sb.stats()["requests"].items() if not k.endswith(" 200"))
        assert faulted > 0


def test_a_commit_then_fail_on_processing_is_reconciled(sandbox, client, files, unique):
    batch = client.create_batch(f"ctf-{unique}")
    sandbox.inject(status=500, method="POST", path="/process_uploaded_data", commit=True)
    processed = count(sandbox, PROCESS)
    recs = files(30)
    batch.upload(recs, key="name").wait(timeout=30)
    assert count(sandbox, PROCESS) == processed + 1  # not sent again: uploaded_files said it was done
    created = sandbox.stats()["records_created"]
    assert all(created[r["name"]] == 1 for r in recs)


UPLOADER = textwrap.dedent(
    """
    import json, sys
    import labelport as lp
    env = json.loads(sys.argv[1])
    client = lp.Client("deepen", project=env["project"], base_url=env["url"], **env["credentials"])
    batch = client.create_batch(env["batch"], exist_ok=True)  # the reservation, from another process
    records = [{"name": f"big-{i:03d}.png", "file": p} for i, p in enumerate(env["paths"])]
    job = batch.upload(records, key="name")
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec.
    hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
    print(json.dumps({"job": job.status(), "maxrss_kb": hwm}))
    """
)


def test_a_zip_of_500_files_is_streamed_not_held_in_memory(tmp_path):
    """500 files of 400 KB (a 200 MB zip) uploaded from another process whose peak memory stays far below it."""
    size = 400 * 1024
    paths = []
    for i in range(500):
        p = tmp_path / f"big-{i:03d}.png"
        p.write_bytes(png(i) + os.urandom(size))
        paths.append(str(p))
    with lp.sandbox.start("deepen", seed=9) as sb:
        batch = sb.client().create_batch("big")
        env = {
            "url": sb.url,
            "project": sb.project,
            "credentials": sb.credentials,
            "batch": batch.name,
            "paths": paths,
        }
        out = subprocess.run(
            [sys.executable, "-c", UPLOADER, json.dumps(env)], capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout.strip().splitlines()[-1])
        assert report["job"]["done"] == 500
        zip_mb = 500 * size / 2**20
        peak_mb = report["maxrss_kb"] / 1024
        assert peak_mb < zip_mb / 2, f"peak {peak_mb:.0f} MB for a {zip_mb:.0f} MB zip"
        assert count(sb, PUT, 200) == 1
        assert len(sb.stats()["records_created"]) == 500
        assert batch.status()["total"] == 500

"""The official TaskMonk SDK (taskmonk-sdk==0.29, tests/witness-requirements/taskmonk.txt) pointed at the sandbox:
its main flow runs unchanged against it, and where the SDK and labelport look at the same batch they agree."""

from __future__ import annotations

import csv
import gzip
import time
from pathlib import Path

import labelport as lp
import pytest
from taskmonk import TaskMonkClient

OUTPUT_FIELDS = ["label", "confidence", "is_occluded"]


@pytest.fixture(scope="module")
def sandbox():
    with lp.sandbox.start("taskmonk", seed=21) as sb:
        yield sb


@pytest.fixture(scope="module")
def sdk(sandbox) -> TaskMonkClient:
    creds = sandbox.credentials
    return TaskMonkClient(
        sandbox.url,
        sandbox.project,
        client_id=creds["client_id"],
        client_secret=creds["client_secret"],
        force_https=False,
    )


def wait_until(check, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not done after {timeout} s"
        time.sleep(0.1)


def read_csv(path: str) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_sdk_main_flow_and_labelport_agree(sandbox, sdk, tmp_path: Path):
    batch_id = sdk.create_batch("sdk-flow", priority=2, comments="from the SDK")
    assert isinstance(batch_id, str) and batch_id.isdigit()

    # Upload three ways: in-memory text, a .csv file, an already gzipped .gz file.
    job_a = sdk.upload_tasks(
        batch_id,
        input_file_content="url,external_id\nhttps://x/a0.jpg,a0\nhttps://x/a1.jpg,a1\n",
        file_type="CSV",
    )
    plain = tmp_path / "tasks.csv"
    plain.write_text("url,external_id\nhttps://x/b0.jpg,b0\n", encoding="utf-8")
    job_b = sdk.upload_tasks(batch_id, input_file=str(plain), file_type="CSV")
    packed = tmp_path / "tasks.csv.gz"
    packed.write_bytes(gzip.compress(b"url,external_id\nhttps://x/c0.jpg,c0\n"))
    job_c = sdk.upload_tasks(batch_id, input_file=str(packed), file_type="CSV")
    for job in (job_a, job_b, job_c):
        wait_until(lambda j=job: sdk.is_job_complete(j), f"import job {job}")
    assert sdk.get_job_progress(job_a) == {
        "completed": 2,
        "total": 2,
        "percentage": 100,
    }

    wait_until(lambda: sdk.is_batch_complete(batch_id), "batch")
    assert sdk.get_batch_status(batch_id) == {
        "new_count": 0,
        "in_progress": 0,
        "completed": 4,
        "total": 4,
    }
    listed = {b["id"]: b for b in sdk.get_project_batches()}
    assert listed[batch_id]["name"] == "sdk-flow"
    assert listed[batch_id]["priority"] == 2

    out = sdk.get_batch_output(batch_id, str(tmp_path / "out.csv"), output_format="CSV", completed_only=True)
    rows = read_csv(out)
    assert [r["external_id"] for r in rows] == ["a0", "a1", "b0", "c0"]
    assert list(rows[0]) == ["url", "external_id", *OUTPUT_FIELDS]

    users = read_csv(
        sdk.get_batch_and_user_output(batch_id, str(tmp_path / "users.csv"), completed_only=True)
    )
    assert all(r["L1_U1_Completion_Date"] for r in users)
    levels = read_csv(sdk.get_batch_level_output(batch_id, str(tmp_path / "levels.csv")))
    assert all(r["L1_label"] == r["label"] for r in levels)
    xlsx = sdk.get_batch_output(batch_id, str(tmp_path / "out.xlsx"), output_format="Excel")
    assert Path(xlsx).read_bytes()[:4] == b"PK\x03\x04"

    # labelport reads the same batch the same way.
    client = sandbox.client()
    batch = client.batch(batch_id)
    assert batch.name == "sdk-flow"
    results = {r["key"]: r for r in batch.results()}
    assert set(results) == {r["external_id"] for r in rows}
    for row in rows:
        r = results[row["external_id"]]
        assert r["input"] == {"url": row["url"]}
        assert r["output"] == {f: row[f] for f in OUTPUT_FIELDS}
        assert r["completed_at"] is not None
    excel_results = {r["key"]: r for r in sandbox.client(export_format="excel").batch(batch_id).results()}
    assert excel_results == results
    status = batch.status()
    assert (status["total"], status["completed"], status["done"]) == (4, 4, True)


def test_sdk_sees_what_labelport_uploaded(sandbox, sdk, tmp_path: Path):
    client = sandbox.client()
    batch = client.create_batch("from-labelport", exist_ok=True)
    records = [{"image_id": f"lp-{i}", "caption": f"cap {i}"} for i in range(12)]
    batch.upload(records, key="image_id").wait(timeout=30)
    batch.wait(timeout=30, poll_interval=0.1)

    assert sdk.is_batch_complete(batch.id)
    rows = read_csv(sdk.get_batch_output(batch.id, str(tmp_path / "lp.csv"), completed_only=True))
    assert sorted(r["image_id"] for r in rows) == sorted(r["image_id"] for r in records)
    assert {r["external_id"] for r in rows} == {r["image_id"] for r in records}
    by_key = {r["key"]: r for r in batch.results()}
    for row in rows:
        assert by_key[row["external_id"]]["output"] == {f: row[f] for f in OUTPUT_FIELDS}
        assert by_key[row["external_id"]]["input"] == {
            "image_id": row["image_id"],
            "caption": row["caption"],
        }
    # The dictionary export pages over the same tasks.
    page = sdk.export_task_from_dictionary(batch.id, {"page": 1, "page_size": 5})
    assert page["total"] == 12 and len(page["items"]) == 5
    assert page["items"][0]["external_id"] in by_key


def test_sdk_dictionary_import_and_batch_state(sandbox, sdk):
    batch_id = sdk.create_batch("sdk-dict")
    reply = sdk.import_task_from_dictionary(
        batch_id,
        [{"external_id": "d0", "url": "u0"}, {"external_id": "d1", "url": "u1"}],
    )
    job = reply["job_id"]
    wait_until(lambda: sdk.is_job_complete(job), "dictionary import")
    assert sdk.update_batch_status(batch_id, "Paused") == {
        "id": batch_id,
        "state": "Paused",
    }
    keys = {r["key"] for r in sandbox.client().batch(batch_id).records()}
    assert keys == {"d0", "d1"}


def test_sdk_token_errors_are_what_the_sdk_raises(sandbox):
    bad = TaskMonkClient(
        sandbox.url,
        sandbox.project,
        client_id="sandbox-client",
        client_secret="x",
        force_https=False,
    )
    with pytest.raises(ValueError, match="invalid_client"):
        bad.create_batch("nope")


def test_sdk_url_import_and_taxonomy(sandbox, sdk, tmp_path: Path):
    batch_id = sdk.create_batch("sdk-url")
    tasks = tmp_path / "remote.csv"
    tasks.write_text("url,external_id\nu0,url0\nu1,url1\nu2,url2\n", encoding="utf-8")
    job = sdk.import_tasks_url(batch_id=batch_id, file_url=tasks.as_uri(), file_type="CSV")
    assert isinstance(job, str)
    wait_until(lambda: sdk.is_job_complete(job), "URL import")
    assert {r["key"] for r in sandbox.client().batch(batch_id).records()} == {
        "url0",
        "url1",
        "url2",
    }

    # The Excel output file of that batch serves as a taxonomy file: three rows.
    wait_until(lambda: sdk.is_batch_complete(batch_id), "batch")
    xlsx = sdk.get_batch_output(batch_id, str(tmp_path / "tax.xlsx"), output_format="Excel")
    taxonomy = sdk.create_taxonomy("vehicles")
    assert isinstance(taxonomy, str)
    assert sdk.import_taxonomy(taxonomy, xlsx) == 3

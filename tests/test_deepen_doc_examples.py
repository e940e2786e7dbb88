"""Every request of Deepen's own API documents replayed with plain `requests` against the simulator: the Tasks
page (shared/seeds/003_ca31a3e7ebf5cdd2.txt) call by call, and the dataset upload flow as the Datasets page and
Tier IV's production script (vendors/deepen.md, C-upload) make it. Each answer has the documented fields.

Deepen publishes no official client (no package on PyPI talks to this API), so this replay is the simulator's
fidelity check from the vendor's side; our own client is not involved.
"""

from __future__ import annotations

import io
import re
import urllib.parse
import zipfile

import labelport as lp
import pytest
import requests

TASK_FIELDS = {"task_id", "dataset_id", "stage_id", "status", "file_id", "label_id", "task_type"}
DATASET_FIELDS = {
    "dataset_id",
    "client_id",
    "dataset_name",
    "dataset_type",
    "dataset_format",
    "labelling_mode",
    "pipeline_spec",
    "pipeline_status_by_label_set_id",
    "sensor_config",
    "uploaded_files",
    "fps",
    "frame_sizes",
    "create_timestamp_millis",
    "tags",
    "files",
    "current_stage",
    "current_stage_status",
    "user_scopes",
    "user_group_scopes",
}
TASK_STATUSES = {"waiting", "ready", "in_progress", "submitted", "accepted", "rejected"}


def zip_of(names: list[str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n in names:
            z.writestr(n, b"\x89PNG\r\n\x1a\n" + n.encode())
    return buf.getvalue()


@pytest.fixture
def api():
    with lp.sandbox.start("deepen", seed=6) as sb:
        requests.post(f"{sb.url}/_sim/deepen/mode", json={"mode": "manual"}, timeout=10).raise_for_status()
        s = requests.Session()
        # Quickstart: "Authorization: Bearer <token>" on every call; Tier IV adds a JSON content type even on GETs.
        s.headers.update(
            {"Authorization": f"Bearer {sb.credentials['api_token']}", "Content-Type": "application/json"}
        )
        yield sb, s, f"{sb.url}/api/v2"


def upload_dataset(s, base, cid, names, mode="frame_by_frame"):
    """Create dataset -> PUT the zip to resumable_upload_url (no bearer) -> process_uploaded_data, as Tier IV."""
    data = zip_of(names)
    r = s.post(
        f"{base}/clients/{cid}/datasets",
        json={
            "dataset_name": "doc",
            "dataset_type": "images",
            "labelling_mode": mode,
            "files": [{"file_size": len(data), "file_type": "application/zip"}],
        },
    )
    assert r.status_code == 200, r.text
    result = r.json()
    assert set(result) >= DATASET_FIELDS
    assert re.fullmatch(r"[A-Za-z0-9]{24}", result["dataset_id"])
    upload = result["files"][0]
    assert set(upload) == {"file_size", "file_type", "resumable_upload_url"}
    put = requests.put(
        upload["resumable_upload_url"],
        data=data,
        headers={"Content-Length": str(len(data)), "Content-Type": upload["file_type"], "Expect": ""},
        timeout=10,
    )
    assert put.status_code == 200, put.text
    name = urllib.parse.parse_qs(urllib.parse.urlparse(upload["resumable_upload_url"]).query)["name"][0]
    r = s.post(
        f"{base}/datasets/{result['dataset_id']}/process_uploaded_data",
        json={"file_name": name.split("/")[-1]},
    )
    assert r.status_code == 200, r.text
    return result["dataset_id"]


def test_datasets_and_files_pages(api):
    sb, s, base = api
    cid = sb.project
    did = upload_dataset(s, base, cid, ["0001.png", "0002.png"])
    r = s.get(f"{base}/clients/{cid}/datasets")
    assert r.status_code == 200 and set(r.json()) == {did} and set(r.json()[did]) >= DATASET_FIELDS
    r = s.get(f"{base}/clients/{cid}/datasets_ids")
    assert r.json() == {"datasets": [{"dataset_id": did, "dataset_name": "doc"}]}
    d = s.get(f"{base}/datasets/{did}").json()
    assert set(d) >= DATASET_FIELDS and d["current_stage"] == "Labelling"
    assert s.get(f"{base}/datasets/{cid}:project:{did}").status_code == 200  # v1-style id
    files = s.get(f"{base}/datasets/{did}/files").json()["files"]
    assert [f["file_id"] for f in files] == ["0001.png", "0002.png"]
    assert s.get(f"{base}/datasets/{did}/files/0001.png").json()["file_id"] == "0001.png"
    labels = s.get(
        f"{base}/datasets/{did}/labels", params={"labels_with_file_ids_order": "true", "final": "true"}
    )
    assert labels.json() == {"labels": {"0001.png": [], "0002.png": []}}
    assert s.get(
        f"{base}/datasets/{did}/labels", params={"filter_existing_categories": "true", "final": "true"}
    ).json() == {"all_labels": []}
    r = s.delete(f"{base}/datasets/{did}")
    assert r.status_code == 200 and r.content in (b"", b"{}")
    assert s.get(f"{base}/datasets/{did}").status_code == 404


def test_get_all_tasks_of_a_dataset_single_frame(api):
    sb, s, base = api
    did = upload_dataset(s, base, sb.project, ["a.png", "b.png"])
    r = s.get(f"{base}/datasets/{did}/tasks")
    assert r.status_code == 200
    tasks = r.json()["tasks"]
    # "if there are 2 stages such as Labelling and QA, two tasks would be created": per frame.
    assert len(tasks) == 4
    for t in tasks:
        assert set(t) >= TASK_FIELDS and t["status"] in TASK_STATUSES and t["dataset_id"] == did
        assert t["task_type"] == "file" and t["file_id"] in {"a.png", "b.png"}
    assert sorted((t["file_id"], t["stage_id"]) for t in tasks) == [
        ("a.png", "Labelling"),
        ("a.png", "QA"),
        ("b.png", "Labelling"),
        ("b.png", "QA"),
    ]


def test_sequence_tasks_are_per_object_across_frames(api):
    sb, s, base = api
    did = upload_dataset(s, base, sb.project, ["0.png", "1.png", "2.png"], mode="label_by_label")
    tasks = s.get(f"{base}/datasets/{did}/tasks").json()["tasks"]
    assert tasks and all(t["task_type"] == "label" and t["file_id"] is None and t["label_id"] for t in tasks)
    by_object = {}
    for t in tasks:
        by_object.setdefault(t["label_id"], []).append(t["stage_id"])
    assert all(sorted(v) == ["Labelling", "QA"] for v in by_object.values())


def test_submit_accept_reject_return_the_updated_task(api):
    sb, s, base = api
    did = upload_dataset(s, base, sb.project, ["a.png", "b.png"])
    tasks = s.get(f"{base}/datasets/{did}/tasks").json()["tasks"]
    a, b = [t for t in tasks if t["stage_id"] == "Labelling"]

    r = s.post(f"{base}/tasks/{a['task_id']}/submit")
    assert r.status_code == 200 and set(r.json()) >= TASK_FIELDS
    assert r.json()["task_id"] == a["task_id"] and r.json()["status"] == "submitted"
    r = s.post(f"{base}/tasks/{a['task_id']}/accept")
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    # "an accepted task can no longer be rejected"
    assert s.post(f"{base}/tasks/{a['task_id']}/reject").status_code == 400

    s.post(f"{base}/tasks/{b['task_id']}/submit")
    r = s.post(f"{base}/tasks/{b['task_id']}/reject")
    assert r.status_code == 200 and set(r.json()) >= TASK_FIELDS and r.json()["status"] == "rejected"
    assert s.post(f"{base}/tasks/does-not-exist/submit").status_code == 404


def test_tasks_of_a_user(api):
    sb, s, base = api
    upload_dataset(s, base, sb.project, ["a.png"])
    r = s.get(f"{base}/clients/{sb.project}/user_tasks", params={"email": "sim-labeller@example.com"})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"file_tasks", "label_tasks"}
    assert len(body["file_tasks"]) == 1 and set(body["file_tasks"][0]) >= TASK_FIELDS
    assert body["label_tasks"] == []


def test_delayed_tasks(api):
    sb, s, base = api
    upload_dataset(s, base, sb.project, ["a.png"])
    r = s.get(f"{base}/clients/{sb.project}/delayed_tasks")
    assert r.status_code == 200 and r.json()["delayed tasks"] == []
    sb.advance(8 * 24 * 3600)
    delayed = s.get(f"{base}/clients/{sb.project}/delayed_tasks").json()["delayed tasks"]
    assert len(delayed) == 2 and all(set(t) >= TASK_FIELDS for t in delayed)


@pytest.mark.parametrize("kind", ["file_tasks", "label_tasks"])
def test_update_file_and_label_tasks_answer_an_empty_response(api, kind):
    sb, s, base = api
    did = upload_dataset(s, base, sb.project, ["a.png"])
    r = s.post(
        f"{base}/datasets/{did}/{kind}",
        json=[{"stage_id": "Labelling", "email": "ann@example.com", "file_ids": ["a.png"]}],
    )
    assert r.status_code == 200 and r.content in (b"", b"{}")
    if kind == "file_tasks":
        tasks = s.get(f"{base}/datasets/{did}/tasks").json()["tasks"]
        assert [t["assignee_email"] for t in tasks if t["stage_id"] == "Labelling"] == ["ann@example.com"]


def test_a_missing_or_wrong_token_is_refused(api):
    sb, _, base = api
    assert requests.get(f"{base}/clients/{sb.project}/datasets", timeout=10).status_code == 401
    r = requests.get(
        f"{base}/clients/{sb.project}/datasets", headers={"Authorization": "Bearer nope"}, timeout=10
    )
    assert r.status_code == 401 and "detail" in r.json()

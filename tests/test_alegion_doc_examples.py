"""Every request example of Alegion's own API tutorial (shared/seeds/002_f59ada7d1ee215e7.txt), replayed with
plain `requests` against the simulator: each answer has the documented status, fields and shape.

This is the simulator's fidelity check from the vendor's side; our own client is not involved.
"""

from __future__ import annotations

import re

import labelport as lp
import pytest
import requests  # a test requirement (tests/requirements.txt)

BATCH_FIELDS = {
    "id",
    "name",
    "workflowId",
    "priority",
    "isActive",
    "isEnabled",
    "createdAt",
    "lowWaterMark",
    "highWaterMark",
}
WORKFLOW_FIELDS = {
    "id",
    "name",
    "description",
    "isActive",
    "isVisible",
    "isArchived",
    "createdAt",
    "isLimitWorkerToOncePerInputRecord",
}
RECORD_FIELDS = {"id", "data", "metadata", "createdAt", "workflowStageId", "status"}
RESULT_FIELDS = {"id", "createdAt", "resultData", "inputRecord"}
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture
def api():
    with lp.sandbox.start("alegion", seed=4) as sb:
        s = requests.Session()
        # "Example request" of Authentication, with its headers.
        r = s.post(
            f"{sb.url}/api/v1/login",
            headers={"Content-Type": "application/json", "cache-control": "no-cache"},
            json=sb.credentials,
        )
        assert r.status_code == 200
        body = r.json()
        assert set(body) >= {"access_token", "expires_in", "token_type"}
        assert body["expires_in"] == 3600 and body["token_type"] == "bearer"
        s.headers["authorization"] = f"Bearer {body['access_token']}"
        yield sb, s


def test_create_a_batch(api):
    sb, s = api
    r = s.post(
        f"{sb.url}/api/v1/workflows/{sb.project}/batches",
        headers={"content-type": "application/json", "accept": "application/json"},
        json={"name": "Batch Name", "isEnabled": True},
    )
    assert r.status_code == 200
    b = r.json()
    assert set(b) == BATCH_FIELDS
    assert UUID.match(b["id"]) and b["workflowId"] == sb.project and b["name"] == "Batch Name"
    assert (b["priority"], b["isActive"], b["isEnabled"]) == ("normal", True, True)
    assert (
        ISO_MS.match(b["createdAt"])
        and isinstance(b["lowWaterMark"], int)
        and isinstance(b["highWaterMark"], int)
    )


def test_import_records_then_results(api):
    sb, s = api
    batch = s.post(f"{sb.url}/api/v1/workflows/{sb.project}/batches", json={"name": "imports"}).json()
    records = [
        {
            "data": {
                "input_fieldname_1": "this is my value on record 1",
                "input_fieldname_2": "another field value on record 1",
            },
            "metadata": "sample_metadata",
        },
        {
            "data": {
                "input_fieldname_1": "this is my value on record 2",
                "input_fieldname_2": "another field value on record 2",
            },
            "metadata": "more_sample_metadata",
        },
    ]
    r = s.post(f"{sb.url}/api/v1/batches/{batch['id']}/records/import", json=records)
    assert r.status_code == 200
    created = r.json()
    assert [set(c) for c in created] == [RECORD_FIELDS, RECORD_FIELDS]
    assert [c["metadata"] for c in created] == ["sample_metadata", "more_sample_metadata"]
    assert [c["data"] for c in created] == [rec["data"] for rec in records]
    assert all(
        c["status"] == "queued" and ISO_MS.match(c["createdAt"]) and UUID.match(c["id"]) for c in created
    )

    r = s.get(f"{sb.url}/api/v1/batches/{batch['id']}/results")
    assert r.status_code == 200
    results = r.json()
    assert len(results) == 2 and all(set(x) == RESULT_FIELDS for x in results)
    for x in results:
        assert set(x["inputRecord"]) == RECORD_FIELDS and x["inputRecord"]["status"] == "complete"
        assert x["id"] != x["inputRecord"]["id"], "a result id is distinct from its record id"
        assert isinstance(x["resultData"], dict) and ISO_MS.match(x["createdAt"])

    # "Filtering results": minCreatedAt drops results finalised before it.
    later = s.get(
        f"{sb.url}/api/v1/batches/{batch['id']}/results", params={"minCreatedAt": "2999-01-01T10:00:00.000Z"}
    )
    assert later.status_code == 200 and later.json() == []


def test_more_than_1000_records_is_a_422_and_nothing_is_stored(api):
    sb, s = api
    batch = s.post(f"{sb.url}/api/v1/workflows/{sb.project}/batches", json={"name": "too-many"}).json()
    r = s.post(
        f"{sb.url}/api/v1/batches/{batch['id']}/records/import",
        json=[{"data": {"a": str(i)}} for i in range(1001)],
    )
    assert r.status_code == 422
    count = s.get(f"{sb.url}/api/v1/batches/{batch['id']}/records", params={"page": 1, "pageSize": 1})
    assert count.headers["X-Total-Count"] == "0"


def test_pagination_headers_as_documented(api):
    sb, s = api
    batch = s.post(f"{sb.url}/api/v1/workflows/{sb.project}/batches", json={"name": "paging"}).json()
    s.post(
        f"{sb.url}/api/v1/batches/{batch['id']}/records/import",
        json=[{"data": {"n": str(i)}} for i in range(42)],
    )
    r = s.get(
        f"{sb.url}/api/v1/batches/{batch['id']}/records",
        params={"page": 2, "pageSize": 20, "sort": "-createdAt"},
    )
    assert r.status_code == 200 and len(r.json()) == 20
    assert r.headers["X-Total-Count"] == "42"
    rels = re.findall(r'<([^>]+)>;rel="(\w+)"', r.headers["Link"])
    assert [rel for _, rel in rels] == ["first", "prev", "next", "last"]
    pages = {rel: re.search(r"[?&]page=(\d+)", url).group(1) for url, rel in rels}
    assert pages == {"first": "1", "prev": "1", "next": "3", "last": "3"}
    assert all(
        url.startswith(sb.url) and "pageSize=20" in url and "sort=-createdAt" in url for url, _ in rels
    )


def test_common_errors_have_the_documented_bodies(api):
    sb, s = api
    r = s.get(f"{sb.url}/api/v1/batches/not-a-batch-id")
    assert r.status_code == 422
    assert r.json() == {
        "message": "Failed to convert value of type 'java.lang.String' to required type 'java.util.UUID'; "
        "nested exception is java.lang.IllegalArgumentException: Invalid UUID string: not-a-batch-id"
    }

    bad = requests.get(
        f"{sb.url}/api/v1/batches/{sb.project}/results", headers={"Authorization": "Bearer nonsense"}
    )
    assert bad.status_code == 500
    body = bad.json()
    assert set(body) == {"timestamp", "status", "error", "exception", "message", "path"}
    assert body["exception"] == "org.springframework.security.access.AccessDeniedException"
    assert (
        body["message"] == "Incorrect token provided"
        and body["status"] == 500
        and isinstance(body["timestamp"], int)
    )

    token = requests.post(f"{sb.url}/api/v1/login", json=sb.credentials).json()["access_token"]
    sb.expire_tokens()
    expired = requests.get(f"{sb.url}/api/v1/workflows", headers={"Authorization": f"Bearer {token}"})
    assert expired.status_code == 401
    body = expired.json()
    assert set(body) == {"timestamp", "status", "error", "message", "path"}, "no `exception` key on a 401"
    assert body["message"] == "Unable to authenticate using the Authorization header"
    assert body["path"] == "/api/v1/workflows"


def test_listing_workflows_batches_and_a_batch(api):
    sb, _ = api
    s = requests.Session()
    s.headers["Authorization"] = (
        "Bearer " + s.post(f"{sb.url}/api/v1/login", json=sb.credentials).json()["access_token"]
    )
    workflows = s.get(f"{sb.url}/api/v1/workflows")
    assert workflows.status_code == 200 and "X-Total-Count" in workflows.headers
    assert all(set(w) == WORKFLOW_FIELDS for w in workflows.json())
    assert sb.project in {w["id"] for w in workflows.json()}

    made = s.post(f"{sb.url}/api/v1/workflows/{sb.project}/batches", json={"name": "listed"}).json()
    batches = s.get(f"{sb.url}/api/v1/workflows/{sb.project}/batches", params={"pageSize": 1000})
    assert all(set(b) == BATCH_FIELDS for b in batches.json()) and made["id"] in {
        b["id"] for b in batches.json()
    }
    one = s.get(f"{sb.url}/api/v1/batches/{made['id']}")
    assert one.status_code == 200 and one.json() == made


def test_update_a_batch(api):
    sb, s = api
    made = s.post(f"{sb.url}/api/v1/workflows/{sb.project}/batches", json={"name": "before"}).json()
    r = s.put(
        f"{sb.url}/api/v1/batches/{made['id']}",
        json={
            "id": made["id"],
            "name": "Batch Name",
            "workflowId": sb.project,
            "createdAt": "2019-01-01",
            "isEnabled": False,
            "priority": "normal",
            "isActive": True,
        },
    )
    assert r.status_code == 200
    b = r.json()
    assert set(b) == BATCH_FIELDS and b["name"] == "Batch Name" and b["isEnabled"] is False
    assert b["createdAt"] == made["createdAt"], "createdAt cannot be changed"
    missing = s.put(f"{sb.url}/api/v1/batches/{made['id']}", json={"id": made["id"], "name": "x"})
    assert 400 <= missing.status_code < 500


def test_list_records_with_a_status_filter(api):
    sb, s = api
    batch = s.post(f"{sb.url}/api/v1/workflows/{sb.project}/batches", json={"name": "filter"}).json()
    s.post(
        f"{sb.url}/api/v1/batches/{batch['id']}/records/import", json=[{"data": {"n": "1"}, "metadata": "m"}]
    )
    r = s.get(
        f"{sb.url}/api/v1/batches/{batch['id']}/records",
        params={"status": "exception,canceled", "page": 1, "pageSize": 1},
    )
    assert r.status_code == 200 and r.headers["X-Total-Count"] == "0" and r.json() == []
    r = s.get(f"{sb.url}/api/v1/batches/{batch['id']}/records")
    assert r.status_code == 200 and [set(x) for x in r.json()] == [RECORD_FIELDS]


def test_upload_input_records_from_a_csv(api):
    sb, s = api
    batch = s.post(f"{sb.url}/api/v1/workflows/{sb.project}/batches", json={"name": "csv"}).json()
    csv = "input_fieldname_1,metadata\nvalue one,sample metadata\nvalue two,more metadata\n"
    r = s.post(
        f"{sb.url}/api/v1/batches/{batch['id']}/records/import-csv",
        headers={"cache-control": "no-cache"},
        files={"file": ("records.csv", csv.encode(), "text/csv")},
    )
    assert r.status_code == 200
    created = r.json()
    assert [set(c) for c in created] == [RECORD_FIELDS, RECORD_FIELDS]
    assert [c["metadata"] for c in created] == ["sample metadata", "more metadata"]
    assert created[0]["data"] == {"input_fieldname_1": "value one"} and created[0]["status"] == "queued"

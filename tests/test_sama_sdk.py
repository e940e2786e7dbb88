"""The official Sama SDK (`sama==0.5.12`, tests/witness-requirements/sama.txt) as a witness of the simulator.

The SDK hard-codes `https://api.sama.com` in every method and calls the module-level `requests` functions, so
it is pointed at the sandbox by replacing `sama.client.requests` with a shim that rewrites that prefix
(vendors/sama.md section 5); the SDK's own code runs unchanged. The upload URL the sandbox hands out is
already local. labelport and the SDK must agree on the same tasks.
"""

from __future__ import annotations

import time
from typing import Any

import labelport as lp
import pytest
import requests

# Not skipped when missing: install it with `pip install -r tests/witness-requirements/sama.txt`.
import sama
import sama.client as sama_client

PROJECT = "117"
SAMA_HOST = "https://api.sama.com"


class Shim:
    """`requests` as the SDK sees it, with Sama's host rewritten to the sandbox's."""

    exceptions = requests.exceptions

    def __init__(self, base: str) -> None:
        self.base = base
        self.urls: list[str] = []

    def _url(self, url: str) -> str:
        self.urls.append(url)
        return self.base + url[len(SAMA_HOST) :] if url.startswith(SAMA_HOST) else url

    def get(self, url: str, **kw: Any) -> requests.Response:
        return requests.get(self._url(url), timeout=30, **kw)

    def post(self, url: str, **kw: Any) -> requests.Response:
        return requests.post(self._url(url), timeout=30, **kw)

    def put(self, url: str, **kw: Any) -> requests.Response:
        return requests.put(self._url(url), timeout=30, **kw)


@pytest.fixture(scope="module")
def sandbox():
    with lp.sandbox.start("sama", seed=31) as sb:
        yield sb


@pytest.fixture
def sdk(sandbox, monkeypatch):
    shim = Shim(sandbox.url)
    monkeypatch.setattr(sama_client, "requests", shim)
    client = sama.Client(api_key=sandbox.credentials["api_key"])
    client.shim = shim  # type: ignore[attr-defined]
    return client


def test_the_sdk_is_the_pinned_version():
    from importlib.metadata import version

    assert version("sama") == "0.5.12"


def test_sdk_flow_and_labelport_agree(sandbox, sdk, client):
    # Create a batch with the SDK's three steps, one client batch id for all tasks.
    records = [
        {"url": f"https://x/{i}.jpg", "client_batch_id": "sdk-made", "labelport_key": f"k{i:03d}"}
        for i in range(150)
    ]
    answer = sdk.create_task_batch(PROJECT, records, batch_priority=0)
    batch_id = answer["batch_id"]
    assert isinstance(batch_id, int)

    creation = list(sdk.get_status_batch_creation_job(PROJECT, batch_id))
    assert len(creation) == 150
    assert {t["status"] for t in creation} == {"created"}

    # Multi-task status: page size 100, so the SDK's second page meets the 1 request/second limit (which the
    # sandbox keeps only when asked) and its own retry (1 s) recovers.
    sandbox.hook("/_sim/config", {"status_rate_limit": True})
    try:
        started = time.monotonic()
        statuses = list(sdk.get_multi_task_status(PROJECT, batch_id=batch_id, state="delivered"))
    finally:
        sandbox.hook("/_sim/config", {"status_rate_limit": False})
    assert len(statuses) == 150
    assert time.monotonic() - started >= 1.0
    assert sandbox.stats()["requests"].get("GET /v2/projects/{projectId}/tasks.json 429", 0) >= 1

    delivered = list(sdk.get_delivered_tasks(PROJECT, client_batch_id="sdk-made"))
    assert len(delivered) == 150
    one = delivered[0]
    assert one["client_batch_id"] == "sdk-made"
    assert one["batch_id"] == batch_id
    (single,) = list(sdk.get_task_status(PROJECT, one["id"]))
    assert single["id"] == one["id"] and single["answers"] == one["answers"]

    # labelport sees the same tasks as the neutral batch "sdk-made".
    ours = {r["id"]: r for r in client.batch("sdk-made").results()}
    assert set(ours) == {t["id"] for t in delivered}
    for t in delivered:
        r = ours[t["id"]]
        assert r["key"] == t["data"]["labelport_key"]
        assert r["output"] == t["answers"]
        assert r["input"] == {"url": t["data"]["url"]}
        assert r["completed_at"] == t["delivered_at"]
    status = client.batch("sdk-made").status()
    assert (status["total"], status["completed"], status["done"]) == (150, 150, True)


def test_labelport_uploads_read_by_the_sdk(sandbox, sdk, client):
    b = client.create_batch("lp-made", exist_ok=True)
    b.upload([{"image_id": f"lp{i}", "url": f"u{i}"} for i in range(20)], key="image_id").wait(timeout=30)
    b.wait(timeout=30, poll_interval=0.1)
    tasks = list(sdk.get_delivered_tasks(PROJECT, client_batch_id="lp-made"))
    assert sorted(t["data"]["labelport_key"] for t in tasks) == sorted(f"lp{i}" for i in range(20))
    assert {t["data"]["image_id"] for t in tasks} == {f"lp{i}" for i in range(20)}
    assert {t["id"] for t in tasks} == {r["id"] for r in b.results()}


def test_sdk_consumer_delivery_never_repeats(sandbox, sdk, client):
    records = [{"url": f"u{i}", "client_batch_id": "consumed"} for i in range(30)]
    sdk.create_task_batch(PROJECT, records)
    first = list(sdk.get_delivered_tasks_since_last_call(PROJECT, client_batch_id="consumed", consumer="etl"))
    assert len(first) == 30
    assert len({t["id"] for t in first}) == 30
    assert (
        list(sdk.get_delivered_tasks_since_last_call(PROJECT, client_batch_id="consumed", consumer="etl"))
        == []
    )
    # Another consumer starts from the beginning.
    other = list(sdk.get_delivered_tasks_since_last_call(PROJECT, client_batch_id="consumed", consumer="bi"))
    assert {t["id"] for t in other} == {t["id"] for t in first}
    # New deliveries reach the consumer once.
    sdk.create_task_batch(PROJECT, [{"url": "late", "client_batch_id": "consumed"}])
    late = list(sdk.get_delivered_tasks_since_last_call(PROJECT, client_batch_id="consumed", consumer="etl"))
    assert [t["data"]["url"] for t in late] == ["late"]


def test_sdk_reject_priorities_delete_cancel_and_project_calls(sandbox, sdk, client):
    answer = sdk.create_task_batch(PROJECT, [{"url": f"m{i}", "client_batch_id": "misc"} for i in range(3)])
    tasks = list(sdk.get_delivered_tasks(PROJECT, client_batch_id="misc"))
    ids = [t["id"] for t in tasks]
    sdk.reject_task(PROJECT, ids[0], ["blurry"])
    (rejected,) = list(sdk.get_task_status(PROJECT, ids[0]))
    assert rejected["state"] in {"rejected", "delivered"}  # re-delivered at once: complete_after is 0
    sdk.update_task_priorities(PROJECT, ids[1:], -5)
    (prio,) = list(sdk.get_task_status(PROJECT, ids[1]))
    assert prio["priority"] == -5
    sdk.delete_tasks(PROJECT, [ids[2]])
    assert ids[2] not in {t["id"] for t in sdk.get_delivered_tasks(PROJECT, client_batch_id="misc")}
    # Cancelling a finished creation job is refused (400, not retried by the SDK).
    with pytest.raises(requests.HTTPError):
        sdk.cancel_batch_creation_job(PROJECT, answer["batch_id"])

    info = sdk.get_project_information(PROJECT)
    assert info["id"] == int(PROJECT)
    schema = sdk.get_creation_task_schema(PROJECT)
    assert schema["type"] == "object"
    delivery = sdk.get_delivery_task_schema(PROJECT)
    assert "answers" in delivery["properties"]
    stats = sdk.get_project_stats(PROJECT)
    assert stats["total"] >= 2


def test_the_sdk_leaks_the_key_where_labelport_does_not(sandbox, sdk, client):
    """Why labelport exists, in one test: the SDK's HTTP errors quote the URL with the key."""
    key = sandbox.credentials["api_key"]
    with pytest.raises(requests.HTTPError) as sdk_error:
        sdk.get_project_information("999")
    assert key in str(sdk_error.value)
    with pytest.raises(lp.NotFound) as ours:
        client.request("GET", "projects/999.json")
    assert key not in str(ours.value) and key not in repr(ours.value)

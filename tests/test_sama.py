"""Sama end to end against its sandbox over real sockets: the round trip with only the Client line changed,
Sama's quirks (client batch id as the batch, three-step creation, creation schema, consumer cursors, the
1 request/second status endpoint, rejection and re-delivery, creation-only cancel, callbacks), errors and
a fault run."""

from __future__ import annotations

import base64
import collections
import datetime as dt
import hashlib
import hmac
import http.server
import json
import logging
import threading
import time
from typing import Any

import labelport as lp
import pytest

PROJECT = "117"
CREATE = "POST /v2/projects/{projectId}/batches.json"
CONTINUE = "POST /v2/projects/{projectId}/batches/{batchId}/continue.json"
UPLOAD_PUT = "PUT /_uploads/{token}"
MULTI_STATUS = "GET /v2/projects/{projectId}/tasks.json"
DELIVERED = "GET /v2/projects/{projectId}/tasks/delivered.json"
ENVELOPE_KEYS = {
    "id",
    "batch_id",
    "key",
    "status",
    "input",
    "output",
    "created_at",
    "completed_at",
    "vendor",
}
NEUTRAL = {
    "pending",
    "in_progress",
    "completed",
    "exception",
    "canceled",
    "rejected",
    "failed",
}


@pytest.fixture(scope="module")
def sandbox():
    """Overrides conftest's Alegion sandbox: a Sama one whose tasks are delivered at once."""
    with lp.sandbox.start("sama", seed=11) as sb:
        yield sb


def parse_time(value: object) -> dt.datetime:
    assert isinstance(value, str), f"not an RFC 3339 string: {value!r}"
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None
    return parsed


def test_sandbox_shape(sandbox):
    assert sandbox.vendor == "sama"
    assert sandbox.project == PROJECT
    assert set(sandbox.credentials) == {"api_key"}


def test_full_round_trip(sandbox, client, make_records, created, unique):
    batch = client.create_batch(f"cars-{unique}", exist_ok=True)
    again = client.create_batch(f"cars-{unique}", exist_ok=True)
    assert again.id == batch.id == f"cars-{unique}"
    assert batch.vendor == "sama"

    records = make_records(50)
    job = batch.upload(records, key="image_id")
    assert isinstance(job, lp.Job)
    assert job.batch_id == batch.id
    status = job.wait(timeout=60)
    assert status["state"] == "completed", job.failures()
    assert (status["total"], status["done"], status["failed"]) == (50, 50, 0)
    keys = {r["image_id"] for r in records}
    counts = created()
    assert all(counts[k] == 1 for k in keys), {k: counts.get(k) for k in keys}

    # Re-running the same upload sends nothing twice.
    rerun = again.upload(records, key="image_id")
    rerun_status = rerun.wait(timeout=60)
    assert rerun_status["skipped"] == 50
    assert rerun_status["done"] == 50
    counts = created()
    assert all(counts[k] == 1 for k in keys)

    final = batch.wait(timeout=60, poll_interval=0.1)
    assert final["done"] is True
    assert (final["total"], final["completed"]) == (50, 50)
    assert set(final) == NEUTRAL | {"total", "done"}

    results = batch.results().to_list()
    assert len(results) == 50
    by_key = {r["image_id"]: r for r in records}
    assert {r["key"] for r in results} == keys
    for r in results:
        assert set(r) == ENVELOPE_KEYS
        assert r["status"] == "completed"
        assert r["vendor"] == "sama"
        assert r["batch_id"] == batch.id
        assert r["input"] == by_key[r["key"]]
        assert r["output"]["label"] in {"car", "truck", "bus", "bicycle"}
        assert len(r["id"]) == 24
        assert parse_time(r["created_at"]) <= parse_time(r["completed_at"])
    json.dumps(results)

    listed = batch.records().to_list()
    assert {r["key"] for r in listed} == keys
    assert {r["status"] for r in listed} == {"completed"}
    assert batch.records(status="pending").to_list() == []


def test_raw_is_the_delivered_task(client, batch, make_records, upload_and_wait):
    upload_and_wait(batch, make_records(3))
    for r in batch.results(include_raw=True):
        task = r["raw"]
        assert task["id"] == r["id"]
        assert task["client_batch_id"] == batch.id
        assert task["data"]["client_batch_id"] == batch.id
        assert task["data"]["labelport_key"] == r["key"]
        assert task["answers"] == r["output"]
        assert task["state"] == "delivered"


def test_create_batch_without_exist_ok_refuses_a_name_in_use(client, batch, make_records, upload_and_wait):
    upload_and_wait(batch, make_records(2))
    with pytest.raises(lp.DuplicateRecord):
        client.create_batch(batch.id)
    assert client.create_batch(batch.id, exist_ok=True).id == batch.id
    assert client.batch(batch.id).id == batch.id


def test_upload_goes_through_the_three_steps(client, batch, make_records, counter):
    counter.start()
    job = batch.upload(make_records(20), key="image_id")
    assert counter.since_start(CREATE, 200) == 1
    assert counter.since_start(UPLOAD_PUT, 200) == 1
    assert counter.since_start(CONTINUE, 200) == 1
    assert job.id.isdigit()  # the Sama batch id of the creation job
    assert job.wait(timeout=30)["state"] == "completed"


def test_a_large_upload_is_split_into_creation_jobs(client, batch, make_records, counter):
    counter.start()
    job = batch.upload(make_records(6000), key="image_id")
    assert counter.since_start(CREATE) == 2
    assert counter.since_start(CONTINUE) == 2
    assert len(job.id.split(",")) == 2
    status = job.wait(timeout=60)
    assert (status["state"], status["done"], status["total"]) == ("completed", 6000, 6000)
    results = batch.results().to_list()
    assert len(results) == 6000
    assert len({r["key"] for r in results}) == 6000


def test_the_status_endpoint_is_paced_to_one_request_a_second(
    sandbox, batch, make_records, counter, upload_and_wait
):
    """Counting a batch bigger than one status page: the first page, then one state at a time for what is not
    delivered (each empty here), paced a second apart; delivered tasks from the delivered list, unpaced, read
    until an empty page (a server may serve fewer a page than asked, so a short first page is not the end).
    On loopback the pacing is kept only when asked (`status_interval=`); Sama's host gets it by default, and
    the sandbox answers 429 past one call a second only when a test turns that on."""
    upload_and_wait(batch, make_records(250))
    paced = sandbox.client(status_interval=1.05).batch(batch.id)
    sandbox.hook("/_sim/config", {"status_rate_limit": True})
    try:
        counter.start()
        started = time.monotonic()
        status = paced.status()
        elapsed = time.monotonic() - started
    finally:
        sandbox.hook("/_sim/config", {"status_rate_limit": False})
    assert status["total"] == 250 == status["completed"]
    assert (
        counter.since_start(MULTI_STATUS, 200) == 6
    )  # the first page, then new/rejected/in progress/completed/approved
    assert counter.since_start(MULTI_STATUS, 429) == 0
    assert counter.since_start(DELIVERED, 200) == 2
    assert elapsed >= 5.0  # six calls, one a second


def test_counts_of_a_big_batch_in_mixed_states_match_the_full_listing():
    # Tasks take 1,000 s of sandbox time to deliver: nothing moves during the count unless the clock is advanced.
    with lp.sandbox.start("sama", seed=4, complete_after=1000.0) as sb, sb.client() as c:
        b = c.create_batch("mixed")
        b.upload([{"image_id": f"a{i}", "url": f"u{i}"} for i in range(150)], key="image_id").wait(timeout=30)
        sb.advance(1001)  # the first 150 are delivered
        delivered = b.results().to_list()
        assert len(delivered) == 150
        b.reject([r["id"] for r in delivered[:5]], reason="redo")
        b.upload([{"image_id": f"b{i}", "url": f"v{i}"} for i in range(150)], key="image_id").wait(timeout=30)
        status = b.status()
        listed = collections.Counter(r["status"] for r in b.records())  # the full list, 100 a second
        # The rejected tasks read `rejected` (docs/contract.md, `batch.status()`), in the counts and the listing.
        assert (status["total"], status["completed"], status["pending"], status["rejected"]) == (
            300,
            145,
            150,
            5,
        )
        assert listed == {"completed": 145, "pending": 150, "rejected": 5}
        assert status["done"] is False


def test_results_since_is_exclusive(sandbox, client, batch, make_records, upload_and_wait):
    upload_and_wait(batch, make_records(10))
    stream = batch.results()
    first = list(stream)
    assert len(first) == 10
    mark = stream.watermark
    assert batch.results(since=mark).to_list() == []
    time.sleep(0.01)
    second = make_records(5, start=10)
    upload_and_wait(batch, second)
    newer = batch.results(since=mark).to_list()
    assert {r["key"] for r in newer} == {r["image_id"] for r in second}


def test_results_since_reads_past_a_page_thinned_by_the_inclusive_bound():
    """Sama's `from` is inclusive, so the first page of a read since a watermark may hold only tasks at the
    watermark itself. That page was taken for the last one (its tasks dropped before counting), and every
    later delivery was lost to the read, with the watermark moving past them."""
    with lp.sandbox.start("sama", seed=5, complete_after=10.0) as sb, sb.client() as c:
        b = c.create_batch("thinned")
        old = [{"image_id": f"a{i}", "url": f"u{i}"} for i in range(1200)]
        b.upload(old, key="image_id", progress=False).wait(timeout=60)
        sb.advance(11)  # the first 1,200 are delivered together
        stream = b.results()
        assert len(stream.to_list()) == 1200
        mark = stream.watermark
        new = [{"image_id": f"b{i}", "url": f"v{i}"} for i in range(300)]
        b.upload(new, key="image_id", progress=False).wait(timeout=60)
        sb.advance(11)
        newer = b.results(since=mark).to_list()
        assert sorted(r["key"] for r in newer) == sorted(r["image_id"] for r in new)


def test_a_schema_violation_is_refused_before_anything_is_sent(sandbox, unique, counter):
    sandbox.hook(
        f"/_sim/projects/{PROJECT}/schema",
        {
            "type": "object",
            "required": ["url"],
            "properties": {
                "image_id": {"type": "string"},
                "url": {"type": "string"},
                "caption": {"type": "string", "maxLength": 20},
                "client_batch_id": {"type": "string"},
                "labelport_key": {"type": "string"},
            },
            "additionalProperties": False,
        },
    )
    try:
        with sandbox.client() as c:  # the schema is fetched once per client
            b = c.create_batch(f"schema-{unique}", exist_ok=True)
            records = [
                {"image_id": "a", "url": "https://x/a.jpg", "caption": "ok"},
                {"image_id": "b", "caption": "no url"},
                {"image_id": "c", "url": "https://x/c.jpg", "caption": "x" * 40},
            ]
            counter.start()
            with pytest.raises(lp.InvalidInput) as info:
                b.upload(records, key="image_id")
            assert counter.since_start(CREATE) == 0
            assert counter.since_start(UPLOAD_PUT) == 0
            e = info.value
            text = str(e)
            assert "2 of 3 records" in text, text
            assert "record #1" in text and "url" in text, text
            assert "record #2" in text and "caption" in text, text
            assert "record #0" not in text
            assert e.field == "url"
            assert e.key == "b"
            problems = e.details["problems"]
            assert {(p["row"], p["key"], p["field"]) for p in problems} == {
                (1, "b", "url"),
                (2, "c", "caption"),
            }
    finally:
        sandbox.hook(f"/_sim/projects/{PROJECT}/schema", None)


def test_collect_lets_good_records_through(sandbox, client, batch, counter):
    records = [
        {"image_id": "ok-1", "url": "u1"},
        {"image_id": "bad-1", "url": {"nested": "dict"}, "flag": True},
        {"image_id": "ok-2", "url": "u2"},
    ]
    with pytest.raises(lp.InvalidInput) as info:
        batch.upload(records, key="image_id")
    assert info.value.key == "bad-1"
    assert info.value.field == "url"
    job = batch.upload(records, key="image_id", on_error="collect")
    status = job.wait(timeout=30)
    assert status["state"] == "failed"
    assert status["failed"] == 1
    assert status["done"] == 2
    (failure,) = job.failures()  # one per record, every problem in its message
    assert failure["key"] == "bad-1"
    assert failure["field"] == "url"
    assert "flag" in failure["message"], failure
    assert {r["key"] for r in batch.records()} == {"ok-1", "ok-2"}


def test_the_async_mirror_works_on_sama(sandbox, unique):
    import asyncio

    async def run() -> tuple[dict, list]:
        c = lp.AsyncClient("sama", project=sandbox.project, base_url=sandbox.url, **sandbox.credentials)
        b = await c.create_batch(f"async-{unique}", exist_ok=True)
        job = await b.upload([{"image_id": f"a{i}", "url": "u"} for i in range(5)], key="image_id")
        await job.wait(timeout=30)
        final = await b.wait(timeout=30, poll_interval=0.1)
        return final, [r async for r in b.results()]

    final, results = asyncio.run(run())
    assert final["completed"] == 5
    assert sorted(r["key"] for r in results) == [f"a{i}" for i in range(5)]


def test_tasks_sama_fails_to_create_are_the_jobs_failures(client, batch):
    records = [
        {"image_id": "fine", "url": "u"},
        {"image_id": "bogus", "url": "u", "output_bogus": "x"},
    ]
    job = batch.upload(records, key="image_id")
    status = job.wait(timeout=30)
    assert status["state"] == "failed"
    assert (status["done"], status["failed"]) == (1, 1)
    (failure,) = job.failures()
    assert failure["key"] == "bogus"
    assert "Invalid seeded output name(s): bogus" in failure["message"]
    # The failed record is not a task: a re-run sends it again (and it fails again), the good one is skipped.
    rerun = batch.upload(records, key="image_id").wait(timeout=30)
    assert rerun["skipped"] == 1


def test_reject_sends_a_result_back_and_it_is_delivered_again():
    # Tasks take 100 s of sandbox time to deliver: the upload's wait (which reads one task back) moves none.
    with lp.sandbox.start("sama", seed=3, complete_after=100.0) as sb, sb.client() as c:
        b = c.create_batch("rework", exist_ok=True)
        b.upload([{"image_id": f"r{i}", "url": f"u{i}"} for i in range(4)], key="image_id").wait(timeout=30)
        assert b.status()["pending"] == 4
        assert b.results().to_list() == []
        sb.advance(101)
        first = b.results().to_list()
        assert len(first) == 4
        target = first[0]
        with pytest.raises(lp.NotFound):  # a result id of another batch
            c.batch("another").reject([target["id"]])
        b.reject([target["id"]], reason="blurry")
        status = b.status()
        assert (status["completed"], status["rejected"], status["done"]) == (3, 1, False)
        assert target["id"] not in {r["id"] for r in b.results()}
        task = c.request("GET", f"projects/{PROJECT}/tasks/{target['id']}.json")["task"]
        assert task["state"] == "rejected"
        assert task["rejection_reasons"] == ["blurry"]
        sb.advance(75)  # the rework has begun (Sama lists the task `in progress`): still `rejected` here
        assert (
            c.request("GET", f"projects/{PROJECT}/tasks/{target['id']}.json")["task"]["state"]
            == "in progress"
        )
        assert (b.status()["rejected"], b.status()["in_progress"]) == (1, 0)
        assert [r["status"] for r in b.records() if r["id"] == target["id"]] == ["rejected"]
        sb.advance(101)
        again = b.results(since=max(r["completed_at"] for r in first)).to_list()
        assert [r["id"] for r in again] == [target["id"]]
        assert parse_time(again[0]["completed_at"]) > parse_time(target["completed_at"])
        # Rejecting a task that is not delivered is the vendor's 400.
        b.reject([target["id"]])
        with pytest.raises(lp.InvalidInput) as info:
            b.reject([target["id"]])
        assert info.value.key == target["id"]
        assert info.value.status == 400


def test_cancel_stops_creation_only():
    with lp.sandbox.start("sama", seed=4) as sb, sb.client() as c:
        sb.hook("/_sim/config", {"creation_s": 100.0})
        b = c.create_batch("stop-me", exist_ok=True)
        job = b.upload([{"image_id": f"c{i}", "url": "u"} for i in range(10)], key="image_id", wait=False)
        assert job.status()["state"] == "running"
        sb.advance(35)
        b.cancel()
        status = job.wait(timeout=30)
        assert status["state"] == "failed"
        assert (status["done"], status["failed"]) == (3, 7)
        assert {f["code"] for f in job.failures()} == {"canceled"}
        assert b.status()["total"] == 3
        assert len(b.results().to_list()) == 3  # created tasks keep being worked
        b.cancel()  # nothing left to stop: fine


def test_batch_wait_counts_tasks_still_being_created():
    with lp.sandbox.start("sama", seed=6) as sb, sb.client() as c:
        sb.hook("/_sim/config", {"creation_s": 20.0})
        b = c.create_batch("slow", exist_ok=True)
        b.upload([{"image_id": f"s{i}", "url": "u"} for i in range(10)], key="image_id", wait=False)
        sb.advance(5)
        status = b.status()
        assert status["total"] == 10
        assert status["done"] is False
        with pytest.raises(lp.Timeout):
            b.wait(timeout=1.5, poll_interval=0.2)
        sb.advance(20)
        assert b.wait(timeout=30, poll_interval=0.2)["completed"] == 10


def test_a_rerun_while_sama_is_still_creating_sends_nothing_twice():
    with lp.sandbox.start("sama", seed=7) as sb, sb.client() as c:
        sb.hook("/_sim/config", {"creation_s": 20.0})
        b = c.create_batch("rerun", exist_ok=True)
        records = [{"image_id": f"q{i}", "url": "u"} for i in range(10)]
        b.upload(records, key="image_id", wait=False)
        sb.advance(5)  # 2 of 10 tasks created so far
        again = b.upload(records, key="image_id", wait=False)
        assert again.status()["skipped"] == 10
        sb.advance(20)
        b.wait(timeout=30, poll_interval=0.2)
        assert sb.stats()["records_created"] == {r["image_id"]: 1 for r in records}


def test_consumer_cursor_never_delivers_a_task_twice(client, batch, make_records, upload_and_wait):
    """Sama's consumer mode as the API serves it (the adapter's `results_for_consumer` needs a Python
    argument the lead adds: `batch.results(consumer=...)`)."""
    upload_and_wait(batch, make_records(30))
    body = {
        "batch_id": None,
        "client_batch_id": batch.id,
        "client_batch_id_match_type": "exact",
        "consumer": "etl",
        "limit": 20,
    }
    pages = [
        client.request("POST", f"projects/{PROJECT}/tasks/delivered.json", json=body)["tasks"]
        for _ in range(3)
    ]
    assert [len(p) for p in pages] == [20, 10, 0]
    ids = [t["id"] for p in pages for t in p]
    assert len(set(ids)) == 30


class Receiver:
    """A local HTTP server recording every callback: (path with query, headers, body)."""

    def __init__(self, status: int = 200) -> None:
        self.got: list[tuple[str, dict[str, str], bytes]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.got.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, n: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.got) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.got) >= n, f"{len(self.got)} of {n} callbacks arrived"

    def close(self) -> None:
        self.server.shutdown()


@pytest.mark.parametrize("method", ["basic", "access_key", "token", "hmac"])
def test_callbacks_arrive_with_each_auth_method(method):
    auth = {
        "basic": {"username": "hook-user", "password": "hook-pass"},
        "access_key": {"access_key": "hook-key"},
        "token": {"token": "hook-token"},
        "hmac": {"key_id": "kid-1", "secret": "hook-secret"},
    }[method]
    receiver = Receiver()
    try:
        with lp.sandbox.start("sama", seed=8) as sb, sb.client() as c:
            sb.hook(
                f"/_sim/projects/{PROJECT}/callbacks",
                {
                    "creation": {"url": receiver.url, "auth": method, **auth},
                    "delivery": {"url": receiver.url, "auth": method, **auth},
                },
            )
            b = c.create_batch("hooks", exist_ok=True)
            b.upload([{"image_id": "h1", "url": "u"}], key="image_id").wait(timeout=30)
            receiver.wait_for(2)
            kinds = []
            for path, headers, body in receiver.got:
                payload = json.loads(body)
                task = payload["task"]
                assert task["data"]["labelport_key"] == "h1"
                kinds.append(task["state"])
                assert headers["content-type"] == "application/json"
                if method == "basic":
                    want = base64.b64encode(b"hook-user:hook-pass").decode()
                    assert headers["authorization"] == f"Basic {want}"
                elif method == "access_key":
                    assert path == "/hook?access_key=hook-key"
                elif method == "token":
                    assert headers["x-auth-token"] == "hook-token"
                else:
                    date = headers["x-wsm-date"]
                    dt.datetime.strptime(date, "%a, %d %b %Y %H:%M:%S GMT")
                    signed = f"POST\n{path}\n{date}\n".encode() + body
                    mac = base64.b64encode(hmac.new(b"hook-secret", signed, hashlib.sha256).digest()).decode()
                    assert headers["authorization"] == f"HMAC-SHA256 kid-1:{mac}"
            assert "delivered" in kinds  # the delivery callback
            assert len(kinds) == 2  # and the creation one
    finally:
        receiver.close()


def test_a_failing_callback_is_tried_five_times():
    receiver = Receiver(status=500)
    try:
        with lp.sandbox.start("sama", seed=9) as sb, sb.client() as c:
            sb.hook(
                f"/_sim/projects/{PROJECT}/callbacks",
                {"creation": {"url": receiver.url, "auth": "token", "token": "t"}, "backoff_s": 0.01},
            )
            c.create_batch("fail", exist_ok=True).upload([{"image_id": "f", "url": "u"}], key="image_id")
            receiver.wait_for(5)
            time.sleep(0.3)
            assert len(receiver.got) == 5
            log = sb.hook("/_sim/callbacks", method="GET")
            assert [a["attempt"] for a in log["attempts"]] == [1, 2, 3, 4, 5]
            assert len(log["unreachable"]) == 1
    finally:
        receiver.close()


def test_bad_credentials_are_an_auth_error(sandbox):
    with sandbox.client(api_key="not-the-key") as c:
        with pytest.raises(lp.AuthError) as info:
            c.create_batch("anything")
    assert info.value.status == 401
    assert info.value.vendor == "sama"
    assert "Not authorized." in str(info.value)


def test_unknown_options_are_invalid_input(sandbox, client, batch):
    with pytest.raises(lp.InvalidInput):
        sandbox.client(colour="red")
    with pytest.raises(lp.InvalidInput):
        batch.upload([{"image_id": "x"}], key="image_id", colour="red")
    with pytest.raises(lp.InvalidInput):
        batch.upload([{"image_id": "x"}], key="image_id", priority="high")
    with pytest.raises(lp.InvalidInput):
        sandbox.client(project="not-a-number")
    with pytest.raises(lp.UnsupportedOperation):
        client.batches()
    with pytest.raises(lp.UnsupportedOperation):
        batch.accept(["x"])
    caps = client.capabilities
    assert caps["client_batch_field"] == "client_batch_id"
    assert set(caps["client_options"]) == {
        "client_batch_field",
        "key_field",
        "stall_timeout",
        "status_interval",
    }
    assert set(caps["upload_options"]) == {"priority", "submit"}


def test_client_batch_field_and_key_field_options(unique):
    with (
        lp.sandbox.start("sama", seed=12) as sb,
        sb.client(client_batch_field="lot", key_field="image_id") as c,
    ):
        b = c.create_batch(f"lot-{unique}", exist_ok=True)
        records = [{"image_id": f"{unique}-k{i}", "url": "u"} for i in range(3)]
        job = b.upload(records, key="image_id", priority=-1, submit=True, wait=False)
        # The sandbox designates `client_batch_id` as the client batch input, so Sama's own filter does not
        # see `lot`: what a real project must set up is exactly this designation. The first job's tasks are
        # read back once it is over, and the wait says so.
        with pytest.raises(lp.InvalidInput) as info:
            job.wait(timeout=30)
        assert info.value.field == "client_batch_field"
        got = c.request("GET", f"projects/{PROJECT}/tasks/delivered.json", params={"page_size": 1000})
        mine = [t for t in got["tasks"] if t["data"].get("lot") == b.id]
        assert len(mine) == 3
        assert all(t["priority"] == -1 for t in mine)
        assert all("labelport_key" not in t["data"] for t in mine)
        assert b.results().to_list() == []


def test_the_key_never_appears_in_errors_or_logs(sandbox, unique, caplog):
    key = sandbox.credentials["api_key"]
    logger = logging.getLogger("labelport")
    logger.setLevel(logging.DEBUG)
    lp.reset_log_cache()
    texts: list[str] = []
    try:
        with caplog.at_level(logging.DEBUG, logger="labelport"):
            with sandbox.client() as c:
                b = c.create_batch(f"secret-{unique}")
                job = b.upload([{"image_id": "s", "url": "u"}], key="image_id")
                job.wait(timeout=30)
                b.wait(timeout=30, poll_interval=0.1)
                b.results().to_list()
                texts += [repr(c), repr(b), repr(job), str(b.raw)]
                for call in (
                    lambda: c.request("GET", f"projects/{PROJECT}/nothing.json"),
                    lambda: c.request("GET", "projects/999.json"),
                    lambda: b.reject(["000000000000000000000000"]),
                    lambda: b.upload([{"image_id": "t", "url": {"x": 1}}], key="image_id"),
                ):
                    with pytest.raises(lp.LabelportError) as info:
                        call()
                    e = info.value
                    texts += [str(e), repr(e), repr(e.args), repr(e.details), str(e.message)]
            with sandbox.client(api_key=key + "-wrong") as bad:
                with pytest.raises(lp.AuthError) as info:
                    bad.batch("x").status()
                texts += [str(info.value), repr(info.value)]
        assert any("/v2/projects/117" in r.getMessage() for r in caplog.records), [
            r.getMessage() for r in caplog.records
        ][:5]
        texts += [r.getMessage() for r in caplog.records]
    finally:
        logger.setLevel(logging.NOTSET)
        lp.reset_log_cache()
    for text in texts:
        assert key not in text, text


def test_fault_run_creates_and_returns_every_key_exactly_once():
    faults = {"server_error": 0.1, "commit_then_fail": 0.05, "reset": 0.02, "rate_limit": 0.05}
    with lp.sandbox.start("sama", seed=21, faults=faults) as sb, sb.client() as c:
        b = c.create_batch("faulty", exist_ok=True)
        records = [{"image_id": f"f{i:04d}", "url": f"u{i}"} for i in range(300)]
        job = b.upload(records, key="image_id")
        assert job.wait(timeout=120)["done"] == 300
        b.wait(timeout=120, poll_interval=0.2)
        counts = {k: v for k, v in sb.stats()["records_created"].items()}
        assert set(counts) == {r["image_id"] for r in records}
        assert set(counts.values()) == {1}
        results = b.results().to_list()
        keys = [r["key"] for r in results]
        assert len(keys) == 300 and set(keys) == set(counts)
        # Re-running after the faults sends nothing.
        assert b.upload(records, key="image_id").wait(timeout=120)["skipped"] == 300
        assert set(sb.stats()["records_created"].values()) == {1}
        faulted = [k for k in sb.stats()["requests"] if k.endswith((" 500", " 503", " reset", " 429"))]
        assert faulted, "the fault run injected no fault"


def test_the_demo_round_trip_runs_unchanged_on_sama():
    """The demo script (create_batch, upload, wait, results) with only the vendor name changed."""
    import io

    from labelport import demo

    out = io.StringIO()
    summary = demo.run(n=200, vendor="sama", out=out)
    status = summary["status"]
    assert (status["done"], status["total"], status["completed"]) == (True, 200, 200)
    assert summary["results"] == 200
    sample = summary["sample"]
    assert sample["vendor"] == "sama"
    assert sample["key"] == sample["input"]["image_id"]
    assert set(sample["input"]) == {"image_id", "image_url", "caption"}


def test_results_for_a_consumer_deliver_each_task_once(client, batch, make_records, upload_and_wait):
    upload_and_wait(batch, make_records(12))
    first = batch.results(consumer="etl").to_list()
    assert len(first) == 12 and len({r["key"] for r in first}) == 12
    assert batch.results(consumer="etl").to_list() == [], "a consumer's cursor moved past what it read"
    assert len(batch.results(consumer="bi").to_list()) == 12, "another consumer has its own cursor"
    upload_and_wait(batch, make_records(3, start=12))
    late = batch.results(consumer="etl").to_list()
    assert {r["key"] for r in late} == {r["image_id"] for r in make_records(3, start=12)}
    with pytest.raises(lp.InvalidInput):
        batch.results(consumer="etl", since="2026-01-01T00:00:00Z")


def test_consumer_results_are_unsupported_elsewhere():
    with lp.sandbox.start("alegion") as sb:
        batch = sb.client().create_batch("consumer")
        with pytest.raises(lp.UnsupportedOperation):
            batch.results(consumer="etl")

"""Core 3/3: the async mirror runs as native coroutines on the shared runtime, not as threads."""

from __future__ import annotations

import asyncio
import collections
import threading

import labelport as lp
import pytest


@pytest.fixture(scope="module")
def sb():
    with lp.sandbox.start("alegion", seed=21, complete_after=0.5) as s:
        yield s


def aclient(sb: lp.sandbox.Sandbox) -> lp.AsyncClient:
    return lp.AsyncClient("alegion", project=sb.project, base_url=sb.url, **sb.credentials)


def test_three_batches_driven_concurrently(sb):
    async def main():
        async with aclient(sb) as client:
            names = [f"concurrent-{i}" for i in range(3)]
            batches = await asyncio.gather(*(client.create_batch(n, exist_ok=True) for n in names))
            jobs = await asyncio.gather(
                *(b.upload([{"k": f"{b.name}-{j}", "j": j} for j in range(1200)], key="k") for b in batches)
            )
            finals = await asyncio.gather(*(j.wait(timeout=30) for j in jobs))
            statuses = await asyncio.gather(*(b.wait(timeout=30, poll_interval=0.1) for b in batches))
            results = await asyncio.gather(*(b.results().to_list() for b in batches))
            return batches, finals, statuses, results

    batches, finals, statuses, results = asyncio.run(main())
    assert len({b.id for b in batches}) == 3
    assert all(f["state"] == "completed" and f["done"] == 1200 for f in finals)
    assert all(s["done"] and s["completed"] == 1200 for s in statuses)
    for b, rs in zip(batches, results, strict=True):
        keys = collections.Counter(r["key"] for r in rs)
        assert len(keys) == 1200 and set(keys.values()) == {1}
        assert all(r["batch_id"] == b.id for r in rs)


def test_300_concurrent_waits_start_no_threads(sb):
    async def main():
        client = aclient(sb)
        batch = await client.create_batch("many-waits", exist_ok=True)
        job = await batch.upload([{"k": f"w{i}"} for i in range(50)], key="k")
        before = threading.active_count()
        done = await asyncio.gather(*(job.wait(timeout=30) for _ in range(300)))
        statuses = await asyncio.gather(*(batch.status() for _ in range(300)))
        after = threading.active_count()
        return before, after, done, statuses

    before, after, done, statuses = asyncio.run(main())
    assert len(done) == 300 and all(d["done"] == 50 for d in done)
    assert all(s["total"] == 50 for s in statuses)
    assert after == before, f"threads grew from {before} to {after}"


def test_async_for_gives_every_result_once_and_a_watermark(sb):
    async def main():
        client = aclient(sb)
        batch = await client.create_batch("async-for", exist_ok=True)
        await batch.upload([{"k": f"a{i}"} for i in range(2500)], key="k")
        await batch.wait(timeout=30, poll_interval=0.1)
        stream = batch.results()
        seen = [r async for r in stream]
        return seen, stream.watermark

    seen, watermark = asyncio.run(main())
    keys = collections.Counter(r["key"] for r in seen)
    assert len(keys) == 2500 and set(keys.values()) == {1}
    assert watermark == max(r["completed_at"] for r in seen)


def test_async_errors_are_the_same_classes(sb):
    async def main():
        client = aclient(sb)
        with pytest.raises(lp.NotFound):  # a malformed id names no batch (docs/contract.md)
            await client.batch("not-a-uuid")
        with pytest.raises(lp.NotFound):
            await client.batch("00000000-0000-0000-0000-000000000000")
        batch = await client.create_batch("async-errors", exist_ok=True)
        with pytest.raises(lp.InvalidInput):
            await batch.upload([{"k": 1}, "not a dict"], key="k")
        bad = lp.AsyncClient(
            "alegion", project=sb.project, base_url=sb.url, username="sandbox", password="no"
        )
        with pytest.raises(lp.AuthError):
            await bad.batches()

    asyncio.run(main())


def test_cancelling_an_awaiting_task_is_prompt(sb):
    async def main():
        client = aclient(sb)
        batch = await client.create_batch("cancel-wait", exist_ok=True)
        await batch.upload([{"k": "never"}], key="k")
        sb.inject(status=503, method="GET", path="/records", times=1000)
        try:
            task = asyncio.ensure_future(batch.wait(timeout=60, poll_interval=0.1))
            await asyncio.sleep(0.3)
            task.cancel()
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(asyncio.CancelledError):
                await task
            return loop.time() - started
        finally:
            sb.clear_faults()

    assert asyncio.run(main()) < 2.0

"""The async face mirrors the sync one: every public method and property of ``Client``, ``Batch``, ``Job`` and
``ResultStream`` exists on ``AsyncClient``, ``AsyncBatch``, ``AsyncJob`` and ``AsyncStream`` with the same
parameters (names, kinds and defaults), and the exports behave the same through both faces.

Only the protocols differ (``with``/``async with``, ``for``/``async for``); the differences that remain are
listed in ``ALLOWED`` with the reason, and the test fails if one of them stops being true, so the list cannot rot.
"""

from __future__ import annotations

import asyncio
import csv
import inspect
import json
from typing import Any

import labelport as lp
import pytest

PAIRS = [
    (lp.Client, lp.AsyncClient),
    (lp.Batch, lp.AsyncBatch),
    (lp.Job, lp.AsyncJob),
    (lp.ResultStream, lp.AsyncStream),
]

# Sync protocol method -> its async counterpart.
PROTOCOL = {
    "__enter__": "__aenter__",
    "__exit__": "__aexit__",
    "__iter__": "__aiter__",
    "__next__": "__anext__",
}

# (class, name): why the async face has no such member.
ALLOWED: dict[tuple[str, str], str] = {}


def members(cls: type) -> list[str]:
    """Public members, the protocol methods and ``__reduce__`` (pickling is part of the API)."""
    return sorted(
        name
        for name in dir(cls)
        if name in PROTOCOL or name == "__reduce__" or (not name.startswith("_") and name not in dir(object))
    )


def params(fn: Any) -> list[tuple[str, Any, Any]]:
    sig = inspect.signature(fn)
    return [(p.name, p.kind, p.default) for p in sig.parameters.values() if p.name not in ("self", "slf")]


CASES = [(sync_cls, async_cls, name) for sync_cls, async_cls in PAIRS for name in members(sync_cls)]


@pytest.mark.parametrize(
    ("sync_cls", "async_cls", "name"), CASES, ids=[f"{s.__name__}.{n}" for s, _, n in CASES]
)
def test_every_sync_member_has_an_async_mirror_with_the_same_parameters(sync_cls, async_cls, name):
    if (sync_cls.__name__, name) in ALLOWED:
        assert not hasattr(async_cls, PROTOCOL.get(name, name)), "an ALLOWED difference no longer holds"
        return
    mirror = PROTOCOL.get(name, name)
    assert hasattr(async_cls, mirror), (
        f"{async_cls.__name__} has no {mirror} (mirror of {sync_cls.__name__}.{name})"
    )
    sync_member, async_member = getattr(sync_cls, name), getattr(async_cls, mirror)
    if isinstance(sync_member, property) or type(sync_member).__name__ == "getset_descriptor":
        assert type(async_member) is type(sync_member), f"{mirror} is a property on one face only"
        return
    if name in PROTOCOL:
        return  # the protocols take what Python gives them
    assert params(async_member) == params(sync_member), f"{async_cls.__name__}.{mirror} differs"


def test_the_members_that_had_drifted_are_mirrored():
    # Each existed on the sync face only until the parity test above was written.
    for cls, name in [
        (lp.AsyncClient, "check"),
        (lp.AsyncBatch, "result_pages"),
        (lp.AsyncStream, "to_parquet"),
        (lp.AsyncStream, "to_csv"),
        (lp.AsyncStream, "to_jsonl"),
    ]:
        assert hasattr(cls, name), f"{cls.__name__}.{name}"
    assert "raw" in inspect.signature(lp.AsyncClient.request).parameters
    assert "pages" in inspect.signature(lp.AsyncBatch.results).parameters
    assert "progress" in inspect.signature(lp.AsyncStream.to_pandas).parameters


# ---------------------------------------------------------------------------------------------------------------
# The same calls through both faces give the same answers.


N = 120


@pytest.fixture(scope="module")
def done_batch():
    """One Alegion sandbox batch of N finished records, read through both faces."""
    with lp.sandbox.start("alegion", latency=0, complete_after=0) as sb:
        client = lp.Client("alegion", project=sb.project, base_url=sb.url, **sb.credentials)
        batch = client.create_batch("parity")
        batch.upload([{"k": f"r{i}", "n": i, "caption": f"c{i}"} for i in range(N)], key="k")
        batch.wait(timeout=60, poll_interval=0.05)
        yield sb, batch.id


def faces(sb, batch_id):
    """`(sync batch, async batch factory)`: the async one is made inside the loop that uses it."""
    client = lp.Client("alegion", project=sb.project, base_url=sb.url, **sb.credentials)

    async def abatch():
        aclient = lp.AsyncClient("alegion", project=sb.project, base_url=sb.url, **sb.credentials)
        return await aclient.batch(batch_id)

    return client.batch(batch_id), abatch


def _sorted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: r["key"])


def test_result_pages_and_page_ranges_agree(done_batch):
    sync_batch, abatch = faces(*done_batch)
    plan = sync_batch.result_pages()
    assert plan is not None and plan["total"] == N

    async def read():
        b = await abatch()
        aplan = await b.result_pages()
        parts = [await b.results(pages=(i, i + 1)).to_list() for i in range(aplan["pages"])]
        return aplan, parts

    aplan, parts = asyncio.run(read())
    assert aplan == plan
    sync_parts = [sync_batch.results(pages=(i, i + 1)).to_list() for i in range(plan["pages"])]
    assert parts == sync_parts
    assert sum(len(p) for p in parts) == N


def test_request_raw_gives_the_same_bytes(done_batch):
    sb, batch_id = done_batch
    client = lp.Client("alegion", project=sb.project, base_url=sb.url, **sb.credentials)
    path = f"/batches/{batch_id}"

    async def read():
        aclient = lp.AsyncClient("alegion", project=sb.project, base_url=sb.url, **sb.credentials)
        return await aclient.request("GET", path, raw=True), await aclient.request("GET", path)

    raw, decoded = asyncio.run(read())
    assert isinstance(raw, bytes)
    assert json.loads(raw) == decoded == client.request("GET", path)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_file_exports_write_the_same_rows(done_batch, tmp_path, fmt):
    sync_batch, abatch = faces(*done_batch)
    sync_path, async_path = tmp_path / f"sync.{fmt}", tmp_path / f"async.{fmt}"
    assert getattr(sync_batch.results(), f"to_{fmt}")(sync_path) == N

    async def write():
        b = await abatch()
        return await getattr(b.results(), f"to_{fmt}")(async_path)

    assert asyncio.run(write()) == N
    if fmt == "jsonl":
        read = [json.loads(line) for line in sync_path.read_text().splitlines()]
        aread = [json.loads(line) for line in async_path.read_text().splitlines()]
    elif fmt == "csv":
        with open(sync_path, newline="") as f, open(async_path, newline="") as g:
            read, aread = list(csv.DictReader(f)), list(csv.DictReader(g))
    else:
        pq = pytest.importorskip("pyarrow.parquet")
        read, aread = pq.read_table(sync_path).to_pylist(), pq.read_table(async_path).to_pylist()
        assert pq.read_schema(sync_path) == pq.read_schema(async_path)
    assert len(aread) == N
    assert _sorted(aread) == _sorted(read)


def test_an_async_export_to_an_unwritable_path_is_invalid_input(done_batch, tmp_path):
    _, abatch = faces(*done_batch)

    async def write(path):
        b = await abatch()
        return await b.results().to_jsonl(path)

    with pytest.raises(lp.InvalidInput, match="cannot write") as e:
        asyncio.run(write(tmp_path / "missing-dir" / "out.jsonl"))
    assert e.value.field == "path"
    with pytest.raises(lp.InvalidInput, match="path must be a path") as e:
        asyncio.run(write(42))
    assert e.value.field == "path"


def test_an_async_exports_progress_counts_every_result(done_batch, tmp_path):
    _, abatch = faces(*done_batch)
    seen: list[Any] = []

    async def write():
        b = await abatch()
        return await b.results().to_csv(tmp_path / "p.csv", progress=seen.append)

    assert asyncio.run(write()) == N
    assert seen, "the progress callable was never called"
    assert max(s["done"] for s in seen) == N
    with pytest.raises(lp.InvalidInput, match="progress"):
        asyncio.run(_pandas_with(abatch, progress="yes"))


async def _pandas_with(abatch, **kwargs):
    b = await abatch()
    return await b.results().to_pandas(**kwargs)


def test_the_async_check_is_the_same_report(done_batch):
    sb, batch_id = done_batch
    client = lp.Client("alegion", project=sb.project, base_url=sb.url, **sb.credentials)
    report = client.check(batch=batch_id)

    async def probe():
        aclient = lp.AsyncClient("alegion", project=sb.project, base_url=sb.url, **sb.credentials)
        return await aclient.check(batch=batch_id)

    areport = asyncio.run(probe())
    assert type(areport) is type(report)
    assert str(areport) == str(report)

"""One operation behind both faces (src/py/op.rs): on the sync face, an operation's Python steps run on the
thread that called it, as the user's own code does; on the async face they run off the event loop's thread.

A `sqlite3` cursor is the common case that cares: by default it refuses every thread but the one that made it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any

import labelport as lp


def test_a_sync_upload_reads_a_sqlite_cursor_on_the_calling_thread(
    batch: lp.Batch, unique: str, monkeypatch: Any
) -> None:
    # Chunks of 40 records: the cursor is read between the parts of the upload, not only before it starts.
    monkeypatch.setattr(lp.config, "upload_chunk", 40)
    db = sqlite3.connect(":memory:")
    db.execute("create table images (image_id text, caption text)")
    db.executemany(
        "insert into images values (?, ?)", [(f"{unique}-{i:04d}", f"car {i}") for i in range(100)]
    )
    cursor = db.execute("select image_id, caption from images order by image_id")
    rows = ({"image_id": r[0], "caption": r[1]} for r in cursor)
    job = batch.upload(rows, key="image_id", progress=False)
    assert job.status()["done"] == 100
    assert batch.status()["total"] == 100


def test_a_sync_waits_progress_and_an_uploads_records_run_on_the_calling_thread(
    batch: lp.Batch, make_records: Callable[..., list[dict[str, Any]]]
) -> None:
    caller = threading.get_ident()
    read_on: set[int] = set()

    def records() -> Iterator[dict[str, Any]]:
        for r in make_records(30):
            read_on.add(threading.get_ident())
            yield r

    batch.upload(records(), key="image_id", progress=False)
    polled_on: set[int] = set()
    batch.wait(timeout=30, poll_interval=0.05, progress=lambda status: polled_on.add(threading.get_ident()))
    assert read_on == {caller}
    assert polled_on == {caller}


def test_an_async_waits_progress_runs_off_the_event_loops_thread(
    sandbox: lp.sandbox.Sandbox, make_records: Callable[..., list[dict[str, Any]]], unique: str
) -> None:
    async def main() -> tuple[int, set[int], dict[str, Any]]:
        loop_thread = threading.get_ident()
        seen: set[int] = set()
        client = lp.AsyncClient(
            "alegion", project=sandbox.project, base_url=sandbox.url, **sandbox.credentials
        )
        batch = await client.create_batch(f"faces-{unique}")
        await batch.upload(make_records(20), key="image_id", progress=False)
        status = await batch.wait(
            timeout=30, poll_interval=0.05, progress=lambda s: seen.add(threading.get_ident())
        )
        return loop_thread, seen, status

    loop_thread, seen, status = asyncio.run(main())
    assert status["done"] and status["total"] == 20
    assert seen and loop_thread not in seen


def test_a_progress_callbacks_own_exception_reaches_the_caller_on_both_faces(
    sandbox: lp.sandbox.Sandbox, batch: lp.Batch, make_records: Callable[..., list[dict[str, Any]]]
) -> None:
    class Stop(Exception):
        pass

    def fail(status: dict[str, Any]) -> None:
        raise Stop("from the callback")

    batch.upload(make_records(5), key="image_id", progress=False)
    try:
        batch.wait(timeout=30, poll_interval=0.05, progress=fail)
    except Stop as e:
        assert str(e) == "from the callback"
    else:
        raise AssertionError("the callback's exception was lost")

    async def main() -> None:
        client = lp.AsyncClient(
            "alegion", project=sandbox.project, base_url=sandbox.url, **sandbox.credentials
        )
        again = await client.batch(batch.id)
        await again.wait(timeout=30, poll_interval=0.05, progress=fail)

    try:
        asyncio.run(main())
    except Stop as e:
        assert str(e) == "from the callback"
    else:
        raise AssertionError("the callback's exception was lost on the async face")

"""``lp.fan_out``: the same records to several batches at once (any vendors, or one vendor twice).

Each batch gets an ordinary ``batch.upload``, so each keeps upload's idempotency by key: running the same
fan-out again sends nothing twice to any batch. The uploads run concurrently, one thread each (the native
upload releases the GIL while it waits on the network); ``afan_out`` does the same with ``AsyncBatch`` objects
and ``asyncio.gather``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from labelport._records import _invalid

__all__ = ["afan_out", "fan_out"]


def _check_batches(batches: Any, want_async: bool) -> dict[str, Any]:
    from labelport._labelport import AsyncBatch, Batch

    cls, other = (AsyncBatch, Batch) if want_async else (Batch, AsyncBatch)
    fn = "afan_out" if want_async else "fan_out"
    if not isinstance(batches, Mapping) or not batches:
        raise _invalid(f"{fn} needs a dict of name -> {cls.__name__}, e.g. {{'sama': batch_a}}", "batches")
    seen: dict[tuple[str, str], str] = {}
    for name, batch in batches.items():
        if not isinstance(name, str) or not name:
            raise _invalid(f"batch names must be non-empty strings, not {name!r}", "batches")
        if isinstance(batch, other):
            hint = "fan_out" if want_async else "afan_out"
            article = "an" if other is AsyncBatch else "a"
            raise _invalid(f"batches[{name!r}] is {article} {other.__name__}: use lp.{hint}", "batches")
        if not isinstance(batch, cls):
            raise _invalid(
                f"batches[{name!r}] must be a {cls.__name__}, not {type(batch).__name__}", "batches"
            )
        ident = (batch.vendor, batch.id)
        if ident in seen:
            raise _invalid(
                f"batches[{seen[ident]!r}] and batches[{name!r}] are the same {batch.vendor} batch {batch.id}: "
                "two uploads of one set of records into one batch at once could both send a record",
                "batches",
            )
        seen[ident] = name
    return dict(batches)


def _reusable(records: Any) -> Any:
    """Records every batch can read: a one-pass iterator (a generator, an Arrow reader) is read once, here."""
    if isinstance(records, str | bytes | os.PathLike | list | tuple):
        return records
    if hasattr(records, "read_all") and callable(records.read_all):  # pyarrow.RecordBatchReader
        return records.read_all()
    if isinstance(records, Iterator):
        return list(records)
    return records


def _raise_first(names: list[str], outcomes: dict[str, BaseException | Any]) -> None:
    failed = [n for n in names if isinstance(outcomes[n], BaseException)]
    if not failed:
        return
    first = outcomes[failed[0]]
    summary = {
        n: (f"{type(o).__name__}: {o}" if isinstance(o, BaseException) else "completed")
        for n, o in outcomes.items()
    }
    from labelport._labelport import LabelportError

    if isinstance(first, LabelportError):
        details = dict(first.details or {})
        details["fan_out"] = summary
        first.details = details
    raise first


def fan_out(
    records: Any,
    batches: Mapping[str, Any],
    key: str | None = None,
    *,
    progress: Any = None,
    **options: Any,
) -> dict[str, Any]:
    """Upload the same ``records`` to every batch of ``batches`` (name -> ``Batch``) concurrently and return
    the ``Job`` of each by name. ``key``, ``progress`` and ``options`` are ``batch.upload``'s. Every upload runs
    to its end; if any failed, the first failure (in the order of ``batches``) is raised afterwards with
    ``details["fan_out"]`` saying how each upload ended, and running the fan-out again sends only what is
    missing."""
    checked = _check_batches(batches, want_async=False)
    data = _reusable(records)
    names = list(checked)
    outcomes: dict[str, Any] = {}
    with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="labelport-fan-out") as pool:
        futures = {n: pool.submit(checked[n].upload, data, key, progress=progress, **options) for n in names}
        for n, fut in futures.items():
            try:
                outcomes[n] = fut.result()
            except Exception as e:  # kept, raised once every upload has ended
                outcomes[n] = e
    _raise_first(names, outcomes)
    return outcomes


async def afan_out(
    records: Any,
    batches: Mapping[str, Any],
    key: str | None = None,
    *,
    progress: Any = None,
    **options: Any,
) -> dict[str, Any]:
    """``fan_out`` for ``AsyncBatch`` objects: the uploads run concurrently on the event loop; returns the
    ``AsyncJob`` of each by name."""
    checked = _check_batches(batches, want_async=True)
    data = _reusable(records)
    names = list(checked)
    results = await asyncio.gather(
        *(checked[n].upload(data, key, progress=progress, **options) for n in names), return_exceptions=True
    )
    outcomes = dict(zip(names, results, strict=True))
    _raise_first(names, outcomes)
    return outcomes

"""Dask helpers: upload a Dask DataFrame from the workers, and read a batch's results as a Dask DataFrame whose
partitions the workers fetch in parallel (``pip install "labelport[dask]"``).

    import labelport.dask

    labelport.dask.upload(ddf, client=client, batch=batch, key="image_id")   # or vendor="alegion", project=...
    results = labelport.dask.read_results(client, batch)                      # dask.dataframe.DataFrame

A ``Client`` travels to the workers as its spec without credentials: each worker resolves them from its own
environment (``LABELPORT_<VENDOR>_<NAME>``). To send them along instead, pass
``client.spec(include_credentials=True)``; they are then in every pickled task.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dask
import dask.dataframe as dd
import pandas as pd

from labelport import _distributed as _d
from labelport._labelport import Batch, Client, ClientSpec

__all__ = ["upload", "read_results"]

_COLUMNS = list(_d.RESULT_COLUMNS)


def _batch_id(batch: Batch | str) -> str:
    return batch.id if isinstance(batch, Batch) else str(batch)


def _upload_partition(
    frame: pd.DataFrame,
    spec: ClientSpec,
    batch_id: str,
    key: str | None,
    chunk_size: int,
    on_error: str,
) -> dict[str, Any]:
    batch = _d.worker_batch(spec, batch_id)

    def chunks() -> Iterator[pd.DataFrame]:
        for start in range(0, len(frame), chunk_size):
            yield frame.iloc[start : start + chunk_size]

    return _d.upload_chunks(batch, chunks(), key, on_error=on_error)


def upload(
    ddf: dd.DataFrame,
    *,
    batch: Batch | str,
    key: str | None = None,
    client: Client | ClientSpec | None = None,
    vendor: str | None = None,
    chunk_size: int = _d.DEFAULT_CHUNK_SIZE,
    on_error: str = "raise",
    concurrency: int | None = None,
    compute: bool = True,
    **client_args: Any,
) -> Any:
    """Uploads every partition of ``ddf`` from the worker that holds it, with keys (the ``key`` column, else a
    hash of each record's content), so a recomputed or retried partition creates nothing twice.

    ``client``: a ``Client`` or ``ClientSpec``; or ``vendor=`` with ``Client``'s other arguments. With a
    ``rate_limit`` (else the vendor's documented limit on its real host, ``ClientSpec.pacing``), each partition's
    upload takes ``rate_limit / concurrency`` (default: the number of partitions). Returns a list of
    per-partition counts (``pid``, ``total``, ``sent``, ``skipped``, ``failed``, ``failures``), or with
    ``compute=False`` the delayed list."""
    spec = _d.as_spec(client, vendor, **client_args)
    spec = _d.task_spec(spec, concurrency or ddf.npartitions)
    batch_id = _batch_id(batch)
    parts = [
        dask.delayed(_upload_partition, pure=False)(part, spec, batch_id, key, chunk_size, on_error)
        for part in ddf.to_delayed()
    ]
    combined = dask.delayed(list)(parts)
    if not compute:
        return combined
    counts = combined.compute()
    failures = [f for c in counts for f in c["failures"]]
    if failures and on_error == "raise":
        from labelport._labelport import InvalidInput

        raise InvalidInput(f"the vendor refused {len(failures)} records, e.g. {failures[0]}")
    return counts


def _read_partition(
    spec: ClientSpec, batch_id: str, pages: tuple[int, int | None] | None, include_raw: bool
) -> pd.DataFrame:
    batch = _d.worker_batch(spec, batch_id)
    rows = []
    for e in _d.read_range(batch, pages, include_raw):
        row = {c: e.get(c) for c in _COLUMNS}
        row["input"] = _d.to_json(row["input"])
        row["output"] = _d.to_json(row["output"])
        if include_raw:
            row["raw"] = _d.to_json(e.get("raw"))
        rows.append(row)
    columns = _COLUMNS + (["raw"] if include_raw else [])
    return pd.DataFrame(rows, columns=columns).astype("string")


def read_results(
    client: Client | ClientSpec,
    batch: Batch | str,
    *,
    include_raw: bool = False,
    pages_per_partition: int = _d.DEFAULT_PAGES_PER_PARTITION,
) -> dd.DataFrame:
    """A batch's finished results as a Dask DataFrame: one partition per range of ``pages_per_partition`` result
    pages where the vendor gives a total (else one partition), each fetched by a worker. Columns: ``id, batch_id,
    key, status, input, output, created_at, completed_at, vendor`` (``input``/``output`` as JSON strings; ``raw``
    too with ``include_raw=True``), all strings."""
    spec = _d.as_spec(client)
    batch_id = _batch_id(batch)
    here = batch if isinstance(batch, Batch) else _d.client_for(spec).batch(batch_id)
    ranges = _d.plan(here, pages_per_partition)
    meta = _read_partition_meta(include_raw)
    parts = [
        dask.delayed(_read_partition, pure=False)(spec, batch_id, pages, include_raw) for pages in ranges
    ]
    return dd.from_delayed(parts, meta=meta, verify_meta=False)


def _read_partition_meta(include_raw: bool) -> pd.DataFrame:
    columns = _COLUMNS + (["raw"] if include_raw else [])
    return pd.DataFrame({c: pd.Series([], dtype="string") for c in columns})

"""Results out: result streams as pandas, polars or Arrow tables, and streamed parquet or CSV files.

One row per result envelope: ``id, batch_id, key, status, input, output, created_at, completed_at, vendor`` (and
``raw`` with ``include_raw=True``). ``flatten=True`` spreads ``input`` and ``output`` into columns
(``input.caption``, ``output.label``; nested objects go deeper: ``output.box.x``). ``created_at`` and
``completed_at`` become UTC datetimes. ``key`` is a string as the vendor holds it: ``key_type=`` casts it to the
input frame's key type, so the results join back on it. A column whose values mix types that the library cannot
hold in one column is kept as JSON text.

``to_parquet`` and ``to_csv`` stream: the results are spooled to a temporary JSON lines file while the columns
are discovered, then written chunk by chunk, so memory stays flat however many results there are.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import gc
import json
import os
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

from labelport import _progress
from labelport._records import _invalid, need

__all__ = [
    "ato_arrow",
    "ato_csv",
    "ato_jsonl",
    "ato_pandas",
    "ato_parquet",
    "ato_polars",
    "rows",
    "to_arrow",
    "to_csv",
    "to_pandas",
    "to_parquet",
    "to_polars",
]

ENVELOPE = ("id", "batch_id", "key", "status", "input", "output", "created_at", "completed_at", "vendor")
TIMES = ("created_at", "completed_at")
# Rows per chunk written to parquet or CSV, and between two progress updates.
WRITE_CHUNK = 10_000
PROGRESS_EVERY = 1_000


def _spread(prefix: str, value: Any, row: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _spread(f"{prefix}.{k}", v, row)
    else:
        row[prefix] = value


def rows(envelopes: Iterable[Mapping[str, Any]], flatten: bool) -> Iterator[dict[str, Any]]:
    """Envelopes as flat rows: the envelope's fields, with ``input``/``output`` spread when ``flatten``."""
    for env in envelopes:
        row: dict[str, Any] = {}
        for name in ENVELOPE:
            value = env.get(name)
            if flatten and name in ("input", "output"):
                if isinstance(value, dict):
                    _spread(name, value, row)
                elif value is not None:
                    row[name] = value
            else:
                row[name] = value
        if "raw" in env:
            row["raw"] = env["raw"]
        yield row


def _group(name: str) -> int:
    if name in ENVELOPE and name not in ("input", "output"):
        return 0
    if name == "input" or name.startswith("input."):
        return 1
    if name == "output" or name.startswith("output."):
        return 2
    return 3


def _ordered(names: Iterable[str]) -> list[str]:
    """Envelope fields first, then input, output and raw columns, each group in first-seen order."""
    seen = list(names)
    rank = {n: i for i, n in enumerate(seen)}
    envelope = {n: i for i, n in enumerate(ENVELOPE)}
    return sorted(seen, key=lambda n: (_group(n), envelope.get(n, 0), rank[n]))


def _counted(items: Iterable[Any], progress: Any, desc: str) -> Iterator[Any]:
    display = _progress.counter(progress, desc)
    n = 0
    ok = False
    try:
        for item in items:
            n += 1
            if display is not None and n % PROGRESS_EVERY == 0:
                display.update(n)
            yield item
        ok = True
    finally:
        if display is not None:
            display.update(n)
            display.close(ok)


def _columns(row_iter: Iterable[dict[str, Any]]) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {}
    i = 0
    for i, row in enumerate(row_iter):
        for k, v in row.items():
            col = cols.get(k)
            if col is None:
                col = cols[k] = [None] * i
            col.append(v)
        if len(row) != len(cols):
            for col in cols.values():
                if len(col) == i:
                    col.append(None)
    for name in ENVELOPE:
        if name not in ("input", "output") and name not in cols:
            cols[name] = []
    return {n: cols[n] for n in _ordered(cols)}


def _parse_time(text: Any) -> dt.datetime | None:
    if text is None:
        return None
    if isinstance(text, dt.datetime):
        return text
    s = str(text)
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    # Python 3.10 takes 3 or 6 fraction digits only: pad or cut to 6.
    head, dot, frac = s.partition(".")
    if dot:
        digits = "".join(_digits(frac))
        s = head + "." + (digits + "000000")[:6] + frac[len(digits) :]
    parsed = dt.datetime.fromisoformat(s)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)


def _digits(text: str) -> Iterator[str]:
    for ch in text:
        if not ch.isdigit():
            return
        yield ch


def _times(values: list[Any]) -> list[Any]:
    """RFC 3339 strings as UTC datetimes; the strings as they are if any one does not parse."""
    try:
        return [_parse_time(v) for v in values]
    except ValueError:
        return values


def _json_text(values: list[Any]) -> list[str | None]:
    return [
        None if v is None else v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in values
    ]


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pauses the cyclic garbage collector while columns of cycle-free values pile up: every collection would
    walk everything kept so far (the same pause `ResultStream.to_list` takes in Rust)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _prepared(
    stream: Iterable[Mapping[str, Any]], flatten: bool, progress: Any, desc: str
) -> dict[str, list[Any]]:
    with _gc_paused():
        cols = _columns(rows(_counted(stream, progress, desc), flatten))
    for name in TIMES:
        cols[name] = _times(cols[name])
    return cols


# ---------------------------------------------------------------------------------------------------------------
# Tables


def _arrow_type(pa: Any, key_type: Any) -> Any:
    if isinstance(key_type, pa.DataType):
        return key_type
    if key_type is int:
        return pa.int64()
    if key_type is str:
        return pa.string()
    if key_type is float:
        return pa.float64()
    try:  # a numpy or pandas dtype
        return pa.from_numpy_dtype(key_type)
    except Exception:
        return pa.from_numpy_dtype(getattr(key_type, "numpy_dtype", key_type))


def _arrow_table(cols: dict[str, list[Any]], key_type: Any) -> Any:
    pa = need("pyarrow", "arrow", "to_arrow")
    arrays = {}
    for name, values in cols.items():
        if name in TIMES:
            arrays[name] = pa.array(values, type=pa.timestamp("us", tz="UTC"))
            continue
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            arrays[name] = pa.array(_json_text(values), type=pa.string())
    if key_type is not None:
        arrays["key"] = arrays["key"].cast(_arrow_type(pa, key_type))
    return pa.table(arrays)


def to_arrow(
    stream: Iterable[Mapping[str, Any]], flatten: bool = False, *, key_type: Any = None, progress: Any = None
) -> Any:
    """The remaining results as a ``pyarrow.Table``."""
    need("pyarrow", "arrow", "to_arrow")
    return _arrow_table(_prepared(stream, flatten, progress, "results"), key_type)


def _pandas_frame(cols: dict[str, list[Any]], key_type: Any) -> Any:
    pd = need("pandas", "pandas", "to_pandas")
    frame = pd.DataFrame(cols)
    for name in TIMES:
        if not any(isinstance(x, str) for x in cols[name]):
            frame[name] = pd.to_datetime(frame[name], utc=True)
    if key_type is not None:
        frame["key"] = frame["key"].astype(key_type)
    return frame


def to_pandas(
    stream: Iterable[Mapping[str, Any]], flatten: bool = False, *, key_type: Any = None, progress: Any = None
) -> Any:
    """The remaining results as a ``pandas.DataFrame``."""
    need("pandas", "pandas", "to_pandas")
    return _pandas_frame(_prepared(stream, flatten, progress, "results"), key_type)


def _polars_frame(cols: dict[str, list[Any]], key_type: Any) -> Any:
    pl = need("polars", "polars", "to_polars")
    series = []
    for name, values in cols.items():
        if name in TIMES:
            series.append(pl.Series(name, values, dtype=pl.Datetime("us", "UTC")))
            continue
        try:
            series.append(pl.Series(name, values, strict=True))
        except Exception:
            series.append(pl.Series(name, _json_text(values), dtype=pl.String))
    frame = pl.DataFrame(series)
    if key_type is not None:
        frame = frame.with_columns(pl.col("key").cast(key_type))
    return frame


def to_polars(
    stream: Iterable[Mapping[str, Any]], flatten: bool = False, *, key_type: Any = None, progress: Any = None
) -> Any:
    """The remaining results as a ``polars.DataFrame``."""
    need("polars", "polars", "to_polars")
    return _polars_frame(_prepared(stream, flatten, progress, "results"), key_type)


async def _all(stream: Any) -> list[Mapping[str, Any]]:
    items: list[Mapping[str, Any]] = await stream.to_list()
    return items


async def _pages(stream: Any) -> AsyncIterator[list[Mapping[str, Any]]]:
    """An ``AsyncStream`` page by page (its own progress display moves as they arrive)."""
    while (page := await stream._next_page()) is not None:
        yield page


async def ato_pandas(stream: Any, flatten: bool = False, *, key_type: Any = None) -> Any:
    need("pandas", "pandas", "to_pandas")
    return _pandas_frame(_prepared(await _all(stream), flatten, False, "results"), key_type)


async def ato_polars(stream: Any, flatten: bool = False, *, key_type: Any = None) -> Any:
    need("polars", "polars", "to_polars")
    return _polars_frame(_prepared(await _all(stream), flatten, False, "results"), key_type)


async def ato_arrow(stream: Any, flatten: bool = False, *, key_type: Any = None) -> Any:
    need("pyarrow", "arrow", "to_arrow")
    return _arrow_table(_prepared(await _all(stream), flatten, False, "results"), key_type)


# ---------------------------------------------------------------------------------------------------------------
# Files, streamed


class _Spool:
    """Rows spooled to a temporary JSON lines file, with every column seen and the kinds of its values. The
    envelope's own columns are there from the start, so a file of no results still has them: an incremental
    run with nothing new loads as zero rows downstream, not as a file without columns."""

    def __init__(self, flatten: bool) -> None:
        self.file = tempfile.TemporaryFile("w+", encoding="utf-8")
        fixed = [n for n in ENVELOPE if not (flatten and n in ("input", "output"))]
        self.kinds: dict[str, set[str]] = {n: set() for n in fixed}
        self.count = 0

    def add(self, row: dict[str, Any]) -> None:
        for k, v in row.items():
            kinds = self.kinds.setdefault(k, set())
            if v is not None:
                kinds.add("int" if isinstance(v, int) and not isinstance(v, bool) else type(v).__name__)
        self.file.write(json.dumps(row, ensure_ascii=False))
        self.file.write("\n")
        self.count += 1

    def columns(self) -> list[str]:
        return _ordered(self.kinds)

    def chunks(self) -> Iterator[list[dict[str, Any]]]:
        self.file.seek(0)
        chunk: list[dict[str, Any]] = []
        for line in self.file:
            chunk.append(json.loads(line))
            if len(chunk) >= WRITE_CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def close(self) -> None:
        self.file.close()


def _spool(stream: Iterable[Mapping[str, Any]], flatten: bool, progress: Any, desc: str) -> _Spool:
    spool = _Spool(flatten)
    try:
        for row in rows(_counted(stream, progress, desc), flatten):
            spool.add(row)
    except BaseException:
        spool.close()
        raise
    return spool


async def _aspool(stream: Any, flatten: bool) -> _Spool:
    spool = _Spool(flatten)
    try:
        async for page in _pages(stream):
            for row in rows(page, flatten):
                spool.add(row)
    except BaseException:
        spool.close()
        raise
    return spool


def _parquet_column(pa: Any, name: str, kinds: set[str], values: list[Any]) -> tuple[Any, list[Any]]:
    """The parquet type of a column from the kinds of all its values, and this chunk's values in that type."""
    if name in TIMES and kinds <= {"str"}:
        return pa.timestamp("us", tz="UTC"), _times(values)
    if kinds == {"bool"}:
        return pa.bool_(), values
    if kinds == {"int"}:
        return pa.int64(), values
    if kinds and kinds <= {"int", "float"}:
        return pa.float64(), [None if v is None else float(v) for v in values]
    return pa.string(), _json_text(values)


def to_parquet(
    stream: Iterable[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    flatten: bool = True,
    progress: Any = None,
) -> int:
    """Writes the remaining results to a parquet file, streamed; returns how many were written."""
    need("pyarrow.parquet", "arrow", "to_parquet")
    return _write_parquet(_spool(stream, flatten, progress, "results"), path)


async def ato_parquet(stream: Any, path: str | os.PathLike[str], *, flatten: bool = True) -> int:
    """``to_parquet`` of an ``AsyncStream``: spooled page by page as they arrive, then written on a worker thread,
    so the event loop never waits on the file."""
    need("pyarrow.parquet", "arrow", "to_parquet")
    spool = await _aspool(stream, flatten)
    return await asyncio.to_thread(_write_parquet, spool, path)


def _write_parquet(spool: _Spool, path: str | os.PathLike[str]) -> int:
    """Writes a spool to a parquet file chunk by chunk, then closes the spool."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = spool.columns()
        types = {n: _parquet_column(pa, n, spool.kinds[n], [])[0] for n in names}
        schema = pa.schema([(n, types[n]) for n in names])
        with pq.ParquetWriter(os.fspath(path), schema) as writer:
            for chunk in spool.chunks():
                arrays = [
                    pa.array(
                        _parquet_column(pa, n, spool.kinds[n], [r.get(n) for r in chunk])[1], type=types[n]
                    )
                    for n in names
                ]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
        return spool.count
    finally:
        spool.close()


def _csv_cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    return v


def to_csv(
    stream: Iterable[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    flatten: bool = True,
    progress: Any = None,
) -> int:
    """Writes the remaining results to a CSV file (UTF-8, header first), streamed; returns how many were written.
    Lists and objects are written as JSON text, None as an empty cell."""
    return _write_csv(_spool(stream, flatten, progress, "results"), path)


async def ato_csv(stream: Any, path: str | os.PathLike[str], *, flatten: bool = True) -> int:
    """``to_csv`` of an ``AsyncStream``, as ``ato_parquet``."""
    spool = await _aspool(stream, flatten)
    return await asyncio.to_thread(_write_csv, spool, path)


def _write_csv(spool: _Spool, path: str | os.PathLike[str]) -> int:
    """Writes a spool to a CSV file chunk by chunk, then closes the spool."""
    try:
        names = spool.columns()
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(names)
            for chunk in spool.chunks():
                writer.writerows([[_csv_cell(r.get(n)) for n in names] for r in chunk])
        return spool.count
    finally:
        spool.close()


async def ato_jsonl(stream: Any, path: str | os.PathLike[str]) -> int:
    """``ResultStream.to_jsonl`` of an ``AsyncStream``: each page appended as JSON lines as it arrives (the file
    writes are small and buffered; the pages are the wait)."""
    try:
        target = os.fspath(path)
    except TypeError:
        raise _invalid(
            f"path must be a path (str or os.PathLike), not {type(path).__name__}", "path"
        ) from None
    try:
        f = open(target, "w", encoding="utf-8")  # noqa: SIM115 (closed below, also when the stream fails)
    except OSError as e:
        raise _invalid(f"cannot write {target}: {e}", "path") from None
    n = 0
    with f:
        async for page in _pages(stream):
            f.write(
                "".join(json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n" for item in page)
            )
            n += len(page)
    return n

"""Records in: DataFrames, Arrow data and files as chunks of plain dicts, for ``Batch.upload``.

``chunks(records, n)`` is what the Rust ``upload`` calls for anything that is not a list or tuple: an iterator of
lists of at most ``n`` dicts, with ``.total`` (the record count where it is known before reading). Nothing is
read whole: DataFrames are sliced, Arrow data and parquet files go record batch by record batch, CSV and JSON
lines line by line.

Values of DataFrames, Arrow data and files that JSON has no word for are converted on purpose: datetimes to
RFC 3339 (a naive datetime is taken as UTC), dates and times to ISO 8601, numpy scalars to numbers, Decimal and
UUID to strings, timedeltas to seconds, NaN/NaT/None/NA to null, column names to strings. Records of a plain
iterable of dicts pass through untouched, so the Rust side refuses a NaN there as it does in a list.

Nothing here recurses past ``MAX_JSON_DEPTH`` (128) levels of lists and dicts: deeper values are handed on as they
are, and the Rust side refuses them naming the record and the field.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import gzip
import io
import itertools
import json
import operator
import os
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from labelport._labelport import MAX_JSON_DEPTH

__all__ = ["Chunks", "chunks", "json_value"]

# Rows read from a parquet file per record batch.
PARQUET_BATCH_ROWS = 65_536
SUFFIXES = (".jsonl", ".ndjson", ".csv", ".parquet", ".jsonl.gz", ".ndjson.gz", ".csv.gz")


def _invalid(message: str, field: str = "records") -> Exception:
    from labelport._labelport import InvalidInput

    err = InvalidInput(message)
    err.message = message
    err.field = field
    return err


def need(module: str, extra: str, what: str) -> Any:
    """Imports an optional dependency, or says which extra to install."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as e:
        raise ImportError(f'{what} needs {module.split(".")[0]}: pip install "labelport[{extra}]"') from e


class Chunks(Iterator[list[dict[str, Any]]]):
    """Lists of at most ``size`` records; ``total`` is the record count where known before reading."""

    def __init__(self, rows: Iterator[Any], size: int, total: int | None) -> None:
        self._rows = rows
        self.size = max(1, int(size))
        self.total = total

    def __iter__(self) -> Chunks:
        return self

    def __next__(self) -> list[dict[str, Any]]:
        chunk = list(itertools.islice(self._rows, self.size))
        if not chunk:
            raise StopIteration
        return chunk


# ---------------------------------------------------------------------------------------------------------------
# Values


def _rfc3339(v: dt.datetime) -> str:
    if v.tzinfo is None or v.utcoffset() is None:
        v = v.replace(tzinfo=dt.timezone.utc)
    text = v.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _is_missing_singleton(v: Any) -> bool:
    # pandas.NA, pandas.NaT and numpy.datetime64("NaT") without importing pandas or numpy.
    name = type(v).__name__
    return name in ("NAType", "NaTType") or (name in ("datetime64", "timedelta64") and str(v) == "NaT")


def json_value(v: Any, depth: int = 1) -> Any:
    """One value as JSON-ready Python (see the module's docstring); unknown types pass through for Rust to name.

    ``depth``: the lists and dicts around ``v`` (a record's field: 1). A list or dict beyond ``MAX_JSON_DEPTH`` is
    returned as it is, unconverted and unvisited, for the Rust side to refuse."""
    if v is None or isinstance(v, (str, bool, int)):
        return v.item() if type(v).__module__ == "numpy" else v  # type: ignore[union-attr]
    if isinstance(v, float):
        return None if v != v else float(v)
    if isinstance(v, (dict, list, tuple)) and depth >= MAX_JSON_DEPTH:
        return v
    if isinstance(v, dict):
        return {k if isinstance(k, str) else str(k): json_value(x, depth + 1) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_value(x, depth + 1) for x in v]
    if _is_missing_singleton(v):
        return None
    if isinstance(v, dt.datetime):
        return _rfc3339(v)
    if isinstance(v, (dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    if isinstance(v, decimal.Decimal):
        return None if v.is_nan() else str(v)
    if isinstance(v, uuid.UUID):
        return str(v)
    module = type(v).__module__
    if module == "numpy":
        if hasattr(v, "tolist"):  # numpy scalars and arrays
            kind = getattr(getattr(v, "dtype", None), "kind", "")
            if kind == "M":  # datetime64: via pandas when it is there (keeps nanoseconds), else as text
                pd = sys.modules.get("pandas")
                if pd is not None:
                    return json_value(pd.Timestamp(v), depth)
                return str(v) + "Z" if "T" in str(v) else str(v)
            if kind == "m":
                return json_value(dt.timedelta(microseconds=int(v.astype("timedelta64[us]").astype("int64"))))
            return json_value(v.tolist(), depth)
    if module.startswith("pandas") and hasattr(v, "to_pytimedelta"):
        return v.total_seconds()
    if hasattr(v, "as_py"):  # a pyarrow scalar
        return json_value(v.as_py(), depth)
    return v


def _column(values: list[Any], kind: str) -> list[Any]:
    """A column's values as JSON-ready Python; ``kind`` lets plain columns skip the per-value work."""
    if kind == "plain":
        return values
    if kind == "float":
        return [None if v != v else v for v in values]
    return [json_value(v) for v in values]


def _rows(names: list[str], columns: list[list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(names, row, strict=False)) for row in zip(*columns, strict=False)]


# ---------------------------------------------------------------------------------------------------------------
# pandas


def _pandas_kind(dtype: Any) -> str:
    kind = getattr(dtype, "kind", "O")
    if kind in "iub" and type(dtype).__module__ == "numpy":
        return "plain"
    if kind == "f" and type(dtype).__module__ == "numpy":
        return "float"
    return "any"


def _pandas_rows(df: Any, size: int) -> Iterator[dict[str, Any]]:
    names = [str(c) for c in df.columns]
    if len(set(names)) != len(names):
        raise _invalid(f"the DataFrame has duplicate column names: {names}")
    kinds = [_pandas_kind(t) for t in df.dtypes]
    for start in range(0, len(df), size):
        part = df.iloc[start : start + size]
        columns = [_column(part.iloc[:, i].tolist(), kinds[i]) for i in range(len(names))]
        yield from _rows(names, columns)


# ---------------------------------------------------------------------------------------------------------------
# polars


def _polars_kind(dtype: Any) -> str:
    import polars as pl

    if dtype.is_integer() or dtype in (pl.Boolean, pl.String):
        return "plain"
    if dtype.is_float():
        return "float"
    return "any"


def _polars_rows(df: Any, size: int) -> Iterator[dict[str, Any]]:
    names = [str(c) for c in df.columns]
    kinds = [_polars_kind(t) for t in df.dtypes]
    for part in df.iter_slices(n_rows=size):
        columns = [
            _column(part.get_column(n).to_list(), k) for n, k in zip(part.columns, kinds, strict=False)
        ]
        yield from _rows(names, columns)


# ---------------------------------------------------------------------------------------------------------------
# Arrow


def _arrow_kind(t: Any) -> str:
    import pyarrow as pa

    if (
        pa.types.is_integer(t)
        or pa.types.is_boolean(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
    ):
        return "plain"
    if pa.types.is_floating(t):
        return "float"
    return "any"


def _arrow_batches_rows(batches: Iterable[Any]) -> Iterator[dict[str, Any]]:
    kinds: list[str] | None = None
    for batch in batches:
        names = [str(n) for n in batch.schema.names]
        if kinds is None:
            kinds = [_arrow_kind(f.type) for f in batch.schema]
        columns = [_column(batch.column(i).to_pylist(), kinds[i]) for i in range(batch.num_columns)]
        yield from _rows(names, columns)


def _reader_batches(reader: Any) -> Iterator[Any]:
    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return


# ---------------------------------------------------------------------------------------------------------------
# Files


def _open_text(path: str) -> IO[str]:
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _jsonl_rows(path: str) -> Iterator[dict[str, Any]]:
    with _open_text(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line, parse_constant=_refuse_constant)
            except ValueError as e:
                raise _invalid(f"{path} line {line_no}: not a JSON object: {e}") from None
            except RecursionError:
                # Deeper than Python's own limit, so far beyond labelport's: refused without reading further.
                raise _invalid(
                    f"{path} line {line_no}: lists and objects nested deeper than {MAX_JSON_DEPTH} levels "
                    "(labelport.MAX_JSON_DEPTH) cannot be sent"
                ) from None
            if not isinstance(obj, dict):
                raise _invalid(f"{path} line {line_no}: a JSON {type(obj).__name__}, not an object")
            yield obj


def _csv_rows(path: str) -> Iterator[dict[str, Any]]:
    """CSV has no types: every value is sent as the string in the file, and a missing trailing field as null."""
    with _open_text(path) as f:
        reader = csv.DictReader(f)
        for row in reader:
            if None in row:
                raise _invalid(f"{path} line {reader.line_num}: more fields than the header has columns")
            yield row


def _parquet(path: str, size: int) -> Chunks:
    pq = need("pyarrow.parquet", "arrow", "uploading a parquet file")
    pf = pq.ParquetFile(path)
    batches = pf.iter_batches(batch_size=min(size, PARQUET_BATCH_ROWS))
    return Chunks(_arrow_batches_rows(batches), size, pf.metadata.num_rows)


def _file(path: str, size: int) -> Chunks:
    lower = path.lower()
    if not os.path.isfile(path):
        raise _invalid(f"no such file: {path}")
    if lower.endswith(".parquet"):
        return _parquet(path, size)
    if lower.endswith((".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")):
        return Chunks(_jsonl_rows(path), size, None)
    return Chunks(_csv_rows(path), size, None)


# ---------------------------------------------------------------------------------------------------------------


def _instance_of(obj: Any, module: str, names: tuple[str, ...]) -> bool:
    """``isinstance`` against classes of a library only when that library is already imported."""
    mod = sys.modules.get(module)
    return mod is not None and isinstance(obj, tuple(getattr(mod, n) for n in names if hasattr(mod, n)))


def chunks(records: Any, size: int) -> Chunks:
    """``records`` (anything ``upload`` takes but a list or tuple) as chunks of at most ``size`` dicts
    (``labelport.config.upload_chunk`` when set)."""
    from labelport import config

    setting = getattr(config, "upload_chunk", 0) or size
    try:
        size = -1 if isinstance(setting, bool) else operator.index(setting)
    except TypeError:
        size = -1
    if size < 1:
        raise _invalid(
            f"labelport.config.upload_chunk must be a whole number of at least 1, not {setting!r}",
            "upload_chunk",
        )
    if isinstance(records, (str, os.PathLike)):
        path = os.fspath(records)
        if isinstance(path, str) and "\n" not in path and path.lower().endswith(SUFFIXES):
            return _file(path, size)
        raise _invalid(
            "records must be an iterable of dicts, not a string (a path must end in "
            + ", ".join(SUFFIXES)
            + ")"
        )
    if isinstance(records, (bytes, bytearray)):
        raise _invalid("records must be an iterable of dicts, not a string")
    if _instance_of(records, "pandas", ("DataFrame",)):
        return Chunks(_pandas_rows(records, size), size, len(records))
    if _instance_of(records, "polars", ("DataFrame",)):
        return Chunks(_polars_rows(records, size), size, records.height)
    if _instance_of(records, "polars", ("LazyFrame",)):
        frame = records.collect()
        return Chunks(_polars_rows(frame, size), size, frame.height)
    if _instance_of(records, "pyarrow", ("Table",)):
        return Chunks(_arrow_batches_rows(records.to_batches(max_chunksize=size)), size, records.num_rows)
    if _instance_of(records, "pyarrow", ("RecordBatch",)):
        return Chunks(_arrow_batches_rows([records]), size, records.num_rows)
    if _instance_of(records, "pyarrow", ("RecordBatchReader",)):
        return Chunks(_arrow_batches_rows(_reader_batches(records)), size, None)
    if hasattr(records, "__arrow_c_stream__") and not hasattr(records, "__iter__"):
        pa = need("pyarrow", "arrow", "uploading an Arrow stream")
        reader = pa.RecordBatchReader.from_stream(records)
        return Chunks(_arrow_batches_rows(_reader_batches(reader)), size, None)
    try:
        rows = iter(records)
    except TypeError:
        raise _invalid(f"records must be an iterable of dicts, not {type(records).__name__}") from None
    total: int | None = None
    length: Callable[[], int] | None = getattr(records, "__len__", None)
    if length is not None:
        try:
            total = int(length())
        except (TypeError, ValueError):
            total = None
    return Chunks(rows, size, total)

"""What the Spark data source and the Dask helpers share: client specs from options, a client per worker
process, the partition plan of a batch's results, and uploading one partition idempotently.

Nothing here imports pyspark or dask.
"""

from __future__ import annotations

import json
import os
import pickle
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from labelport._labelport import Batch, Client, ClientSpec, InvalidInput, NotFound, _rebuild_batch

#: Result pages per partition when reading (Alegion: 1,000 results a page).
DEFAULT_PAGES_PER_PARTITION = 4
#: Records per ``batch.upload`` call when writing a partition: each call reconciles with the vendor first.
DEFAULT_CHUNK_SIZE = 10_000

#: Columns of the results, in order: the neutral envelope, ``input`` and ``output`` as JSON strings.
RESULT_COLUMNS = (
    "id",
    "batch_id",
    "key",
    "status",
    "input",
    "output",
    "created_at",
    "completed_at",
    "vendor",
)

#: Options of the data source that are not the client's.
_NOT_CLIENT = {
    "batch",
    "batch_name",
    "key",
    "pages_per_partition",
    "chunk_size",
    "include_raw",
    "concurrency",
    "on_error",
    "path",
}
_FLOATS = {"timeout", "rate_limit"}
_INTS = {"max_retries"}
_BOOLS = {"allow_insecure"}


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def spec_from_options(options: Mapping[str, Any]) -> ClientSpec:
    """A ``ClientSpec`` from string options (Spark's ``.option(...)``): ``vendor`` (required), ``project``,
    ``base_url``, ``timeout``, ``max_retries``, ``rate_limit``, ``allow_insecure``, and the vendor's credentials
    and client options by their names. Credentials not given come from the workers' environment."""
    opts = {str(k).lower(): v for k, v in options.items() if str(k).lower() not in _NOT_CLIENT}
    vendor = opts.pop("vendor", None)
    if not vendor:
        from labelport._labelport import vendors

        err = InvalidInput(f'labelport needs the option "vendor" ({", ".join(vendors())})')
        err.field = "vendor"
        raise err
    kwargs: dict[str, Any] = {}
    for name, value in opts.items():
        if value is None:
            continue
        if name in _FLOATS:
            kwargs[name] = _parsed(value, float)
        elif name in _INTS:
            kwargs[name] = _parsed(value, int)
        elif name in _BOOLS:
            kwargs[name] = _truthy(value)
        elif isinstance(value, str) and value[:1] in "[{":
            # Vendor options such as TaskMonk's output_fields arrive as JSON text; text that does not parse (or
            # nests deeper than Python parses) goes on as the text it is.
            try:
                kwargs[name] = json.loads(value)
            except (ValueError, RecursionError):
                kwargs[name] = value
        else:
            kwargs[name] = value
    return ClientSpec(str(vendor), **kwargs)


def _parsed(value: Any, kind: type) -> Any:
    """A string option as ``kind``; one that is not passes on as it is, for ``ClientSpec`` to refuse naming it."""
    if not isinstance(value, str):
        return value
    try:
        return kind(value)
    except ValueError:
        return value


def as_spec(
    client: Client | ClientSpec | None = None, vendor: str | None = None, **kwargs: Any
) -> ClientSpec:
    """A spec from a ``Client`` (without its credentials), a ``ClientSpec``, or ``Client``'s arguments."""
    if isinstance(client, ClientSpec):
        return client
    if isinstance(client, Client):
        return client.spec()
    if client is not None:
        raise TypeError(f"expected a labelport.Client or labelport.ClientSpec, not {type(client).__name__}")
    if vendor is None:
        raise TypeError("pass client= (a Client or ClientSpec) or vendor= with the client's arguments")
    return ClientSpec(vendor, **kwargs)


_clients: dict[bytes, Client] = {}
_clients_lock = threading.Lock()


def client_for(spec: ClientSpec) -> Client:
    """One client per spec per worker process: tasks that run one after the other in a process share its
    connections and token. A child forked from the process rebuilds the client's connections by itself."""
    key = pickle.dumps(spec)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = spec.client()
        return client


def task_spec(spec: ClientSpec, concurrency: int | None) -> ClientSpec:
    """The spec one of ``concurrency`` concurrent tasks uses: the rate limit shared out between them. That is
    the caller's ``rate_limit``, else the vendor's documented one on its real host (``spec.pacing``): each task's
    client would keep to the whole of it, and ``concurrency`` of them together to that many times it."""
    limit = spec.pacing
    if limit is None or not concurrency or concurrency <= 1:
        return spec
    return spec.replace(rate_limit=limit / concurrency)


def plan(
    batch: Batch, pages_per_partition: int = DEFAULT_PAGES_PER_PARTITION
) -> list[tuple[int, int | None] | None]:
    """Page ranges, one per partition, covering every result of ``batch``: ``[None]`` (one partition reading
    everything) where the vendor cannot split results. The last range is open-ended, so results finished after
    planning are read too (the vendor orders results by completion: earlier ranges do not shift)."""
    if pages_per_partition < 1:
        raise ValueError("pages_per_partition must be at least 1")
    pages = batch.result_pages()
    if pages is None:
        return [None]
    n = int(pages["pages"])
    if n <= pages_per_partition:
        return [(0, None)]
    ranges: list[tuple[int, int | None] | None] = []
    for start in range(0, n, pages_per_partition):
        stop = start + pages_per_partition
        ranges.append((start, stop if stop < n else None))
    return ranges


def read_range(
    batch: Batch, pages: tuple[int, int | None] | None, include_raw: bool = False
) -> Iterator[dict[str, Any]]:
    """The results of one partition of a plan."""
    if pages is None:
        return iter(batch.results(include_raw=include_raw))
    return iter(batch.results(include_raw=include_raw, pages=pages))


def to_json(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def attach(client: Client, batch_id: str) -> Batch:
    """The batch of ``batch_id``, to upload into or read. Where a batch exists only once its first upload created
    it (``capabilities["batch_created_by_first_upload"]``: Deepen, Sama), ``client.batch(id)`` is ``NotFound``
    before that upload, so the batch is attached by id without reading it (reads of it still raise
    ``NotFound``; the upload creates it)."""
    try:
        return client.batch(batch_id)
    except NotFound:
        if not client.capabilities.get("batch_created_by_first_upload"):
            raise
        return _rebuild_batch(client.spec(include_credentials=True), batch_id, None, None, None)


def worker_batch(spec: ClientSpec, batch_id: str) -> Batch:
    """The batch, re-attached through this process's client for ``spec`` (``attach``)."""
    return attach(client_for(spec), batch_id)


def upload_chunks(
    batch: Batch,
    chunks: Iterator[Any],
    key: str | None,
    *,
    on_error: str = "raise",
) -> dict[str, Any]:
    """Uploads each chunk (a list of dicts, a DataFrame or Arrow data) as one ``batch.upload`` call; keys make
    a retried task skip what an earlier attempt sent. Returns counts and this process's id."""
    sent = skipped = failed = total = 0
    failures: list[dict[str, Any]] = []
    for chunk in chunks:
        job = batch.upload(chunk, key=key, on_error=on_error, progress=False)  # type: ignore[arg-type]
        status = job.status()
        total += int(status["total"])
        skipped += int(status["skipped"])
        failed += int(status["failed"])
        sent += int(status["total"]) - int(status["skipped"]) - int(status["failed"])
        failures.extend(job.failures())
    return {
        "pid": os.getpid(),
        "total": total,
        "sent": sent,
        "skipped": skipped,
        "failed": failed,
        "failures": failures[:100],
    }

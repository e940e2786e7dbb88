"""Type stubs for the native module ``labelport._labelport`` (Rust, src/py/)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from os import PathLike
from typing import Any, Literal, Protocol, final, overload

from labelport._check import Report as _CheckReport

__version__: str
#: How deep lists and dicts may nest in a record (the record is level 1), an option or a request body labelport
#: sends, and in JSON it reads from a vendor: deeper is an ``InvalidInput`` (sending) or a ``VendorError`` with
#: code ``bad_response`` (reading).
MAX_JSON_DEPTH: int

_Record = Mapping[str, Any]
_Envelope = dict[str, Any]

class _Tabular(Protocol):
    """A pandas or polars DataFrame, or a pyarrow Table or RecordBatch: anything with a 2-D ``shape``."""

    @property
    def shape(self) -> tuple[int, int]: ...

class _ArrowStream(Protocol):
    """Anything that exports an Arrow C stream (a pyarrow RecordBatchReader, DuckDB and others)."""

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object: ...

#: What ``upload`` takes: dicts, a DataFrame, Arrow data, or a path to a ``.jsonl``, ``.csv`` or ``.parquet`` file.
_Records = Iterable[_Record] | _Tabular | _ArrowStream | str | PathLike[str]
#: ``progress=``: ``None`` follows ``labelport.config.progress``; ``True``/``False``; or a callable given a status
#: dict (``wait``: the batch status after every poll; ``upload``: ``{"done", "total"}`` records).
_Progress = bool | Callable[[dict[str, Any]], object] | None
_Status = Literal["pending", "in_progress", "completed", "exception", "canceled", "rejected", "failed"]

# ---------------------------------------------------------------------------------------------------------------------
# Errors (src/py/errors.rs). Every error carries the facts a user needs to act; none carries a secret.

class LabelportError(Exception):
    vendor: str | None
    operation: str | None
    status: int | None  # HTTP status
    code: str | None  # vendor error code
    message: str
    request_id: str | None
    key: str | None  # record key, where one record is at fault
    field: str | None  # record field, where one field is at fault
    details: dict[str, Any] | None  # e.g. what an interrupted upload did and did not send
    retry_after: (
        float | None
    )  # seconds the vendor asked to wait, when longer than labelport waits (max_retry_wait)

class AuthError(LabelportError): ...
class NotFound(LabelportError): ...
class InvalidInput(LabelportError, ValueError): ...
class DuplicateRecord(LabelportError): ...
class RateLimited(LabelportError): ...
class VendorError(LabelportError): ...
class Timeout(LabelportError, TimeoutError): ...
class Stalled(LabelportError): ...
class UnsupportedOperation(LabelportError): ...

# ---------------------------------------------------------------------------------------------------------------------
# The synchronous API (src/py/client.rs)

@final
class Client:
    """One vendor account and project. Thread-safe: share one per process.

    Credentials are keyword arguments named as the vendor names them (alegion: ``username``, ``password``),
    or come from ``LABELPORT_<VENDOR>_<NAME>`` environment variables; ``project`` and ``base_url`` likewise from
    ``LABELPORT_<VENDOR>_PROJECT`` and ``LABELPORT_<VENDOR>_BASE_URL``, or from a profile (``profile=`` or
    ``LABELPORT_PROFILE``: a ``[profiles.NAME]`` table of ``~/.config/labelport/config.toml``), which may also
    give the vendor. Keyword arguments win over the environment, the environment over the profile.
    ``ca_bundle``: a PEM file of certificate authorities trusted besides the system's (a TLS-inspecting proxy,
    a private endpoint); also ``LABELPORT_<VENDOR>_CA_BUNDLE`` or a profile's ``ca_bundle``.
    Every vendor also takes three bounds on what a server may cost, as keywords (or ``LABELPORT_<VENDOR>_<NAME>``,
    or a profile): ``max_response_size`` (bytes of one body after decompression, default 512 MiB),
    ``max_pages`` (pages of one listing, default 100,000) and ``max_retry_wait`` (seconds: the longest
    ``Retry-After`` waited out, default 120; a longer one raises ``RateLimited`` with ``retry_after`` at once).
    TaskMonk's results come from export files whose every cell is text: ``coerce={field: "str" | "int" | "float"
    | "bool" | "json"}`` converts the named fields of ``input`` and ``output`` (an empty cell of a non-``str``
    field is ``None``; a value that does not convert raises ``InvalidInput`` naming the record's key and the
    field). Also ``LABELPORT_TASKMONK_COERCE`` or a profile's ``coerce``, as a JSON object.
    """

    def __new__(
        cls,
        vendor: str | None = None,
        project: str | int | None = None,
        *,
        profile: str | None = None,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        rate_limit: float | None = None,
        allow_insecure: bool = False,
        ca_bundle: str | PathLike[str] | None = None,
        **credentials_and_options: Any,
    ) -> Client: ...
    @property
    def vendor(self) -> str: ...
    @property
    def project(self) -> str: ...
    @property
    def base_url(self) -> str: ...
    @property
    def capabilities(self) -> dict[str, Any]: ...
    def metrics(self) -> dict[str, Any]: ...
    def create_batch(self, name: str, *, exist_ok: bool = False, **options: Any) -> Batch: ...
    def batch(self, id: str) -> Batch:
        """Re-attach to an existing batch by its id (raises NotFound if the vendor does not know it)."""
    def batches(self) -> list[Batch]: ...
    def user_tasks(self, user: str) -> dict[str, Any]: ...
    def delayed_tasks(self) -> list[dict[str, Any]]: ...
    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        paginate: bool = False,
        retry: bool | None = None,
        raw: bool = False,
    ) -> Any:
        """Authenticated escape hatch: the decoded JSON body (the body's bytes with ``raw=True``), or an iterator of
        items with ``paginate=True``.
        ``path`` is relative to the vendor's API root (alegion: ``/workflows`` means ``/api/v1/workflows``) or an
        absolute path starting with the API prefix. Only GETs are retried unless ``retry=True``."""
    def close(self) -> None: ...
    def check(self, *, batch: str | None = None, write: bool = False) -> _CheckReport:
        """A read-only probe of the account against the vendor's ledger (``docs/vendors/<vendor>.md``): which
        response fields and page sizes the live API confirmed or contradicted. ``batch``: the batch to read (else
        the newest); ``write=True`` first creates one tiny batch of one record. Secrets are redacted."""
    def spec(self, *, include_credentials: bool = False) -> ClientSpec:
        """What rebuilds this client in another process (picklable): vendor, project, base URL, limits and options,
        and the credentials only with ``include_credentials=True``. Pickling a ``Client`` pickles
        ``client.spec()``: the unpickling process resolves credentials from its environment."""
    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]: ...
    def __enter__(self) -> Client: ...
    def __exit__(self, *exc: object) -> None: ...

@final
class ClientSpec:
    """How to build a client, without its connections: picklable, for workers (Spark executors, Dask workers,
    ``multiprocessing``). Takes the arguments of ``Client``. Credentials are in it only when given to it or asked for
    (``client.spec(include_credentials=True)``): then its pickle holds them. The others, and a ``project`` or
    ``base_url`` left out, come from ``LABELPORT_<VENDOR>_<NAME>`` in the process that calls ``client()``."""

    def __new__(
        cls,
        vendor: str,
        project: str | int | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        rate_limit: float | None = None,
        allow_insecure: bool = False,
        ca_bundle: str | PathLike[str] | None = None,
        **credentials_and_options: Any,
    ) -> ClientSpec: ...
    @property
    def vendor(self) -> str: ...
    @property
    def project(self) -> str | None: ...
    @property
    def base_url(self) -> str | None: ...
    @property
    def timeout(self) -> float: ...
    @property
    def max_retries(self) -> int: ...
    @property
    def rate_limit(self) -> float | None: ...
    @property
    def pacing(self) -> float | None:
        """Requests per second each client built from this spec keeps to: ``rate_limit`` when given (0: none),
        else the vendor's documented limit unless the base URL is on this machine; ``None``: unpaced."""
    @property
    def allow_insecure(self) -> bool: ...
    @property
    def ca_bundle(self) -> str | None:
        """The PEM file of extra certificate authorities: read again where the client is built, so it must exist there."""
    @property
    def options(self) -> dict[str, Any]: ...
    @property
    def credential_names(self) -> list[str]:
        """The names of the credentials the spec carries (never their values)."""
    def replace(self, **changes: Any) -> ClientSpec:
        """A copy with fields changed, e.g. ``spec.replace(rate_limit=2.5)``."""
    def client(self) -> Client:
        """Build a ``Client`` in this process (missing credentials from this process's environment)."""
    def async_client(self) -> AsyncClient:
        """Build an ``AsyncClient`` in this process."""
    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]: ...
    def __eq__(self, other: object, /) -> bool: ...

@final
class Batch:
    """A batch of records at the vendor: upload into it, wait for it, read its results."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def vendor(self) -> str: ...
    @property
    def created_at(self) -> str | None: ...
    @property
    def raw(self) -> dict[str, Any]: ...
    def upload(
        self,
        records: _Records,
        key: str | None = None,
        *,
        on_error: Literal["raise", "collect"] = "raise",
        progress: _Progress = None,
        wait: bool = True,
        **options: Any,
    ) -> Job:
        """Send records; returns once the vendor has accepted every one. Idempotent by key: records whose key the
        batch already holds are skipped, so re-running an upload sends nothing twice. Without ``key`` the key is a
        stable hash of the record's content.

        ``records``: a list or iterable of dicts, a pandas or polars DataFrame, a pyarrow Table, RecordBatch or
        RecordBatchReader, or a path to a ``.jsonl``, ``.csv`` or ``.parquet`` file. A list or tuple is checked
        whole before anything is sent; anything else is read, checked and sent in chunks of
        ``labelport.config.upload_chunk`` records (50,000; a parquet file record batch by record batch, never
        whole): a bad record then stops the upload at its chunk, after the earlier chunks were sent, and running
        the same upload again sends only what is missing. Values
        of DataFrames, Arrow data and files that JSON has no word for are converted (datetimes to RFC 3339, numpy
        scalars to numbers, Decimal to str, NaN/NaT/None to null); plain dicts are sent as they are, and a NaN
        there is an ``InvalidInput``. ``progress``: a progress bar (default ``labelport.config.progress``).

        ``wait`` (default True): return once the vendor holds every record, so ``job.status()`` reads
        ``completed`` on every vendor (``Stalled`` if the vendor's job shows no progress for ``stall_timeout``,
        600 s). ``wait=False`` returns once the records are sent: a vendor that ingests them afterwards gives a
        running job, and ``job.wait()`` follows it. A chunked upload waits for each part before it sends the
        next either way."""
    def status(self) -> dict[str, int | bool]:
        """Counts from the vendor: total, pending, in_progress, completed, exception, canceled, rejected, failed,
        and ``done`` (bool: every record is in a final state)."""
    def wait(
        self,
        timeout: float | None = None,
        *,
        poll_interval: float = 2.0,
        progress: _Progress = None,
    ) -> dict[str, int | bool]:
        """Block until every record is finished (done on two consecutive polls); raises Timeout. ``progress``: a
        bar of finished records (default ``labelport.config.progress``), or a callable given each status dict."""
    def results(
        self,
        since: _dt.datetime | str | None = None,
        include_raw: bool = False,
        consumer: str | None = None,
        *,
        pages: tuple[int, int | None] | range | None = None,
        progress: _Progress = None,
    ) -> ResultStream:
        """Finished records as envelope dicts, lazily, page by page. With ``consumer="name"`` (Sama), the results
        delivered to that consumer since its last read instead. ``since`` is an exclusive lower bound on
        completion time. ``pages=(start, stop)`` (0-based page indexes, ``stop`` exclusive or ``None``): only the
        results on those pages, in the same order (see ``result_pages()``). ``progress`` (default
        ``labelport.config.progress``) counts them as they arrive."""
    def result_pages(self) -> dict[str, int] | None:
        """How the results split into pages, for readers that each take a range (Spark, Dask):
        ``{"total", "page_size", "pages"}`` counted now, or ``None`` where the vendor cannot fetch results by page."""
    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]: ...
    def records(
        self, status: str | list[str] | None = None, include_raw: bool = False, *, progress: _Progress = None
    ) -> ResultStream:
        """Every record with its neutral status, where the vendor can list them."""
    def cancel(self) -> None: ...
    def accept(self, ids: Iterable[str]) -> None: ...
    def reject(self, ids: Iterable[str], reason: str | None = None) -> None: ...
    def tasks(self) -> list[dict[str, Any]]: ...
    # Attached in Python by labelport._display when labelport is imported.
    def report(self, field: str | None = None, *, progress: _Progress = False) -> Any:
        """A matplotlib figure of this batch: records by status, the time to label each completed record, and the
        counts of each value of one output field (``field``; default: the first text field of the outputs)."""
    def _repr_html_(self) -> str: ...

@final
class Job:
    """One upload, and what the vendor did with it."""

    @property
    def id(self) -> str: ...
    @property
    def batch_id(self) -> str: ...
    def status(self) -> dict[str, Any]:
        """{"state": "running" | "completed" | "failed", "done", "total", "failed", "skipped"}."""
    def wait(self, timeout: float | None = None, *, poll_interval: float = 1.0) -> dict[str, Any]:
        """Block until the vendor has ingested every record; raises Timeout."""
    def failures(self) -> list[dict[str, Any]]:
        """Rejected records (with on_error="collect"): key, field, code, message."""
    def _repr_html_(self) -> str: ...

@final
class ResultStream(Iterator[_Envelope]):
    """Results (or records) of a batch as envelope dicts, fetched page by page as you iterate; also a DataFrame or
    a file in one call. Dropping it stops the fetching."""

    def __iter__(self) -> ResultStream: ...
    def __next__(self) -> _Envelope: ...
    @property
    def watermark(self) -> str | None:
        """The greatest completion time seen so far (RFC 3339): pass it as ``since=`` next time."""
    def to_list(self) -> list[_Envelope]: ...
    def to_jsonl(self, path: str | PathLike[str]) -> int:
        """Write the remaining results as JSON lines; returns how many were written."""
    def to_pandas(self, flatten: bool = False, *, key_type: Any = None, progress: _Progress = None) -> Any:
        """The remaining results as a ``pandas.DataFrame`` (``pip install "labelport[pandas]"``), one row per result:
        ``id, batch_id, key, status, input, output, created_at, completed_at, vendor``. ``flatten=True`` spreads
        ``input`` and ``output`` into columns (``input.caption``, ``output.label``). ``key_type`` casts ``key`` (a
        string at the vendor) back to the input's type, e.g. ``df["image_id"].dtype``, to join on it."""
    def to_polars(self, flatten: bool = False, *, key_type: Any = None, progress: _Progress = None) -> Any:
        """The remaining results as a ``polars.DataFrame`` (``pip install "labelport[polars]"``); as ``to_pandas``."""
    def to_arrow(self, flatten: bool = False, *, key_type: Any = None, progress: _Progress = None) -> Any:
        """The remaining results as a ``pyarrow.Table`` (``pip install "labelport[arrow]"``); as ``to_pandas``."""
    def to_parquet(
        self, path: str | PathLike[str], *, flatten: bool = True, progress: _Progress = None
    ) -> int:
        """Write the remaining results to a parquet file, streamed (flat memory); returns how many were written."""
    def to_csv(self, path: str | PathLike[str], *, flatten: bool = True, progress: _Progress = None) -> int:
        """Write the remaining results to a CSV file, streamed (flat memory); returns how many were written."""
    def close(self) -> None:
        """Stop fetching (also happens when the stream is dropped)."""

@final
class RequestPages(Iterator[Any]):
    def __iter__(self) -> RequestPages: ...
    def __next__(self) -> Any: ...

# ---------------------------------------------------------------------------------------------------------------------
# The async mirror (src/py/asyncio.rs): native coroutines on the shared tokio runtime, not threads.

@final
class AsyncClient:
    def __new__(
        cls,
        vendor: str | None = None,
        project: str | int | None = None,
        *,
        profile: str | None = None,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        rate_limit: float | None = None,
        allow_insecure: bool = False,
        ca_bundle: str | PathLike[str] | None = None,
        **credentials_and_options: Any,
    ) -> AsyncClient: ...
    @property
    def vendor(self) -> str: ...
    @property
    def project(self) -> str: ...
    @property
    def base_url(self) -> str: ...
    @property
    def capabilities(self) -> dict[str, Any]: ...
    def metrics(self) -> dict[str, Any]: ...
    async def create_batch(self, name: str, *, exist_ok: bool = False, **options: Any) -> AsyncBatch: ...
    async def batch(self, id: str) -> AsyncBatch: ...
    async def batches(self) -> list[AsyncBatch]: ...
    async def user_tasks(self, user: str) -> dict[str, Any]: ...
    async def delayed_tasks(self) -> list[dict[str, Any]]: ...
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        paginate: bool = False,
        retry: bool | None = None,
        raw: bool = False,
    ) -> Any:
        """As ``Client.request``. With ``paginate=True`` this returns an ``AsyncStream`` of items (do not await it;
        ``async for`` it)."""
    async def check(self, *, batch: str | None = None, write: bool = False) -> _CheckReport:
        """As ``Client.check``: the same probe, on a worker thread."""
    async def close(self) -> None: ...
    def spec(self, *, include_credentials: bool = False) -> ClientSpec:
        """As ``Client.spec``."""
    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]: ...
    async def __aenter__(self) -> AsyncClient: ...
    async def __aexit__(self, *exc: object) -> None: ...

@final
class AsyncBatch:
    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def vendor(self) -> str: ...
    @property
    def created_at(self) -> str | None: ...
    @property
    def raw(self) -> dict[str, Any]: ...
    async def upload(
        self,
        records: _Records,
        key: str | None = None,
        *,
        on_error: Literal["raise", "collect"] = "raise",
        progress: _Progress = None,
        wait: bool = True,
        **options: Any,
    ) -> AsyncJob: ...
    async def status(self) -> dict[str, int | bool]: ...
    async def wait(
        self,
        timeout: float | None = None,
        *,
        poll_interval: float = 2.0,
        progress: _Progress = None,
    ) -> dict[str, int | bool]: ...
    def results(
        self,
        since: _dt.datetime | str | None = None,
        include_raw: bool = False,
        consumer: str | None = None,
        *,
        pages: tuple[int, int | None] | range | None = None,
        progress: _Progress = None,
    ) -> AsyncStream:
        """As ``Batch.results``; ``async for`` the stream, or await one of its exports."""
    async def result_pages(self) -> dict[str, int] | None:
        """As ``Batch.result_pages``."""
    def records(
        self, status: str | list[str] | None = None, include_raw: bool = False, *, progress: _Progress = None
    ) -> AsyncStream: ...
    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]: ...
    async def cancel(self) -> None: ...
    async def accept(self, ids: Iterable[str]) -> None: ...
    async def reject(self, ids: Iterable[str], reason: str | None = None) -> None: ...
    async def tasks(self) -> list[dict[str, Any]]: ...
    # Attached in Python by labelport._display when labelport is imported.
    async def report(self, field: str | None = None, *, progress: _Progress = False) -> Any:
        """As ``Batch.report``: the records read asynchronously."""

@final
class AsyncJob:
    @property
    def id(self) -> str: ...
    @property
    def batch_id(self) -> str: ...
    async def status(self) -> dict[str, Any]: ...
    async def wait(self, timeout: float | None = None, *, poll_interval: float = 1.0) -> dict[str, Any]: ...
    def failures(self) -> list[dict[str, Any]]: ...

@final
class AsyncStream(AsyncIterator[_Envelope]):
    """``async for`` over results or records: one await per page, not per record."""

    def __aiter__(self) -> AsyncStream: ...
    async def __anext__(self) -> _Envelope: ...
    @property
    def watermark(self) -> str | None: ...
    async def to_list(self) -> list[_Envelope]: ...
    async def to_jsonl(self, path: str | PathLike[str]) -> int:
        """Write the remaining items as JSON lines, page by page; returns how many were written."""
    async def to_pandas(
        self, flatten: bool = False, *, key_type: Any = None, progress: _Progress = None
    ) -> Any:
        """The remaining results as a ``pandas.DataFrame``; as ``ResultStream.to_pandas``."""
    async def to_polars(
        self, flatten: bool = False, *, key_type: Any = None, progress: _Progress = None
    ) -> Any:
        """The remaining results as a ``polars.DataFrame``; as ``ResultStream.to_pandas``."""
    async def to_arrow(
        self, flatten: bool = False, *, key_type: Any = None, progress: _Progress = None
    ) -> Any:
        """The remaining results as a ``pyarrow.Table``; as ``ResultStream.to_pandas``."""
    async def to_parquet(
        self, path: str | PathLike[str], *, flatten: bool = True, progress: _Progress = None
    ) -> int:
        """As ``ResultStream.to_parquet``: spooled as pages arrive, written on a worker thread."""
    async def to_csv(
        self, path: str | PathLike[str], *, flatten: bool = True, progress: _Progress = None
    ) -> int:
        """As ``ResultStream.to_csv``: spooled as pages arrive, written on a worker thread."""
    async def _next_page(self) -> list[Any] | None: ...
    def close(self) -> None: ...

@final
class Ready:
    """An awaitable that is already done: what ``AsyncStream.__anext__`` returns while a page is handed out."""

    def __await__(self) -> Ready: ...
    def __iter__(self) -> Ready: ...
    def __next__(self) -> None: ...

# Unpickling (src/py/spec.rs, client.rs, batch.rs): what ``__reduce__`` of Client, Batch, AsyncClient, AsyncBatch
# and ClientSpec names; ``asynchronous=True`` rebuilds the async face.
def _spec_from_state(state: dict[str, Any]) -> ClientSpec: ...
@overload
def _rebuild_client(spec: ClientSpec, asynchronous: Literal[False] = False) -> Client: ...
@overload
def _rebuild_client(spec: ClientSpec, asynchronous: Literal[True]) -> AsyncClient: ...
@overload
def _rebuild_batch(
    spec: ClientSpec,
    id: str,
    name: str | None,
    created_at: str | None,
    raw: Any,
    asynchronous: Literal[False] = False,
) -> Batch: ...
@overload
def _rebuild_batch(
    spec: ClientSpec, id: str, name: str | None, created_at: str | None, raw: Any, asynchronous: Literal[True]
) -> AsyncBatch: ...
def _ledger(vendor: str) -> str: ...
def vendors() -> list[str]:
    """The vendors labelport supports, by name (each has an adapter and a sandbox)."""

def reset_log_cache() -> None:
    """Call after changing the level of a ``labelport`` logger: Rust caches Python's logging levels."""

def _debug_panic(place: str) -> None:
    """Internal, tests only: panics on purpose in a bridge ("sync", "stream", "producer"); raises LabelportError."""

def _debug_panic_async() -> Awaitable[None]:
    """Internal, tests only: an awaitable that panics on purpose in the async bridge; raises LabelportError."""

def _stop_runtime_at_exit() -> None:
    """Internal: stops labelport's runtime; registered with ``atexit`` so no worker thread enters a finalizing
    interpreter. Calls made afterwards raise LabelportError (code ``interpreter_exiting``)."""

def _set_fast_pages(on: bool) -> bool:
    """Internal, tests only: ``False`` sends every page of results to labelport's own decoder instead of
    ``orjson.loads`` (``True`` back); returns the previous setting."""

def _fast_pages_available() -> bool:
    """Internal: whether ``orjson`` is importable (pages of results are read with it when it is)."""

def _fast_pages_counts() -> tuple[int, int]:
    """Internal, tests only: pages of results read so far by orjson and by labelport's own decoder."""

# ---------------------------------------------------------------------------------------------------------------------
# The sandbox server (src/py/sandbox.rs); users call labelport.sandbox.start(), which wraps this.

@final
class SandboxServer:
    def __new__(
        cls,
        vendor: str,
        *,
        seed: int = 0,
        complete_after: float = 0.0,
        exception_rate: float = 0.0,
        faults: Mapping[str, float] | None = None,
        latency: float | None = None,
        port: int = 0,
        track_pids: bool = False,
        record_wire: bool = False,
        dialect: Mapping[str, bool | int | str] | None = None,
    ) -> SandboxServer: ...
    @property
    def url(self) -> str: ...
    @property
    def vendor(self) -> str: ...
    @property
    def project(self) -> str: ...
    @property
    def credentials(self) -> dict[str, str]: ...
    def stats(self) -> dict[str, Any]: ...
    def advance(self, seconds: float) -> None: ...
    def expire_tokens(self) -> None: ...
    @staticmethod
    def dialect_settings(vendor: str) -> list[dict[str, Any]]: ...
    def stop(self) -> None: ...

"""Airflow 3 tasks for labelport (``pip install "labelport[airflow]"``): a hook, operators to create or get a
batch, upload into it and write its results, and a deferrable sensor that waits for a batch without holding a
worker slot::

    from labelport.airflow import (LabelportCreateBatchOperator, LabelportUploadOperator,
                                   LabelportBatchSensor, LabelportResultsOperator)

    batch = LabelportCreateBatchOperator(task_id="batch", name="cars-{{ ds }}")
    upload = LabelportUploadOperator(task_id="upload", batch_id=batch.output, records="/data/cars.parquet",
                                     key="image_id")
    wait = LabelportBatchSensor(task_id="wait", batch_id=batch.output, poll_interval=60)
    results = LabelportResultsOperator(task_id="results", batch_id=batch.output,
                                       path="/data/labels-{{ ts_nodash }}.parquet")
    upload >> wait >> results

**The connection** (type ``labelport``, default id ``labelport_default``) serves every vendor: ``extra`` names
the ``vendor`` (and may carry client options: ``{"vendor": "sama", "timeout": 60}``); ``schema`` is the
project (or ``extra["project"]``); ``host`` the base URL (left empty: the vendor's own API). ``login`` and
``password`` are the vendor's credentials in the order it names them: Alegion ``username``/``password``,
TaskMonk ``client_id``/``client_secret``; a vendor with one secret (Playment and Sama ``api_key``, Deepen
``api_token``) takes it from ``password``. A credential may also be given in ``extra`` by its name.

**Failures**: bad input, refused credentials, a batch that does not exist, an operation the vendor lacks
(``InvalidInput``, ``AuthError``, ``NotFound``, ``DuplicateRecord``, ``UnsupportedOperation``) fail the task at once
(``AirflowFailException``: a retry cannot fix them); anything the vendor or the network did (``VendorError``,
``RateLimited``, ``Timeout``, ``Stalled``) fails it retryably, and the task's ``retries`` apply. Uploads are
idempotent by key, so a retried upload sends nothing twice.

**The sensor** defers at once to ``LabelportBatchTrigger``, which waits on the triggerer with
``labelport.AsyncClient`` (``await batch.wait()``: native coroutines, no thread). The trigger serializes the
connection id, the batch id and the poll interval, never a credential: it reads the connection itself.

**The results** operator writes a batch's finished results to ``path`` (``.jsonl``, ``.csv`` or
``.parquet``, or ``format=``), only those completed since the last run: the watermark
(``ResultStream.watermark``) is kept in the Airflow Variable ``labelport_watermark__<conn id>__<batch id>``,
written once the file is complete (a failed run leaves it, and its retry writes the same results again).
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from airflow.sdk import BaseHook, BaseOperator, BaseSensorOperator, Connection, Variable, XComArg
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from labelport._labelport import (
    AsyncClient,
    AuthError,
    Client,
    DuplicateRecord,
    InvalidInput,
    LabelportError,
    NotFound,
    UnsupportedOperation,
    vendors,
)

__all__ = [
    "DEFAULT_CONN_ID",
    "LabelportBatchSensor",
    "LabelportBatchTrigger",
    "LabelportCreateBatchOperator",
    "LabelportHook",
    "LabelportResultsOperator",
    "LabelportUploadOperator",
    "client_arguments",
    "credential_names",
    "watermark_variable",
]

DEFAULT_CONN_ID = "labelport_default"

#: What a retry cannot fix: these fail the task at once, whatever its ``retries``.
PERMANENT: tuple[type[LabelportError], ...] = (
    InvalidInput,
    AuthError,
    NotFound,
    DuplicateRecord,
    UnsupportedOperation,
)


def _describe(err: BaseException) -> str:
    # labelport's messages name no secret (README, "Errors"); the class says what kind of failure it was.
    return f"{type(err).__name__}: {err}"


@contextmanager
def _failures() -> Iterator[None]:
    """Permanent labelport errors become ``AirflowFailException``; the rest propagate and are retried."""
    try:
        yield
    except PERMANENT as e:
        raise AirflowFailException(_describe(e)) from e


# ---------------------------------------------------------------------------------------------------------------------
# The hook


_CREDENTIAL_NAMES: dict[str, tuple[str, ...]] = {}


def credential_names(vendor: str) -> tuple[str, ...]:
    """``vendor``'s credential names in its own order (Alegion: ``username``, ``password``), as its
    ``capabilities`` give them. Read from a client built offline with placeholders: building one names the
    first credential missing (``AuthError.field``) and sends nothing."""
    if vendor in _CREDENTIAL_NAMES:
        return _CREDENTIAL_NAMES[vendor]
    given: dict[str, Any] = {}
    for _ in range(8):
        try:
            client = Client(vendor, project="1", base_url="http://127.0.0.1:9", **given)
        except AuthError as e:
            if not e.field or e.field in given:
                raise
            given[e.field] = "-"
            continue
        names = tuple(client.capabilities["credentials"])
        client.close()
        _CREDENTIAL_NAMES[vendor] = names
        return names
    raise LabelportError(f"{vendor}: could not tell its credential names")


def client_arguments(conn: Connection) -> tuple[str, dict[str, Any]]:
    """The vendor and the ``Client`` keywords a ``labelport`` connection gives (see the module's help)."""
    extra = dict(conn.extra_dejson or {})
    vendor = extra.pop("vendor", None)
    if not vendor or vendor not in vendors():
        err = InvalidInput(
            f"the Airflow connection {conn.conn_id!r} needs extra.vendor, one of {', '.join(vendors())}"
            + (f" (not {vendor!r})" if vendor else "")
        )
        err.field = "vendor"
        raise err
    kwargs: dict[str, Any] = extra
    if conn.schema:
        kwargs["project"] = conn.schema
    if conn.host:
        host = conn.host
        if "://" not in host:
            host = f"https://{host}" + (f":{conn.port}" if conn.port else "")
        kwargs["base_url"] = host
    names = credential_names(vendor)
    given = [v for v in (conn.login, conn.password) if v]
    if len(names) == 1 and conn.password:
        kwargs.setdefault(names[0], conn.password)
    elif len(names) == 2:
        for name, value in zip(names, (conn.login, conn.password), strict=True):
            if value:
                kwargs.setdefault(name, value)
    elif given:
        err = InvalidInput(
            f"the Airflow connection {conn.conn_id!r}: give {vendor}'s credentials in extra by name "
            f"({', '.join(names)})"
        )
        err.field = "login"
        raise err
    return str(vendor), kwargs


class LabelportHook(BaseHook):
    """A labelport ``Client`` (or ``AsyncClient``) from an Airflow connection of type ``labelport``."""

    conn_name_attr = "labelport_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "labelport"
    hook_name = "labelport"

    def __init__(self, labelport_conn_id: str = DEFAULT_CONN_ID, **client_options: Any) -> None:
        super().__init__()
        self.labelport_conn_id = labelport_conn_id
        self.client_options = client_options

    def _arguments(self, conn: Connection) -> tuple[str, dict[str, Any]]:
        vendor, kwargs = client_arguments(conn)
        kwargs.update(self.client_options)
        return vendor, kwargs

    def get_conn(self) -> Client:
        """A ``Client`` for the connection."""
        with _failures():
            vendor, kwargs = self._arguments(self.get_connection(self.labelport_conn_id))
            return Client(vendor, **kwargs)

    async def aget_async_client(self) -> AsyncClient:
        """An ``AsyncClient`` for the connection, read without blocking the event loop (triggers)."""
        vendor, kwargs = self._arguments(await self.aget_connection(self.labelport_conn_id))
        return AsyncClient(vendor, **kwargs)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["port"],
            "relabeling": {
                "host": "Base URL (empty: the vendor's API)",
                "schema": "Project",
                "login": "Login (Alegion username, TaskMonk client id)",
                "password": "Secret (password, client secret, API key or token)",
            },
            "placeholders": {"extra": '{"vendor": "sama"}'},
        }


# ---------------------------------------------------------------------------------------------------------------------
# Operators


class _LabelportOperator(BaseOperator):
    def __init__(self, *, labelport_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.labelport_conn_id = labelport_conn_id

    @property
    def hook(self) -> LabelportHook:
        return LabelportHook(self.labelport_conn_id)


class LabelportCreateBatchOperator(_LabelportOperator):
    """Creates the batch ``name``, or gets it when it exists already (``exist_ok``, default True: re-runs are
    safe); returns its id (the XCom downstream tasks take as ``batch_id``). ``batch_options``: the vendor's
    ``create_batch`` options."""

    template_fields: Sequence[str] = ("name",)

    def __init__(
        self,
        *,
        name: str,
        exist_ok: bool = True,
        batch_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.exist_ok = exist_ok
        self.batch_options = batch_options or {}

    def execute(self, context: Any) -> str:
        with _failures():
            batch = self.hook.get_conn().create_batch(self.name, exist_ok=self.exist_ok, **self.batch_options)
        self.log.info("labelport batch %s (%s)", batch.id, batch.name)
        return batch.id


class LabelportUploadOperator(_LabelportOperator):
    """Uploads ``records`` into the batch ``batch_id``: a path to a ``.jsonl``, ``.csv`` or ``.parquet`` file,
    or a list of dicts (an upstream task's XCom: pass its ``.output``). Idempotent by ``key``: records the batch
    holds already are skipped. Returns the job's status (``state``, ``total``, ``done``, ``failed``,
    ``skipped``)."""

    template_fields: Sequence[str] = ("batch_id", "records", "key")

    def __init__(
        self,
        *,
        batch_id: str | XComArg,
        records: Any,
        key: str | None = None,
        upload_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.batch_id = batch_id
        self.records = records
        self.key = key
        self.upload_options = upload_options or {}

    def execute(self, context: Any) -> dict[str, Any]:
        records = self.records
        if isinstance(records, str) and not os.path.isfile(records):
            raise AirflowFailException(f"InvalidInput: no file to upload at {records!r}")
        with _failures():
            batch = self.hook.get_conn().batch(str(self.batch_id))
            job = batch.upload(records, key=self.key, progress=False, **self.upload_options)
            status = job.status()
        self.log.info("labelport upload into %s: %s", self.batch_id, status)
        return status


class LabelportResultsOperator(_LabelportOperator):
    """Writes the results of ``batch_id`` completed since this operator's last successful run to ``path``
    (``format``: ``jsonl``, ``csv`` or ``parquet``; default by the name's suffix, else ``jsonl``). The
    watermark lives in the Variable ``watermark_variable(conn_id, batch_id)``. Returns ``{"path", "count",
    "since", "watermark"}``. ``flatten`` (csv, parquet): ``input`` and ``output`` spread into columns."""

    template_fields: Sequence[str] = ("batch_id", "path")

    def __init__(
        self,
        *,
        batch_id: str | XComArg,
        path: str,
        format: str | None = None,
        flatten: bool = True,
        include_raw: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.batch_id = batch_id
        self.path = path
        self.format = format
        self.flatten = flatten
        self.include_raw = include_raw

    def execute(self, context: Any) -> dict[str, Any]:
        from labelport.cli import _output
        from labelport.cli._batches import _suffix_format

        fmt = self.format or _suffix_format(str(self.path)) or "jsonl"
        if fmt not in ("jsonl", "csv", "parquet"):
            raise AirflowFailException(f"InvalidInput: format must be jsonl, csv or parquet, not {fmt!r}")
        variable = watermark_variable(self.labelport_conn_id, str(self.batch_id))
        since = Variable.get(variable, default=None) or None
        with _failures():
            batch = self.hook.get_conn().batch(str(self.batch_id))
            stream = batch.results(since=since, include_raw=self.include_raw, progress=False)
            path = str(self.path)
            if fmt == "jsonl":
                with _output.spooled(path, sys.stdout) as tmp:
                    count = stream.to_jsonl(tmp)
            else:
                with _output.spooled(path, sys.stdout) as tmp:
                    writer = stream.to_csv if fmt == "csv" else stream.to_parquet
                    count = writer(tmp, flatten=self.flatten, progress=False)
        watermark = stream.watermark or since
        if watermark:
            Variable.set(variable, watermark)
        self.log.info("labelport: %d results since %s into %s; watermark %s", count, since, path, watermark)
        return {"path": path, "count": count, "since": since, "watermark": watermark}


def watermark_variable(conn_id: str, batch_id: str) -> str:
    """The Airflow Variable holding the results watermark of ``batch_id`` read through ``conn_id``."""
    return f"labelport_watermark__{conn_id}__{batch_id}"


# ---------------------------------------------------------------------------------------------------------------------
# The deferrable sensor and its trigger


class LabelportBatchTrigger(BaseTrigger):
    """Waits on the triggerer until every record of a batch is finished, with ``labelport.AsyncClient``. Fires
    one event: ``{"status": "done", "batch_id", "counts", "polls"}``, or ``{"status": "error", "batch_id",
    "error", "message", "retryable"}``."""

    def __init__(self, labelport_conn_id: str, batch_id: str, poll_interval: float = 60.0) -> None:
        super().__init__()
        self.labelport_conn_id = labelport_conn_id
        self.batch_id = batch_id
        self.poll_interval = float(poll_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        # Ids and the interval only: the credentials stay in the connection, which run() reads itself.
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "labelport_conn_id": self.labelport_conn_id,
                "batch_id": self.batch_id,
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        polls = 0

        def counted(status: dict[str, Any]) -> None:
            nonlocal polls
            polls += 1

        try:
            client = await LabelportHook(self.labelport_conn_id).aget_async_client()
            try:
                batch = await client.batch(self.batch_id)
                counts = await batch.wait(poll_interval=self.poll_interval, progress=counted)
            finally:
                await client.close()
        except LabelportError as e:
            yield TriggerEvent(
                {
                    "status": "error",
                    "batch_id": self.batch_id,
                    "error": type(e).__name__,
                    "message": str(e),
                    "retryable": not isinstance(e, PERMANENT),
                }
            )
            return
        yield TriggerEvent({"status": "done", "batch_id": self.batch_id, "counts": counts, "polls": polls})


class LabelportBatchSensor(BaseSensorOperator):
    """Waits until every record of ``batch_id`` is finished. Deferrable (the default): the wait runs on the
    triggerer (``LabelportBatchTrigger``), holding no worker slot; ``deferrable=False`` pokes
    ``batch.status()`` from a worker instead. Returns the trigger's event (``counts``: the batch's final status).
    ``poll_interval`` (seconds, templated; default ``poke_interval``, 60): between the trigger's status reads.
    ``timeout`` (seconds, the sensor's own) bounds the wait either way."""

    template_fields: Sequence[str] = ("batch_id", "poll_interval")

    def __init__(
        self,
        *,
        batch_id: str | XComArg,
        labelport_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float | str | None = None,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 60.0)
        super().__init__(**kwargs)
        self.batch_id = batch_id
        self.labelport_conn_id = labelport_conn_id
        self.poll_interval = poll_interval
        self.deferrable = deferrable

    def _interval(self) -> float:
        if self.poll_interval is None or self.poll_interval == "":
            return float(self.poke_interval)
        try:
            interval = float(self.poll_interval)
        except (TypeError, ValueError):
            interval = -1.0
        if not 0 < interval <= 86_400:
            raise AirflowFailException(
                f"InvalidInput: poll_interval must be a number of seconds in (0, 86400], not {self.poll_interval!r}"
            )
        return interval

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            self.poke_interval = self._interval()
            return super().execute(context)
        self.defer(
            trigger=LabelportBatchTrigger(self.labelport_conn_id, str(self.batch_id), self._interval()),
            method_name="execute_complete",
            timeout=_dt.timedelta(seconds=self.timeout) if self.timeout else None,
        )

    def poke(self, context: Any) -> bool:
        with _failures():
            status = LabelportHook(self.labelport_conn_id).get_conn().batch(str(self.batch_id)).status()
        return bool(status["done"])

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        """Resumes the task with the trigger's event."""
        if event.get("status") == "done":
            self.log.info("labelport batch %s finished: %s", self.batch_id, event.get("counts"))
            return event
        message = f"{event.get('error')}: {event.get('message')}"
        if event.get("retryable"):
            raise AirflowException(message)
        raise AirflowFailException(message)

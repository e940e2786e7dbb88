"""A dlt source: a batch's labels into any dlt destination (DuckDB, BigQuery, Snowflake, Postgres, ...),
incrementally (``pip install "labelport[dlt]"``)::

    import dlt
    from labelport.dlt import labelport_source

    pipeline = dlt.pipeline("labels", destination="duckdb", dataset_name="labels")
    pipeline.run(labelport_source(vendor="sama", batches=["cars-2026-11"]))   # credentials: dlt secrets

Configuration and secrets come through dlt's own config providers: ``.dlt/config.toml`` ::

    [sources.labelport]
    vendor = "sama"
    project = "117"
    batches = ["cars-2026-11"]

and ``.dlt/secrets.toml`` (or ``SOURCES__LABELPORT__CREDENTIALS='{"api_key": "..."}'`` in the environment) ::

    [sources.labelport.credentials]
    api_key = "..."

The credentials are the vendor's, named as ``labelport.Client`` takes them (``username``/``password``,
``client_id``/``client_secret``, ``api_key``, ``api_token``); left out, ``Client`` reads labelport's own
``LABELPORT_<VENDOR>_<NAME>`` variables or profile.

Two resources, both written with ``merge`` on ``(vendor, batch_id, key)``: a record read again replaces its row.

- ``results`` (selected): each batch's finished results, read with ``batch.results(since=watermark)``. The
  watermark is labelport's own (``ResultStream.watermark``, which vendors without a usable completion time still
  fill correctly), kept per batch in the resource's dlt state, and stored only once a batch's results were read
  to the end: a run that fails midway leaves the watermark where it was, and its re-run reads the same results
  again (merged, not duplicated). Playment's whole-second completion times make a result of the last second
  come again on the next run (docs/contract.md): merged, it replaces its own row.
- ``records`` (not selected: ``source.with_resources("results", "records")``): every record of each batch with
  its current status. A record's status changes in place, so there is no watermark: each run reads them all,
  and the merge keeps one row per record.

``input``, ``output`` (and ``raw`` with ``include_raw=True``) are JSON columns; ``created_at`` and
``completed_at`` are timestamps.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import dlt
from dlt.sources import DltResource

from labelport._labelport import Client, InvalidInput

__all__ = ["PAGE", "labelport_source"]

#: Envelopes per item dlt receives (a list of this many dicts at most).
PAGE = 1_000

_KEY = ("vendor", "batch_id", "key")
_COLUMNS: dict[str, Any] = {
    "input": {"data_type": "json"},
    "output": {"data_type": "json", "nullable": True},
    "raw": {"data_type": "json", "nullable": True},
    "created_at": {"data_type": "timestamp", "nullable": True},
    "completed_at": {"data_type": "timestamp", "nullable": True},
}


def _pages(envelopes: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    page: list[dict[str, Any]] = []
    for envelope in envelopes:
        page.append(envelope)
        if len(page) >= PAGE:
            yield page
            page = []
    if page:
        yield page


def _batch_ids(client: Client, batches: list[str] | str | None) -> list[str]:
    if batches is None:
        return [b.id for b in client.batches()]
    if isinstance(batches, str):
        batches = [batches]
    if not isinstance(batches, (list, tuple)) or not all(isinstance(b, str) and b for b in batches):
        err = InvalidInput("labelport_source: batches must be a list of batch ids (non-empty strings)")
        err.field = "batches"
        raise err
    return list(batches)


@dlt.source(name="labelport")
def labelport_source(
    vendor: str = dlt.config.value,
    batches: list[str] | None = None,
    project: str | None = None,
    base_url: str | None = None,
    credentials: dict[str, Any] | None = dlt.secrets.value,
    client_options: dict[str, Any] | None = None,
    include_raw: bool = False,
    record_status: list[str] | None = None,
) -> Any:
    """The ``results`` and ``records`` resources of ``batches`` (batch ids; ``None``: every batch the project
    has, where the vendor can list them). ``credentials``: the vendor's, by name (a dlt secret);
    ``client_options``: other ``labelport.Client`` keywords (``timeout``, ``rate_limit``, vendor options).
    ``record_status``: the statuses the ``records`` resource keeps (default: all)."""
    kwargs: dict[str, Any] = dict(client_options or {})
    kwargs.update(credentials or {})
    if project is not None:
        kwargs["project"] = str(project)
    if base_url is not None:
        kwargs["base_url"] = base_url
    client = Client(vendor, **kwargs)
    ids = _batch_ids(client, batches)

    @dlt.resource(name="results", write_disposition="merge", primary_key=_KEY, columns=_COLUMNS)
    def results() -> Iterator[list[dict[str, Any]]]:
        marks: dict[str, str] = dlt.current.resource_state().setdefault("watermarks", {})
        for batch_id in ids:
            since = marks.get(batch_id)
            stream = client.batch(batch_id).results(since=since, include_raw=include_raw, progress=False)
            yield from _pages(stream)
            # Read to the end: only now is the stream's watermark the one to start from next time.
            watermark = stream.watermark or since
            if watermark:
                marks[batch_id] = watermark

    @dlt.resource(
        name="records",
        write_disposition="merge",
        primary_key=_KEY,
        columns=_COLUMNS,
        selected=False,
    )
    def records() -> Iterator[list[dict[str, Any]]]:
        for batch_id in ids:
            stream = client.batch(batch_id).records(
                status=record_status, include_raw=include_raw, progress=False
            )
            yield from _pages(stream)

    resources: list[DltResource] = [results(), records()]
    return resources

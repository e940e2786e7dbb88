"""A PySpark data source (Spark 4 Python Data Source API) named ``labelport``: executors read results and
upload records themselves, in parallel; the driver only plans.

    import labelport.spark
    labelport.spark.register(spark)

    results = (spark.read.format("labelport")
               .option("vendor", "alegion").option("project", "<workflow id>")
               .option("batch", "<batch id>").load())

    (df.write.format("labelport")
       .option("vendor", "alegion").option("project", "<workflow id>")
       .option("batch", "<batch id>").option("key", "image_id")
       .option("rate_limit", "20")                      # requests per second for the whole job
       .mode("append").save())

Options: ``vendor`` (required), ``project``, ``base_url``, ``timeout``, ``max_retries``, ``rate_limit``,
``allow_insecure``, the vendor's client options by name, and its credentials by name, though credentials in
options are visible in the query plan and the Spark UI: prefer ``LABELPORT_<VENDOR>_<NAME>`` environment
variables on the executors (``spark.executorEnv.LABELPORT_ALEGION_PASSWORD``, or your cluster's secret store).

Reading: ``batch`` (a batch id), ``include_raw``, ``pages_per_partition`` (default 4). The results split into
partitions by page ranges where the vendor gives a total (Alegion), else one partition. The default schema is
``id, batch_id, key, status, input, output, created_at, completed_at, vendor`` with ``input`` and ``output`` as
JSON strings; give ``.schema(...)`` to pick columns or read ``input``/``output`` as structs or maps, and
``created_at``/``completed_at`` as timestamps.

Writing (``mode("append")``): ``batch`` (an id) or ``batch_name`` (created on the driver if missing), ``key``
(the column that keys each record; without it a hash of the record's content), ``chunk_size`` (records per
upload call, default 10,000), ``on_error`` (``raise`` or ``collect``), ``concurrency`` (tasks running at once,
default the ``register(spark)`` session's default parallelism): each task takes ``rate_limit / concurrency``
(without ``rate_limit``, the vendor's documented limit on its real host: ``ClientSpec.pacing``).
Each task uploads its partition with keys, reconciled against the vendor, so a retried task creates nothing
twice. Keep speculative execution off for these writes (two attempts of one task running at once could both
send a record the vendor does not yet hold).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Sequence
from typing import Any

from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    DataSourceWriter,
    InputPartition,
    WriterCommitMessage,
)
from pyspark.sql.types import (
    ArrayType,
    MapType,
    StringType,
    StructType,
    TimestampNTZType,
    TimestampType,
)

from labelport import _distributed as _d
from labelport._labelport import InvalidInput

__all__ = ["LabelportDataSource", "register", "RESULT_SCHEMA"]

#: The default schema of ``spark.read.format("labelport")``.
RESULT_SCHEMA = (
    "id string, batch_id string, key string, status string, input string, output string, "
    "created_at string, completed_at string, vendor string"
)


def register(spark: Any, *, concurrency: int | None = None) -> type[LabelportDataSource]:
    """Registers the ``labelport`` data source with ``spark`` and returns the registered class. ``concurrency``:
    how many write tasks run at once, the divisor of ``rate_limit`` (default: the session's default parallelism,
    where the session has one)."""
    if concurrency is None:
        try:
            concurrency = int(spark.sparkContext.defaultParallelism)
        except Exception:  # Spark Connect sessions have no SparkContext
            concurrency = None
    source: type[LabelportDataSource] = type(
        "LabelportDataSource", (LabelportDataSource,), {"default_concurrency": concurrency}
    )
    spark.dataSource.register(source)
    return source


class LabelportDataSource(DataSource):
    """``spark.read.format("labelport")`` and ``df.write.format("labelport")``: see the module's help."""

    default_concurrency: int | None = None

    @classmethod
    def name(cls) -> str:
        return "labelport"

    def schema(self) -> str:
        return RESULT_SCHEMA

    def reader(self, schema: StructType) -> DataSourceReader:
        return _Reader(dict(self.options), schema)

    def writer(self, schema: StructType, overwrite: bool) -> DataSourceWriter:
        if overwrite:
            raise InvalidInput(
                'labelport writes with mode("append") only: records already at the vendor are skipped by key, '
                "never overwritten"
            )
        return _Writer(dict(self.options), self.default_concurrency)


class _Pages(InputPartition):
    def __init__(self, pages: tuple[int, int | None] | None) -> None:
        super().__init__(pages)
        self.pages = pages


def _batch_id(options: dict[str, Any]) -> str:
    batch = options.get("batch")
    if not batch:
        raise InvalidInput('labelport needs the option "batch" (a batch id) to read results')
    return str(batch)


class _Reader(DataSourceReader):
    """Plans on the driver (one count request), reads a page range on each executor."""

    def __init__(self, options: dict[str, Any], schema: StructType) -> None:
        self.spec = _d.spec_from_options(options)
        self.batch_id = _batch_id(options)
        self.include_raw = _d._truthy(options.get("include_raw", False))
        self.pages_per_partition = int(options.get("pages_per_partition", _d.DEFAULT_PAGES_PER_PARTITION))
        self.schema = schema

    def partitions(self) -> Sequence[InputPartition]:
        batch = _d.worker_batch(self.spec, self.batch_id)
        return [_Pages(p) for p in _d.plan(batch, self.pages_per_partition)]

    def read(self, partition: InputPartition) -> Iterator[tuple[Any, ...]]:
        pages = partition.pages if isinstance(partition, _Pages) else None
        batch = _d.worker_batch(self.spec, self.batch_id)
        converters = [(f.name, _converter(f.dataType)) for f in self.schema.fields]
        for envelope in _d.read_range(batch, pages, self.include_raw):
            yield tuple(convert(envelope.get(name)) for name, convert in converters)


def _converter(data_type: Any) -> Any:
    """How an envelope value becomes the column's type: JSON text for strings, dicts for structs and maps,
    datetimes for timestamps."""
    if isinstance(data_type, StringType):
        return lambda v: v if v is None or isinstance(v, str) else _d.to_json(v)
    if isinstance(data_type, (TimestampType, TimestampNTZType)):
        return _timestamp
    if isinstance(data_type, (StructType, MapType, ArrayType)):
        return lambda v: v
    return lambda v: v


def _timestamp(value: Any) -> _dt.datetime | None:
    if value is None or isinstance(value, _dt.datetime):
        return value
    return _dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


class _Writer(DataSourceArrowWriter):
    """Created on the driver (where ``batch_name`` is resolved to an id once); each executor task uploads its
    partition's Arrow batches in chunks, with keys."""

    def __init__(self, options: dict[str, Any], default_concurrency: int | None) -> None:
        self.spec = _d.spec_from_options(options)
        self.key = options.get("key")
        self.chunk_size = int(options.get("chunk_size", _d.DEFAULT_CHUNK_SIZE))
        self.on_error = str(options.get("on_error", "raise"))
        concurrency = options.get("concurrency")
        self.concurrency = int(concurrency) if concurrency else default_concurrency
        batch_id = options.get("batch")
        if not batch_id:
            name = options.get("batch_name")
            if not name:
                raise InvalidInput('labelport needs the option "batch" (an id) or "batch_name" to write')
            batch_id = _d.client_for(self.spec).create_batch(str(name), exist_ok=True).id
        self.batch_id = str(batch_id)

    def write(self, iterator: Iterator[Any]) -> WriterCommitMessage:
        import pyarrow as pa

        spec = _d.task_spec(self.spec, self.concurrency)
        batch = _d.worker_batch(spec, self.batch_id)

        def chunks() -> Iterator[Any]:
            held: list[Any] = []
            rows = 0
            for record_batch in iterator:
                held.append(record_batch)
                rows += record_batch.num_rows
                if rows >= self.chunk_size:
                    yield pa.Table.from_batches(held)
                    held, rows = [], 0
            if rows:
                yield pa.Table.from_batches(held)

        return _Committed(_d.upload_chunks(batch, chunks(), self.key, on_error=self.on_error))

    def commit(self, messages: list[WriterCommitMessage | None]) -> None:
        failures = [f for m in messages if isinstance(m, _Committed) for f in m.counts["failures"]]
        if failures and self.on_error == "raise":
            raise InvalidInput(f"the vendor refused {len(failures)} records, e.g. {failures[0]}")


class _Committed(WriterCommitMessage):
    """What one task did: records sent, skipped (already at the vendor), refused; and its process id."""

    def __init__(self, counts: dict[str, Any]) -> None:
        self.counts = counts

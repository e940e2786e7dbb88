"""The Spark data source in local mode with task retries (``local[2,3]``) against the Alegion sandbox: 20,000
records written from the executors and read back in parallel page ranges, each exactly once, through a task that
fails and is retried. tests/test_spark_cluster.py runs the same round trip (``write_then_read``) on a standalone
cluster of separate processes. CI installs pyspark (tests/requirements-distributed.txt): without it these tests
fail."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import labelport as lp
import pytest

N = 20_000
PARTITIONS = 8


@pytest.fixture(scope="module")
def sandbox() -> Iterator[lp.sandbox.Sandbox]:
    """The shared Alegion sandbox, counting requests per client process (which workers sent them)."""
    with lp.sandbox.start("alegion", seed=11, track_pids=True) as sb:
        yield sb


@pytest.fixture(scope="module")
def spark(sandbox: lp.sandbox.Sandbox) -> Iterator[object]:
    # Executors (python workers forked from the JVM's daemon) take credentials from their environment.
    saved = dict(os.environ)
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    for name, value in sandbox.credentials.items():
        os.environ[f"LABELPORT_ALEGION_{name.upper()}"] = value
    import labelport.spark
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2,3]")
        .appName("labelport-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "500")
        .getOrCreate()
    )
    source = labelport.spark.register(session)
    assert source.default_concurrency == 2  # local[2,3]: two tasks at once share a rate limit
    yield session
    session.stop()
    os.environ.clear()
    os.environ.update(saved)


def _options(sandbox: lp.sandbox.Sandbox, batch_id: str) -> dict[str, str]:
    # No credentials among the options: the executors resolve them from LABELPORT_ALEGION_*.
    return {"vendor": "alegion", "project": sandbox.project, "base_url": sandbox.url, "batch": batch_id}


def _pids_since(sandbox: lp.sandbox.Sandbox, before: dict[str, int]) -> dict[str, int]:
    now = sandbox.stats()["requests_by_pid"]
    return {p: n - before.get(p, 0) for p, n in now.items() if n - before.get(p, 0) > 0}


def write_then_read(
    spark,
    sandbox: lp.sandbox.Sandbox,
    client: lp.Client,
    tmp_path,
    *,
    n: int,
    partitions: int,
    chunk_size: int,
    fail_after: int,
    pages_per_partition: int,
) -> dict[str, dict[str, int]]:
    """``n`` records written from the executors and read back, each exactly once, through a task that fails after
    ``fail_after`` rows of its partition (and is retried) and a vendor that refuses an import it has already
    stored. Returns the client processes that sent the write's and the read's requests (pid: requests), the
    driver's own left out. Also run by tests/test_spark_cluster.py on a standalone cluster."""
    batch = client.create_batch(f"spark-{uuid.uuid4().hex[:8]}")
    marker = tmp_path / "failed-once"
    per_partition = n // partitions

    def fail_once(batches):
        # An executor failure mid-partition, after part of it was uploaded: the first attempt of partition 5.
        from pyspark import TaskContext

        ctx = TaskContext.get()
        seen = 0
        for b in batches:
            yield b
            seen += b.num_rows
            if ctx.partitionId() == 5 and ctx.attemptNumber() == 0 and seen >= fail_after:
                marker.write_text(f"attempt {ctx.attemptNumber()}")
                raise RuntimeError("injected executor failure")

    df = spark.range(0, n, 1, partitions).selectExpr(
        "format_string('img-%05d', id) AS image_id",
        "concat('https://img/', id, '.jpg') AS image_url",
        "id AS n",
    )
    df = df.mapInArrow(fail_once, df.schema)
    # And the vendor refusing an import it has already stored, in partition 2: that task fails too, after the
    # vendor kept part of its records.
    refused_key = f"img-{2 * per_partition + per_partition * 6 // 25:05d}"  # img-05600 of 20,000 in 8
    sandbox.inject(method="POST", path="/import", body_contains=refused_key, status=400, commit=True)
    before = dict(sandbox.stats()["requests_by_pid"])
    writer = (
        df.write.format("labelport")
        .mode("append")
        .option("key", "image_id")
        .option("chunk_size", str(chunk_size))
    )
    for name, value in _options(sandbox, batch.id).items():
        writer = writer.option(name, value)
    writer.save()

    assert marker.read_text() == "attempt 0"
    refused = sum(
        count
        for k, count in sandbox.stats()["requests"].items()
        if k.startswith("POST") and k.endswith(" 400")
    )
    assert refused >= 1, sandbox.stats()["requests"]
    created = {k: v for k, v in sandbox.stats()["records_created"].items() if k.startswith("img-")}
    assert len(created) == n
    assert set(created.values()) == {1}, {k: v for k, v in created.items() if v != 1}
    writers = _pids_since(sandbox, before)
    writers.pop(str(os.getpid()), None)
    writers.pop("unknown", None)
    assert len(writers) >= 2, writers

    # Read back: partitions by page ranges (pages of 1,000), fetched by the executors.
    before = dict(sandbox.stats()["requests_by_pid"])
    reader = spark.read.format("labelport").option("pages_per_partition", str(pages_per_partition))
    for name, value in _options(sandbox, batch.id).items():
        reader = reader.option(name, value)
    results = reader.load()
    pages = -(-n // 1_000)
    assert results.rdd.getNumPartitions() == -(-pages // pages_per_partition)
    assert results.columns == [
        "id",
        "batch_id",
        "key",
        "status",
        "input",
        "output",
        "created_at",
        "completed_at",
        "vendor",
    ]
    rows = results.select("key", "status", "input", "vendor").collect()
    keys = [r.key for r in rows]
    assert len(keys) == n and set(keys) == set(created)
    assert {r.status for r in rows} == {"completed"} and {r.vendor for r in rows} == {"alegion"}
    sample = next(r for r in rows if r.key == "img-00042")
    assert json.loads(sample.input) == {"image_id": "img-00042", "image_url": "https://img/42.jpg", "n": 42}
    readers = _pids_since(sandbox, before)
    readers.pop(str(os.getpid()), None)
    readers.pop("unknown", None)
    assert len(readers) >= 2, readers

    # A second run of the same write creates nothing.
    writer.save()
    assert sandbox.stats()["records_created"]["img-00042"] == 1
    assert sum(1 for k in sandbox.stats()["records_created"] if k.startswith("img-")) == n
    return {"writers": writers, "readers": readers}


def test_write_then_read_20000_records_exactly_once_through_a_failed_task(spark, sandbox, client, tmp_path):
    # 8 partitions of 2,500 in Arrow batches of 500; partition 5 fails after 1,500 rows; 20 pages read 2 a partition.
    write_then_read(
        spark,
        sandbox,
        client,
        tmp_path,
        n=N,
        partitions=PARTITIONS,
        chunk_size=500,
        fail_after=1_500,
        pages_per_partition=2,
    )


def test_read_with_a_schema_gives_structs_and_timestamps(spark, sandbox, client):
    batch = client.create_batch(f"spark-schema-{uuid.uuid4().hex[:8]}")
    batch.upload([{"image_id": f"s-{i}", "n": i} for i in range(30)], key="image_id")
    reader = spark.read.format("labelport").schema(
        "key string, input struct<image_id: string, n: bigint>, completed_at timestamp"
    )
    for name, value in _options(sandbox, batch.id).items():
        reader = reader.option(name, value)
    rows = reader.load().collect()
    assert sorted(r.key for r in rows) == sorted(f"s-{i}" for i in range(30))
    row = next(r for r in rows if r.key == "s-7")
    assert (row.input.image_id, row.input.n) == ("s-7", 7)
    assert row.completed_at is not None and row.completed_at.year >= 2020


def test_overwrite_and_missing_options_are_refused(spark, sandbox):
    df = spark.range(3).selectExpr("cast(id as string) AS k")
    with pytest.raises(Exception, match="append"):
        df.write.format("labelport").option("vendor", "alegion").option("batch", "x").mode("overwrite").save()
    with pytest.raises(Exception, match="vendor"):
        spark.read.format("labelport").option("batch", "x").load().collect()


def test_each_write_task_takes_its_share_of_the_rate_limit(spark, sandbox):
    import labelport.spark
    from labelport import _distributed

    options = {**_options(sandbox, "some-batch"), "rate_limit": "6"}
    writer = labelport.spark.LabelportDataSource(options).writer(None, False)
    assert writer.concurrency is None  # the plain class: no session told it
    writer = labelport.spark._Writer(options, 2)
    assert _distributed.task_spec(writer.spec, writer.concurrency).rate_limit == 3.0
    writer = labelport.spark._Writer({**options, "concurrency": "3"}, 2)
    assert _distributed.task_spec(writer.spec, writer.concurrency).rate_limit == 2.0


def test_a_vendors_documented_rate_limit_is_shared_out_on_its_real_host():
    from labelport import _distributed

    # Playment documents 5 requests per second; without rate_limit=, each of 4 tasks would keep to all 5.
    spec = lp.ClientSpec("playment", "proj", base_url="https://api.playment.io", api_key="k")
    assert spec.rate_limit is None and spec.pacing == 5.0
    assert _distributed.task_spec(spec, 4).rate_limit == 1.25
    assert _distributed.task_spec(spec.replace(rate_limit=0), 4).rate_limit == 0  # unpaced stays unpaced
    # A sandbox on this machine stays unpaced, and a vendor documenting no limit too.
    local = spec.replace(base_url="http://127.0.0.1:9")
    assert local.pacing is None and _distributed.task_spec(local, 4).rate_limit is None
    alegion = lp.ClientSpec("alegion", "wf", base_url="https://app.alegion.com", username="u", password="p")
    assert _distributed.task_spec(alegion, 4).rate_limit is None

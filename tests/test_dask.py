"""The Dask helpers on a ``LocalCluster`` of two worker processes against the Alegion sandbox: 20,000 records
uploaded from the workers and read back as a Dask DataFrame of page-range partitions, each exactly once. CI
installs dask (tests/requirements-distributed.txt): without it these tests fail."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import labelport as lp
import pandas as pd
import pytest

N = 20_000


@pytest.fixture(scope="module")
def sandbox() -> Iterator[lp.sandbox.Sandbox]:
    """The shared Alegion sandbox, counting requests per client process (which workers sent them)."""
    with lp.sandbox.start("alegion", seed=11, track_pids=True) as sb:
        yield sb


@pytest.fixture(scope="module")
def cluster(sandbox: lp.sandbox.Sandbox) -> Iterator[object]:
    from dask.distributed import Client, LocalCluster

    # The workers take credentials from their environment, which they inherit from this process.
    saved = dict(os.environ)
    for name, value in sandbox.credentials.items():
        os.environ[f"LABELPORT_ALEGION_{name.upper()}"] = value
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None) as lc:
        with Client(lc) as dask_client:
            yield dask_client
    os.environ.clear()
    os.environ.update(saved)


def test_upload_and_read_back_20000_records_exactly_once(cluster, sandbox, client):
    import dask.dataframe as dd
    import labelport.dask

    batch = client.create_batch(f"dask-{uuid.uuid4().hex[:8]}")
    pdf = pd.DataFrame(
        {
            "image_id": [f"dk-{i:05d}" for i in range(N)],
            "image_url": [f"https://img/{i}.jpg" for i in range(N)],
        }
    )
    ddf = dd.from_pandas(pdf, npartitions=8)
    before = dict(sandbox.stats()["requests_by_pid"])
    # The Client travels as its spec, without credentials.
    counts = labelport.dask.upload(ddf, client=client, batch=batch, key="image_id", chunk_size=1_000)
    assert sum(c["sent"] for c in counts) == N and sum(c["skipped"] for c in counts) == 0
    workers = {c["pid"] for c in counts}
    assert len(workers) == 2 and os.getpid() not in workers, workers
    now = sandbox.stats()["requests_by_pid"]
    seen = {int(p) for p, n in now.items() if p != "unknown" and n > before.get(p, 0)}
    assert workers <= seen, (workers, seen)

    created = {k: v for k, v in sandbox.stats()["records_created"].items() if k.startswith("dk-")}
    assert len(created) == N and set(created.values()) == {1}

    # Recomputing every partition (a retried or repeated job) sends nothing twice.
    again = labelport.dask.upload(
        ddf, vendor="alegion", project=sandbox.project, base_url=sandbox.url, batch=batch.id, key="image_id"
    )
    assert sum(c["skipped"] for c in again) == N and sum(c["sent"] for c in again) == 0
    after = {k: v for k, v in sandbox.stats()["records_created"].items() if k.startswith("dk-")}
    assert after == created

    results = labelport.dask.read_results(client, batch, pages_per_partition=5)
    assert results.npartitions == 4
    frame = results.compute()
    assert len(frame) == N and set(frame["key"]) == set(created)
    assert list(frame.columns) == [
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
    row = frame.set_index("key").loc["dk-00042"]
    assert json.loads(row["input"]) == {"image_id": "dk-00042", "image_url": "https://img/42.jpg"}
    assert (frame["status"] == "completed").all()


def test_arguments_are_checked(cluster, client):
    import dask.dataframe as dd
    import labelport.dask

    ddf = dd.from_pandas(pd.DataFrame({"k": ["a"]}), npartitions=1)
    with pytest.raises(TypeError, match="client"):
        labelport.dask.upload(ddf, batch="x", key="k")
    with pytest.raises(TypeError, match="Client"):
        labelport.dask.upload(ddf, client="alegion", batch="x", key="k")


def test_a_rate_limit_is_shared_by_the_partitions(cluster):
    import dask.dataframe as dd
    import labelport.dask

    # A sandbox of its own, so its peak request rate is this upload's; the credentials travel in the spec, as
    # the user asked (include_credentials=True), since the workers' environment holds another sandbox's.
    with lp.sandbox.start("alegion", seed=5, track_pids=True) as sb:
        spec = sb.client(rate_limit=16.0).spec(include_credentials=True)
        batch = spec.client().create_batch("rate")
        ddf = dd.from_pandas(pd.DataFrame({"k": [f"r-{i}" for i in range(400)]}), npartitions=4)
        counts = labelport.dask.upload(ddf, client=spec, batch=batch, key="k", chunk_size=25)
        assert sum(c["sent"] for c in counts) == 400
        stats = sb.stats()
        # Four tasks at 16 / 4 = 4 requests a second each (a burst of one): at most 16 + 4 in any second. Each
        # task at the full 16 would send its dozen requests in its first second: about 4 x 13.
        assert stats["requests_total"] >= 50, stats["requests"]
        assert stats["peak_rps"] <= 20, stats["peak_rps"]
        assert len({p for p in stats["requests_by_pid"] if p != "unknown"}) >= 2


def test_sama_uploads_from_the_workers_and_reads_back_in_one_partition(cluster):
    import dask.dataframe as dd
    import labelport.dask

    # Sama gives no page ranges: its results come back whole, in one partition (records complete at once).
    with lp.sandbox.start("sama", seed=6) as sb:
        spec = sb.client().spec(include_credentials=True)
        batch = spec.client().create_batch(f"sama-{uuid.uuid4().hex[:8]}")
        pdf = pd.DataFrame({"image_id": [f"sm-{i:04d}" for i in range(600)], "url": "https://img/x.jpg"})
        counts = labelport.dask.upload(
            dd.from_pandas(pdf, npartitions=2), client=spec, batch=batch, key="image_id"
        )
        assert sum(c["sent"] for c in counts) == 600
        assert os.getpid() not in {c["pid"] for c in counts}
        created = {k: v for k, v in sb.stats()["records_created"].items() if k.startswith("sm-")}
        assert len(created) == 600 and set(created.values()) == {1}
        results = labelport.dask.read_results(spec, batch.id)
        assert results.npartitions == 1
        frame = results.compute()
        assert sorted(frame["key"]) == sorted(created) and set(frame["vendor"]) == {"sama"}

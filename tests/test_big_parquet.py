"""A parquet upload bigger than memory would comfortably hold as dicts: read record batch by record batch and sent
in chunks, so the uploading process grows by a fraction of what the same rows cost uploaded as a list of dicts.

The sandbox runs in its own process (it stores every record it receives); each upload runs in a fresh child that
reports its resident memory before the upload and its peak after it. Peak memory is printed (pytest -s).

What still grows with the row count when streaming: Alegion's adapter lists the keys the batch already holds
before each chunk (that is how a re-run sends nothing twice), and the upload remembers a 64-bit hash of every key
to refuse duplicates across chunks. Neither grows with the width of a row.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

ROWS = 1_000_000
CHUNK = 100_000  # records per chunk (labelport.config.upload_chunk): ten rounds of calls to the sandbox

SANDBOX = textwrap.dedent(
    """
    import json, sys
    import labelport as lp
    sb = lp.sandbox.start("alegion", seed=3)
    print(json.dumps({"url": sb.url, "project": sb.project, "credentials": sb.credentials}), flush=True)
    sys.stdin.read()
    sb.stop()
    """
)

UPLOADER = textwrap.dedent(
    """
    import json, resource, sys, tracemalloc
    import labelport as lp
    import pyarrow.parquet as pq

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    conf = json.loads(sys.argv[1])
    path = conf["path"]
    lp.config.upload_chunk = conf["chunk"]

    # What one record costs as a Python dict (the way a list upload would hold every one of them).
    sample = pq.ParquetFile(path).read_row_group(0).slice(0, 20_000).to_pylist()
    tracemalloc.start()
    copies = [dict(r) for r in sample]
    per_record = tracemalloc.get_traced_memory()[0] / len(copies)
    tracemalloc.stop()
    del copies, sample

    client = lp.Client("alegion", project=conf["project"], base_url=conf["url"], **conf["credentials"])
    batch = client.create_batch("big-parquet-" + conf["mode"])
    before = rss_mb()
    if conf["mode"] == "list":  # the comparison: every row held as a dict, then uploaded as one list
        job = batch.upload(pq.read_table(path).to_pylist(), key="image_id", progress=False)
    else:
        job = batch.upload(path, key="image_id", progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"status": job.status(), "before_mb": before, "peak_mb": peak,
                      "dict_bytes_per_record": per_record}), flush=True)
    """
)


def _write_parquet(path: Path, rows: int) -> None:
    ids = pa.array([f"img-{i:08d}" for i in range(rows)])
    urls = pa.array([f"https://example.com/cars/{i:08d}.jpg" for i in range(rows)])
    table = pa.table({"image_id": ids, "url": urls, "width": pa.array(range(rows), type=pa.int32())})
    pq.write_table(table, path, row_group_size=100_000)


def test_a_big_parquet_file_is_uploaded_in_chunks_with_flat_memory(tmp_path):
    path = tmp_path / "big.parquet"
    _write_parquet(path, ROWS)

    server = subprocess.Popen(
        [sys.executable, "-c", SANDBOX], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    reports = {}
    try:
        assert server.stdout is not None
        conf = json.loads(server.stdout.readline())
        for mode in ("stream", "list"):
            conf.update(path=str(path), chunk=CHUNK, mode=mode)
            child = subprocess.run(
                [sys.executable, "-c", UPLOADER, json.dumps(conf)],
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert child.returncode == 0, child.stderr[-3000:]
            reports[mode] = json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)

    for mode, report in reports.items():
        status = report["status"]
        assert status["total"] == ROWS and status["done"] == ROWS and status["failed"] == 0, (mode, status)

    growth = {m: r["peak_mb"] - r["before_mb"] for m, r in reports.items()}
    as_dicts = ROWS * reports["stream"]["dict_bytes_per_record"] / 2**20
    print(
        f"\nparquet upload of {ROWS:,} rows: peak memory {reports['stream']['peak_mb']:.0f} MB, "
        f"grew {growth['stream']:.0f} MB while uploading in chunks of {CHUNK:,}; the same rows uploaded as a "
        f"list grew it {growth['list']:.0f} MB (the dicts alone take {as_dicts:.0f} MB)"
    )
    # Measured here: about a quarter. Half is the generous bound.
    assert growth["stream"] < 0.5 * growth["list"], growth

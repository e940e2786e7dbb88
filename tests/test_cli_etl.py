"""ETL-safe `labelport results` (issue 21, item 3), run as a scheduler runs it: a ``python -m labelport``
subprocess against each vendor's sandbox. An incremental run with nothing new writes a file the next step can
load (no rows, the envelope's fixed columns, the types a full run gives them) and says "0 new results"; the
output's name chooses its format, so ``--output labels.parquet`` is a parquet file."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import labelport as lp
import pytest

pq = pytest.importorskip("pyarrow.parquet")

# The envelope's fields that every results file has, rows or none (input.* and output.* come from the rows).
FIXED = ["id", "batch_id", "key", "status", "created_at", "completed_at", "vendor"]


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LABELPORT_")}
    return subprocess.run(
        [sys.executable, "-m", "labelport", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**environ, **env},
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, (proc.args, proc.stdout, proc.stderr)
    return proc


def labelled(sb: lp.sandbox.Sandbox, n: int) -> str:
    """A batch of ``n`` finished records in ``sb``; its id."""
    records, key = lp.sandbox.sample_records(sb.vendor, n)
    batch = sb.client().create_batch("etl")
    batch.upload(records, key=key)
    batch.wait(timeout=60, poll_interval=0.1, progress=False)
    # Past the second they finished in: a Playment result read within it is read again next time, by design
    # (docs/contract.md, `since_second_repeats`); these tests are about a run with nothing new.
    sb.advance(3)
    return str(batch.id)


def fixed_types(path) -> dict[str, str]:
    return {f.name: str(f.type) for f in pq.read_schema(path) if f.name in FIXED}


@pytest.mark.parametrize("vendor", lp.vendors())
def test_an_incremental_run_with_nothing_new_writes_the_fixed_columns(vendor, tmp_path):
    """The brief's command as a scheduler runs it, with no --format: the first run writes every result, the
    next (nothing new) a parquet, CSV or JSON lines file of no rows that loads where the first one did."""
    with lp.sandbox.start(vendor, complete_after=0.1, seed=5) as sb:
        env = sb.env()
        common = ("results", "--vendor", vendor, "--batch", labelled(sb, 3))
        mark = tmp_path / "labels.watermark"
        first = tmp_path / "first.parquet"
        proc = ok(run(*common, "--watermark-file", str(mark), "--output", str(first), env=env))
        assert "labelport: 3 results" in proc.stderr, proc.stderr
        table = pq.read_table(first)  # parquet, not JSON lines under a parquet name
        assert table.num_rows == 3 and table.column_names[: len(FIXED)] == FIXED
        watermark = mark.read_text().strip()
        assert watermark

        empty = tmp_path / "empty.parquet"
        proc = ok(run(*common, "--watermark-file", str(mark), "--output", str(empty), env=env))
        assert f"0 new results since {watermark}" in proc.stderr, proc.stderr
        table = pq.read_table(empty)
        assert table.num_rows == 0 and table.column_names == FIXED
        assert fixed_types(empty) == fixed_types(first)  # appends to yesterday's data without a cast
        assert mark.read_text().strip() == watermark

        empty_csv = tmp_path / "empty.csv"
        proc = ok(run(*common, "--watermark-file", str(mark), "--output", str(empty_csv), env=env))
        assert f"0 new results since {watermark}" in proc.stderr, proc.stderr
        with open(empty_csv, newline="", encoding="utf-8") as f:
            assert list(csv.reader(f)) == [FIXED]

        # JSON lines has no header: no rows is no lines, an empty file every loader reads as zero records.
        empty_jsonl = tmp_path / "empty.jsonl"
        proc = ok(run(*common, "--watermark-file", str(mark), "--output", str(empty_jsonl), env=env))
        assert f"0 new results since {watermark}" in proc.stderr, proc.stderr
        assert empty_jsonl.read_bytes() == b""
        assert mark.read_text().strip() == watermark


@pytest.fixture(scope="module")
def alegion():
    with lp.sandbox.start("alegion", complete_after=0.1, seed=6) as sb:
        yield sb, labelled(sb, 2)


@pytest.mark.parametrize(
    ("name", "written"),
    [
        ("labels.parquet", "parquet"),
        ("labels.PQ", "parquet"),
        ("labels.CSV", "csv"),
        ("labels.ndjson", "jsonl"),
        ("labels.jsonl", "jsonl"),
        ("labels.txt", "jsonl"),  # a name that says nothing: jsonl, the default
    ],
)
def test_the_output_name_chooses_the_format(alegion, tmp_path, name, written):
    sb, batch = alegion
    out = tmp_path / name
    ok(run("results", "--vendor", "alegion", "--batch", batch, "--output", str(out), env=sb.env()))
    if written == "parquet":
        assert pq.read_table(out).num_rows == 2
    elif written == "csv":
        with open(out, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 2 and list(rows[0])[: len(FIXED)] == FIXED
    else:
        assert [json.loads(line)["batch_id"] for line in out.read_text().splitlines()] == [batch, batch]


@pytest.mark.parametrize(
    ("fmt", "name"), [("csv", "labels.parquet"), ("jsonl", "labels.csv"), ("parquet", "labels.jsonl")]
)
def test_a_format_the_output_name_contradicts_is_a_usage_error(alegion, tmp_path, fmt, name):
    """Exit 1 before anything is fetched or written: a CSV file named .parquet is a silent wrong answer
    for whatever loads it next."""
    sb, batch = alegion
    out = tmp_path / name
    before = sb.stats()["requests_total"]
    proc = run(
        "results",
        "--vendor",
        "alegion",
        "--batch",
        batch,
        "--format",
        fmt,
        "--output",
        str(out),
        env=sb.env(),
    )
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert f"--format {fmt}" in proc.stderr and name in proc.stderr, proc.stderr
    assert not out.exists()
    assert sb.stats()["requests_total"] == before

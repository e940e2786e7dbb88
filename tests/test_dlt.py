"""labelport.dlt: a dlt pipeline into DuckDB against the Alegion sandbox. Runs twice with new results finishing in
between (the second loads exactly the new ones), a run that dies midway and is run again, a run stopped between
extract and load and run again: each loses nothing and duplicates nothing. CI installs dlt and duckdb
(tests/requirements-pipelines.txt): without them these tests fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import labelport as lp
import pytest


@pytest.fixture(autouse=True)
def dlt_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No telemetry (the tests talk to 127.0.0.1 only); dlt's own files under this test's directory. dlt imports
    # Airflow when it is installed, to read secrets from Airflow Variables; Airflow would then set up its home and
    # its logging in pytest's own process (tests/test_airflow.py keeps Airflow in child processes): not here.
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt-data"))
    monkeypatch.setenv("PROVIDERS__ENABLE_AIRFLOW_SECRETS", "false")
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow-home"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[lp.sandbox.Sandbox]:
    """An Alegion sandbox whose records finish one second after upload (``advance`` moves its clock), and its
    credentials where dlt's config providers look for the source's secret (an environment variable)."""
    with lp.sandbox.start("alegion", complete_after=1.0) as sb:
        monkeypatch.setenv("SOURCES__LABELPORT__CREDENTIALS", json.dumps(sb.credentials))
        yield sb


def _pipeline(tmp_path: Path, name: str = "labels") -> Any:
    import dlt

    return dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.duckdb(str(tmp_path / "warehouse.duckdb")),
        dataset_name="labels",
        pipelines_dir=str(tmp_path / "pipelines"),
    )


def _source(sb: lp.sandbox.Sandbox, batch_id: str) -> Any:
    from labelport.dlt import labelport_source

    # Credentials are not passed: dlt resolves them from SOURCES__LABELPORT__CREDENTIALS.
    return labelport_source(vendor="alegion", project=sb.project, base_url=sb.url, batches=[batch_id])


def _rows(tmp_path: Path) -> list[tuple[Any, ...]]:
    import duckdb

    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as db:
        return db.execute(
            "SELECT vendor, batch_id, key, status, output, completed_at FROM labels.results ORDER BY key"
        ).fetchall()


def _loaded(pipeline: Any) -> int:
    return int(pipeline.last_trace.last_normalize_info.row_counts.get("results", 0))


def _batch(sb: lp.sandbox.Sandbox) -> lp.Batch:
    return sb.client().create_batch(f"dlt-{uuid.uuid4().hex[:8]}")


def _finished(sb: lp.sandbox.Sandbox, batch: lp.Batch, records: list[dict[str, Any]], key: str) -> None:
    """Uploads ``records`` (those the batch holds are skipped) and lets the sandbox's labelers finish them."""
    batch.upload(records, key=key, progress=False)
    sb.advance(2)


def _first_run(
    sb: lp.sandbox.Sandbox, tmp_path: Path, records: list[dict[str, Any]], key: str
) -> tuple[lp.Batch, Any]:
    """A new batch whose ``records`` finished, loaded by a first run of a new pipeline."""
    batch = _batch(sb)
    _finished(sb, batch, records, key)
    pipeline = _pipeline(tmp_path)
    pipeline.run(_source(sb, batch.id))
    assert _loaded(pipeline) == len(records)
    return batch, pipeline


def test_the_second_run_loads_exactly_the_new_results(sandbox: lp.sandbox.Sandbox, tmp_path: Path) -> None:
    records, key = lp.sandbox.sample_records("alegion", 300)
    batch = _batch(sandbox)
    batch.upload(records[:200], key=key, progress=False)
    sandbox.advance(2)

    pipeline = _pipeline(tmp_path)
    pipeline.run(_source(sandbox, batch.id))
    first = _loaded(pipeline)

    batch.upload(records, key=key, progress=False)  # the first 200 are skipped: 100 new records
    pipeline.run(_source(sandbox, batch.id))  # before they finish: nothing new
    between = _loaded(pipeline)
    sandbox.advance(2)
    pipeline.run(_source(sandbox, batch.id))
    second = _loaded(pipeline)
    print(f"dlt runs loaded {first}, {between}, then {second} rows into results")

    assert (first, between, second) == (200, 0, 100)
    rows = _rows(tmp_path)
    assert [r[2] for r in rows] == sorted(r[key] for r in records)
    assert {(r[0], r[1], r[3]) for r in rows} == {("alegion", batch.id, "completed")}
    assert all(isinstance(r[4], str) and "label" in json.loads(r[4]) for r in rows)  # output: a JSON column
    # The watermark in dlt's state is labelport's own, as results() gives it.
    state = pipeline.state["sources"]["labelport"]["resources"]["results"]["watermarks"]
    stream = batch.results(progress=False)
    assert len(stream.to_list()) == 300
    assert state == {batch.id: stream.watermark}


def test_a_run_that_dies_midway_loses_and_duplicates_nothing(
    sandbox: lp.sandbox.Sandbox, tmp_path: Path
) -> None:
    from dlt.pipeline.exceptions import PipelineStepFailed

    records, key = lp.sandbox.sample_records("alegion", 2_500)
    batch, pipeline = _first_run(sandbox, tmp_path, records[:200], key)
    _finished(sandbox, batch, records, key)
    seen = 0

    def dies_midway(item: dict[str, Any]) -> dict[str, Any]:
        nonlocal seen
        seen += 1
        if seen > 1_500:  # past the first two pages of the 2,300 new results
            raise RuntimeError("the worker died")
        return item

    with pytest.raises(PipelineStepFailed):
        pipeline.run(_source(sandbox, batch.id).results.add_map(dies_midway))
    assert seen == 1_501
    assert len(_rows(tmp_path)) == 200

    pipeline = _pipeline(tmp_path)  # a new process picks the pipeline up from its working directory
    pipeline.run(_source(sandbox, batch.id))
    assert _loaded(pipeline) == 2_300
    keys = [r[2] for r in _rows(tmp_path)]
    assert keys == sorted(r[key] for r in records)  # every record once


def test_a_run_stopped_before_its_load_is_finished_by_the_next(
    sandbox: lp.sandbox.Sandbox, tmp_path: Path
) -> None:
    records, key = lp.sandbox.sample_records("alegion", 150)
    batch, pipeline = _first_run(sandbox, tmp_path, records[:100], key)
    _finished(sandbox, batch, records, key)
    # Extracted and normalized (the package holds the 50 new results and the new watermark), never loaded.
    pipeline.extract(_source(sandbox, batch.id))
    pipeline.normalize()
    assert len(_rows(tmp_path)) == 100

    pipeline = _pipeline(tmp_path)
    pipeline.run(_source(sandbox, batch.id))  # loads the pending package, then reads since its watermark
    keys = [r[2] for r in _rows(tmp_path)]
    assert keys == sorted(r[key] for r in records)


def test_a_record_read_again_replaces_its_row(sandbox: lp.sandbox.Sandbox, tmp_path: Path) -> None:
    """The merge key is (vendor, batch_id, key): a second pipeline into the same dataset (its own state, no
    watermark yet) reads every result again, and the table keeps one row per record; so do the records, read
    whole on every run."""
    import duckdb

    records, key = lp.sandbox.sample_records("alegion", 40)
    batch = _batch(sandbox)
    _finished(sandbox, batch, records, key)
    _pipeline(tmp_path, "first").run(_source(sandbox, batch.id))
    second = _pipeline(tmp_path, "second")
    for _ in range(2):
        second.run(_source(sandbox, batch.id).with_resources("results", "records"))
    assert second.last_trace.last_normalize_info.row_counts["records"] == 40
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as db:
        for table in ("results", "records"):
            counts = db.execute(f"SELECT count(*), count(DISTINCT key) FROM labels.{table}").fetchone()
            assert counts == (40, 40), table


def test_bad_batches_argument_is_invalid_input(sandbox: lp.sandbox.Sandbox) -> None:
    from labelport.dlt import labelport_source

    with pytest.raises(Exception) as info:
        labelport_source(vendor="alegion", project=sandbox.project, base_url=sandbox.url, batches=[""])
    err = info.value
    while not isinstance(err, lp.InvalidInput) and err.__cause__ is not None:
        err = err.__cause__  # type: ignore[assignment]
    assert isinstance(err, lp.InvalidInput) and err.field == "batches"


def test_import_labelport_imports_neither_dlt_nor_airflow() -> None:
    code = (
        "import sys, labelport\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dlt', 'airflow', 'duckdb')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert out.stdout.strip() == "[]"


def test_the_example_runs_against_the_sandbox(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "dlt_pipeline.py"
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "run loaded 200 results\nrun loaded 100 results\n" in out.stdout
    assert "labels.results: 300 rows, 300 distinct keys" in out.stdout

"""labelport.airflow with Airflow 3's ``dag.test()`` against the Alegion sandbox: examples/airflow_dag.py run twice
(upload -> the deferrable sensor -> results; the second run uploads and writes only what is new), and a DAG of
failures (a vendor error is retried, bad input and a missing batch fail at once).

Airflow sets itself up (home, metadata database, logging) once per process, on first import: each test runs its
DAGs in a child process (tests/airflow_child.py) with a throwaway ``AIRFLOW_HOME`` holding a copy of one SQLite
metadata database made once per module, so nothing here touches ~/airflow or pytest's own logging. CI installs
Airflow (tests/requirements-pipelines.txt): without it these tests fail."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import labelport as lp
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "airflow_child.py"
EXAMPLE = ROOT / "examples" / "airflow_dag.py"


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LABELPORT_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        RUNTIME__DLTHUB_TELEMETRY="false",
    )
    env.update(extra)
    return env


def _child(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(
        [sys.executable, str(CHILD), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-6000:]
    return run


@pytest.fixture(scope="module")
def pristine_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite metadata database, copied into each test's Airflow home (migrating takes seconds)."""
    home = tmp_path_factory.mktemp("airflow-pristine")
    (home / "dags").mkdir()
    _child(_env(home), "init")
    return home / "airflow.db"


@pytest.fixture
def sandbox() -> Iterator[lp.sandbox.Sandbox]:
    with lp.sandbox.start("alegion", complete_after=2.0) as sb:
        yield sb


def _connection(sb: lp.sandbox.Sandbox, **extra: Any) -> str:
    return json.dumps(
        {
            "conn_type": "labelport",
            "host": sb.url,
            "schema": sb.project,
            "login": sb.credentials["username"],
            "password": sb.credentials["password"],
            "extra": {"vendor": "alegion", **extra},
        }
    )


def _run_dags(
    tmp_path: Path,
    pristine_db: Path,
    sb: lp.sandbox.Sandbox,
    dag_file: Path,
    dag_id: str,
    runs: list[Any],
    **extra: Any,
) -> tuple[list[dict[str, Any]], str]:
    home = tmp_path / "airflow-home"
    (home / "dags").mkdir(parents=True)
    shutil.copy(pristine_db, home / "airflow.db")
    shutil.copy(dag_file, home / "dags" / dag_file.name)
    env = _env(home, AIRFLOW_CONN_LABELPORT_DEFAULT=_connection(sb, **extra))
    spec = {"dag_file": str(home / "dags" / dag_file.name), "dag_id": dag_id, "runs": runs}
    run = _child(env, "run", json.dumps(spec))
    facts: list[dict[str, Any]] = json.loads(run.stdout.strip().splitlines()[-1])
    # No credential is anywhere Airflow keeps what a run did: the metadata database (triggers, XComs, rendered
    # fields, variables) and the task logs.
    secret = sb.credentials["password"].encode()
    assert secret not in (home / "airflow.db").read_bytes()
    for log in (home / "logs").rglob("*"):
        assert not log.is_file() or secret not in log.read_bytes(), log
    return facts, run.stdout + run.stderr


def _write(path: Path, records: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def _states(facts: dict[str, Any]) -> dict[str, tuple[str, int]]:
    return {task: (ti["state"], ti["try_number"]) for task, ti in facts["tasks"].items()}


def test_upload_wait_results_defers_and_the_second_run_fetches_only_new_results(
    tmp_path: Path, pristine_db: Path, sandbox: lp.sandbox.Sandbox
) -> None:
    records, key = lp.sandbox.sample_records("alegion", 80)
    out = tmp_path / "labels"
    out.mkdir()
    runs = [
        {
            "conf": {
                "records": _write(tmp_path / f"cars-{n}.jsonl", records[:n]),
                "key": key,
                "output_dir": str(out),
                "poll": 0.5,
            }
        }
        for n in (50, 80)
    ]
    (first, second), log = _run_dags(tmp_path, pristine_db, sandbox, EXAMPLE, "labelport_labels", runs)
    # What Airflow logged of the sensor: each run, the task paused as DEFERRED (its state set to deferred by the
    # execution API), the trigger ran, and the task ran again.
    deferral = [
        line.strip()
        for line in log.splitlines()
        if "Pausing task as DEFERRED" in line
        or "new_state=deferred" in line
        or "running trigger in line" in line
        or "Trigger completed" in line
    ]
    print("\n".join(deferral))
    for n, facts in enumerate((first, second), 1):
        print(f"run {n} {facts['run_id']}: {facts['state']}")
        for task, ti in facts["tasks"].items():
            print(f"  {task:8} {ti['state']} try {ti['try_number']} returned {ti['return_value']}")
        print(f"  triggers: {facts['triggers']}")
    assert sum("Pausing task as DEFERRED" in line and "task_id=wait" in line for line in deferral) == 2
    assert sum("new_state=deferred" in line for line in deferral) == 2
    assert sum("Trigger completed" in line for line in deferral) == 2

    batch_id = first["tasks"]["batch"]["return_value"]
    assert second["tasks"]["batch"]["return_value"] == batch_id  # the same batch, got by name
    for facts in (first, second):
        assert facts["state"] == "success"
        assert _states(facts) == {t: ("success", 1) for t in ("batch", "upload", "wait", "results")}
        # The sensor deferred: the run created one trigger, serialized as the connection id, the batch id and
        # the interval, and nothing else (no credential).
        assert facts["triggers"] == [
            {
                "classpath": "labelport.airflow.LabelportBatchTrigger",
                "kwargs": {
                    "labelport_conn_id": "labelport_default",
                    "batch_id": batch_id,
                    "poll_interval": 0.5,
                },
            }
        ]
        # ... and resumed in execute_complete with the trigger's event: what the sensor returned is the event only
        # the trigger builds, after polling on the triggerer until the batch was done (complete_after=2 s).
        event = facts["tasks"]["wait"]["return_value"]
        assert event["status"] == "done" and event["batch_id"] == batch_id
        assert event["polls"] >= 2
        assert event["counts"]["done"] is True
    assert first["tasks"]["wait"]["return_value"]["counts"]["completed"] == 50
    assert second["tasks"]["wait"]["return_value"]["counts"]["completed"] == 80

    # Uploads are idempotent: the second sent only the 30 new records.
    assert first["tasks"]["upload"]["return_value"]["skipped"] == 0
    assert second["tasks"]["upload"]["return_value"] == {
        "state": "completed",
        "total": 80,
        "done": 80,
        "failed": 0,
        "skipped": 50,
    }
    assert sandbox.stats()["records_total"] == 80

    # Results: 50, then only the 30 new ones, the watermark kept in the Variable for (connection, batch).
    r1, r2 = first["tasks"]["results"]["return_value"], second["tasks"]["results"]["return_value"]
    assert (r1["count"], r1["since"]) == (50, None)
    assert (r2["count"], r2["since"]) == (30, r1["watermark"])
    keys = [[json.loads(line)["key"] for line in Path(r["path"]).read_text().splitlines()] for r in (r1, r2)]
    assert sorted(keys[0]) == sorted(r[key] for r in records[:50])
    assert sorted(keys[1]) == sorted(r[key] for r in records[50:])
    stream = sandbox.client().batch(batch_id).results(progress=False)
    assert len(stream.to_list()) == 80
    assert second["variables"] == {f"labelport_watermark__labelport_default__{batch_id}": stream.watermark}


FAILURES_DAG = textwrap.dedent(
    """
    from datetime import datetime, timedelta, timezone

    from airflow.sdk import DAG

    from labelport.airflow import LabelportBatchSensor, LabelportUploadOperator

    with DAG(
        dag_id="labelport_failures",
        schedule=None,
        start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
        render_template_as_native_obj=True,
        default_args={"retries": 3, "retry_delay": timedelta(0)},
    ) as dag:
        vendor_error = LabelportUploadOperator(
            task_id="vendor_error", batch_id="{{ params.batch }}", records="{{ params.good }}", key="image_id"
        )
        LabelportUploadOperator(
            task_id="bad_input", batch_id="{{ params.batch }}", records="{{ params.bad }}", key="image_id"
        )
        LabelportBatchSensor(task_id="missing_batch", batch_id="no-such-batch", poll_interval=0.2)
        poked = LabelportBatchSensor(
            task_id="poked", batch_id="{{ params.batch }}", deferrable=False, poke_interval=0.2
        )
        vendor_error >> poked
    """
)


def test_a_vendor_error_is_retried_and_bad_input_fails_at_once(
    tmp_path: Path, pristine_db: Path, sandbox: lp.sandbox.Sandbox
) -> None:
    batch = sandbox.client().create_batch(f"af-{uuid.uuid4().hex[:8]}")
    records, key = lp.sandbox.sample_records("alegion", 20)
    good = _write(tmp_path / "good.jsonl", records)
    bad = _write(tmp_path / "bad.jsonl", [*records[:3], {"caption": "a record without its image_id"}])
    # The vendor answers the next import with a 503, and the connection asks for no retry inside labelport:
    # the first try of vendor_error fails with a VendorError, which Airflow retries.
    sandbox.inject(status=503, method="POST", path="/records/import", times=1)
    dag_file = tmp_path / "labelport_failures.py"
    dag_file.write_text(FAILURES_DAG)
    (facts,), log = _run_dags(
        tmp_path,
        pristine_db,
        sandbox,
        dag_file,
        "labelport_failures",
        [{"conf": {"batch": batch.id, "good": good, "bad": bad}}],
        max_retries=0,
    )
    print({task: (ti["state"], ti["try_number"], ti["tries"]) for task, ti in facts["tasks"].items()})
    tasks = facts["tasks"]
    # Retryable: try 1 failed (Airflow's history of the try), try 2 did the upload.
    assert (tasks["vendor_error"]["state"], tasks["vendor_error"]["try_number"]) == ("success", 2)
    assert tasks["vendor_error"]["tries"] == [{"try_number": 1, "state": "failed"}]
    assert "VendorError" in log
    assert tasks["vendor_error"]["return_value"]["done"] == 20
    # Not retryable (AirflowFailException), although 3 retries were allowed.
    for task in ("bad_input", "missing_batch"):
        assert (tasks[task]["state"], tasks[task]["try_number"], tasks[task]["tries"]) == ("failed", 1, []), (
            task
        )
    assert "AirflowFailException: InvalidInput: record #3 has no key field" in log
    assert "AirflowFailException: NotFound: " in log
    # The one trigger is the missing batch's (it failed on the triggerer); the sensor with deferrable=False poked
    # from its worker until the 20 records finished.
    assert [t["kwargs"]["batch_id"] for t in facts["triggers"]] == ["no-such-batch"]
    assert (tasks["poked"]["state"], tasks["poked"]["try_number"]) == ("success", 1)
    assert sandbox.stats()["records_total"] == 20  # nothing of the bad file was sent


def test_the_connection_maps_onto_every_vendors_credentials() -> None:
    """login and password fill the vendor's credentials in its order; a one-secret vendor takes the password; Airflow
    knows the connection type."""
    code = textwrap.dedent(
        """
        import json, labelport as lp
        from labelport.airflow import client_arguments, credential_names
        from airflow.sdk import Connection
        out = {}
        for vendor in lp.vendors():
            with lp.sandbox.start(vendor) as sb:
                names = credential_names(vendor)
                values = [sb.credentials[n] for n in names]
                options = {k: v for k, v in sb.credentials.items() if k not in names}  # Playment's tag
                conn = Connection(conn_id="c", conn_type="labelport", host=sb.url, schema=sb.project,
                                  login=values[0] if len(values) == 2 else None, password=values[-1],
                                  extra=json.dumps({"vendor": vendor, **options}))
                v, kwargs = client_arguments(conn)
                client = lp.Client(v, **kwargs)
                client.batches() if vendor != "sama" else client.create_batch("x")
                out[vendor] = list(names)
        # The providers manager knows the connection type (the apache_airflow_provider entry point), so a
        # labelport connection gives its hook.
        from airflow.providers_manager import ProvidersManager
        assert ProvidersManager().hooks["labelport"].hook_class_name == "labelport.airflow.LabelportHook"
        assert type(conn.get_hook()).__name__ == "LabelportHook"
        print(json.dumps(out))
        """
    )
    home = Path(os.environ.get("TMPDIR", "/tmp")) / f"lp-airflow-{uuid.uuid4().hex[:8]}"
    try:
        run = subprocess.run(
            [sys.executable, "-c", code], env=_env(home), capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 0, run.stderr[-4000:]
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {
        "alegion": ["username", "password"],
        "taskmonk": ["client_id", "client_secret"],
        "playment": ["api_key"],
        "deepen": ["api_token"],
        "sama": ["api_key"],
    }

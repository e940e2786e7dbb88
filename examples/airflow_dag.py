"""An Airflow 3 DAG: upload a file of records, wait for the labels on the triggerer (a deferrable sensor: no
worker slot is held while the vendor works), then write the results completed since the last run to a file.

In a deployment, put this file in the DAGs folder and create the connection ``labelport_default`` (type
``labelport``; extra ``{"vendor": "sama"}``, schema: the project id, password: the API key), then trigger the DAG
with ``{"records": "/data/cars.parquet", "output_dir": "/data/labels"}``.

Try it against a local sandbox, with no account, scheduler or triggerer (``pip install "labelport[airflow]"``)::

    python examples/airflow_dag.py

starts the Alegion sandbox, points the connection at it through ``AIRFLOW_CONN_LABELPORT_DEFAULT``, makes a
throwaway Airflow home with a SQLite metadata database, and runs the DAG twice with ``dag.test()``: 50 records,
then 30 more; the second run uploads and writes only the 30 new ones.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from datetime import datetime, timedelta, timezone

if __name__ == "__main__":  # the demo's throwaway Airflow home, set before Airflow is first imported
    HOME = tempfile.mkdtemp(prefix="labelport-airflow-")
    os.environ["AIRFLOW_HOME"] = HOME
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    # dag.test() runs DAGs its DAG folder holds: this file, copied there.
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = os.path.join(HOME, "dags")
    os.makedirs(os.path.join(HOME, "dags"))
    shutil.copy(__file__, os.path.join(HOME, "dags", os.path.basename(__file__)))

from airflow.sdk import DAG
from labelport.airflow import (
    LabelportBatchSensor,
    LabelportCreateBatchOperator,
    LabelportResultsOperator,
    LabelportUploadOperator,
)

with DAG(
    dag_id="labelport_labels",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    params={"records": "/data/cars.jsonl", "key": "image_id", "output_dir": "/data/labels", "poll": 30.0},
    render_template_as_native_obj=True,
    default_args={"retries": 3, "retry_delay": timedelta(minutes=1)},
) as dag:
    batch = LabelportCreateBatchOperator(task_id="batch", name="cars-{{ ds }}")
    upload = LabelportUploadOperator(
        task_id="upload", batch_id=batch.output, records="{{ params.records }}", key="{{ params.key }}"
    )
    wait = LabelportBatchSensor(
        task_id="wait", batch_id=batch.output, poll_interval="{{ params.poll }}", timeout=24 * 3600
    )
    results = LabelportResultsOperator(
        task_id="results",
        batch_id=batch.output,
        path="{{ params.output_dir }}/labels-{{ logical_date.strftime('%Y%m%dT%H%M%S%f') }}.jsonl",
    )
    upload >> wait >> results


def demo() -> None:
    """Two runs of the DAG against the Alegion sandbox, printing each task's state and the sensor's event."""
    import labelport as lp
    from airflow.utils.db import initdb

    initdb()
    work = tempfile.mkdtemp(prefix="labelport-airflow-data-")
    records, key = lp.sandbox.sample_records("alegion", 80)
    with lp.sandbox.start("alegion", complete_after=2.0) as sb:
        os.environ["AIRFLOW_CONN_LABELPORT_DEFAULT"] = json.dumps(
            {
                "conn_type": "labelport",
                "host": sb.url,
                "schema": sb.project,
                "login": sb.credentials["username"],
                "password": sb.credentials["password"],
                "extra": {"vendor": "alegion"},
            }
        )
        print(f"Airflow home {os.environ['AIRFLOW_HOME']}, files in {work}")
        for n in (50, 80):
            path = os.path.join(work, f"cars-{n}.jsonl")
            with open(path, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in records[:n])
            conf = {"records": path, "key": key, "output_dir": work, "poll": 0.5}
            run = dag.test(run_conf=conf)
            print(f"run {run.run_id}: {run.state}")
            for ti in sorted(run.get_task_instances(), key=lambda t: t.priority_weight, reverse=True):
                print(f"  {ti.task_id:8} {ti.state} (try {ti.try_number})")
            print(f"  labels: {sorted(p for p in os.listdir(work) if p.startswith('labels-'))}")


if __name__ == "__main__":
    demo()
    sys.exit(0)

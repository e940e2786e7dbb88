"""Runs DAGs with ``dag.test()`` in a process of its own, for tests/test_airflow.py: Airflow configures itself
(home, metadata database, logging) once per process, on first import, so each test's Airflow lives in a child
with a throwaway ``AIRFLOW_HOME`` the test sets, and never in pytest's own process.

    python tests/airflow_child.py init
    python tests/airflow_child.py run '{"dag_file": "...", "dag_id": "...", "runs": [{"conf": {...}}, ...]}'

``run`` prints, as its last line, a JSON list with one entry per run: the run's state; each task's state, try
number, earlier tries (TaskInstanceHistory) and return value (XCom); the triggers the run created (classpath and
kwargs as the metadata database holds them); and the labelport watermark Variables.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from typing import Any


def _init() -> None:
    from airflow.utils.db import initdb

    initdb()


def _facts(dag: Any, run: Any, seen_triggers: set[int]) -> dict[str, Any]:
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.models.trigger import Trigger
    from airflow.models.variable import Variable
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    facts: dict[str, Any] = {"run_id": run.run_id, "state": str(run.state), "tasks": {}, "triggers": []}
    with create_session() as session:
        for ti in run.get_task_instances(session=session):
            history = session.scalars(
                select(TaskInstanceHistory)
                .where(
                    TaskInstanceHistory.dag_id == ti.dag_id,
                    TaskInstanceHistory.run_id == ti.run_id,
                    TaskInstanceHistory.task_id == ti.task_id,
                )
                .order_by(TaskInstanceHistory.try_number)
            ).all()
            row = session.scalars(
                select(XComModel).where(
                    XComModel.dag_id == ti.dag_id,
                    XComModel.run_id == ti.run_id,
                    XComModel.task_id == ti.task_id,
                    XComModel.key == "return_value",
                )
            ).first()
            facts["tasks"][ti.task_id] = {
                "state": str(ti.state),
                "try_number": ti.try_number,
                "tries": [{"try_number": h.try_number, "state": str(h.state)} for h in history],
                "next_method": ti.next_method,
                "return_value": XComModel.deserialize_value(row) if row is not None else None,
            }
        for trigger in session.scalars(select(Trigger).order_by(Trigger.id)).all():
            if trigger.id in seen_triggers:
                continue
            seen_triggers.add(trigger.id)
            facts["triggers"].append({"classpath": trigger.classpath, "kwargs": trigger.kwargs})
        facts["variables"] = {
            v.key: v.val
            for v in session.scalars(select(Variable).where(Variable.key.like("labelport_watermark%"))).all()
        }
    return facts


def _run(spec: dict[str, Any]) -> None:
    module_spec = importlib.util.spec_from_file_location("dag_under_test", spec["dag_file"])
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    dag = next(v for v in vars(module).values() if getattr(v, "dag_id", None) == spec["dag_id"])
    seen: set[int] = set()
    out = []
    for run_spec in spec["runs"]:
        run = dag.test(run_conf=run_spec.get("conf"))
        out.append(_facts(dag, run, seen))
    print()
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    if sys.argv[1] == "init":
        _init()
    else:
        _run(json.loads(sys.argv[2]))

"""What Airflow's providers manager reads through the ``apache_airflow_provider`` entry point (pyproject.toml): the
``labelport`` connection type, so the UI offers it with its own field labels. Imports nothing: Airflow calls it
while it starts, whether or not a DAG uses labelport."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "labelport",
        "name": "labelport",
        "description": "Data-labeling vendors (Alegion, TaskMonk, Playment, Deepen AI, Sama) through one API",
        "connection-types": [
            {"connection-type": "labelport", "hook-class-name": "labelport.airflow.LabelportHook"}
        ],
    }

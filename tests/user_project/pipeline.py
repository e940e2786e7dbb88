"""A user's ETL pipeline, written with no thought of tests: it builds its client from the environment."""

from __future__ import annotations

import labelport as lp


def run(records: list[dict[str, str]], batch_name: str) -> dict[str, str]:
    """Sends records, waits for the labels, returns {key: label}."""
    client = lp.Client("sama")
    batch = client.create_batch(batch_name, exist_ok=True)
    batch.upload(records, key="image_id").wait(timeout=60)
    batch.wait(timeout=60, poll_interval=0.2, progress=False)
    return {r["key"]: r["output"]["label"] for r in batch.results()}

"""A batch's labels into DuckDB with dlt, incrementally (``pip install "labelport[dlt]" duckdb``)::

    python examples/dlt_pipeline.py

Against the local Alegion sandbox: 200 records finish and the first run loads them; 100 more finish and the
second run loads exactly those 100 (labelport's watermark, kept in the pipeline's dlt state); the table holds
300 rows, one per record (merge on vendor, batch_id, key).

Against a real account, give the source its settings and secrets the dlt way, e.g. ``.dlt/config.toml``::

    [sources.labelport]
    vendor = "sama"
    project = "117"
    batches = ["cars-2026-11"]

and ``.dlt/secrets.toml``::

    [sources.labelport.credentials]
    api_key = "..."

then ``dlt.pipeline("labels", destination="bigquery", dataset_name="labels").run(labelport_source())``.
"""

from __future__ import annotations

import json
import os
import tempfile

import dlt
import duckdb
import labelport as lp
from labelport.dlt import labelport_source


def main() -> None:
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")  # a sandbox demo: nothing leaves this machine
    work = tempfile.mkdtemp(prefix="labelport-dlt-")
    warehouse = os.path.join(work, "warehouse.duckdb")
    records, key = lp.sandbox.sample_records("alegion", 300)
    with lp.sandbox.start("alegion", complete_after=1.0) as sb:
        # Where dlt's config providers look for the source's secret (as secrets.toml would give it).
        os.environ["SOURCES__LABELPORT__CREDENTIALS"] = json.dumps(sb.credentials)
        batch = sb.client().create_batch("cars", exist_ok=True)
        pipeline = dlt.pipeline(
            pipeline_name="labelport_demo",
            destination=dlt.destinations.duckdb(warehouse),
            dataset_name="labels",
            pipelines_dir=os.path.join(work, "pipelines"),
        )
        for upto in (200, 300):
            batch.upload(records[:upto], key=key, progress=False)  # what was sent before is skipped
            sb.advance(2)  # the sandbox's labelers finish them
            pipeline.run(
                labelport_source(vendor="alegion", project=sb.project, base_url=sb.url, batches=[batch.id])
            )
            normalized = pipeline.last_trace.last_normalize_info if pipeline.last_trace else None
            loaded = normalized.row_counts.get("results", 0) if normalized else 0
            print(f"run loaded {loaded} results")
    with duckdb.connect(warehouse, read_only=True) as db:
        rows, keys = db.execute("SELECT count(*), count(DISTINCT key) FROM labels.results").fetchone() or (
            0,
            0,
        )
        print(f"labels.results: {rows} rows, {keys} distinct keys ({warehouse})")


if __name__ == "__main__":
    main()

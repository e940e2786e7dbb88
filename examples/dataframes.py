"""The DataFrame round trip against the local Alegion sandbox: a pandas frame in, labels back as a frame joined
to it on the key, and the results written to parquet. Runs with no account and no network:

    python examples/dataframes.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import labelport as lp
import pandas as pd


def main() -> pd.DataFrame:
    images = pd.DataFrame(
        {
            "image_id": range(1, 201),
            "url": [f"https://example.com/cars/{i:04d}.jpg" for i in range(1, 201)],
            "taken_at": pd.date_range("2026-11-01", periods=200, freq="h"),
        }
    )
    with lp.sandbox.start("alegion", complete_after=1.0) as sb, sb.client() as client:
        batch: lp.Batch = client.create_batch("dataframes-example", exist_ok=True)
        job: lp.Job = batch.upload(images, key="image_id")  # datetimes go as RFC 3339, ints as ints
        print("uploaded:", job.status())
        final = batch.wait(timeout=120, poll_interval=0.5)
        print("labeled:", final)

        labels: pd.DataFrame = batch.results().to_pandas(flatten=True, key_type=images["image_id"].dtype)
        joined: pd.DataFrame = images.merge(
            labels[["key", "output.label", "output.confidence"]], left_on="image_id", right_on="key"
        )
        print(joined.groupby("output.label").size().sort_values(ascending=False))

        out = Path(tempfile.mkdtemp()) / "labels.parquet"
        written: int = batch.results().to_parquet(out)
        print(f"{written} results written to {out}")
        return joined


if __name__ == "__main__":
    main()

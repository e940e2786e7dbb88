"""``labelport demo``: a full round trip against a local vendor sandbox, no account and no network needed.

Starts the vendor's simulator, creates a batch, uploads generated records, waits for the labels with a
progress line, downloads them and prints a short summary.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from labelport import sandbox

COLORS = ("red", "blue", "white", "black", "silver", "green", "yellow", "grey")
CARS = (
    "hatchback",
    "sedan",
    "pickup truck",
    "van",
    "convertible",
    "SUV",
    "taxi",
    "station wagon",
)
PLACES = (
    "a busy street",
    "a parking lot",
    "a driveway",
    "a gas station",
    "a bridge",
    "a country road",
)

FINAL = ("completed", "exception", "canceled", "rejected", "failed")
STATUSES = ("pending", "in_progress", *FINAL)

# The demo's sandbox: labels arrive a few seconds after upload, and a few records end as exceptions,
# as they do with real labelers.
COMPLETE_AFTER_S = 3.0
EXCEPTION_RATE = 0.02
POLL_INTERVAL_S = 0.5
WAIT_TIMEOUT_S = 300.0
LOG_EVERY_POLLS = 4  # when stdout is not a terminal: one progress line every few polls


def records(n: int, vendor: str = "alegion") -> Iterator[dict[str, Any]]:
    """``n`` deterministic records that look like an image-captioning job (Deepen's carry their image file)."""
    for i in range(1, n + 1):
        if vendor == "deepen":
            yield {"image_id": f"img-{i:05d}.jpg", "file": b"\xff\xd8\xff\xd9" + i.to_bytes(4, "big")}
            continue
        caption = (
            f"a {COLORS[i % len(COLORS)]} {CARS[(i // 3) % len(CARS)]} on {PLACES[(i // 7) % len(PLACES)]}"
        )
        yield {
            "image_id": f"img-{i:05d}",
            "image_url": f"https://example.com/cars/{i:05d}.jpg",
            "caption": caption,
        }


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f} records/s" if seconds > 0 else "n/a"


class _Progress:
    """One updating line on a terminal; a line every few polls elsewhere (logs, CI, captured output)."""

    def __init__(self, out: TextIO, total: int) -> None:
        self.out = out
        self.total = total
        isatty = getattr(out, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.polls = 0
        self.shown = ""  # the line on screen (tty) or the last line printed

    def line(self, status: dict[str, Any]) -> str:
        total = int(status.get("total") or self.total) or 1
        finished = sum(int(status.get(s, 0)) for s in FINAL)
        width = 24
        filled = min(width, width * finished // total)
        bar = "#" * filled + "-" * (width - filled)
        return f"labeling {finished:,}/{total:,} finished  [{bar}] {100 * finished // total:3d}%"

    def __call__(self, status: dict[str, Any]) -> None:
        self.polls += 1
        text = self.line(status)
        if self.tty:
            self.out.write("\r" + text.ljust(len(self.shown)))
            self.out.flush()
            self.shown = text
        elif self.polls % LOG_EVERY_POLLS == 1 and text != self.shown:
            print(text, file=self.out, flush=True)
            self.shown = text

    def finish(self, status: dict[str, Any]) -> None:
        text = self.line(status)
        if self.tty:
            self.out.write("\r" + text.ljust(len(self.shown)) + "\n")
        elif text != self.shown:
            print(text, file=self.out)
        self.out.flush()


def run(n: int = 1000, vendor: str = "alegion", out: TextIO | None = None) -> dict[str, Any]:
    """Run the demo, print its summary to ``out`` (stdout) and return the numbers it printed."""
    out = sys.stdout if out is None else out
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")

    with sandbox.start(vendor, complete_after=COMPLETE_AFTER_S, exception_rate=EXCEPTION_RATE) as sb:
        print(
            f"labelport demo: {sb.vendor} sandbox at {sb.url}, project {sb.project}",
            file=out,
            flush=True,
        )
        with sb.client() as client:
            batch = client.create_batch("labelport-demo", exist_ok=True)
            print(f"batch    {batch.name} ({batch.id})", file=out, flush=True)

            data = list(records(n, vendor))
            t0 = time.perf_counter()
            job = batch.upload(data, key="image_id")
            job_status = job.wait()
            upload_s = time.perf_counter() - t0
            print(
                f"upload   {n:,} records in {upload_s:.2f} s ({_rate(n, upload_s)})",
                file=out,
                flush=True,
            )

            progress = _Progress(out, n)
            final = batch.wait(timeout=WAIT_TIMEOUT_S, poll_interval=POLL_INTERVAL_S, progress=progress)
            progress.finish(final)
            status = batch.status()

            t0 = time.perf_counter()
            results = batch.results().to_list()
            download_s = time.perf_counter() - t0

    counts = {s: int(status.get(s, 0)) for s in STATUSES}
    shown = " · ".join(f"{s} {c:,}" for s, c in counts.items() if c)
    print(
        f"status   {shown} · total {int(status['total']):,}{' · done' if status.get('done') else ''}",
        file=out,
    )
    print(
        f"results  {len(results):,} downloaded in {download_s:.2f} s ({_rate(len(results), download_s)})",
        file=out,
    )
    sample = min(results, key=lambda r: r["key"]) if results else None
    if sample is not None:
        print("sample result:", file=out)
        print(json.dumps(sample, indent=2, ensure_ascii=False), file=out)
    out.flush()
    return {
        "vendor": vendor,
        "batch_id": batch.id,
        "uploaded": n,
        "skipped": int(job_status.get("skipped", 0) or 0),
        "upload_seconds": upload_s,
        "status": dict(status),
        "results": len(results),
        "download_seconds": download_s,
        "sample": sample,
    }

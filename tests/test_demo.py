"""The demo: a full round trip against the sandbox with a short, clean summary."""

from __future__ import annotations

import io
import json

from labelport import demo


def test_demo_runs_and_prints_a_short_summary():
    out = io.StringIO()
    summary = demo.run(n=200, out=out)
    text = out.getvalue()

    status = summary["status"]
    assert status["done"] is True
    assert status["total"] == 200
    assert status["completed"] + status["exception"] == 200
    assert summary["results"] == status["completed"]
    assert summary["skipped"] == 0

    assert "\r" not in text  # not a terminal: plain lines only
    head, sep, sample = text.partition("sample result:\n")
    assert sep, text
    assert "upload   200 records" in head
    assert f"results  {status['completed']:,} downloaded" in head
    assert f"completed {status['completed']:,}" in head
    assert "records/s" in head
    assert len(head.splitlines()) <= 12, head

    envelope = json.loads(sample)
    assert envelope == summary["sample"]
    assert envelope["status"] == "completed"
    assert envelope["vendor"] == "alegion"
    assert envelope["key"] == envelope["input"]["image_id"]


def test_demo_records_are_deterministic():
    first = list(demo.records(3))
    assert first == list(demo.records(3))
    assert [r["image_id"] for r in first] == ["img-00001", "img-00002", "img-00003"]
    assert all(set(r) == {"image_id", "image_url", "caption"} for r in first)

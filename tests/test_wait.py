"""Waiting: a batch whose labels take an hour times out promptly, and its status says it is not done."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import labelport as lp
import pytest

N = 30


@pytest.fixture(scope="module")
def sandbox():
    """Overrides conftest's: labels take an hour."""
    with lp.sandbox.start("alegion", seed=3, complete_after=3600.0) as sb:
        yield sb


@pytest.fixture(scope="module")
def slow(sandbox):
    with sandbox.client() as c:
        b = c.create_batch("slow")
        job = b.upload([{"image_id": f"slow-{i}"} for i in range(N)], key="image_id")
        yield b, job


def test_job_wait_returns_once_the_vendor_has_every_record(slow):
    # Alegion's import is synchronous: once upload() returns the job is complete, whatever the timeout.
    _, job = slow
    t0 = time.monotonic()
    status = job.wait(timeout=2.0)
    assert time.monotonic() - t0 < 1.5  # returned at once, not at its timeout
    assert status["state"] == "completed"
    assert status["total"] == N


def test_batch_wait_raises_timeout_promptly(slow):
    b, _ = slow
    t0 = time.monotonic()
    with pytest.raises(lp.Timeout) as info:
        b.wait(timeout=0.5, poll_interval=0.1)
    elapsed = time.monotonic() - t0
    assert 0.3 <= elapsed < 5.0  # may stop one poll early when the next poll would end past it
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, lp.LabelportError)


def test_batch_wait_reports_progress_while_waiting(slow):
    b, _ = slow
    seen = []
    with pytest.raises(lp.Timeout):
        b.wait(timeout=0.5, poll_interval=0.1, progress=seen.append)
    assert seen
    assert all(s["total"] == N and s["done"] is False for s in seen)


def test_status_of_an_unfinished_batch(slow):
    b, _ = slow
    status = b.status()
    assert status["total"] == N
    assert status["done"] is False
    assert status["pending"] + status["in_progress"] == N
    assert status["completed"] == 0


def test_records_of_an_unfinished_batch_are_pending_or_in_progress(slow):
    b, _ = slow
    listed = b.records().to_list()
    assert len(listed) == N
    assert {r["status"] for r in listed} <= {"pending", "in_progress"}
    assert b.results().to_list() == []


def test_advancing_the_sandbox_clock_finishes_the_batch():
    with (
        lp.sandbox.start("alegion", seed=3, complete_after=3600.0) as sb,
        sb.client() as c,
    ):
        b = c.create_batch("advance")
        b.upload([{"image_id": f"adv-{i}"} for i in range(10)], key="image_id").wait(timeout=30)
        assert b.status()["done"] is False
        sb.advance(3601.0)
        final = b.wait(timeout=30, poll_interval=0.1)
        assert final["done"] is True
        assert final["completed"] == 10
        assert len(b.results().to_list()) == 10


# A process started in the background by a non-interactive shell inherits SIGINT as ignored: restore
# Python's handler first (ENGINEERING-NOTES, "Testing Ctrl-C").
WAIT_CHILD = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
import labelport as lp
with lp.sandbox.start("alegion", complete_after=3600.0) as sb, sb.client() as c:
    b = c.create_batch("ctrl-c")
    b.upload([{"image_id": "a"}], key="image_id")
    print("waiting", flush=True)
    try:
        b.wait(timeout=600, poll_interval=0.2)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
sys.exit(1)
"""


def test_ctrl_c_interrupts_a_blocking_wait_promptly():
    proc = subprocess.Popen(
        [sys.executable, "-c", WAIT_CHILD],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "waiting"
        time.sleep(0.5)  # inside wait(), blocked in Rust
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=20)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 130, proc.stderr.read() if proc.stderr else ""
    assert elapsed < 5.0

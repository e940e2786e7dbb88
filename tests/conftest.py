"""Fixtures: Alegion sandboxes over real sockets on 127.0.0.1, and clients pointed at them.

``tests/`` is deliberately not a package (pytest runs with ``--import-mode=importlib``), so shared helpers
live here as fixtures rather than in an importable module.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import labelport as lp
import pytest

# tests/user_project is a user's project run by tests/test_testing_plugin.py in its own pytest; not ours to collect.
collect_ignore = ["user_project"]


def request_counts(sb: lp.sandbox.Sandbox) -> dict[tuple[str, str], int]:
    """The sandbox's own request counts as {("METHOD /route", "status"): n}.

    The sandbox counts per ``"METHOD /route/{template} STATUS"``; STATUS is the HTTP status, or ``reset``
    for a connection it dropped on purpose.
    """
    counts: dict[tuple[str, str], int] = {}
    for key, n in sb.stats()["requests"].items():
        endpoint, _, status = key.rpartition(" ")
        counts[(endpoint, status)] = counts.get((endpoint, status), 0) + int(n)
    return counts


class RequestCounter:
    """Counts the sandbox's requests to one endpoint since ``start()`` (a sandbox is shared by a module)."""

    def __init__(self, sb: lp.sandbox.Sandbox) -> None:
        self.sb = sb
        self.before: dict[tuple[str, str], int] = {}

    def start(self) -> RequestCounter:
        self.before = request_counts(self.sb)
        return self

    def since_start(self, endpoint: str, status: int | None = None) -> int:
        """Requests to ``endpoint`` ("METHOD /route") since start(), with ``status`` or any status."""
        now = request_counts(self.sb)
        return sum(
            n - self.before.get(k, 0)
            for k, n in now.items()
            if k[0] == endpoint and (status is None or k[1] == str(status))
        )


@pytest.fixture
def counter(sandbox: lp.sandbox.Sandbox) -> RequestCounter:
    return RequestCounter(sandbox)


def records_created(sb: lp.sandbox.Sandbox) -> dict[str, int]:
    """The sandbox's count of records created per key (Alegion: per ``metadata`` value)."""
    created = sb.stats()["records_created"]
    assert isinstance(created, dict), f"stats()['records_created'] is not a dict: {created!r}"
    return {str(k): int(v) for k, v in created.items()}


@pytest.fixture
def created(sandbox: lp.sandbox.Sandbox) -> Callable[[], dict[str, int]]:
    """``created()``: the sandbox's records-created count per key, now."""
    return lambda: records_created(sandbox)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[lp.sandbox.Sandbox]:
    """An Alegion sandbox whose records complete at once, shared by one test module."""
    with lp.sandbox.start("alegion", seed=11) as sb:
        yield sb


@pytest.fixture(scope="module")
def client(sandbox: lp.sandbox.Sandbox) -> Iterator[lp.Client]:
    with sandbox.client() as c:
        yield c


@pytest.fixture
def unique() -> str:
    """A short unique string for batch names and record keys, so tests sharing a sandbox never collide."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def batch(client: lp.Client, unique: str, request: pytest.FixtureRequest) -> lp.Batch:
    """A fresh, empty batch."""
    return client.create_batch(f"{request.node.name[:40]}-{unique}")


@pytest.fixture
def make_records(unique: str) -> Callable[..., list[dict[str, Any]]]:
    """``make_records(n, start=0)``: ``n`` records keyed by ``image_id``, keys unique to this test."""

    def make(n: int, start: int = 0) -> list[dict[str, Any]]:
        return [
            {
                "image_id": f"{unique}-{i:06d}",
                "url": f"https://example.com/cars/{i:06d}.jpg",
                "caption": f"car number {i}",
                "index": i,
            }
            for i in range(start, start + n)
        ]

    return make


def _upload_and_wait(
    batch: lp.Batch,
    records: list[dict[str, Any]],
    key: str | None = "image_id",
    **kw: Any,
) -> lp.Job:
    job = batch.upload(records, key=key, **kw)
    job.wait(timeout=60)
    batch.wait(timeout=60, poll_interval=0.1)
    return job


@pytest.fixture
def upload_and_wait() -> Callable[..., lp.Job]:
    """``upload_and_wait(batch, records, key="image_id")``: upload, wait for ingestion and labeling; the Job."""
    return _upload_and_wait

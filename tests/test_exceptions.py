"""Records that labelers flag as exceptions: listed by records(), counted by status(), never in results()."""

from __future__ import annotations

import labelport as lp
import pytest

N = 200


@pytest.fixture(scope="module")
def sandbox():
    """Overrides conftest's: a quarter of the records end as exceptions (seeded, so always the same ones)."""
    with lp.sandbox.start("alegion", seed=5, exception_rate=0.25) as sb:
        yield sb


@pytest.fixture(scope="module")
def labeled(sandbox):
    """One batch of N records, uploaded and finished; shared by this module's tests (they only read it)."""
    with sandbox.client() as c:
        b = c.create_batch("exceptions")
        records = [{"image_id": f"ex-{i:04d}", "caption": f"photo {i}"} for i in range(N)]
        b.upload(records, key="image_id").wait(timeout=60)
        b.wait(timeout=60, poll_interval=0.1)
        yield b, records


def test_status_counts_exceptions_and_is_done(labeled):
    b, _ = labeled
    status = b.status()
    assert status["done"] is True
    assert status["total"] == N
    assert status["exception"] > 0
    assert status["completed"] > 0
    assert status["completed"] + status["exception"] == N


def test_exceptions_are_listed_by_records_and_absent_from_results(labeled):
    b, records = labeled
    status = b.status()
    exceptions = b.records(status="exception").to_list()
    assert len(exceptions) == status["exception"]
    assert {r["status"] for r in exceptions} == {"exception"}
    exception_keys = {r["key"] for r in exceptions}

    results = b.results().to_list()
    result_keys = {r["key"] for r in results}
    assert len(results) == status["completed"]
    assert not (result_keys & exception_keys)
    assert result_keys | exception_keys == {r["image_id"] for r in records}


def test_records_shows_every_status(labeled):
    b, _ = labeled
    listed = b.records().to_list()
    assert len(listed) == N
    by_status: dict[str, int] = {}
    for r in listed:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    status = b.status()
    assert by_status == {
        "completed": status["completed"],
        "exception": status["exception"],
    }
    both = b.records(status=["completed", "exception"]).to_list()
    assert len(both) == N


def test_the_same_seed_labels_the_same_way(labeled):
    b, records = labeled
    first = {r["key"]: r["output"] for r in b.results().to_list()}
    first_exceptions = {r["key"] for r in b.records(status="exception").to_list()}
    with (
        lp.sandbox.start("alegion", seed=5, exception_rate=0.25) as sb,
        sb.client() as c,
    ):
        again = c.create_batch("exceptions")
        again.upload(records, key="image_id").wait(timeout=60)
        again.wait(timeout=60, poll_interval=0.1)
        assert {r["key"]: r["output"] for r in again.results().to_list()} == first
        assert {r["key"] for r in again.records(status="exception").to_list()} == first_exceptions

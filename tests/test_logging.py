"""Rust's log records reach Python's logging under `labelport`: each request at DEBUG (method, URL, status,
latency), each retry at INFO; and a level set on the `labelport` logger is honoured once the cache is reset."""

from __future__ import annotations

import logging
import re

import labelport as lp
import pytest


@pytest.fixture
def debug_logs(caplog):
    caplog.set_level(logging.DEBUG, logger="labelport")
    lp.reset_log_cache()
    yield caplog
    logging.getLogger("labelport").setLevel(logging.NOTSET)
    lp.reset_log_cache()


def test_requests_are_logged_at_debug_and_retries_at_info(sandbox, batch, debug_logs):
    sandbox.inject(status=503, method="GET", path=f"/batches/{batch.id}/records")
    batch.status()
    records = [r for r in debug_logs.records if r.name.startswith("labelport.")]
    requests = [r for r in records if r.name == "labelport.engine.http" and r.levelno == logging.DEBUG]
    assert any(
        re.search(
            rf"^GET http://127\.0\.0\.1:\d+/api/v1/batches/{batch.id}/records\?\S* -> 200 \(.*\d+ ms, attempt \d+\)$",
            r.getMessage(),
        )
        for r in requests
    ), [r.getMessage() for r in requests]
    retries = [r for r in records if r.levelno == logging.INFO and "retry" in r.getMessage()]
    assert retries and "503" in retries[0].getMessage() and retries[0].name == "labelport.engine.retry"
    # Nothing lands under the native module's own name.
    assert not [r for r in debug_logs.records if r.name.startswith("_labelport")]


def test_a_raised_level_silences_debug_after_the_cache_reset(batch, debug_logs):
    logging.getLogger("labelport").setLevel(logging.INFO)
    lp.reset_log_cache()
    debug_logs.clear()
    batch.status()
    assert not [r for r in debug_logs.records if r.name.startswith("labelport.") and r.levelno < logging.INFO]

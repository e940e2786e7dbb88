"""Core 2/3: the engine survives the real network: retries, token renewal, reconciliation, faults, redaction.

Every assertion is about what the sandbox saw (its own request and record counts), not what the client says.
"""

from __future__ import annotations

import collections
import logging
import time

import labelport as lp
import pytest

IMPORT = "POST /api/v1/batches/{batchId}/records/import"
RESULTS = "GET /api/v1/batches/{batchId}/results"
LOGIN = "POST /api/v1/login"


def count(sb: lp.sandbox.Sandbox, endpoint: str, status: int | str | None = None) -> int:
    total = 0
    for key, n in sb.stats()["requests"].items():
        ep, _, st = key.rpartition(" ")
        if ep == endpoint and (status is None or st == str(status)):
            total += int(n)
    return total


def records(prefix: str, n: int) -> list[dict]:
    return [{"k": f"{prefix}-{i:05d}", "caption": f"record {i}", "i": i} for i in range(n)]


@pytest.fixture
def sb():
    with lp.sandbox.start("alegion", seed=5) as s:
        yield s


def test_a_429_with_retry_after_is_waited_out(sb):
    client = sb.client()
    batch = client.create_batch("rate-limited")
    batch.upload(records("r", 10), key="k")
    sb.inject(status=429, method="GET", path="/results", retry_after=1)
    started = time.monotonic()
    got = batch.results().to_list()
    elapsed = time.monotonic() - started
    assert len(got) == 10
    assert count(sb, RESULTS, 429) == 1
    assert elapsed >= 1.0, f"Retry-After: 1 was not honoured (retried after {elapsed:.2f} s)"


def test_a_429_on_an_import_is_retried_and_stores_once(sb):
    client = sb.client()
    batch = client.create_batch("import-429")
    sb.inject(status=429, method="POST", path="/records/import", retry_after=1)
    job = batch.upload(records("x", 30), key="k")
    assert job.status()["done"] == 30
    created = sb.stats()["records_created"]
    assert [created[f"x-{i:05d}"] for i in range(30)] == [1] * 30
    assert count(sb, IMPORT, 429) == 1 and count(sb, IMPORT, 200) == 1


def test_an_expired_token_costs_one_login(sb):
    client = sb.client()
    batch = client.create_batch("expiry")
    assert count(sb, LOGIN, 200) == 1
    sb.expire_tokens()
    batch.upload(records("e", 5), key="k")
    assert count(sb, LOGIN, 200) == 2
    refused = sum(n for key, n in sb.stats()["requests"].items() if key.endswith(" 401"))
    assert refused == 1, "one request was refused, then replayed with the new token"
    assert len(batch.results().to_list()) == 5
    assert count(sb, LOGIN, 200) == 2


def test_a_malformed_token_answer_costs_one_login(sb):
    client = sb.client()
    batch = client.create_batch("malformed")
    logins = count(sb, LOGIN, 200)
    # Alegion answers a bad token with a 500 AccessDeniedException, not a 401.
    sb.inject(
        status=500,
        method="POST",
        path="/records/import",
        body={
            "timestamp": 1510865911864,
            "status": 500,
            "error": "Internal Server Error",
            "exception": "org.springframework.security.access.AccessDeniedException",
            "message": "Incorrect token provided",
            "path": "/api/v1/batches/x/records/import",
        },
    )
    job = batch.upload(records("m", 7), key="k")
    assert job.status()["done"] == 7
    assert count(sb, LOGIN, 200) == logins + 1
    created = sb.stats()["records_created"]
    assert all(created[f"m-{i:05d}"] == 1 for i in range(7))


def test_a_token_expiring_in_the_middle_of_pagination_loses_no_page(sb):
    client = sb.client()
    batch = client.create_batch("paging-expiry")
    batch.upload(records("p", 6500), key="k")
    stream = batch.results()
    first = next(stream)
    sb.expire_tokens()
    rest = list(stream)
    keys = collections.Counter(r["key"] for r in [first, *rest])
    assert len(keys) == 6500 and set(keys.values()) == {1}
    assert count(sb, LOGIN, 200) >= 2


def test_bad_credentials_are_an_auth_error_without_retrying_forever(sb):
    client = lp.Client("alegion", project=sb.project, base_url=sb.url, username="sandbox", password="nope")
    with pytest.raises(lp.AuthError) as info:
        client.batches()
    assert info.value.vendor == "alegion" and info.value.status == 401
    assert count(sb, LOGIN, 401) == 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_5000_records_under_faults_are_stored_exactly_once(seed):
    faults = {"server_error": 0.1, "commit_then_fail": 0.05, "reset": 0.02, "rate_limit": 0.05}
    with lp.sandbox.start("alegion", seed=seed, faults=faults) as sb:
        client = sb.client()
        batch = client.create_batch("faulty", exist_ok=True)
        recs = records(f"s{seed}", 5000)
        job = batch.upload(recs, key="k")
        assert job.status() == {"state": "completed", "done": 5000, "total": 5000, "failed": 0, "skipped": 0}
        created = sb.stats()["records_created"]
        assert len(created) == 5000
        assert set(created.values()) == {1}, {k: v for k, v in created.items() if v != 1}
        results = collections.Counter(r["key"] for r in batch.results())
        assert len(results) == 5000 and set(results.values()) == {1}
        # The run really met faults (and survived them), or it proves nothing.
        faulted = sum(n for key, n in sb.stats()["requests"].items() if not key.endswith((" 200", " 201")))
        assert faulted > 0


def test_commit_then_fail_on_an_import_is_reconciled_not_resent(sb):
    client = sb.client()
    batch = client.create_batch("commit-then-fail")
    sb.inject(status=500, method="POST", path="/records/import", commit=True)
    job = batch.upload(records("c", 1500), key="k")
    assert job.status()["done"] == 1500
    created = sb.stats()["records_created"]
    assert len(created) == 1500 and set(created.values()) == {1}


def test_a_dropped_connection_on_an_import_is_reconciled(sb):
    client = sb.client()
    batch = client.create_batch("reset")
    sb.inject(method="POST", path="/records/import", reset=True)
    job = batch.upload(records("d", 1200), key="k")
    assert job.status()["done"] == 1200
    created = sb.stats()["records_created"]
    assert len(created) == 1200 and set(created.values()) == {1}
    assert count(sb, IMPORT, "reset") == 1


def test_collect_lets_the_good_records_through_and_names_the_bad_one(sb):
    client = sb.client()
    batch = client.create_batch("collect")
    recs = records("g", 2500)
    recs[1234]["caption"] = "poison"
    # The vendor refuses (all or nothing) every import that holds the poisoned record.
    sb.inject(
        status=422,
        method="POST",
        path="/records/import",
        body_contains="poison",
        times=100,
        body={"message": "field caption: value not allowed"},
    )
    job = batch.upload(recs, key="k", on_error="collect")
    status = job.status()
    assert status["failed"] == 1 and status["done"] == 2499 and status["state"] == "completed"
    failures = job.failures()
    assert [f["key"] for f in failures] == ["g-01234"]
    assert "not allowed" in failures[0]["message"]
    created = sb.stats()["records_created"]
    assert len(created) == 2499 and "g-01234" not in created and set(created.values()) == {1}


def test_raise_stops_and_says_what_was_and_was_not_sent(sb):
    client = sb.client()
    batch = client.create_batch("raise")
    recs = records("h", 3000)
    recs[2500]["caption"] = "poison"
    sb.inject(
        status=422,
        method="POST",
        path="/records/import",
        body_contains="poison",
        times=100,
        body={"message": "field caption: value not allowed"},
    )
    with pytest.raises(lp.InvalidInput) as info:
        batch.upload(recs, key="k")
    err = info.value
    stored = len(sb.stats()["records_created"])
    assert err.details["sent"] == stored
    assert err.details["sent"] + err.details["not_sent"] + err.details["skipped"] == 3000
    assert "run the same upload again" in str(err)
    # Re-running after the vendor is fixed sends exactly the rest.
    sb.clear_faults()
    job = batch.upload(recs, key="k")
    assert job.status()["skipped"] == stored
    created = sb.stats()["records_created"]
    assert len(created) == 3000 and set(created.values()) == {1}


def test_no_secret_in_reprs_errors_or_debug_logs(sb, caplog):
    password = sb.credentials["password"]
    logger = logging.getLogger("labelport")
    logger.setLevel(logging.DEBUG)
    lp.reset_log_cache()
    try:
        with caplog.at_level(logging.DEBUG, logger="labelport"):
            client = sb.client()
            batch = client.create_batch("secrets")
            batch.upload(records("z", 20), key="k")
            sb.expire_tokens()
            batch.results().to_list()
            sb.inject(status=503, method="GET", path="/results", times=20)
            with pytest.raises(lp.LabelportError) as info:
                lp.Client(
                    "alegion",
                    project=sb.project,
                    base_url=sb.url,
                    username="sandbox",
                    password=password,
                    max_retries=1,
                ).batch(batch.id).results().to_list()
            bad = lp.Client(
                "alegion", project=sb.project, base_url=sb.url, username="sandbox", password="hunter2-wrong"
            )
            with pytest.raises(lp.AuthError) as auth_info:
                bad.batches()
    finally:
        logger.setLevel(logging.NOTSET)
        lp.reset_log_cache()
    lines = [r.getMessage() for r in caplog.records]
    assert any(r.name.startswith("labelport.engine.http") for r in caplog.records), (
        "no DEBUG lines were logged"
    )
    texts = lines + [
        repr(client),
        repr(batch),
        str(info.value),
        repr(info.value),
        str(auth_info.value),
        repr(bad),
    ]
    for text in texts:
        assert password not in text
        assert "hunter2-wrong" not in text
        assert "Bearer" not in text and "access_token" not in text

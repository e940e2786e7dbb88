"""``client.metrics()``: what a client's requests came to, counted by the engine as each attempt ends, checked
against what the sandbox itself saw (its own per-endpoint counts) under injected 429s, and on both faces."""

from __future__ import annotations

import asyncio
import json

import labelport as lp
import pytest


def sandbox_counts(sb: lp.sandbox.Sandbox) -> tuple[int, int, int]:
    """The sandbox's own count of requests other than logins, of 429 answers, and of logins."""
    requests = sb.stats()["requests"]
    logins = sum(n for k, n in requests.items() if "/login" in k)
    limited = sum(n for k, n in requests.items() if k.endswith(" 429"))
    return sum(requests.values()) - logins, limited, logins


def test_the_counts_match_what_the_vendor_saw_through_429s_and_retries():
    with lp.sandbox.start("alegion", faults={"rate_limit": 0.3}, seed=3) as sb, sb.client() as client:
        empty = client.metrics()
        assert empty["requests_total"] == 0 and empty["latency_ms"] == {
            "count": 0,
            "p50": None,
            "p90": None,
            "p99": None,
            "max": None,
        }
        batch = client.create_batch("metrics")
        records = [{"k": str(i), "caption": "x" * 20} for i in range(2_500)]
        batch.upload(records, key="k", progress=False)
        results = batch.results(progress=False).to_list()
        m = client.metrics()

    total, limited, logins = sandbox_counts(sb)
    assert limited > 0, "the fault injection sent no 429"
    assert m["requests_total"] == total
    assert sum(sum(by_status.values()) for by_status in m["requests"].values()) == total
    assert m["rate_limited"] == limited == sum(s.get("429", 0) for s in m["requests"].values())
    assert m["retries"] == limited  # every 429 was retried, and nothing else failed
    assert m["retry_after_seconds"] > 0  # the sandbox's 429s carry Retry-After
    assert m["logins"] == logins == 1
    assert m["requests"]["create_batch"] == {"200": 1}
    assert m["requests"]["upload"].get("200", 0) >= 3  # 3 imports of at most 1,000 records
    assert len(results) == 2_500
    assert m["bytes_sent"] > 2_500 * 20  # every caption went up once at least
    assert m["bytes_received"] > 2_500 * 20  # and came back in the results
    lat = m["latency_ms"]
    assert lat["count"] == total
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]


def test_no_answer_is_counted_as_an_error_and_each_client_counts_its_own():
    # Nothing listens on port 9 here: two tries of one request (max_retries=1), both without an answer.
    client = lp.Client(
        "sama", project="1", api_key="secret-key", base_url="http://127.0.0.1:9", max_retries=1
    )
    with pytest.raises(lp.LabelportError):
        client.request("GET", "/anything")
    m = client.metrics()
    assert m["requests_total"] == 2 and m["retries"] == 1
    assert list(m["requests"].values()) == [{"error": 2}]
    assert m["bytes_received"] == 0 and m["logins"] == 0
    assert "secret-key" not in json.dumps(m)
    other = lp.Client("sama", project="1", api_key="secret-key", base_url="http://127.0.0.1:9")
    assert other.metrics()["requests_total"] == 0


def test_the_async_face_counts_the_same_way():
    async def go(sb: lp.sandbox.Sandbox) -> dict:
        async with lp.AsyncClient("alegion", base_url=sb.url, project=sb.project, **sb.credentials) as client:
            batch = await client.create_batch("async-metrics")
            await batch.upload([{"k": str(i)} for i in range(10)], key="k", progress=False)
            return client.metrics()

    with lp.sandbox.start("alegion", seed=4) as sb:
        m = asyncio.run(go(sb))
    total, _, logins = sandbox_counts(sb)
    assert m["requests_total"] == total and m["logins"] == logins == 1
    assert m["requests"]["create_batch"] == {"200": 1}

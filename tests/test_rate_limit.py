"""`rate_limit=` on every vendor: a hard ceiling on request starts per second, retries and logins included, as
the vendor's simulator counts them (its busiest one-second window of wall time)."""

from __future__ import annotations

import time

import labelport as lp
import pytest

RATE = 20.0
CALLS = 30


def one_call(sb: lp.sandbox.Sandbox, c: lp.Client) -> None:
    """A cheap read: the batch list (Sama keeps none: its project)."""
    if sb.vendor == "sama":
        c.request("GET", f"projects/{sb.project}.json")
    else:
        c.batches()


@pytest.mark.parametrize("vendor", lp.vendors())
def test_every_vendor_keeps_to_the_rate_limit(vendor):
    with lp.sandbox.start(vendor, seed=3) as s, s.client(rate_limit=RATE) as c:
        t0 = time.monotonic()
        for _ in range(CALLS):
            one_call(s, c)
        elapsed = time.monotonic() - t0
        stats = s.stats()
    sent = stats["requests_total"]
    assert sent >= CALLS
    # Each start waits for its slot (1 / RATE apart); a login or token request made for the first call starts in
    # that call's slot, and the limiter's burst is one: at most RATE + 2 starts in any one-second window.
    assert stats["peak_rps"] <= RATE + 2, stats["peak_rps"]
    assert elapsed >= (CALLS - 1) / RATE - 0.05, elapsed


def test_without_a_rate_limit_the_same_calls_are_not_paced():
    # The control: the simulator can see more than RATE + 2 starts in one second, so the test above can fail.
    with lp.sandbox.start("sama", seed=3) as s, s.client() as c:
        for _ in range(CALLS):
            one_call(s, c)
        assert s.stats()["peak_rps"] > RATE + 2

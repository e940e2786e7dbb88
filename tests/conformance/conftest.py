"""Fixtures of the conformance suite: one sandbox per vendor per module, a client on it, and its clock.

Every sandbox starts with labelling that takes ``COMPLETE_AFTER`` seconds of sandbox time, so a test sees records
pending until it calls ``lab.finish()``, which moves the sandbox clock past that (no sleeps). Deepen's simulator
also unpacks an upload in a tenth of ``complete_after`` of *real* time; its value is small so an upload that waits
for the unpacking, as the contract asks, returns within a fraction of a second.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import labelport as lp
import pytest

SEED = 21
#: Sandbox seconds from upload to final labels (see the module docstring for Deepen's).
COMPLETE_AFTER = {"deepen": 5.0}
DEFAULT_COMPLETE_AFTER = 100.0
#: What ``finish()`` moves the clock by: past every vendor's ``complete_after``.
FINISH_SECONDS = 1000.0


class Lab:
    """One vendor's sandbox and a client on it, shared by a module's tests of that vendor."""

    def __init__(self, vendor: str) -> None:
        self.vendor = vendor
        #: Sandbox seconds from upload to final labels.
        self.complete_after = COMPLETE_AFTER.get(vendor, DEFAULT_COMPLETE_AFTER)
        self.sb = lp.sandbox.start(vendor, seed=SEED, complete_after=self.complete_after)
        self.client = self.sb.client()
        self._cache: dict[str, Any] = {}

    def name(self, what: str) -> str:
        """A batch name no other test uses."""
        return f"conf-{what}-{uuid.uuid4().hex[:8]}"

    def finish(self) -> None:
        """Move the sandbox clock past the labelling time: every record uploaded so far gets its labels."""
        self.sb.advance(FINISH_SECONDS)

    def sim(self, path: str, payload: Any) -> Any:
        """POST to one of the sandbox's own ``/_sim/`` control routes."""
        req = urllib.request.Request(
            self.sb.url + path,
            data=json.dumps(payload).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def cached(self, what: str, make: Callable[[], Any]) -> Any:
        """``make()`` once per module and vendor; a failure is kept and raised again, not retried."""
        if what not in self._cache:
            try:
                self._cache[what] = ("ok", make())
            except Exception as e:  # kept for the next test of this vendor, which fails the same way
                self._cache[what] = ("error", e)
        kind, value = self._cache[what]
        if kind == "error":
            raise value
        return value

    def close(self) -> None:
        self.client.close()
        self.sb.stop()


@pytest.fixture(scope="module")
def labs() -> Iterator[Callable[[str], Lab]]:
    """``labs(vendor)``: that vendor's ``Lab``, started on first use and stopped at the end of the module."""
    started: dict[str, Lab] = {}

    def get(vendor: str) -> Lab:
        if vendor not in started:
            started[vendor] = Lab(vendor)
        return started[vendor]

    yield get
    for lab in started.values():
        lab.close()


@pytest.fixture
def lab(labs: Callable[[str], Lab], vendor: str) -> Lab:
    """The ``Lab`` of the test's ``vendor`` parameter."""
    return labs(vendor)

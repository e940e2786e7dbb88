"""A pytest plugin for testing your own pipelines against local vendor simulators.

Installed with labelport and registered through the ``pytest11`` entry point, so no conftest is needed::

    def test_my_pipeline(lp_sandbox):
        sb = lp_sandbox("sama", complete_after=0.5, faults={"rate_limit": 0.1}, env=True)
        my_pipeline.run()                 # builds Client("sama") from the environment: talks to the sandbox
        assert sb.stats()["records_total"] == 100

``lp_sandbox(vendor, **options)`` starts a sandbox (the options of ``labelport.sandbox.start``) and returns it;
every sandbox a test started is stopped when it ends. Nothing global changes unless ``env=True``: then the
``LABELPORT_<VENDOR>_*`` variables (base URL, project, credentials; ``sb.env()``) are set for that test only,
and any ``LABELPORT_PROFILE`` is unset so a developer's own profile cannot point the test at a real account.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

import pytest

from labelport import sandbox

__all__ = ["SandboxFactory", "lp_sandbox"]


class SandboxFactory(Protocol):
    def __call__(
        self,
        vendor: str,
        *,
        seed: int = 0,
        complete_after: float = 0.0,
        exception_rate: float = 0.0,
        faults: Mapping[str, float] | None = None,
        latency: float | None = None,
        accuracy: float | None = None,
        box_jitter: float = 0.0,
        env: bool = False,
    ) -> sandbox.Sandbox: ...


@pytest.fixture
def lp_sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxFactory]:
    """A factory of started vendor sandboxes, all stopped when the test ends."""
    started: list[sandbox.Sandbox] = []

    def start(
        vendor: str,
        *,
        seed: int = 0,
        complete_after: float = 0.0,
        exception_rate: float = 0.0,
        faults: Mapping[str, float] | None = None,
        latency: float | None = None,
        accuracy: float | None = None,
        box_jitter: float = 0.0,
        env: bool = False,
    ) -> sandbox.Sandbox:
        sb = sandbox.start(
            vendor,
            seed=seed,
            complete_after=complete_after,
            exception_rate=exception_rate,
            faults=faults,
            latency=latency,
            accuracy=accuracy,
            box_jitter=box_jitter,
        )
        started.append(sb)
        if env:
            monkeypatch.delenv("LABELPORT_PROFILE", raising=False)
            for name, value in sb.env().items():
                monkeypatch.setenv(name, value)
        return sb

    try:
        yield start
    finally:
        for sb in started:
            sb.stop()

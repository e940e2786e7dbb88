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

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from labelport import sandbox

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["SandboxFactory", "lp_sandbox"]


class SandboxFactory:
    """``lp_sandbox(vendor, *, env=False, **options)``: starts a sandbox with the options of
    ``labelport.sandbox.start`` (``port``, ``track_pids``, ``record_wire`` and ``dialect`` are for labelport's
    own tests) and returns it; with ``env=True`` also points ``LABELPORT_<VENDOR>_*`` at it for this test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch
        self.started: list[sandbox.Sandbox] = []

    def __call__(
        self, vendor: str, *, env: bool = False, **options: Unpack[sandbox.SandboxOptions]
    ) -> sandbox.Sandbox:
        sb = sandbox.start(vendor, **options)
        self.started.append(sb)
        if env:
            self._monkeypatch.delenv("LABELPORT_PROFILE", raising=False)
            for name, value in sb.env().items():
                self._monkeypatch.setenv(name, value)
        return sb


@pytest.fixture
def lp_sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxFactory]:
    """A factory of started vendor sandboxes, all stopped when the test ends."""
    factory = SandboxFactory(monkeypatch)
    try:
        yield factory
    finally:
        for sb in factory.started:
            sb.stop()

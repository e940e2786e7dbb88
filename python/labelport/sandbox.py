"""Local simulators of the vendors' APIs: try labelport without an account, test pipelines without a network::

    with lp.sandbox.start("alegion", complete_after=2.0) as sb:
        client = sb.client()
        ...

``start`` takes the simulator's options (time to label, faults, latency, accuracy, dialect); ``sample_records``
gives records every vendor's sandbox accepts.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping
from typing import Any, TypedDict

from labelport._labelport import Client, SandboxServer
from labelport._records import _invalid

__all__ = [
    "TRUTH_CLASSES",
    "Sandbox",
    "SandboxOptions",
    "all_changed",
    "dialect_settings",
    "sample_records",
    "start",
]

#: The classes labels are drawn from when a sandbox is started with ``accuracy=`` (src/sandbox/truth.rs).
TRUTH_CLASSES = ("car", "truck", "bus", "bicycle")


class SandboxOptions(TypedDict, total=False):
    """The keyword arguments of `start`, for code that passes them on (``lp_sandbox`` of the pytest plugin)."""

    seed: int
    complete_after: float
    exception_rate: float
    faults: Mapping[str, float] | None
    latency: float | None
    port: int
    track_pids: bool
    record_wire: bool
    dialect: Mapping[str, bool | int | str] | None
    accuracy: float | None
    box_jitter: float


class Sandbox:
    """A running vendor simulator on 127.0.0.1. Stop it with ``.stop()`` or use it as a context manager."""

    def __init__(self, server: SandboxServer) -> None:
        self._server = server

    @property
    def url(self) -> str:
        """Exactly what ``base_url=`` takes."""
        return self._server.url

    @property
    def vendor(self) -> str:
        return self._server.vendor

    @property
    def project(self) -> str:
        return self._server.project

    @property
    def credentials(self) -> dict[str, str]:
        """The credential keyword arguments of the seeded account, named as ``Client`` takes them."""
        return self._server.credentials

    def client(self, **overrides: Any) -> Client:
        """A ``Client`` for this sandbox; keyword arguments override project, credentials and settings."""
        kwargs: dict[str, Any] = {"project": self.project, "base_url": self.url, **self.credentials}
        kwargs.update(overrides)
        return Client(self.vendor, **kwargs)

    def env(self) -> dict[str, str]:
        """The ``LABELPORT_<VENDOR>_*`` variables (base URL, project, credentials) that make ``Client(vendor)``
        and the ``labelport`` command use this sandbox. Returned, not set: pass them to a subprocess, or see
        ``labelport.testing`` for a fixture that sets them for one test."""
        prefix = f"LABELPORT_{self.vendor.upper()}_"
        names = {"BASE_URL": self.url, "PROJECT": self.project}
        names.update({name.upper(): value for name, value in self.credentials.items()})
        return {prefix + name: value for name, value in names.items()}

    def stats(self) -> dict[str, Any]:
        """Requests per endpoint and status, records created per key, the peak request rate, and requests per client
        process id (``requests_by_pid``: only when started with ``track_pids=True``; Linux, from ``/proc``;
        ``"unknown"`` where it cannot tell), and the names each route received (``wire``: per ``"METHOD /route"``,
        its ``query`` parameters and ``body`` fields, JSON paths as ``a.b`` and ``a[].b``; only when started with
        ``record_wire=True``)."""
        return self._server.stats()

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock forward: tokens expire, records complete."""
        self._server.advance(seconds)

    def expire_tokens(self) -> None:
        self._server.expire_tokens()

    def inject(
        self,
        *,
        status: int | None = None,
        method: str | None = None,
        path: str | None = None,
        body_contains: str | None = None,
        body: Any = None,
        retry_after: int | None = None,
        commit: bool = False,
        reset: bool = False,
        times: int = 1,
    ) -> None:
        """Script a fault on the next ``times`` matching requests: answer ``status`` (with the vendor's error body,
        or ``body``), store the write first (``commit``), or drop the connection (``reset``). ``path`` and
        ``body_contains`` match substrings, e.g. a vendor refusing every import that holds one poisoned record."""
        spec: dict[str, Any] = {"commit": commit, "reset": reset, "times": times}
        for name, value in (
            ("status", status),
            ("method", method),
            ("path", path),
            ("body_contains", body_contains),
            ("body", body),
            ("retry_after", retry_after),
        ):
            if value is not None:
                spec[name] = value
        self.hook("/_sim/faults", spec)

    def clear_faults(self) -> None:
        """Remove every scripted fault not yet used."""
        self.hook("/_sim/faults", method="DELETE")

    def hook(self, path: str, payload: Any = None, method: str = "POST") -> Any:
        """Calls one of the simulator's ``/_sim/`` test hooks (faults, clocks, modes) with ``payload`` as JSON;
        returns the decoded answer, or None for an empty one."""
        data = None if payload is None and method in ("GET", "DELETE") else json.dumps(payload).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read()
        return json.loads(text) if text else None

    def truth(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The truth labels are drawn from when the sandbox is started with ``accuracy=``: for each record, its
        true ``label`` (one of ``TRUTH_CLASSES``) and ``box`` (``[x1, y1, x2, y2]``, 0 to 1), the same in every
        sandbox."""
        truth: list[dict[str, Any]] = self.hook(
            "/_sim/truth", [{k: v for k, v in r.items() if k != "file"} for r in records]
        )
        return truth

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<labelport.sandbox.Sandbox vendor={self.vendor!r} url={self.url!r}>"


def start(
    vendor: str,
    *,
    seed: int = 0,
    complete_after: float = 0.0,
    exception_rate: float = 0.0,
    faults: Mapping[str, float] | None = None,
    latency: float | None = None,
    port: int = 0,
    track_pids: bool = False,
    record_wire: bool = False,
    dialect: Mapping[str, bool | int | str] | None = None,
    accuracy: float | None = None,
    box_jitter: float = 0.0,
) -> Sandbox:
    """Start a local simulator of ``vendor``'s API; it is listening when this returns. ``track_pids=True`` counts
    requests per client process in ``stats()["requests_by_pid"]`` (a few milliseconds per new connection).
    ``record_wire=True`` records the names of the query parameters and body fields each route receives, in
    ``stats()["wire"]`` (each body is parsed once more).

    ``dialect`` varies what no public source settles about the vendor's API (the "Guesses that remain" in
    docs/vendors/<vendor>.md); left out, the simulator behaves as it always has. A setting the vendor's
    simulator does not have is an error naming the ones it has. ``dialect_settings(vendor)`` lists each
    vendor's settings with what they vary, and ``all_changed(vendor)`` is the dialect with every one changed (but ``drop_*`` settings).

    ``accuracy`` (0 to 1) draws labels from a truth every sandbox shares (``TRUTH_CLASSES``, decided by each
    record's ``image_id``, else ``name``, else its whole content): that share of labels is the true class, the
    rest one of the other classes, each equally likely; boxes are the true box with each corner moved by up to
    ``box_jitter`` (coordinates 0 to 1). Alegion (``output.label``, ``output.box``), Sama (``answers.label``),
    Playment (one rectangle under ``annotations.rectangles``) and TaskMonk (``label``) honour it; Deepen does not
    yet. Left out, every simulator labels as it always has (docs/compare.md).
    """
    for name, value in (("accuracy", accuracy), ("box_jitter", box_jitter)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0
        ):
            raise _invalid(f"{name} must be a number from 0 to 1, not {value!r}", name)
    if accuracy is not None and vendor == "deepen":
        raise _invalid("accuracy= is not simulated by the deepen sandbox yet", "accuracy")
    server = SandboxServer(
        vendor,
        seed=seed,
        complete_after=complete_after,
        exception_rate=exception_rate,
        faults=dict(faults) if faults else None,
        latency=latency,
        port=port,
        track_pids=track_pids,
        record_wire=record_wire,
        dialect=dict(dialect) if dialect else None,
    )
    sb = Sandbox(server)
    if accuracy is not None:
        try:
            sb.hook("/_sim/quality", {"accuracy": float(accuracy), "box_jitter": float(box_jitter)})
        except BaseException:
            sb.stop()
            raise
    return sb


def dialect_settings(vendor: str) -> list[dict[str, Any]]:
    """The dialect settings ``vendor``'s simulator understands: each a dict of ``name``, ``kind`` (``"switch"``,
    ``{"number": {"min": n}}`` or ``{"word": [...]}``), ``changed`` (the value ``all_changed`` uses) and ``doc``."""
    return SandboxServer.dialect_settings(vendor)


def all_changed(vendor: str) -> dict[str, bool | int | str]:
    """The dialect with every one of ``vendor``'s settings changed at once (empty if it has none), except the
    ``drop_*`` ones: those remove something labelport sends, so an upload must stop with a typed error."""
    return {s["name"]: s["changed"] for s in dialect_settings(vendor) if not s["name"].startswith("drop_")}


#: The bytes a Deepen sample record carries as its file (a JPEG's start and end markers: Deepen labels files).
SAMPLE_FILE = b"\xff\xd8\xff\xd9"


def sample_records(vendor: str, n: int, *, prefix: str = "rec") -> tuple[list[dict[str, Any]], str]:
    """``n`` records any project of ``vendor``'s sandbox accepts, and their key field (``image_id``): each has
    ``image_id``, ``image_url`` (Playment needs it) and ``caption``; Deepen's also carry a small ``file``."""
    records = []
    for i in range(n):
        r: dict[str, Any] = {
            "image_id": f"{prefix}-{i:05d}.jpg",
            "image_url": f"https://example.com/cars/{i:05d}.jpg",
            "caption": f"car {i}",
        }
        if vendor == "deepen":
            r["file"] = SAMPLE_FILE + i.to_bytes(4, "big")
        records.append(r)
    return records, "image_id"

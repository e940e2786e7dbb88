"""Fixtures: Alegion sandboxes over real sockets on 127.0.0.1, and clients pointed at them.

``tests/`` is deliberately not a package (pytest runs with ``--import-mode=importlib``), so shared helpers
live here as fixtures rather than in an importable module.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
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
def stat_count() -> Callable[..., int]:
    """``stat_count(sb, "METHOD /route", status=None)``: the requests a sandbox has answered on one endpoint
    (with that status, or any), as counted by ``request_counts``."""

    def count(sb: lp.sandbox.Sandbox, endpoint: str, status: str | None = None) -> int:
        return sum(
            n
            for (ep, st), n in request_counts(sb).items()
            if ep == endpoint and (status is None or st == status)
        )

    return count


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


# ---------------------------------------------------------------------------------------------------------------
# Hostile cases (tests/test_hostile*.py): a fake server that answers with whatever bytes a test gives it, and a
# child process with a memory limit that runs the client, so an abort, a segfault or a runaway allocation fails
# one test instead of killing the run.

HOSTILE_MEM_MB = 3072  # the child's address-space limit (RLIMIT_AS); the runtime's threads reserve some of it


@dataclass
class Isolated:
    """How a child process ended: its exit code (negative: killed by that signal), what it reported."""

    returncode: int
    outcome: dict[str, Any] | None  # {"ok": repr} or {"error": class name, "code", "kind", "message", ...}
    peak_rss_mb: float | None  # the child's own peak RSS, as it reported it (None if it did not finish)
    seconds: float
    stderr: str

    @property
    def error(self) -> str | None:
        return None if self.outcome is None else self.outcome.get("error")

    @property
    def code(self) -> str | None:
        return None if self.outcome is None else self.outcome.get("code")

    @property
    def message(self) -> str:
        return "" if self.outcome is None else str(self.outcome.get("message", ""))

    def expect(
        self, error: str | None, code: str | None = None, *, max_mb: float, max_seconds: float
    ) -> None:
        """Asserts the child ended normally with ``error`` (an exception class name, None: no error) and
        ``code``, within ``max_mb`` peak RSS and ``max_seconds``."""
        assert self.returncode == 0, (
            f"the child died (exit {self.returncode}; negative: signal): {self.stderr[-3000:]}"
        )
        assert self.outcome is not None, f"the child reported nothing: {self.stderr[-3000:]}"
        assert self.error == error, f"expected {error} ({code}), got {self.outcome}"
        if code is not None:
            assert self.code == code, f"expected code {code}, got {self.outcome}"
        assert self.peak_rss_mb is not None and self.peak_rss_mb <= max_mb, (
            f"peak RSS {self.peak_rss_mb} MB > {max_mb} MB"
        )
        assert self.seconds <= max_seconds, f"took {self.seconds:.1f} s > {max_seconds} s"
        assert "panicked" not in self.stderr, f"a Rust panic was printed: {self.stderr[-3000:]}"


_CHILD = """
import json, resource, sys, time, traceback
limit = {mem} * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import labelport as lp
URL = {url!r}
{code}
started = time.monotonic()
try:
    value = case()
    outcome = {{"ok": repr(value)[:2000]}}
except BaseException as e:
    outcome = {{
        "error": type(e).__name__,
        "code": getattr(e, "code", None),
        "kind": getattr(e, "kind", None),
        "status": getattr(e, "status", None),
        "retry_after": getattr(e, "retry_after", None),
        "field": getattr(e, "field", None),
        "message": str(e)[:4000],
        "traceback": traceback.format_exc()[-4000:],
    }}
outcome["seconds"] = time.monotonic() - started
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork and exec, so it would report pytest's own size.
with open("/proc/self/status") as status:
    hwm = next(line for line in status if line.startswith("VmHWM:"))
outcome["peak_rss_mb"] = int(hwm.split()[1]) / 1024
sys.stdout.write("\\nLABELPORT-OUTCOME " + json.dumps(outcome, default=repr) + "\\n")
sys.stdout.flush()
"""


def run_isolated(
    code: str, *, url: str = "", mem_mb: int = HOSTILE_MEM_MB, timeout: float = 120, cwd: str | None = None
) -> Isolated:
    """Runs ``code`` (which defines ``case()``; ``URL`` and ``lp`` are in scope) in a child process under an
    address-space limit of ``mem_mb``, and reports how ``case()`` ended."""
    import json
    import subprocess
    import sys
    import textwrap
    import time

    src = _CHILD.format(mem=mem_mb, url=url, code=textwrap.dedent(code))
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", src], capture_output=True, text=True, timeout=timeout, cwd=cwd
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"the child did not finish within {timeout} s: {e.stderr!r}") from None
    seconds = time.monotonic() - started
    outcome = None
    for line in proc.stdout.splitlines():
        if line.startswith("LABELPORT-OUTCOME "):
            outcome = json.loads(line[len("LABELPORT-OUTCOME ") :])
    peak = None if outcome is None else float(outcome["peak_rss_mb"])
    case_seconds = seconds if outcome is None else float(outcome["seconds"])
    return Isolated(proc.returncode, outcome, peak, case_seconds, proc.stderr)


@pytest.fixture
def isolated() -> Callable[..., Isolated]:
    """``isolated(code, url=..., mem_mb=..., timeout=...)``: see ``run_isolated``."""
    return run_isolated


class HostileServer:
    """An HTTP/1.1 server on 127.0.0.1 whose answers are raw bytes chosen by the test.

    ``answer(method, path, headers, body) -> bytes | Iterable[bytes] | None`` is called per request, on the
    server's thread; ``None`` closes the connection without answering. Requests are recorded in
    ``self.requests`` as (method, path, headers) with header names lower-cased."""

    def __init__(self, answer: Callable[[str, str, dict[str, str], bytes], Any]) -> None:
        import socket
        import threading

        self.answer = answer
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        import threading

        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: Any) -> None:
        try:
            f = conn.makefile("rb")
            while True:
                line = f.readline(65536)
                if not line:
                    return
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    h = f.readline(65536).decode("latin-1")
                    if h in ("\r\n", "\n", ""):
                        break
                    k, _, v = h.partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = b""
                if "content-length" in headers:
                    body = f.read(int(headers["content-length"]))
                elif headers.get("transfer-encoding", "").lower() == "chunked":
                    while True:
                        size = int(f.readline().strip() or b"0", 16)
                        if size == 0:
                            f.readline()
                            break
                        body += f.read(size)
                        f.readline()
                self.requests.append((method, path, headers))
                out = self.answer(method, path, headers, body)
                if out is None:
                    return
                if isinstance(out, bytes | bytearray):
                    conn.sendall(out)
                else:
                    for part in out:
                        conn.sendall(part)
        except (OSError, ValueError):
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def close(self) -> None:
        self._stop = True
        self._sock.close()


def http_answer(
    status: int = 200, body: bytes | str = b"", headers: dict[str, str] | list[tuple[str, str]] | None = None
) -> bytes:
    """A whole HTTP/1.1 response as bytes; ``Content-Length`` is added unless ``headers`` set it (or
    ``Transfer-Encoding``)."""
    if isinstance(body, str):
        body = body.encode()
    items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {k.lower() for k, _ in items}
    if "content-length" not in names and "transfer-encoding" not in names:
        items.append(("Content-Length", str(len(body))))
    if "content-type" not in names:
        items.append(("Content-Type", "application/json"))
    head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in items) + "\r\n"
    return head.encode("latin-1") + body


@pytest.fixture(name="http_answer")
def http_answer_fixture() -> Callable[..., bytes]:
    """``http_answer(status, body, headers)``: a whole HTTP/1.1 response as bytes."""
    return http_answer


@pytest.fixture
def hostile_server() -> Iterator[Callable[..., HostileServer]]:
    """``hostile_server(answer)``: a started ``HostileServer``; closed after the test."""
    servers: list[HostileServer] = []

    def start(answer: Callable[[str, str, dict[str, str], bytes], Any]) -> HostileServer:
        s = HostileServer(answer)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


class ExecutedNotebook:
    """A notebook of examples/ run headless in a real Jupyter kernel (nbclient); cells are found by their tag."""

    def __init__(self, path: Path, workdir: Path, timeout: int) -> None:
        import nbclient
        import nbformat

        self.nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in self.nb.cells if c.cell_type == "code"), (
            "commit the notebook without outputs"
        )
        nbclient.NotebookClient(
            self.nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
        ).execute()
        self.by_tag = {
            tag: c for c in self.nb.cells if c.cell_type == "code" for tag in c.metadata.get("tags", [])
        }

    def result(self, tag: str) -> dict[str, Any]:
        """The data (by MIME type) of the last result the cell tagged ``tag`` shows."""
        outputs = [o for o in self.by_tag[tag].outputs if o.output_type == "execute_result"]
        assert outputs, f"cell {tag!r} shows no result"
        return dict(outputs[-1].data)

    def stderr(self, tag: str) -> str:
        return "".join(
            o.text for o in self.by_tag[tag].outputs if o.output_type == "stream" and o.name == "stderr"
        )

    def images(self, tag: str) -> list[str]:
        """The PNG pictures (base64) the cell tagged ``tag`` shows."""
        return [o.data["image/png"] for o in self.by_tag[tag].outputs if "image/png" in o.get("data", {})]


@pytest.fixture
def run_notebook(tmp_path: Path) -> Callable[..., ExecutedNotebook]:
    """``run_notebook("quickstart.ipynb")``: the notebook of examples/, executed in ``tmp_path``."""
    pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")

    def run(name: str, timeout: int = 180) -> ExecutedNotebook:
        return ExecutedNotebook(Path(__file__).resolve().parent.parent / "examples" / name, tmp_path, timeout)

    return run

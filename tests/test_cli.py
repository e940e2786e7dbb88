"""The command line, run as users run it: ``python -m labelport ...`` in a subprocess."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import labelport as lp
import pytest
from labelport import cli

# A process started in the background by a non-interactive shell inherits SIGINT as ignored: restore
# Python's handler first so the test can press Ctrl-C (ENGINEERING-NOTES, "Testing Ctrl-C").
SANDBOX_CHILD = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from labelport.cli import main; sys.exit(main(sys.argv[1:]))"
)


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labelport", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_demo_exits_0():
    proc = run("demo", "--records", "100")
    assert proc.returncode == 0, proc.stderr
    assert "upload   100 records" in proc.stdout
    assert "sample result:" in proc.stdout


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("bogus",),
        ("demo", "--records", "0"),
        ("demo", "--records", "many"),
        ("sandbox", "--port", "99999"),
    ],
    ids=repr,
)
def test_usage_errors_exit_1(args):
    proc = run(*args, timeout=30)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "usage:" in proc.stderr


def test_version():
    proc = run("--version", timeout=30)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"labelport {lp.__version__}"


def test_unknown_sandbox_vendor_is_invalid_input():
    proc = run("sandbox", "--vendor", "nosuchvendor", timeout=30)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "nosuchvendor" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (lp.InvalidInput, 2),
        (lp.AuthError, 3),
        (lp.NotFound, 4),
        (lp.Timeout, 5),
        (lp.Stalled, 5),
        (lp.VendorError, 75),
        (lp.RateLimited, 75),
        (lp.LabelportError, 75),
    ],
)
def test_exit_codes(error, code):
    assert cli.exit_code(error("boom")) == code


def test_exit_code_of_ctrl_c():
    assert cli.exit_code(KeyboardInterrupt()) == 130


class Sandbox:
    """``labelport sandbox`` in a child process, with its printed lines read on a thread."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SANDBOX_CHILD, "sandbox", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def banner(self, timeout: float = 30) -> str:
        text = ""
        deadline = time.monotonic() + timeout
        while "Serving until Ctrl-C." not in text:
            text += self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
        return text

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def sandbox_process():
    started: list[Sandbox] = []

    def start(*args: str) -> Sandbox:
        started.append(Sandbox(*args))
        return started[-1]

    yield start
    for s in started:
        s.close()


def field(banner: str, name: str) -> str:
    match = re.search(rf"^\s+{name}:\s+(\S+)$", banner, re.MULTILINE)
    assert match, f"no {name} in:\n{banner}"
    return match.group(1)


def test_sandbox_serves_until_ctrl_c(sandbox_process):
    sb = sandbox_process("--vendor", "alegion", "--port", "0", "--seed", "4", "--complete-after", "1")
    banner = sb.banner()
    url = field(banner, "url")
    assert url.startswith("http://127.0.0.1:")
    project = field(banner, "project")
    with lp.Client(
        "alegion",
        project=project,
        base_url=url,
        username=field(banner, "username"),
        password=field(banner, "password"),
    ) as c:
        assert project in [w["id"] for w in c.request("GET", "/workflows")]

    sb.proc.send_signal(signal.SIGINT)
    assert sb.proc.wait(timeout=15) == 130


def test_sandbox_stops_cleanly_on_sigterm(sandbox_process):
    sb = sandbox_process("--port", "0")
    sb.banner()
    sb.proc.send_signal(signal.SIGTERM)
    assert sb.proc.wait(timeout=15) == 0

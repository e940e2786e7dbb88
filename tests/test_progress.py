"""Progress: a callable sees the counts move; off a terminal, log lines at most every few seconds; on a terminal, a
tqdm bar or one rewritten line; progress=False and lp.config.progress = False turn it off."""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import pty
import struct
import subprocess
import sys
import termios
import textwrap
import time

import labelport as lp
import pytest

LOGGER = "labelport.progress"


@pytest.fixture(scope="module")
def slow_sandbox():
    """Every answer 30 ms late, so an upload takes long enough to be watched."""
    with lp.sandbox.start("alegion", seed=5, latency=0.03) as sb:
        yield sb


@pytest.fixture
def slow_batch(slow_sandbox, unique):
    with slow_sandbox.client() as c:
        yield c.create_batch(f"progress-{unique}")


def records(unique: str, n: int):
    return [{"k": f"{unique}-{i:05d}", "caption": f"car {i}"} for i in range(n)]


def test_a_callable_sees_the_upload_move_to_its_total(slow_batch, unique, monkeypatch):
    monkeypatch.setattr(lp.config, "upload_chunk", 500)
    seen: list[dict] = []
    slow_batch.upload(iter(records(unique, 3000)), key="k", progress=seen.append)
    done = [s["done"] for s in seen]
    assert done == sorted(done) and done[-1] == 3000 and len(done) >= 3, done
    assert all(s["total"] is None for s in seen)  # an iterator has no length

    seen.clear()
    slow_batch.upload(records(unique, 3500), key="k", progress=seen.append)
    assert seen[-1] == {"done": 3500, "total": 3500}


def test_off_a_terminal_progress_is_logged_at_most_every_few_seconds(slow_batch, unique, caplog, monkeypatch):
    monkeypatch.setattr(lp.config, "upload_chunk", 500)
    monkeypatch.setattr(lp.config, "progress_log_every", 0.25)
    caplog.set_level(logging.INFO, logger=LOGGER)
    slow_batch.upload(iter(records(unique, 4000)), key="k")
    lines = [r for r in caplog.records if r.name == LOGGER]
    last = lines[-1].getMessage()
    assert last.startswith("upload: 4,000 records ("), last  # no total: an iterator
    assert len(lines) >= 2
    gaps = [b.created - a.created for a, b in zip(lines[:-2], lines[1:-1], strict=True)]
    assert all(g >= 0.2 for g in gaps), gaps  # the last line closes the upload whenever it ends

    caplog.clear()
    monkeypatch.setattr(lp.config, "progress_log_every", 5.0)
    slow_batch.wait(timeout=60, poll_interval=0.1)
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert lines and lines[-1].startswith("labeling: 4,000/4,000 records 100%"), lines
    assert len(lines) <= 2


def test_progress_false_and_the_config_default_turn_it_off(slow_batch, unique, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger=LOGGER)
    slow_batch.upload(records(unique, 10), key="k", progress=False)
    slow_batch.wait(timeout=60, poll_interval=0.1, progress=False)
    slow_batch.results().to_pandas() if _has("pandas") else None
    assert [r for r in caplog.records if r.name == LOGGER and "upload" in r.getMessage()] == []
    assert [r for r in caplog.records if r.name == LOGGER and "labeling" in r.getMessage()] == []

    monkeypatch.setattr(lp.config, "progress", False)
    caplog.clear()
    slow_batch.upload(records(unique, 20), key="k")
    slow_batch.wait(timeout=60, poll_interval=0.1)
    assert [r for r in caplog.records if r.name == LOGGER] == []

    slow_batch.upload(records(unique, 30), key="k", progress=True)  # a call can still ask for it
    assert any(r.getMessage().startswith("upload: 30/30") for r in caplog.records if r.name == LOGGER)


def test_exports_show_progress_too(slow_batch, unique):
    slow_batch.upload(records(unique, 1500), key="k", progress=False)
    slow_batch.wait(timeout=60, poll_interval=0.1, progress=False)
    seen: list[dict] = []
    frame = slow_batch.results().to_pandas(progress=seen.append)
    assert len(frame) == 1500 and seen[-1]["done"] == 1500


def test_plain_iteration_shows_progress_per_page(slow_batch, unique, caplog):
    """`for r in batch.results()` moves the display once per page, to the count delivered; the export of a
    stream given progress= uses it; a stream left early says so."""
    slow_batch.upload(records(unique, 1500), key="k", progress=False)
    slow_batch.wait(timeout=60, poll_interval=0.1, progress=False)

    seen: list[dict] = []
    n = sum(1 for _ in slow_batch.results(progress=seen.append))
    done = [s["done"] for s in seen]
    assert n == 1500 and done[-1] == 1500, done
    assert done == sorted(done) and len(done) >= 3, done  # the first page, later pages, the end

    seen.clear()
    assert len(slow_batch.results(progress=seen.append).to_list()) == 1500 and seen[-1]["done"] == 1500
    seen.clear()
    frame = slow_batch.results(progress=seen.append).to_pandas()  # the export takes the stream's progress
    assert len(frame) == 1500 and seen[-1]["done"] == 1500

    caplog.set_level(logging.INFO, logger=LOGGER)
    assert len(slow_batch.results().to_list()) == 1500  # off a terminal: a log line at the end
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert lines and lines[-1].startswith("results: 1,500 results ("), lines

    caplog.clear()
    assert len(slow_batch.results(progress=False).to_list()) == 1500
    assert [r for r in caplog.records if r.name == LOGGER] == []

    stream = slow_batch.results()
    next(stream)
    stream.close()  # left before the end
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert lines and lines[-1].endswith("(stopped)"), lines


def test_async_upload_shows_progress(slow_sandbox, unique, monkeypatch):
    monkeypatch.setattr(lp.config, "upload_chunk", 500)

    async def go() -> tuple[list[dict], list[dict]]:
        sb = slow_sandbox
        async with lp.AsyncClient("alegion", project=sb.project, base_url=sb.url, **sb.credentials) as ac:
            batch = await ac.create_batch(f"async-progress-{unique}")
            whole: list[dict] = []
            await batch.upload(records(unique, 2000), key="k", progress=whole.append)
            chunked: list[dict] = []
            await batch.upload(iter(records(unique + "-it", 1200)), key="k", progress=chunked.append)
            with pytest.raises(lp.InvalidInput):
                await batch.upload(records(unique, 1), key="k", progress="yes")
            return whole, chunked

    whole, chunked = asyncio.run(go())
    assert whole[-1] == {"done": 2000, "total": 2000}, whole[-3:]
    done = [s["done"] for s in chunked]
    assert done == sorted(done) and {500, 1000, 1200} <= set(done), done  # each chunk's end is shown


def test_async_results_show_progress_per_page(slow_sandbox, unique, caplog):
    sb = slow_sandbox

    async def go() -> tuple[int, list[dict], list[dict]]:
        async with lp.AsyncClient("alegion", project=sb.project, base_url=sb.url, **sb.credentials) as ac:
            batch = await ac.create_batch(f"async-results-{unique}")
            await batch.upload(records(unique, 1200), key="k", progress=False)
            await batch.wait(timeout=60, poll_interval=0.1, progress=False)
            seen: list[dict] = []
            n = 0
            async for _ in batch.results(progress=seen.append):
                n += 1
            listed: list[dict] = []
            assert len(await batch.results(progress=listed.append).to_list()) == 1200
            with pytest.raises(lp.InvalidInput):
                batch.results(progress="yes")
            caplog.set_level(logging.INFO, logger=LOGGER)
            await batch.results().to_list()  # off a terminal: a log line at the end
            return n, seen, listed

    n, seen, listed = asyncio.run(go())
    done = [s["done"] for s in seen]
    assert n == 1200 and done[-1] == 1200 and done == sorted(done) and len(done) >= 2, done
    assert listed[-1]["done"] == 1200
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert lines and lines[-1].startswith("results: 1,200 results ("), lines


def test_a_wrong_progress_value_is_refused(slow_batch, unique):
    with pytest.raises(lp.InvalidInput) as err:
        slow_batch.upload(records(unique, 1), key="k", progress="yes")
    assert err.value.field == "progress"
    with pytest.raises(lp.InvalidInput):
        slow_batch.wait(timeout=1, progress=1)
    with pytest.raises(lp.InvalidInput) as err:
        slow_batch.results(progress="yes")
    assert err.value.field == "progress"


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


TERMINAL_CHILD = textwrap.dedent(
    """
    import json, sys
    if sys.argv[1] == "no-tqdm":
        sys.modules["tqdm"] = None  # as if tqdm were not installed
    import labelport as lp
    with lp.sandbox.start("alegion", latency=0.02) as sb:
        batch = sb.client().create_batch("tty")
        batch.upload([{"k": str(i)} for i in range(2500)], key="k")
        batch.wait(timeout=60, poll_interval=0.1)
    """
)


def _run_on_a_terminal(mode: str) -> str:
    """Runs the child with stderr on a pseudo-terminal; what the terminal showed."""
    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal 120 columns wide
    proc = subprocess.Popen(
        [sys.executable, "-c", TERMINAL_CHILD, mode],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=side,
    )
    os.close(side)
    out = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=60)
    os.close(main)
    assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
    return out.decode(errors="replace")


def test_on_a_terminal_without_tqdm_one_line_is_rewritten():
    shown = _run_on_a_terminal("no-tqdm")
    assert "\rupload: 2,500/2,500 records 100%" in shown, shown[-500:]
    assert "\rlabeling: 2,500/2,500 records 100%" in shown, shown[-500:]
    # One line per display: redrawn in place with \\r, ended by one newline each.
    assert shown.count("\n") == 2, json.dumps(shown[-800:])


def test_on_a_terminal_with_tqdm_a_bar_is_drawn():
    pytest.importorskip("tqdm")
    shown = _run_on_a_terminal("tqdm")
    assert "upload: 100%" in shown and "2500/2500" in shown, shown[-800:]
    assert "labeling: 100%" in shown, shown[-800:]

"""Core 3/3: blocking calls release the GIL and answer Ctrl-C, iterators cancel their fetching, memory stays
flat while streaming, incremental results by watermark, and the client works after fork()."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import labelport as lp
import pytest

RESULTS = "GET /api/v1/batches/{batchId}/results"


def count(sb: lp.sandbox.Sandbox, endpoint: str) -> int:
    return sum(int(n) for key, n in sb.stats()["requests"].items() if key.rpartition(" ")[0] == endpoint)


def test_a_python_thread_keeps_running_while_the_main_thread_waits():
    with lp.sandbox.start("alegion", complete_after=1.5) as sb:
        batch = sb.client().create_batch("gil")
        batch.upload([{"k": f"g{i}"} for i in range(20)], key="k")
        ticks = 0
        stop = threading.Event()

        def counter():
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                time.sleep(0.001)

        t = threading.Thread(target=counter)
        t.start()
        try:
            started = time.monotonic()
            final = batch.wait(timeout=30, poll_interval=0.2)
            waited = time.monotonic() - started
        finally:
            stop.set()
            t.join()
        assert final["done"] and waited >= 1.0
        # With the GIL held for the whole wait the counter would barely move.
        assert ticks > 200, f"the other thread ran only {ticks} times in {waited:.1f} s"


CHILD = textwrap.dedent(
    """
    import signal, sys, time
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import labelport as lp
    sb = lp.sandbox.start("alegion", complete_after=3600)
    batch = sb.client().create_batch("ctrl-c")
    batch.upload([{"k": "a"}], key="k")
    print("waiting", flush=True)
    try:
        batch.wait(timeout=600, poll_interval=30)
    except KeyboardInterrupt:
        print("interrupted", time.monotonic(), flush=True)
        sys.exit(42)
    """
)


def test_ctrl_c_interrupts_a_blocking_wait_promptly():
    # Alegion imports are synchronous (job.wait() returns at once), so the blocking call here is batch.wait().
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "waiting"
        time.sleep(0.5)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 42, out
    interrupted_at = float(out.split()[1])
    assert interrupted_at - sent < 2.0, f"KeyboardInterrupt took {interrupted_at - sent:.2f} s"


def test_breaking_out_of_a_results_loop_stops_the_fetching():
    with lp.sandbox.start("alegion") as sb:
        batch = sb.client().create_batch("break")
        batch.upload([{"k": f"b{i:05d}"} for i in range(30_000)], key="k")
        before = count(sb, RESULTS)
        stream = batch.results()
        for _ in stream:
            break
        del stream
        time.sleep(0.5)
        after_break = count(sb, RESULTS)
        time.sleep(1.0)
        later = count(sb, RESULTS)
    fetched = after_break - before
    assert later == after_break, "pages were still fetched after the loop was left"
    assert fetched < 30, f"{fetched} of 30 pages were fetched for one page read"


def test_since_and_watermark_return_every_result_exactly_once_across_runs():
    with lp.sandbox.start("alegion", complete_after=10) as sb:
        batch = sb.client().create_batch("incremental")
        seen: collections.Counter[str] = collections.Counter()
        watermark = None
        for run in range(3):
            batch.upload([{"k": f"run{run}-{i}"} for i in range(700)], key="k")
            sb.advance(11)
            stream = batch.results(since=watermark)
            got = [r["key"] for r in stream]
            assert len(got) == 700, f"run {run} got {len(got)} results"
            seen.update(got)
            assert stream.watermark is not None and (watermark is None or stream.watermark > watermark)
            watermark = stream.watermark
        # Nothing new: an empty run keeps the watermark.
        stream = batch.results(since=watermark)
        assert list(stream) == [] and stream.watermark == watermark
    assert len(seen) == 2100 and set(seen.values()) == {1}


def test_since_takes_a_datetime_and_rejects_nonsense():
    import datetime as dt

    with lp.sandbox.start("alegion") as sb:
        batch = sb.client().create_batch("since-types")
        batch.upload([{"k": "a"}], key="k")
        future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3650)
        assert batch.results(since=future).to_list() == []
        assert len(batch.results(since=dt.datetime(2000, 1, 1)).to_list()) == 1
        with pytest.raises(lp.InvalidInput):
            batch.results(since="last tuesday")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only")
def test_the_client_works_in_a_forked_child():
    with lp.sandbox.start("alegion") as sb:
        client = sb.client()
        batch = client.create_batch("fork")
        batch.upload([{"k": f"f{i}"} for i in range(10)], key="k")
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: the runtime and connections are rebuilt on first use
            try:
                n = len(client.batch(batch.id).results().to_list())
                os.write(write, json.dumps({"results": n}).encode())
                os._exit(0)
            except BaseException as e:  # noqa: BLE001 - report anything to the parent
                os.write(write, json.dumps({"error": repr(e)}).encode())
                os._exit(1)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        answer = json.loads(os.read(read, 65536) or b"{}")
        assert os.waitstatus_to_exitcode(status) == 0, answer
        assert answer == {"results": 10}
        # And the parent still works.
        assert len(batch.results().to_list()) == 10


MEMORY_CHILD = textwrap.dedent(
    """
    import json, os, sys
    import labelport as lp

    def rss_kb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024

    url, project, user, password, batch_id, what = sys.argv[1:7]
    client = lp.Client("alegion", project=project, base_url=url, username=user, password=password)
    batch = client.batch(batch_id)
    next(iter(batch.results()))  # warm up (the first pages only): runtime, connections, first decode
    base = peak = rss_kb()
    n = 0
    for r in getattr(batch, what)():
        n += 1
        if n % 500 == 0:
            peak = max(peak, rss_kb())
    print(json.dumps({"n": n, "growth_kb": max(peak, rss_kb()) - base}))
    """
)


def test_memory_while_streaming_200000_results_or_records_is_flat():
    """Alegion's records() reads each completed record's result alongside: its memory must not grow with the
    batch either."""
    with lp.sandbox.start("alegion") as sb:
        client = sb.client()
        growth: dict[str, dict[int, int]] = {"results": {}, "records": {}}
        for n in (20_000, 200_000):
            batch = client.create_batch(f"memory-{n}")
            for start in range(0, n, 50_000):
                batch.upload(
                    [
                        {"k": f"m{n}-{i:06d}", "caption": "a red car parked by a tree " * 3}
                        for i in range(start, min(n, start + 50_000))
                    ],
                    key="k",
                )
            for what in growth:
                out = subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        MEMORY_CHILD,
                        sb.url,
                        sb.project,
                        sb.credentials["username"],
                        sb.credentials["password"],
                        batch.id,
                        what,
                    ],
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=True,
                    # glibc gives each thread its own arena, and pages decoded on runtime threads but freed on
                    # Python's fragment them: a few MB that grow with the log of the stream, not with it. One arena
                    # measures what this code retains rather than glibc's arena heuristics.
                    env={**os.environ, "MALLOC_ARENA_MAX": "1"},
                )
                report = json.loads(out.stdout)
                assert report["n"] == n
                growth[what][n] = report["growth_kb"]
    for what, by_n in growth.items():
        print(
            f"peak memory growth while streaming {what}: 20k -> {by_n[20_000]} kB, 200k -> {by_n[200_000]} kB"
        )
    # Ten times the results, not ten times the memory: a floor of 8 MB absorbs allocator noise around a 20k run
    # that retains nothing.
    for what, by_n in growth.items():
        assert by_n[200_000] < max(2 * by_n[20_000], 8192), (what, growth)


EXIT_RACE = """
import asyncio, socket, sys, threading
import labelport as lp

# The server runs in this process, on Python threads: they compete with the runtime's threads for the GIL,
# which is when a worker is caught inside Python as the interpreter exits.
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(64)

def serve():
    while True:
        conn, _ = server.accept()
        threading.Thread(target=answer, args=(conn,), daemon=True).start()

def answer(conn):
    try:
        while data := conn.recv(65536):
            body = b'{"access_token": "t0k", "expires_in": 3600}' if b"/login" in data else b"[" * 100_000
            conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: %d\\r\\n\\r\\n%s"
                         % (len(body), body))
    except OSError:
        pass

threading.Thread(target=serve, daemon=True).start()

async def go():
    url = "http://127.0.0.1:%d" % server.getsockname()[1]
    c = lp.AsyncClient("alegion", project="wf-1", base_url=url, username="a", password="p")
    # Each answer is JSON nested too deep: 50 errors handed to the event loop at once, the last ones while
    # asyncio.run returns and the interpreter starts to exit.
    errors = await asyncio.gather(*[c.request("GET", f"/x{i}") for i in range(50)], return_exceptions=True)
    assert all(isinstance(e, lp.VendorError) for e in errors), errors

asyncio.run(go())
"""


def test_async_calls_ending_as_the_interpreter_exits_never_abort_it():
    """The runtime stops at exit (``atexit``), so no worker thread enters Python while it finalizes. Without
    that, about one run in three of this script died (SIGSEGV or SIGABRT, "PyGILState_Release: thread state
    ... must be current"): twelve runs make a miss unlikely."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELPORT_")}
    for run in range(12):
        done = subprocess.run(
            [sys.executable, "-X", "faulthandler", "-c", EXIT_RACE],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert done.returncode == 0 and "Fatal Python error" not in done.stderr, (
            f"run {run} ended with {done.returncode}:\n{done.stderr[-3000:]}"
        )


def test_a_call_after_the_runtime_stopped_at_exit_is_a_clear_error():
    code = """
import labelport as lp
from labelport import _labelport
with lp.sandbox.start("alegion") as sb:
    client = sb.client()
    client.batches()
    _labelport._stop_runtime_at_exit()  # what atexit does
    try:
        client.batches()
    except lp.LabelportError as e:
        print("error:", e.code)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "error: interpreter_exiting" in done.stdout, done.stdout + done.stderr

"""Record a sandbox's answers once, then serve them from memory in a process of their own, so a client-side
benchmark measures the client and not the simulator.

    recording = record(sandbox_url, runners)   # each runner talks to a recording proxy in front of the sandbox
    recording.save(path)
    python bench/replay.py serve PATH          # prints {"url": ...}, serves until stdin closes

Answers are keyed by method, path and the query's pairs in any order (a planned page URL and the server's own
`Link` to the same page are one answer). The recorded origin is rewritten to the replay server's own in every
header and body, so links point back at it. A request that was never recorded gets a 404 and a line on stderr:
a runner that strays from what was recorded fails loudly instead of measuring something else.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import pickle
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# Headers a proxy or a replay must not copy: they describe one connection or one framing of the body.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "date"}


def answer_key(method: str, target: str) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    parts = urlsplit(target)
    return method.upper(), parts.path, tuple(sorted(parse_qsl(parts.query, keep_blank_values=True)))


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Recording:
    """What the sandbox answered, by request; `origin` is the recording proxy's own `host:port`."""

    origin: str
    answers: dict[tuple[str, str, tuple[tuple[str, str], ...]], Answer] = field(default_factory=dict)
    order: list[tuple[str, str, tuple[tuple[str, str], ...]]] = field(default_factory=list)

    def save(self, path: str) -> None:
        # Plain data only: the reader may be this module run as __main__, where the classes have another name.
        answers = [(k, (a.status, a.headers, a.body)) for k, a in self.answers.items()]
        with open(path, "wb") as f:
            pickle.dump((self.origin, answers, self.order), f, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def load(path: str) -> Recording:
        with open(path, "rb") as f:
            origin, answers, order = pickle.load(f)
        return Recording(origin, {k: Answer(*a) for k, a in answers}, order)

    def bodies(self, method: str, path_suffix: str, page_param: str) -> list[bytes]:
        """The bodies of one paged list in page order, one per page: the limit row decodes exactly these."""
        pages: dict[int, bytes] = {}
        for key in self.order:
            m, path, query = key
            answer = self.answers[key]
            if m == method and path.endswith(path_suffix) and answer.status == 200:
                page = dict(query).get(page_param)
                if page is not None and page.isdigit():
                    pages.setdefault(int(page), answer.body)
        return [pages[n] for n in sorted(pages)]


# ------------------------------------------------------------------------------------------------ recording


def record(target_url: str, runners: Iterable[Callable[[str], Any]]) -> Recording:
    """Runs each runner against a recording proxy in front of `target_url` (a sandbox); returns every answer."""
    target = urlsplit(target_url)
    store: dict[tuple[str, str, tuple[tuple[str, str], ...]], Answer] = {}
    order: list[tuple[str, str, tuple[tuple[str, str], ...]]] = []
    lock = threading.Lock()
    local = threading.local()

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _forward(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else None
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection(target.hostname, target.port, timeout=300)
            headers = {
                k: v for k, v in self.headers.items() if k.lower() not in ("connection", "accept-encoding")
            }
            conn.request(
                self.command, self.path, body=body, headers=headers
            )  # Host: the proxy's, as the client sent
            resp = conn.getresponse()
            data = resp.read()
            kept = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
            key = answer_key(self.command, self.path)
            with lock:
                if key not in store:
                    order.append(key)
                store[key] = Answer(resp.status, kept, data)
            self.send_response(resp.status)
            for k, v in kept:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    origin = f"127.0.0.1:{server.server_address[1]}"
    try:
        for run in runners:
            run(f"http://{origin}")
    finally:
        server.shutdown()
        server.server_close()
    return Recording(origin, store, order)


# ------------------------------------------------------------------------------------------------ replaying


def prepared(recording: Recording, origin: str) -> dict[tuple[str, str, tuple[tuple[str, str], ...]], bytes]:
    """Each answer as the exact bytes to write, with the recorded origin rewritten to `origin`."""
    old, new = recording.origin.encode(), origin.encode()
    out = {}
    for key, a in recording.answers.items():
        body = a.body.replace(old, new)
        head = [f"HTTP/1.1 {a.status} {http.client.responses.get(a.status, 'Status')}"]
        head += [f"{k}: {v.replace(recording.origin, origin)}" for k, v in a.headers]
        head += [f"Content-Length: {len(body)}", "", ""]
        out[key] = "\r\n".join(head).encode("latin-1") + body
    return out


async def serve(recording: Recording, ready: Callable[[str], None], stop: asyncio.Event) -> None:
    answers: dict[tuple[str, str, tuple[tuple[str, str], ...]], bytes] = {}
    body = b'{"error": "not in the recording"}'
    missing = b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, target, _ = line.decode("latin-1").split(" ", 2)
                length = 0
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = h.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if length:
                    await reader.readexactly(length)
                wire = answers.get(answer_key(method, target))
                if wire is None:
                    print(f"replay: not recorded: {method} {target}", file=sys.stderr, flush=True)
                    wire = missing
                writer.write(wire)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, limit=1 << 20)
    origin = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    answers.update(prepared(recording, origin))
    ready(f"http://{origin}")
    async with server:
        await stop.wait()


class ReplayProcess:
    """`python bench/replay.py serve PATH` as a child process; `.url` once it listens."""

    def __init__(self, path: str) -> None:
        import subprocess

        self.proc = subprocess.Popen(
            [sys.executable, __file__, "serve", path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = json.loads(self.proc.stdout.readline())["url"]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["serve"])
    p.add_argument("path")
    args = p.parse_args()
    recording = Recording.load(args.path)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # Serve until stdin closes (the parent is done or gone).
        loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.read() or stop.set())
        await serve(recording, lambda url: print(json.dumps({"url": url}), flush=True), stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()

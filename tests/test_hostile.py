"""Hostile servers: a broken or malicious vendor host must never abort the process, take unbounded memory or
time, or receive (or be shown) the credentials. One test per row of RELIABILITY.md's "hostile server" table.

Each case runs the client in a child process under an address-space limit (``isolated``, tests/conftest.py)
against a raw-bytes server on 127.0.0.1 (``hostile_server``), and asserts the error class and code, the peak
memory and the time.

    python -m pytest tests/test_hostile.py -q -s     # -s prints each case's row for RELIABILITY.md
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import labelport as lp
import pytest

TOKEN = "tok-4f9a77-SECRET-bearer"
PASSWORD = "pw-7c1e55-SECRET-pass"
BID = "11111111-2222-3333-4444-555555555555"

Answer = Callable[[str, str, dict[str, str], bytes], Any]


def client_code(extra: str = "") -> str:
    return (
        f'c = lp.Client("alegion", project="wf-1", base_url=URL, username="alice", password="{PASSWORD}", '
        f"timeout=5, max_retries=1{extra})\n"
    )


def result(i: int) -> dict[str, Any]:
    return {
        "createdAt": "2026-01-01T00:00:00Z",
        "resultData": {"label": "car"},
        "inputRecord": {"id": f"rec-{i}", "metadata": f"k{i}", "status": "COMPLETE"},
    }


@pytest.fixture
def alegion(hostile_server: Callable[..., Any], http_answer: Callable[..., bytes]) -> Callable[..., Any]:
    """``alegion(hostile, login=None)``: a fake Alegion that logs in (or answers the login with ``login``),
    knows batch ``BID``, and answers every other request with ``hostile``."""

    def start(hostile: Answer, login: Answer | None = None) -> Any:
        def answer(method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
            if path.startswith("/api/v1/login"):
                if login is not None:
                    return login(method, path, headers, body)
                return http_answer(200, json.dumps({"access_token": TOKEN, "expires_in": 3600}))
            if re.fullmatch(r"/api/v1/batches/[0-9a-f-]+", path):
                return http_answer(200, json.dumps({"id": BID, "name": "b"}))
            return hostile(method, path, headers, body)

        return hostile_server(answer)

    return start


ROWS: list[str] = []


def report(row: str, run: Any) -> None:
    ROWS.append(f"| {row} | {run.error} ({run.code}) | {run.peak_rss_mb:.0f} MB | {run.seconds:.2f} s |")
    print(ROWS[-1])


# --- 1. a Content-Length far beyond any page ------------------------------------------------------------------
def test_a_huge_content_length_is_refused_before_reading(alegion: Any, isolated: Any) -> None:
    def hostile(*_: Any) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000000000\r\n\r\n[{"

    srv = alegion(hostile)
    run = isolated(client_code() + "def case():\n    return c.request('GET', '/workflows')", url=srv.url)
    run.expect("VendorError", "response_too_large", max_mb=400, max_seconds=20)
    report("`Content-Length: 100000000000`", run)


# --- 2. a total count that plans a trillion pages ---------------------------------------------------------------
def test_a_huge_total_count_reads_lazily_and_stops_at_the_first_repeated_page(
    alegion: Any, isolated: Any, http_answer: Callable[..., bytes]
) -> None:
    page = json.dumps([result(i) for i in range(1000)])

    def hostile(method: str, path: str, *_: Any) -> bytes:
        return http_answer(200, page, {"X-Total-Count": "1000000000000"})

    srv = alegion(hostile)
    code = client_code() + f"def case():\n    return len(list(c.batch({BID!r}).results()))"
    run = isolated(code, url=srv.url)
    run.expect("VendorError", "pagination_loop", max_mb=500, max_seconds=30)
    report("`X-Total-Count: 1000000000000` on a full page, every page the same", run)


def test_a_huge_total_count_of_distinct_pages_stops_at_max_pages(
    alegion: Any, isolated: Any, http_answer: Callable[..., bytes]
) -> None:
    def hostile(method: str, path: str, *_: Any) -> bytes:
        n = int(re.search(r"[?&]page=(\d+)", path).group(1))  # type: ignore[union-attr]
        page = json.dumps([result(n * 1000 + i) for i in range(1000)])
        return http_answer(200, page, {"X-Total-Count": "1000000000000"})

    srv = alegion(hostile)
    code = client_code(", max_pages=20") + f"def case():\n    return len(list(c.batch({BID!r}).results()))"
    run = isolated(code, url=srv.url)
    run.expect("VendorError", "too_many_pages", max_mb=500, max_seconds=60)
    assert "20 pages" in run.message, run.message
    report("`X-Total-Count: 1000000000000`, distinct pages, `max_pages=20`", run)


# --- 3. a request() path that names another host ----------------------------------------------------------------
@pytest.mark.parametrize("vendor", lp.vendors())
def test_a_request_path_never_leaves_the_clients_host(
    vendor: str, hostile_server: Callable[..., Any], http_answer: Callable[..., bytes]
) -> None:
    other = hostile_server(lambda *_: http_answer(200, "{}"))
    with lp.sandbox.start(vendor, seed=3) as sb, sb.client() as c:
        # The reproduction: backslashes are slashes in http URLs, so this names another host.
        with pytest.raises(lp.InvalidInput) as e:
            c.request("GET", f"\\\\127.0.0.1:{other.port}\\x")
        assert e.value.field == "path"
        assert "leaves" in str(e.value)
        for path in (
            f"http://127.0.0.1:{other.port}/x",
            f"//127.0.0.1:{other.port}/x",
            f"/\\127.0.0.1:{other.port}/x",
            f"/api///127.0.0.1:{other.port}/x",
        ):
            try:
                c.request("GET", path)
            except lp.LabelportError:
                pass  # refused, or a path on the vendor's own host that it does not know: both fine
    assert other.requests == [], f"the other host was contacted: {other.requests}"


# --- 5. bodies that grow past any page: a gzip bomb, an endless chunked body ------------------------------------
@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """1 GiB of zeros, gzipped (about 1 MB)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    parts = [c.compress(zeros) for _ in range(1024)]
    parts.append(c.flush())
    return b"".join(parts)


def test_a_gzip_bomb_stops_at_the_limit_after_decompression(
    alegion: Any, isolated: Any, gzip_bomb: bytes, http_answer: Callable[..., bytes]
) -> None:
    srv = alegion(lambda *_: http_answer(200, gzip_bomb, {"Content-Encoding": "gzip"}))
    code = (
        client_code(", max_response_size=64_000_000")
        + "def case():\n    return c.request('GET', '/workflows')"
    )
    run = isolated(code, url=srv.url)
    run.expect("VendorError", "response_too_large", max_mb=400, max_seconds=30)
    report("gzip body of 1 MB inflating to 1 GB, `max_response_size=64_000_000`", run)


def test_a_gzip_bomb_stops_at_the_default_limit(
    alegion: Any, isolated: Any, gzip_bomb: bytes, http_answer: Callable[..., bytes]
) -> None:
    srv = alegion(lambda *_: http_answer(200, gzip_bomb, {"Content-Encoding": "gzip"}))
    run = isolated(client_code() + "def case():\n    return c.request('GET', '/workflows')", url=srv.url)
    run.expect("VendorError", "response_too_large", max_mb=900, max_seconds=60)
    report("gzip body of 1 MB inflating to 1 GB, default limit (512 MiB)", run)


def test_an_endless_chunked_body_stops_at_the_limit(alegion: Any, isolated: Any) -> None:
    def hostile(*_: Any) -> Iterator[bytes]:
        yield b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        chunk = b"%x\r\n" % (1 << 20) + b" " * (1 << 20) + b"\r\n"
        for _ in range(1024):  # 1 GiB
            yield chunk
        yield b"0\r\n\r\n"

    srv = alegion(hostile)
    code = (
        client_code(", max_response_size=64_000_000")
        + "def case():\n    return c.request('GET', '/workflows')"
    )
    run = isolated(code, url=srv.url)
    run.expect("VendorError", "response_too_large", max_mb=400, max_seconds=30)
    report("a 1 GB chunked body, `max_response_size=64_000_000`", run)


# --- 6. a Link to another host ----------------------------------------------------------------------------------
def test_a_next_link_to_another_host_is_never_followed(
    alegion: Any, isolated: Any, hostile_server: Callable[..., Any], http_answer: Callable[..., bytes]
) -> None:
    other = hostile_server(lambda *_: http_answer(200, "[]"))
    page = json.dumps([result(i) for i in range(1000)])
    link = f'<http://127.0.0.1:{other.port}/steal?page=2>; rel="next"'
    srv = alegion(lambda *_: http_answer(200, page, {"Link": link}))
    code = client_code() + f"def case():\n    return len(list(c.batch({BID!r}).results()))"
    run = isolated(code, url=srv.url)
    run.expect("VendorError", "cross_origin_link", max_mb=400, max_seconds=20)
    assert other.requests == [], f"the other host was contacted: {other.requests}"
    report('`Link: <http://other-host/...>; rel="next"`', run)


def test_a_next_link_to_the_same_page_on_another_origin_is_read_on_the_clients_own(
    alegion: Any, isolated: Any, hostile_server: Callable[..., Any], http_answer: Callable[..., bytes]
) -> None:
    """A server behind a proxy may build links from the inside (http, an inner port): a link to exactly the next
    page of the same list is read on the client's own origin; the other origin sees nothing."""
    other = hostile_server(lambda *_: http_answer(200, "[]"))

    def pages(method: str, path: str, *_: Any) -> bytes:
        n = int(re.search(r"[?&]page=(\d+)", path).group(1))  # type: ignore[union-attr]
        if n == 1:
            link = f'<http://127.0.0.1:{other.port}{path.replace("page=1", "page=2")}>; rel="next"'
            return http_answer(200, json.dumps([result(i) for i in range(1000)]), {"Link": link})
        return http_answer(200, json.dumps([result(1000 + i) for i in range(5)]))

    srv = alegion(pages)
    code = client_code() + f"def case():\n    return len(list(c.batch({BID!r}).results()))"
    run = isolated(code, url=srv.url)
    run.expect(None, max_mb=400, max_seconds=20)
    assert run.outcome["ok"] == "1005", run.outcome
    assert other.requests == [], f"the other host was contacted: {other.requests}"


# --- 7. an error body that quotes the request -------------------------------------------------------------------
# Each vendor's own error shape, with the whole request quoted where its message goes.
ERROR_SHAPES: dict[str, Callable[[str], Any]] = {
    "alegion": lambda q: {"message": q, "error": "Bad Request", "exception": "x.BadRequest"},
    "sama": lambda q: {"errors": [{"type": "invalid", "message": q}]},
    "playment": lambda q: {"success": False, "error": {"code": "E1", "message": q}},
    "deepen": lambda q: {"detail": q},
}


def echo_error(vendor: str) -> Answer:
    """A 400 in ``vendor``'s error shape whose message quotes the whole request: line, headers and body."""

    def answer(method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        quoted = f"{method} {path} {json.dumps(headers)} {body.decode('latin-1')}"
        payload = json.dumps(ERROR_SHAPES[vendor](quoted)).encode()
        head = b"HTTP/1.1 400 Bad\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(
            payload
        )
        return head + payload

    return answer


CLIENTS = {
    "alegion": (
        'lp.Client("alegion", project="wf-1", base_url=URL, username="alice", password="{s}")',
        "/workflows",
    ),
    "sama": ('lp.Client("sama", project=7, base_url=URL, api_key="{s}")', "/v2/projects/7/tasks.json"),
    "playment": (
        'lp.Client("playment", project="p-1", base_url=URL, api_key="{s}")',
        "/v1/projects/p-1/batches",
    ),
    "deepen": ('lp.Client("deepen", project="p-1", base_url=URL, api_token="{s}")', "/datasets"),
}


@pytest.mark.parametrize("vendor", sorted(CLIENTS))
def test_a_vendor_error_quoting_the_request_shows_no_secret(
    vendor: str, hostile_server: Callable[..., Any], http_answer: Callable[..., bytes]
) -> None:
    secret = "s3cr3t-" + vendor + "-K9x/+="

    def answer(method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        if path.startswith("/api/v1/login"):
            return http_answer(200, json.dumps({"access_token": TOKEN, "expires_in": 3600}))
        return echo_error(vendor)(method, path, headers, body)

    srv = hostile_server(answer)
    make, path = CLIENTS[vendor]
    c = eval(make.format(s=secret), {"lp": lp, "URL": srv.url})  # noqa: S307 (a fixed table of constructors)
    with pytest.raises(lp.LabelportError) as e:
        c.request("GET", path)
    shown = f"{e.value} {e.value.message} {e.value.code} {e.value.details} {e.value!r}"
    assert srv.requests, "the request never reached the server"
    for s in (secret, TOKEN, secret.replace("/", "%2F").replace("+", "%2B").replace("=", "%3D")):
        assert s not in shown, f"{vendor}: a secret is shown: {shown}"
    assert "REDACTED" in shown, shown


# --- 8. endless distinct next links while an upload checks its keys --------------------------------------------
def test_endless_next_links_during_the_key_check_stop(
    alegion: Any, isolated: Any, http_answer: Callable[..., bytes]
) -> None:
    records = json.dumps([{"metadata": f"k{i}", "id": f"r{i}"} for i in range(1000)])
    calls = {"n": 0}

    def hostile(method: str, path: str, *_: Any) -> bytes:
        calls["n"] += 1
        link = f'<{srv.url}/api/v1/batches/{BID}/records?page={calls["n"] + 1}&pageSize=1000&n={calls["n"]}>; rel="next"'
        return http_answer(200, records, {"X-Total-Count": "5000", "Link": link})

    srv = alegion(hostile)
    code = client_code() + f"def case():\n    return c.batch({BID!r}).upload([{{'id': 'new-1'}}], key='id')"
    run = isolated(code, url=srv.url)
    run.expect("VendorError", "pagination_loop", max_mb=400, max_seconds=30)
    assert calls["n"] < 50, calls
    report("endless distinct `next` links during an upload's key check", run)


# --- 9 and 10. Retry-After beyond the longest wait, or beyond reason --------------------------------------------
@pytest.mark.parametrize(
    ("value", "error", "code", "retry_after"),
    [
        ("1000000000", "RateLimited", None, 1e9),
        ("121", "RateLimited", None, 121.0),
        ("1e30", "VendorError", "bad_response", None),
        ("-3", "VendorError", "bad_response", None),
    ],
)
def test_a_retry_after_beyond_the_longest_wait_is_reported_at_once(
    value: str,
    error: str,
    code: str | None,
    retry_after: float | None,
    alegion: Any,
    isolated: Any,
    http_answer: Callable[..., bytes],
) -> None:
    srv = alegion(lambda *_: http_answer(429, '{"message": "slow down"}', {"Retry-After": value}))
    run = isolated(client_code() + "def case():\n    return c.request('GET', '/workflows')", url=srv.url)
    run.expect(error, code, max_mb=400, max_seconds=10)
    assert run.outcome["retry_after"] == retry_after, run.outcome
    assert run.outcome["status"] == 429, run.outcome
    report(f"`Retry-After: {value}` on a 429", run)


def test_max_retry_wait_is_a_client_option(
    alegion: Any, isolated: Any, http_answer: Callable[..., bytes]
) -> None:
    srv = alegion(lambda *_: http_answer(429, '{"message": "slow down"}', {"Retry-After": "5"}))
    code = client_code(", max_retry_wait=2") + "def case():\n    return c.request('GET', '/workflows')"
    run = isolated(code, url=srv.url)
    run.expect("RateLimited", None, max_mb=400, max_seconds=5)
    assert run.outcome["retry_after"] == 5.0
    assert "max_retry_wait" in run.message


@pytest.mark.parametrize("expires_in", ["1e300", "-5", '"NaN"', '"soon"'])
def test_a_login_lifetime_beyond_reason_is_a_bad_response(
    expires_in: str, alegion: Any, isolated: Any, http_answer: Callable[..., bytes]
) -> None:
    login_body = f'{{"access_token": "{TOKEN}", "expires_in": {expires_in}}}'
    srv = alegion(lambda *_: http_answer(200, "[]"), login=lambda *_: http_answer(200, login_body))
    run = isolated(client_code() + "def case():\n    return c.request('GET', '/workflows')", url=srv.url)
    run.expect("VendorError", "bad_response", max_mb=400, max_seconds=10)
    assert "expires_in" in run.message
    report(f"login `expires_in: {expires_in}`", run)


# --- 12. a login body that stalls; a redirect loop --------------------------------------------------------------
def test_a_stalled_login_body_is_a_retryable_vendor_error(alegion: Any, isolated: Any) -> None:
    import time

    def stalled(*_: Any) -> Iterator[bytes]:
        yield b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{"access'
        time.sleep(8)

    srv = alegion(lambda *_: b"", login=stalled)
    code = (
        f'c = lp.Client("alegion", project="wf-1", base_url=URL, username="alice", password="{PASSWORD}", '
        "timeout=1, max_retries=1)\ndef case():\n    return c.request('GET', '/workflows')"
    )
    run = isolated(code, url=srv.url)
    run.expect("VendorError", "connection_lost", max_mb=400, max_seconds=10)
    report("a login body that stalls after 8 bytes", run)


def test_a_redirect_loop_is_named(alegion: Any, isolated: Any, http_answer: Callable[..., bytes]) -> None:
    def loop(method: str, path: str, *_: Any) -> bytes:
        n = int(path.rpartition("=")[2]) + 1 if "loop=" in path else 1
        return http_answer(302, "", {"Location": f"/api/v1/workflows?loop={n}"})

    srv = alegion(loop)
    run = isolated(client_code() + "def case():\n    return c.request('GET', '/workflows')", url=srv.url)
    run.expect("VendorError", "redirect_loop", max_mb=400, max_seconds=10)
    report("a redirect loop on the vendor's own host", run)


# --- and a few more of our own ----------------------------------------------------------------------------------
def test_a_body_that_is_not_gzip_but_says_so_is_a_connection_error_not_a_crash(
    alegion: Any, isolated: Any, http_answer: Callable[..., bytes]
) -> None:
    srv = alegion(lambda *_: http_answer(200, b"\x1f\x8b\x08garbage" * 100, {"Content-Encoding": "gzip"}))
    run = isolated(client_code() + "def case():\n    return c.request('GET', '/workflows')", url=srv.url)
    run.expect("VendorError", "connection_lost", max_mb=400, max_seconds=20)
    report("`Content-Encoding: gzip` on a body that is not gzip", run)


def test_a_truncated_gzip_page_is_an_error_not_a_short_page(
    alegion: Any, isolated: Any, http_answer: Callable[..., bytes]
) -> None:
    whole = gzip.compress(json.dumps([result(i) for i in range(1000)]).encode())
    srv = alegion(lambda *_: http_answer(200, whole[: len(whole) // 2], {"Content-Encoding": "gzip"}))
    code = client_code() + f"def case():\n    return len(list(c.batch({BID!r}).results()))"
    run = isolated(code, url=srv.url)
    run.expect("VendorError", "connection_lost", max_mb=400, max_seconds=20)
    report("a gzip page cut off halfway", run)


def test_limit_options_are_checked(sandbox: lp.sandbox.Sandbox) -> None:
    for name, value in [
        ("max_response_size", 0),
        ("max_response_size", -1),
        ("max_response_size", 1.5),
        ("max_pages", "many"),
        ("max_retry_wait", float("nan")),
        ("max_retry_wait", -1),
        ("max_retry_wait", 1e300),
    ]:
        with pytest.raises(lp.InvalidInput) as e:
            sandbox.client(**{name: value})
        assert e.value.field == name, (name, value, e.value)


def test_limit_options_travel_with_the_spec(sandbox: lp.sandbox.Sandbox) -> None:
    import pickle

    with sandbox.client(max_pages=7, max_response_size=10_000_000, max_retry_wait=3) as c:
        again = pickle.loads(pickle.dumps(c.spec(include_credentials=True))).client()
        state = pickle.dumps(again.spec())
        assert b"max_pages" in state and b"max_retry_wait" in state and b"max_response_size" in state


# --- 9, continued: no Retry-After outlives the caller's timeout; no private retry loop waits past the limit -----
def forwarding(
    target: str, hostile: Callable[[str, bool], bytes | None], http_answer: Callable[..., bytes]
) -> Answer:
    """A proxy to the sandbox at ``target``, except where ``hostile(path, armed)`` gives an answer. It is armed
    by a GET of ``/__arm`` (from the child, once its setup is done). The Host header goes through unchanged, so
    the URLs the sandbox hands out (files, redirects) point back at the proxy."""
    import http.client
    from urllib.parse import urlsplit

    where = urlsplit(target)
    armed = {"on": False}
    hop_by_hop = {"connection", "content-length", "transfer-encoding", "keep-alive"}

    def answer(method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        if path == "/__arm":
            armed["on"] = True
            return http_answer(200, "{}")
        out = hostile(path, armed["on"])
        if out is not None:
            return out
        conn = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
        try:
            sent = {k: v for k, v in headers.items() if k not in hop_by_hop}
            conn.request(method, path, body=body or None, headers=sent)
            resp = conn.getresponse()
            data = resp.read()
            kept = [(k, v) for k, v in resp.getheaders() if k.lower() not in hop_by_hop]
            return http_answer(resp.status, data, kept)
        finally:
            conn.close()

    return answer


SLOW_DOWN = ('{"message": "slow down"}', {"Retry-After": "300"})


@pytest.mark.parametrize("retry_after", [300, 30])
@pytest.mark.parametrize("vendor", lp.vendors())
def test_a_retry_after_past_the_waits_timeout_is_rate_limited_at_once(
    vendor: str,
    retry_after: int,
    hostile_server: Callable[..., Any],
    isolated: Any,
    http_answer: Callable[..., bytes],
) -> None:
    # 300 s: more than max_retry_wait (120 s); 30 s: less, but more than the wait's 2 s.
    slow = http_answer(429, '{"message": "slow down"}', {"Retry-After": str(retry_after)})
    with lp.sandbox.start(vendor, seed=5) as sb:
        srv = hostile_server(forwarding(sb.url, lambda _path, armed: slow if armed else None, http_answer))
        settings = {"project": sb.project, **sb.credentials}
        code = (
            "import urllib.request\n"
            f"c = lp.Client({vendor!r}, base_url=URL, **{settings!r})\n"
            "b = c.create_batch('deadline', exist_ok=True)\n"
            "def case():\n"
            "    urllib.request.urlopen(URL + '/__arm').read()\n"
            "    return b.wait(timeout=2)\n"
        )
        run = isolated(code, url=srv.url, timeout=60)
    run.expect("RateLimited", None, max_mb=400, max_seconds=1.5)
    assert run.outcome["retry_after"] == float(retry_after), run.outcome
    report(f"{vendor}: `Retry-After: {retry_after}` on status polls, `wait(timeout=2)`", run)


# Playment's result file behind /v1/attachments, TaskMonk's output file: read outside the engine's send.
RESULT_FILE = {
    "playment": (
        "/v1/attachments",
        "[{'image_id': 'r-1', 'image_url': 'https://example.com/1.jpg'}]",
    ),
    "taskmonk": ("/_files/", "[{'image_id': 'r-1', 'url': 'https://example.com/1.jpg'}]"),
}


@pytest.mark.parametrize("vendor", sorted(RESULT_FILE))
def test_a_long_retry_after_on_the_result_file_is_reported_at_once(
    vendor: str, hostile_server: Callable[..., Any], isolated: Any, http_answer: Callable[..., bytes]
) -> None:
    slow = http_answer(429, *SLOW_DOWN)
    prefix, records = RESULT_FILE[vendor]
    with lp.sandbox.start(vendor, seed=5) as sb:
        # Armed after the setup: TaskMonk's upload itself reads an output file back (its key check).
        hostile = lambda path, armed: slow if armed and path.startswith(prefix) else None  # noqa: E731
        srv = hostile_server(forwarding(sb.url, hostile, http_answer))
        settings = {"project": sb.project, **sb.credentials}
        code = (
            "import urllib.request\n"
            f"c = lp.Client({vendor!r}, base_url=URL, **{settings!r})\n"
            "b = c.create_batch('files', exist_ok=True)\n"
            f"b.upload({records}, key='image_id').wait(timeout=60)\n"
            "b.wait(timeout=60, poll_interval=0.1)\n"
            "def case():\n"
            "    urllib.request.urlopen(URL + '/__arm').read()\n"
            "    return b.results().to_list()\n"
        )
        run = isolated(code, url=srv.url, timeout=60)
    run.expect("RateLimited", None, max_mb=400, max_seconds=10)
    assert run.outcome["retry_after"] == 300.0, run.outcome
    assert any(path.startswith(prefix) for _, path, _ in srv.requests), srv.requests
    report(f"{vendor}: `Retry-After: 300` on the result file", run)

"""Hostile input to `labelport.callbacks` (issue 18, row 14): a huge body with wrong credentials, half-sent and
idle connections, deep JSON, malformed Content-Length, a non-finite `max_skew`. Real sockets on 127.0.0.1;
the cases where memory or threads could run away run in a child process under a memory limit
(tests/conftest.py, `isolated`)."""

from __future__ import annotations

import ast
import base64
import datetime as dt
import hashlib
import hmac
import json
import math
import socket
import time

import labelport as lp
import pytest
from labelport import callbacks

TOKEN = "hook-token-s3cret"
HMAC_CREDS = {"key_id": "kid-1", "secret": "hook-secret-s3cret"}


def http_date(at: dt.datetime | None = None) -> str:
    return (at or dt.datetime.now(dt.timezone.utc)).strftime("%a, %d %b %Y %H:%M:%S GMT")


def signed(secret: bytes, path: str, date: str, body: bytes, key_id: str = "kid-1") -> dict[str, str]:
    """Headers signed by the provisional recipe, written here independently of the module under test."""
    mac = hmac.new(secret, f"POST\n{path}\n{date}\n".encode() + body, hashlib.sha256).digest()
    return {"X-wsm-date": date, "Authorization": f"HMAC-SHA256 {key_id}:{base64.b64encode(mac).decode()}"}


def head(path: str = "/hook", headers: dict[str, str] | list[tuple[str, str]] | None = None) -> bytes:
    items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in items)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def exchange(port: int, data: bytes, timeout: float = 3.0) -> int | None:
    """Sends ``data`` on a fresh connection; the status answered, or None if the connection ended (or the
    timeout ran out) without an answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
            got = b""
            while b"\r\n" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except OSError:  # includes the timeout: no answer
            return None
    return int(got.split(b" ", 2)[1]) if got.startswith(b"HTTP/") else None


def token_post(
    port: int, body: bytes, token: str = TOKEN, extra: list[tuple[str, str]] | None = None
) -> int | None:
    headers = [("X-Auth-Token", token), ("Content-Type", "application/json"), *(extra or [])]
    if not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
        headers.append(("Content-Length", str(len(body))))
    return exchange(port, head("/hook", headers) + body)


def outcome_value(result) -> dict:
    return ast.literal_eval(result.outcome["ok"])


# The harness's peak_rss_mb is getrusage's ru_maxrss, which Linux carries over fork and exec from the parent
# (the pytest process); VmHWM is this process's own peak, reset at exec. Cases assert on VmHWM, and leave
# expect() only the harness's address-space limit (HOSTILE_MEM_MB), which a runaway would hit.
HOSTILE_MEM_MB = 3072
OWN_PEAK = """
def own_peak_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
"""

# --- 1 GB body with wrong credentials: refused before the body is read --------------------------------------

HUGE_BODY_CASE = """
import select, socket
from labelport import callbacks

def case():
    size = 1_000_000_000
    with callbacks.Receiver("sama", "token", token="right-token") as rx:
        s = socket.create_connection(("127.0.0.1", rx.port))
        s.sendall(
            b"POST /hook HTTP/1.1\\r\\nHost: x\\r\\nX-Auth-Token: wrong-token\\r\\n"
            b"Content-Type: application/json\\r\\nContent-Length: %d\\r\\n\\r\\n" % size
        )
        s.setblocking(False)
        chunk = b"0" * (1 << 20)
        sent, answer, send_failed = 0, b"", False
        deadline = time.monotonic() + 60
        # Streams the body while watching for an answer, as a client with Expect: 100-continue would.
        while time.monotonic() < deadline and b"\\r\\n" not in answer:
            want_write = [s] if sent < size and not send_failed else []
            readable, writable, _ = select.select([s], want_write, [], 1.0)
            if readable:
                try:
                    data = s.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                answer += data
            elif writable:
                try:
                    sent += s.send(chunk[: min(len(chunk), size - sent)])
                except OSError:
                    send_failed = True
        s.close()
        status = int(answer.split(b" ")[1]) if answer.startswith(b"HTTP/") else None
        return {"status": status, "sent_mb": sent / 2**20, "rejected": list(rx.rejected), "own_mb": own_peak_mb()}
"""


def test_wrong_token_with_a_1gb_body_is_refused_before_the_body(isolated):
    result = isolated(OWN_PEAK + HUGE_BODY_CASE, timeout=120)
    result.expect(None, max_mb=HOSTILE_MEM_MB, max_seconds=10)  # it ended normally, within the limit
    got = outcome_value(result)
    assert got["own_mb"] < 150, got  # the child's own peak
    assert got["status"] == 401, got
    assert got["rejected"] == [("wrong_credentials", 401)], got
    # The answer came while the client was still at the start of its body (socket buffers, a bounded drain).
    assert got["sent_mb"] < 64, got
    print(
        f"1 GB body, wrong token: peak {got['own_mb']:.0f} MB, {result.seconds:.2f} s, "
        f"{got['sent_mb']:.1f} MB sent before the 401"
    )


@pytest.mark.parametrize(
    "method, creds, headers",
    [
        ("token", {"token": TOKEN}, [("X-Auth-Token", "wrong")]),
        ("token", {"token": TOKEN}, []),
        (
            "basic",
            {"username": "u", "password": "p"},
            [("Authorization", "Basic " + base64.b64encode(b"u:x").decode())],
        ),
        ("access_key", {"access_key": "k"}, []),
        ("hmac", HMAC_CREDS, [("X-wsm-date", "now")]),  # no signature header
        ("hmac", HMAC_CREDS, [("Authorization", "HMAC-SHA256 kid-1:AAAA")]),  # no date header
        ("hmac", HMAC_CREDS, [("X-wsm-date", "now"), ("Authorization", "HMAC-SHA256 kid-1:@@@")]),
        ("hmac", HMAC_CREDS, [("X-wsm-date", "now"), ("Authorization", "Bearer xyz")]),
        ("hmac", HMAC_CREDS, [("X-wsm-date", "now"), ("Authorization", "HMAC-SHA256 kid-2:AAAA")]),
        ("hmac", HMAC_CREDS, [("X-wsm-date", "yesterday"), ("Authorization", "HMAC-SHA256 kid-1:AAAA")]),
    ],
    ids=[
        "token-wrong",
        "token-missing",
        "basic-wrong",
        "access_key-missing",
        "hmac-no-signature",
        "hmac-no-date",
        "hmac-signature-not-base64",
        "hmac-other-scheme",
        "hmac-other-key-id",
        "hmac-date-not-a-date",
    ],
)
def test_credentials_are_checked_on_the_headers_before_the_body(method, creds, headers):
    """A request that announces 1 GB and sends none of it is answered 401 at once: the receiver does not wait
    for the body to decide that the credentials (or, for hmac, the signature headers) are wrong."""
    headers = [(k, http_date() if v == "now" else v) for k, v in headers]
    with callbacks.Receiver("sama", method, **creds) as rx:
        started = time.monotonic()
        status = exchange(rx.port, head("/hook", [*headers, ("Content-Length", "1000000000")]), timeout=3)
        assert status == 401
        assert time.monotonic() - started < 2
        assert len(rx.rejected) == 1 and rx.rejected[0][1] == 401


# --- many half-sent and idle connections: closed at the deadline, threads bounded -----------------------------

HALF_SENT_CASE = """
import selectors, socket, threading
from labelport import callbacks

def case():
    base = threading.active_count()
    peak = [0]
    stop = threading.Event()

    def sample():  # the handler threads alive at once, every 5 ms
        while not stop.is_set():
            peak[0] = max(peak[0], threading.active_count() - base - 1)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with callbacks.Receiver("sama", "token", token="t", timeout=1.0, max_connections=16) as rx:
        sel = selectors.DefaultSelector()
        opened = {}
        for i in range(300):
            s = socket.create_connection(("127.0.0.1", rx.port), timeout=5)
            if i % 3 == 0:
                s.sendall(b"POST /hook HTTP/1.1\\r\\nX-Auth-Token: t\\r\\nContent-Len")  # half a head
            elif i % 3 == 1:
                s.sendall(b"POST /hook HTTP/1.1\\r\\nX-Auth-Token: t\\r\\nContent-Length: 100\\r\\n\\r\\n{")  # half a body
            opened[s] = time.monotonic()  # and every third sends nothing at all
            sel.register(s, selectors.EVENT_READ)
            # Paced a little: the clients share the receiver's process (and GIL); a burst faster than its
            # accept loop overflows the listen queue, and the kernel then completes a handshake 1 s late.
            time.sleep(0.001)
        answers, lasted = {}, []
        while len(answers) < len(opened) and time.monotonic() - max(opened.values()) < 10:
            for key, _ in sel.select(timeout=0.5):
                s = key.fileobj
                try:
                    data = s.recv(64)
                except OSError:
                    data = b""
                answers[s] = data.split(b" ")[1].decode() if data.startswith(b"HTTP/") else "closed"
                lasted.append(time.monotonic() - opened[s])
                sel.unregister(s)
        for s in opened:
            s.close()
        body = b'{"task": {"id": "t1"}}'
        s = socket.create_connection(("127.0.0.1", rx.port), timeout=5)
        s.sendall(b"POST /hook HTTP/1.1\\r\\nX-Auth-Token: t\\r\\nContent-Length: %d\\r\\n\\r\\n%s" % (len(body), body))
        after = s.recv(64).split(b" ")[1].decode()
        s.close()
        stop.set()
        kinds = {}
        for v in answers.values():
            kinds[v] = kinds.get(v, 0) + 1
        return {"threads": peak[0], "ended": len(answers), "longest": max(lasted),
                "kinds": kinds, "after": after, "payloads": rx.payloads(), "own_mb": own_peak_mb()}
"""


def test_300_half_sent_requests_are_closed_after_the_timeout_with_bounded_threads(isolated):
    result = isolated(OWN_PEAK + HALF_SENT_CASE, timeout=60)
    result.expect(None, max_mb=HOSTILE_MEM_MB, max_seconds=8)
    got = outcome_value(result)
    assert got["own_mb"] < 150, got
    assert got["threads"] <= 16 + 1, got  # the handler threads (max_connections) and the server's own
    assert got["ended"] == 300, got  # every connection was answered or closed...
    assert got["longest"] < 1.0 + 1.0, got  # ...within the timeout (1 s) of its opening, and some slack
    assert set(got["kinds"]) <= {"503", "408", "closed"}, got
    assert got["kinds"].get("503", 0) >= 200, got  # past max_connections: 503 at once
    assert got["after"] == "200" and got["payloads"] == [{"task": {"id": "t1"}}], got
    print(f"300 half-sent: peak {got['own_mb']:.0f} MB, {result.seconds:.2f} s, {got}")


def test_a_request_dripped_a_byte_at_a_time_is_cut_at_the_deadline():
    """The timeout bounds the whole request, not each read: a byte every 0.2 s does not keep it open."""
    with callbacks.Receiver("sama", "token", token=TOKEN, timeout=1.0) as rx:
        data = head("/hook", [("X-Auth-Token", TOKEN), ("Content-Length", "100")]) + b'{"a": "' + b"x" * 200
        with socket.create_connection(("127.0.0.1", rx.port), timeout=5) as s:
            started = time.monotonic()
            ended = None
            for byte in data:
                try:
                    s.sendall(bytes([byte]))
                except OSError:
                    ended = time.monotonic() - started
                    break
                time.sleep(0.2)
                s.setblocking(False)
                try:
                    got = s.recv(64)
                except BlockingIOError:
                    got = None
                except OSError:
                    got = b""
                s.setblocking(True)
                if got is not None:
                    ended = time.monotonic() - started
                    break
        assert ended is not None and ended < 2.5, ended
        assert rx.payloads() == []


# --- malformed bodies: 400, never a dropped connection --------------------------------------------------------


def test_deep_json_with_valid_auth_is_answered_400_and_the_receiver_keeps_serving():
    deep = b"[" * 100_000 + b"]" * 100_000
    with callbacks.Receiver("sama", "token", token=TOKEN) as rx:
        assert token_post(rx.port, deep) == 400
        assert rx.rejected == [("bad_body", 400)]
        assert token_post(rx.port, b'{"task": {"id": "t1"}}') == 200
        assert rx.payloads() == [{"task": {"id": "t1"}}]


def test_verify_refuses_json_nested_past_the_limit_as_bad_body():
    kw = {"token": TOKEN}
    headers = {"X-Auth-Token": TOKEN}
    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
        with pytest.raises(lp.CallbackRejected) as info:
            callbacks.verify("sama", "token", headers, body, **kw)
        assert info.value.code == "bad_body" and info.value.http_status == 400
    limit = callbacks.MAX_JSON_DEPTH
    at_limit = b"[" * limit + b"]" * limit
    assert callbacks.verify("sama", "token", headers, at_limit, **kw) is not None
    with pytest.raises(lp.CallbackRejected) as info:
        callbacks.verify("sama", "token", headers, b"[" + at_limit + b"]", **kw)
    assert info.value.code == "bad_body" and "deeper than" in str(info.value)
    # Brackets and escaped quotes inside strings are text, not nesting.
    text = json.dumps({"a": "[" * 10_000 + '\\"' + "{" * 10_000, "b": ["]]]"]}).encode()
    assert callbacks.verify("sama", "token", headers, text, **kw)["b"] == ["]]]"]
    # The same JSON in UTF-16 (which json.loads accepts) is measured the same way.
    assert callbacks.verify("sama", "token", headers, at_limit.decode().encode("utf-16"), **kw) is not None
    with pytest.raises(lp.CallbackRejected):
        callbacks.verify("sama", "token", headers, ("[" * 100_000).encode("utf-16-le"), **kw)


@pytest.mark.parametrize(
    "lengths",
    [["abc"], ["-1"], ["1.5"], ["0x10"], ["+2"], [""], ["2, 2"], ["2", "3"]],
    ids=["abc", "negative", "fraction", "hex", "plus-sign", "empty", "list", "two-headers"],
)
def test_a_malformed_content_length_is_answered_400(lengths):
    with callbacks.Receiver("sama", "token", token=TOKEN) as rx:
        extra = [("Content-Length", v) for v in lengths]
        assert token_post(rx.port, b"{}", extra=extra) == 400
        assert rx.rejected == [("bad_request", 400)]
        assert rx.payloads() == []


def test_a_body_over_the_default_limit_is_answered_413_without_being_read():
    limit = 10 * 1024 * 1024  # the documented default
    with callbacks.Receiver("sama", "token", token=TOKEN) as rx:
        started = time.monotonic()
        # Valid credentials, a body announced one byte over the limit and never sent: answered at once.
        status = exchange(
            rx.port, head("/hook", [("X-Auth-Token", TOKEN), ("Content-Length", str(limit + 1))])
        )
        assert status == 413 and time.monotonic() - started < 2
        assert (
            exchange(rx.port, head("/hook", [("X-Auth-Token", TOKEN), ("Content-Length", "9" * 40)])) == 413
        )
        assert rx.rejected == [("too_large", 413)] * 2
        # Exactly at the limit is accepted.
        pad = limit - len(b'{"pad": ""}')
        assert token_post(rx.port, b'{"pad": "' + b"x" * pad + b'"}') == 200
        assert len(rx.payloads()) == 1
    assert callbacks.MAX_BODY == limit


def test_max_body_is_a_receiver_option():
    with callbacks.Receiver("sama", "token", token=TOKEN, max_body=100) as rx:
        assert rx.max_body == 100
        assert token_post(rx.port, b'{"a": "' + b"x" * 150 + b'"}') == 413
        assert token_post(rx.port, b'{"a": "' + b"x" * 90 + b'"}') == 200


def test_hmac_with_well_formed_headers_and_an_oversized_body_is_413_before_reading():
    with callbacks.Receiver("sama", "hmac", **HMAC_CREDS) as rx:
        headers = {
            "X-wsm-date": http_date(),
            "Authorization": "HMAC-SHA256 kid-1:AAAA",
            "Content-Length": "50000000",
        }
        assert exchange(rx.port, head("/hook", headers)) == 413
        assert rx.rejected == [("too_large", 413)]
        # A bounded body with a wrong signature is still read and refused on the signature.
        body = b'{"task": {"id": "t1"}}'
        forged = signed(b"not-the-secret", "/hook", http_date(), body)
        assert exchange(rx.port, head("/hook", {**forged, "Content-Length": str(len(body))}) + body) == 401
        good = signed(HMAC_CREDS["secret"].encode(), "/hook", http_date(), body)
        assert exchange(rx.port, head("/hook", {**good, "Content-Length": str(len(body))}) + body) == 200
        assert [c for c, _ in rx.rejected] == ["too_large", "bad_signature"]


def test_a_chunked_body_is_answered_411():
    """The receiver reads only bodies of a declared length (what Sama sends); a chunked one is refused
    instead of being read as empty."""
    with callbacks.Receiver("sama", "token", token=TOKEN) as rx:
        body = b"2\r\n{}\r\n0\r\n\r\n"
        assert token_post(rx.port, body, extra=[("Transfer-Encoding", "chunked")]) == 411
        assert rx.rejected == [("length_required", 411)]


def test_a_request_head_over_64_kib_is_refused():
    with callbacks.Receiver("sama", "token", token=TOKEN) as rx:
        body = b"{}"
        padding = [
            (f"X-Pad-{i}", "p" * 50_000) for i in range(5)
        ]  # 250 kB of headers, each line under 64 KiB
        status = exchange(
            rx.port, head("/hook", [*padding, ("X-Auth-Token", TOKEN), ("Content-Length", "2")]) + body
        )
        assert status == 431
        assert rx.payloads() == []


# --- max_skew -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "skew",
    [math.nan, math.inf, -math.inf, -1, -0.5, 10**400],
    ids=["nan", "inf", "-inf", "-1", "-0.5", "1e400"],
)
def test_verify_refuses_a_non_finite_or_negative_max_skew(skew):
    body = b'{"task": {"id": "t1"}}'
    old = http_date(dt.datetime(2001, 1, 1, tzinfo=dt.timezone.utc))
    headers = signed(b"k", "/cb", old, body)
    with pytest.raises(ValueError, match="max_skew"):
        callbacks.verify("sama", "hmac", headers, body, secret="k", path="/cb", max_skew=skew)
    with pytest.raises(ValueError, match="max_skew"):
        callbacks.verify("sama", "token", {"X-Auth-Token": "t"}, body, token="t", max_skew=skew)
    with pytest.raises(ValueError, match="max_skew"):
        callbacks.Receiver("sama", "hmac", max_skew=skew, **HMAC_CREDS)
    # A finite window still refuses the 2001 date.
    with pytest.raises(lp.CallbackRejected) as info:
        callbacks.verify("sama", "hmac", headers, body, secret="k", path="/cb", max_skew=300)
    assert info.value.code == "stale"


@pytest.mark.parametrize(
    "option",
    [
        {"max_body": 0},
        {"max_body": -1},
        {"timeout": 0},
        {"timeout": math.nan},
        {"timeout": math.inf},
        {"max_connections": 0},
    ],
    ids=["max_body-0", "max_body-negative", "timeout-0", "timeout-nan", "timeout-inf", "max_connections-0"],
)
def test_receiver_limits_are_validated(option):
    with pytest.raises(ValueError, match=next(iter(option))):
        callbacks.Receiver("sama", "token", token=TOKEN, **option)

"""Sama callbacks into `labelport.callbacks`: the Sama sandbox posts creation and delivery callbacks (up to
five attempts) over real sockets to a `Receiver`, for each of the four auth methods; valid ones are accepted
once, and a tampered body, a wrong secret, a stale date or a replayed request are refused. The refused
requests are real requests the sandbox sent, captured and sent again with urllib.

The verifier (Python) and the simulator's signer (Rust, src/sandbox/sama.rs) are written separately: a misread
of Sama's HMAC recipe cannot hide by being wrong the same way on both sides."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.server
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import labelport as lp
import pytest
from labelport import callbacks

PROJECT = "117"

CREDS = {
    "basic": {"username": "hook-user", "password": "hook-pass-s3cret"},
    "access_key": {"access_key": "hook-key-s3cret"},
    "token": {"token": "hook-token-s3cret"},
    "hmac": {"key_id": "kid-1", "secret": "hook-secret-s3cret"},
}
WRONG = {
    "basic": {"username": "hook-user", "password": "not-the-password"},
    "access_key": {"access_key": "not-the-key"},
    "token": {"token": "not-the-token"},
    "hmac": {"key_id": "kid-1", "secret": "not-the-secret"},
}
#: What a receiver answers a callback with wrong credentials: (code, HTTP status).
WRONG_ANSWER = {
    "basic": ("wrong_credentials", 401),
    "access_key": ("wrong_credentials", 401),
    "token": ("wrong_credentials", 401),
    "hmac": ("bad_signature", 401),
}


def configure(sb: lp.sandbox.Sandbox, url: str, method: str, creds: dict[str, str], **extra: Any) -> None:
    hook = {"url": url, "auth": method, **creds}
    sb.hook(f"/_sim/projects/{PROJECT}/callbacks", {"creation": hook, "delivery": hook, **extra})


def wait_until(check: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class Recorder:
    """A plain HTTP server that records every request (path, headers, body) and answers 200: how the tests
    capture genuine sandbox requests to send again."""

    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, str], bytes]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.got.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def capture(method: str, creds: dict[str, str], seed: int) -> tuple[str, dict[str, str], bytes]:
    """One genuine creation callback the Sama sandbox sent with `method`, as received."""
    rec = Recorder()
    try:
        with lp.sandbox.start("sama", seed=seed) as sb, sb.client() as c:
            sb.hook(
                f"/_sim/projects/{PROJECT}/callbacks",
                {"creation": {"url": rec.url, "auth": method, **creds}},
            )
            c.create_batch("captured", exist_ok=True).upload(
                [{"image_id": "cap1", "url": "u"}], key="image_id"
            )
            wait_until(lambda: len(rec.got) >= 1)
    finally:
        rec.close()
    return rec.got[0]


def send(url: str, path: str, headers: dict[str, str], body: bytes) -> int:
    """POSTs a (possibly altered) captured request to `url`'s host; the HTTP status answered."""
    keep = {
        k: v
        for k, v in headers.items()
        if k in ("content-type", "authorization", "x-wsm-date", "x-auth-token")
    }
    base = url.rstrip("/")
    req = urllib.request.Request(base + path, data=body, headers=keep, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.parametrize("method", ["basic", "access_key", "token", "hmac"])
def test_sandbox_callbacks_are_accepted_once(method):
    with callbacks.Receiver("sama", method, **CREDS[method]) as rx:
        with lp.sandbox.start("sama", seed=21) as sb, sb.client() as c:
            configure(sb, rx.url + "hooks/sama", method, CREDS[method])
            b = c.create_batch("hooks", exist_ok=True)
            b.upload([{"image_id": "h1", "url": "u"}, {"image_id": "h2", "url": "u"}], key="image_id").wait(
                timeout=30
            )
            # Two tasks: a creation and a delivery callback each.
            wait_until(lambda: len(rx.payloads()) >= 4)
            time.sleep(0.3)
            log = sb.hook("/_sim/callbacks", method="GET")
        payloads = rx.payloads()
        assert len(payloads) == 4
        keys = sorted(p["task"]["data"]["labelport_key"] for p in payloads)
        assert keys == ["h1", "h1", "h2", "h2"]
        # A creation and a delivery callback per task (the sandbox delivers at once, so both carry "delivered").
        assert sorted(a["kind"] for a in log["attempts"]) == ["creation", "creation", "delivery", "delivery"]
        assert rx.rejected == []
        # Each callback was accepted at its first attempt, and none was given up on.
        assert [(a["attempt"], a["status"]) for a in log["attempts"]] == [(1, 200)] * 4
        assert log["unreachable"] == []
        # What get() hands out is what payloads() lists.
        got = [rx.get(timeout=1) for _ in range(4)]
        assert got == payloads


@pytest.mark.parametrize("method", ["basic", "access_key", "token", "hmac"])
def test_wrong_credentials_are_refused_at_each_of_five_attempts(method):
    with callbacks.Receiver("sama", method, **CREDS[method]) as rx:
        with lp.sandbox.start("sama", seed=22) as sb, sb.client() as c:
            hook = {"url": rx.url + "hook", "auth": method, **WRONG[method]}
            sb.hook(f"/_sim/projects/{PROJECT}/callbacks", {"creation": hook, "backoff_s": 0.01})
            c.create_batch("wrong", exist_ok=True).upload([{"image_id": "w1", "url": "u"}], key="image_id")
            wait_until(lambda: len(sb.hook("/_sim/callbacks", method="GET")["unreachable"]) == 1)
            log = sb.hook("/_sim/callbacks", method="GET")
        code, status = WRONG_ANSWER[method]
        assert [(a["attempt"], a["status"]) for a in log["attempts"]] == [(n, status) for n in range(1, 6)]
        assert rx.rejected == [(code, status)] * 5
        assert rx.payloads() == []


def test_hmac_tampered_wrong_secret_stale_and_replayed_requests_are_refused():
    path, headers, body = capture("hmac", CREDS["hmac"], seed=23)
    assert path == "/hook"
    assert "x-wsm-date" in headers and headers["authorization"].startswith("HMAC-SHA256 kid-1:")

    with callbacks.Receiver("sama", "hmac", max_skew=4, **CREDS["hmac"]) as rx:
        # The genuine request is accepted; the same request again is a replay.
        assert send(rx.url, path, headers, body) == 200
        assert send(rx.url, path, headers, body) == 403
        # A tampered body (another key), a tampered path, a tampered date.
        tampered = body.replace(b'"cap1"', b'"cap2"')
        assert tampered != body
        assert send(rx.url, path, headers, tampered) == 401
        assert send(rx.url, "/other", headers, body) == 401
        later = dt.datetime.now(dt.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")
        redated = dict(
            headers,
            **{"x-wsm-date": later if later != headers["x-wsm-date"] else "Thu, 01 Jan 2026 00:00:00 GMT"},
        )
        assert send(rx.url, path, redated, body) == 401
        # No signature at all, and a signature that is not base64.
        assert send(rx.url, path, {k: v for k, v in headers.items() if k != "authorization"}, body) == 401
        assert send(rx.url, path, dict(headers, authorization="HMAC-SHA256 kid-1:@@@"), body) == 401
        assert [p["task"]["data"]["labelport_key"] for p in rx.payloads()] == ["cap1"]
        assert [code for code, _ in rx.rejected] == [
            "replayed",
            "bad_signature",
            "bad_signature",
            "bad_signature",
            "missing_credentials",
            "bad_signature",
        ]

    # The same genuine request, to a receiver with another secret or another key id.
    with callbacks.Receiver("sama", "hmac", key_id="kid-1", secret="another-secret") as rx:
        assert send(rx.url, path, headers, body) == 401
        assert rx.rejected == [("bad_signature", 401)]
    with callbacks.Receiver("sama", "hmac", key_id="kid-2", secret=CREDS["hmac"]["secret"]) as rx:
        assert send(rx.url, path, headers, body) == 401
        assert rx.rejected == [("wrong_credentials", 401)]

    # Stale: a fresh receiver (no replay memory) with a 1 s window, once the date is more than 1 s old.
    sent = dt.datetime.strptime(headers["x-wsm-date"], "%a, %d %b %Y %H:%M:%S GMT").replace(
        tzinfo=dt.timezone.utc
    )
    wait_until(lambda: (dt.datetime.now(dt.timezone.utc) - sent).total_seconds() > 2.5)
    with callbacks.Receiver("sama", "hmac", max_skew=1, **CREDS["hmac"]) as rx:
        assert send(rx.url, path, headers, body) == 403
        assert rx.rejected == [("stale", 403)]
        assert rx.payloads() == []


@pytest.mark.parametrize("method", ["basic", "access_key", "token"])
def test_other_methods_refuse_tampered_credentials_and_hand_out_a_replay_once(method):
    path, headers, body = capture(method, CREDS[method], seed=24)
    with callbacks.Receiver("sama", method, **CREDS[method]) as rx:
        assert send(rx.url, path, headers, body) == 200
        # Without a signed date these methods cannot tell a replay from Sama retrying a callback whose 200
        # it did not see: it is acknowledged again, never handed out twice.
        assert send(rx.url, path, headers, body) == 200
        assert len(rx.payloads()) == 1
        if method == "access_key":
            assert send(rx.url, path.replace("hook-key-s3cret", "hook-key-s3creT"), headers, body) == 401
            assert send(rx.url, "/hook", headers, body) == 401
        elif method == "token":
            assert send(rx.url, path, dict(headers, **{"x-auth-token": "hook-token-s3creT"}), body) == 401
            assert send(rx.url, path, {k: v for k, v in headers.items() if k != "x-auth-token"}, body) == 401
        else:
            wrong = base64.b64encode(b"hook-user:hook-pass-s3creT").decode()
            assert send(rx.url, path, dict(headers, authorization=f"Basic {wrong}"), body) == 401
            assert send(rx.url, path, dict(headers, authorization="Bearer x"), body) == 401
        assert [s for _, s in rx.rejected] == [401, 401]
        assert len(rx.payloads()) == 1


def _signed(secret: bytes, path: str, date: str, body: bytes, key_id: str = "kid-1") -> dict[str, str]:
    """A request signed by the provisional recipe, written here independently of the module under test."""
    mac = hmac.new(secret, f"POST\n{path}\n{date}\n".encode() + body, hashlib.sha256).digest()
    return {"X-wsm-date": date, "Authorization": f"HMAC-SHA256 {key_id}:{base64.b64encode(mac).decode()}"}


def test_verify_returns_the_payload_and_checks_the_skew_window_both_ways():
    body = b'{"task": {"id": "t1", "state": "new"}}'
    at = dt.datetime(2026, 11, 24, 10, 0, 0, tzinfo=dt.timezone.utc)
    date = at.strftime("%a, %d %b %Y %H:%M:%S GMT")
    headers = _signed(b"k", "/cb?x=1", date, body)
    kw = {"secret": "k", "path": "/cb?x=1"}
    assert callbacks.verify("sama", "hmac", headers, body, now=at, **kw) == {
        "task": {"id": "t1", "state": "new"}
    }
    assert (
        callbacks.verify("sama", "hmac", headers, body, now=at + dt.timedelta(seconds=299), **kw)["task"][
            "id"
        ]
        == "t1"
    )
    assert callbacks.verify("sama", "hmac", headers, body, now=at - dt.timedelta(seconds=299), **kw)
    for delta in (301, -301):
        with pytest.raises(lp.CallbackRejected) as info:
            callbacks.verify("sama", "hmac", headers, body, now=at + dt.timedelta(seconds=delta), **kw)
        assert info.value.code == "stale" and info.value.http_status == 403
    # A replay cache refuses the second use of a signature within the window.
    cache = callbacks.ReplayCache()
    callbacks.verify("sama", "hmac", headers, body, now=at, replay_cache=cache, **kw)
    with pytest.raises(lp.CallbackRejected) as info:
        callbacks.verify("sama", "hmac", headers, body, now=at, replay_cache=cache, **kw)
    assert info.value.code == "replayed"
    # Headers in any case, as pairs.
    pairs = [(k.upper(), v) for k, v in headers.items()]
    assert callbacks.verify("sama", "hmac", pairs, body, now=at, **kw)["task"]["id"] == "t1"
    # A signed body that is not JSON.
    with pytest.raises(lp.CallbackRejected) as info:
        callbacks.verify("sama", "hmac", _signed(b"k", "/cb?x=1", date, b"<html>"), b"<html>", now=at, **kw)
    assert info.value.code == "bad_body" and info.value.http_status == 400


def test_refusals_never_echo_a_secret_or_a_signature():
    body = b'{"task": {"id": "t1"}}'
    date = dt.datetime.now(dt.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")
    secret = "TOP-SECRET-HMAC-KEY"
    good = _signed(secret.encode(), "/cb", date, body)
    expected_sig = good["Authorization"].split(":", 1)[1]
    forged = _signed(b"attacker-key", "/cb", date, body)
    forged_sig = forged["Authorization"].split(":", 1)[1]
    cases = [
        ("hmac", forged, {"secret": secret, "path": "/cb"}, [secret, expected_sig, forged_sig]),
        ("hmac", good, {"secret": secret, "path": "/cb", "key_id": "SECRET-KEY-ID"}, [secret, expected_sig]),
        (
            "token",
            {"X-Auth-Token": "SENT-TOKEN-1"},
            {"token": "REAL-TOKEN-2"},
            ["SENT-TOKEN-1", "REAL-TOKEN-2"],
        ),
        (
            "basic",
            {"Authorization": "Basic " + base64.b64encode(b"u:SENT-PASS-1").decode()},
            {"username": "u", "password": "REAL-PASS-2"},
            ["SENT-PASS-1", "REAL-PASS-2"],
        ),
        (
            "access_key",
            {},
            {"access_key": "REAL-KEY-2", "query": "access_key=SENT-KEY-1"},
            ["SENT-KEY-1", "REAL-KEY-2"],
        ),
    ]
    for method, headers, kw, secrets in cases:
        with pytest.raises(lp.CallbackRejected) as info:
            callbacks.verify("sama", method, headers, body, **kw)
        e = info.value
        assert isinstance(e, lp.LabelportError) and e.vendor == "sama" and e.operation == "callback"
        assert e.http_status == 401
        text = " ".join([str(e), repr(e), repr(e.args), str(e.message), str(e.field)])
        for s in secrets:
            assert s not in text, f"{method}: the error text holds a secret"


def test_the_hmac_recipe_is_pluggable():
    class Hex(callbacks.HmacRecipe):
        def parse_authorization(self, value: str) -> tuple[str, bytes]:
            key_id, _, sig = value.removeprefix("HMAC-SHA256 ").partition(":")
            return key_id, bytes.fromhex(sig)

    hexed = Hex(name="hex-test", provisional=True)
    callbacks.register_hmac_recipe(hexed)
    body = b'{"ok": true}'
    date = dt.datetime.now(dt.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")
    mac = hmac.new(b"k", f"POST\n/cb\n{date}\n".encode() + body, hashlib.sha256).hexdigest()
    headers = {"X-wsm-date": date, "Authorization": f"HMAC-SHA256 kid:{mac}"}
    assert callbacks.verify(
        "sama", "hmac", headers, body, secret="k", path="/cb", hmac_recipe="hex-test"
    ) == {"ok": True}
    assert callbacks.verify("sama", "hmac", headers, body, secret="k", path="/cb", hmac_recipe=hexed) == {
        "ok": True
    }
    # The default (base64) recipe refuses the hex form.
    with pytest.raises(lp.CallbackRejected):
        callbacks.verify("sama", "hmac", headers, body, secret="k", path="/cb")
    assert callbacks.PROVISIONAL_HMAC.provisional is True
    assert "provisional" in callbacks.verify.__doc__.lower()


def test_wrong_arguments_are_value_errors_not_rejections():
    with pytest.raises(ValueError):
        callbacks.verify("alegion", "token", {}, b"{}", token="t")
    with pytest.raises(ValueError):
        callbacks.verify("sama", "oauth", {}, b"{}")
    with pytest.raises(ValueError):
        callbacks.verify("sama", "token", {"X-Auth-Token": "t"}, b"{}")  # no token= to check against
    with pytest.raises(ValueError):
        callbacks.verify("sama", "hmac", {}, b"{}", secret="s", hmac_recipe="no-such-recipe", path="/")
    with pytest.raises(TypeError):
        callbacks.Receiver("sama", "token", tokn="t")


def test_verify_refuses_a_keyword_it_does_not_know():
    # A misspelt credential must not be dropped silently (the check would then run without it).
    with pytest.raises(TypeError, match="tokn"):
        callbacks.verify("sama", "token", {"X-Auth-Token": "t"}, b"{}", token="t", tokn="t")

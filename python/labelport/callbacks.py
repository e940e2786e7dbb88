"""Receiving vendor callbacks: check that a POST really comes from the vendor, then hand over its payload.

Sama posts a creation callback (a task was created, or failed to be) and a delivery callback (a task was
delivered) to URLs fixed at project setup, authenticated one of four ways [Sama, "Creating tasks"]:

    ``basic``       ``Authorization: Basic base64(username:password)``
    ``access_key``  an ``access_key`` query parameter in the callback URL
    ``token``       an ``X-Auth-Token: <token>`` header
    ``hmac``        an ``X-wsm-date`` header and an ``Authorization`` header signed with HMAC-SHA-256

    payload = lp.callbacks.verify("sama", "token", headers, body, token=os.environ["SAMA_HOOK_TOKEN"])

    with lp.callbacks.Receiver("sama", "hmac", key_id="kid-1", secret=secret, port=8080) as rx:
        for payload in rx:            # blocks; or rx.get(timeout=...), rx.payloads()
            ...

Every comparison of a credential or signature is constant-time (`hmac.compare_digest`). A refusal raises
`CallbackRejected` (a `LabelportError`) whose text never holds the secret, the expected signature or the
credential that was sent.

**The HMAC recipe is provisional.** Sama's public documentation names only the algorithm (HMAC-SHA-256) and
the two headers (``X-wsm-date`` and a signed ``Authorization``); it does not say what is signed, how the
date is written, how the ``Authorization`` value is laid out, or how the signature is encoded. The default
recipe here, ``PROVISIONAL_HMAC`` (``"labelport-provisional-1"``), is labelport's guess, the same
convention its Sama simulator follows (written separately there, in Rust):

    X-wsm-date:     an RFC 7231 date, e.g. ``Tue, 24 Nov 2026 10:50:03 GMT``
    string to sign: ``"POST\\n" + path_and_query + "\\n" + X-wsm-date + "\\n" + raw body``
    Authorization:  ``HMAC-SHA256 <key_id>:<base64(hmac_sha256(secret, string to sign))>``

Ask your Sama project manager for the real recipe; until it is confirmed, pass your own with
``hmac_recipe=HmacRecipe(...)`` (or a subclass), or `register_hmac_recipe` it and pass its name.
"""

from __future__ import annotations

import array
import base64
import binascii
import collections
import datetime as dt
import email.utils
import hashlib
import hmac
import http.client
import http.server
import io
import itertools
import json
import math
import queue
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from labelport._labelport import MAX_JSON_DEPTH, LabelportError

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "MAX_BODY",
    "MAX_CONNECTIONS",
    "MAX_JSON_DEPTH",
    "PROVISIONAL_HMAC",
    "REQUEST_TIMEOUT",
    "CallbackRejected",
    "HmacRecipe",
    "Receiver",
    "ReplayCache",
    "register_hmac_recipe",
    "verify",
]

VENDORS = ("sama",)
METHODS = ("basic", "access_key", "token", "hmac")

#: `Receiver` defaults: the largest body read (bytes; larger is answered 413 unread), the seconds a request
#: may take to arrive whole (then the connection is closed), the connections served at once (more: 503).
MAX_BODY = 10 * 1024 * 1024
REQUEST_TIMEOUT = 10.0
MAX_CONNECTIONS = 32
# MAX_JSON_DEPTH (labelport's one nesting limit, 128): JSON nested deeper is refused as ``bad_body`` (400)
# instead of being parsed.


class CallbackRejected(LabelportError):
    """A callback that did not prove it comes from the vendor, or came too late or twice.

    ``code`` says why (``missing_credentials``, ``wrong_credentials``, ``bad_signature``, ``stale``,
    ``replayed``, ``bad_body``, ``bad_request``); ``http_status`` is what a receiver should answer
    (401: no or wrong credentials; 403: right credentials but stale or replayed; 400: not a callback).
    The message never holds the secret, the expected signature or the credential that was sent.
    """

    http_status: int = 401

    def __init__(self, message: str, *, code: str, http_status: int, vendor: str, field: str | None = None):
        super().__init__(f"{vendor} callback: {message}")
        self.vendor = vendor
        self.operation = "callback"
        self.code = code
        self.message = message
        self.field = field
        self.http_status = http_status


@dataclass(frozen=True)
class HmacRecipe:
    """How an HMAC-signed callback is laid out. Subclass and override to match the vendor's real recipe.

    The default values are labelport's **provisional** reading of Sama's HMAC-SHA-256 callbacks (see the
    module docstring): not confirmed by Sama.
    """

    name: str = "labelport-provisional-1"
    date_header: str = "X-wsm-date"
    signature_header: str = "Authorization"
    scheme: str = "HMAC-SHA256"
    provisional: bool = True

    def string_to_sign(self, method: str, target: str, date: str, body: bytes) -> bytes:
        """What is signed: method, request target (path and query), the date header, and the raw body."""
        return f"{method.upper()}\n{target}\n{date}\n".encode() + body

    def parse_date(self, value: str) -> dt.datetime:
        """The date header as an aware datetime (RFC 7231); raises ValueError if it is not one."""
        parsed = email.utils.parsedate_to_datetime(value)
        if parsed is None or parsed.tzinfo is None:
            raise ValueError("not an RFC 7231 date")
        return parsed

    def parse_authorization(self, value: str) -> tuple[str, bytes]:
        """``<scheme> <key_id>:<base64 signature>`` as (key_id, signature bytes); raises ValueError."""
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() != self.scheme.lower():
            raise ValueError(f"the {self.signature_header} scheme is not {self.scheme}")
        key_id, sep, sig = rest.strip().rpartition(":")
        if not sep or not key_id:
            raise ValueError(f"{self.signature_header} is not '{self.scheme} <key id>:<signature>'")
        try:
            return key_id, base64.b64decode(sig, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the signature is not base64") from None

    def mac(self, secret: bytes, message: bytes) -> bytes:
        return hmac.new(secret, message, hashlib.sha256).digest()


#: labelport's provisional reading of Sama's HMAC recipe (unconfirmed by Sama).
PROVISIONAL_HMAC = HmacRecipe()

_RECIPES: dict[str, HmacRecipe] = {PROVISIONAL_HMAC.name: PROVISIONAL_HMAC}


def register_hmac_recipe(recipe: HmacRecipe) -> None:
    """Makes `recipe` available by name to `verify(..., hmac_recipe="<name>")` and `Receiver`."""
    if not isinstance(recipe, HmacRecipe):
        raise TypeError("recipe must be an HmacRecipe")
    _RECIPES[recipe.name] = recipe


def _recipe(value: HmacRecipe | str) -> HmacRecipe:
    if isinstance(value, HmacRecipe):
        return value
    try:
        return _RECIPES[value]
    except KeyError:
        raise ValueError(f"unknown HMAC recipe {value!r}; known: {', '.join(sorted(_RECIPES))}") from None


class ReplayCache:
    """Signatures already accepted, each kept for the skew window (after which the date check refuses it).

    Thread-safe; bounded by `max_entries` (the oldest are dropped first).
    """

    def __init__(self, ttl: float = 600.0, max_entries: int = 100_000) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._seen: collections.OrderedDict[bytes, float] = collections.OrderedDict()
        self._lock = threading.Lock()

    def check_and_add(self, fingerprint: bytes, now: float | None = None) -> bool:
        """True if `fingerprint` is new (and records it); False if it was seen within the window."""
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._seen:
                oldest, at = next(iter(self._seen.items()))
                if now - at <= self._ttl and len(self._seen) < self._max:
                    break
                del self._seen[oldest]
            if fingerprint in self._seen:
                return False
            self._seen[fingerprint] = now
            return True

    def __len__(self) -> int:
        return len(self._seen)


def _header(headers: Any, name: str) -> str | None:
    """A header by case-insensitive name from a dict, an `http.client.HTTPMessage` or (name, value) pairs."""
    if hasattr(headers, "get_all"):  # email.message.Message / HTTPMessage: already case-insensitive
        values = headers.get_all(name)
        return None if not values else str(values[0])
    items = headers.items() if isinstance(headers, Mapping) else headers
    lname = name.lower()
    for k, v in items:
        if str(k).lower() == lname:
            return v.decode("latin-1") if isinstance(v, bytes) else str(v)
    return None


def _query_values(query: Any, path: str | None, name: str) -> list[str]:
    if query is None and path is not None:
        query = urllib.parse.urlsplit(path).query
    if query is None:
        return []
    if isinstance(query, Mapping):
        v = query.get(name)
        if v is None:
            return []
        return [str(x) for x in v] if isinstance(v, (list, tuple)) else [str(v)]
    return urllib.parse.parse_qs(str(query).lstrip("?"), keep_blank_values=True).get(name, [])


def _same(given: str | bytes, expected: str | bytes) -> bool:
    a = given.encode() if isinstance(given, str) else given
    b = expected.encode() if isinstance(expected, str) else expected
    return hmac.compare_digest(a, b)


def _need(value: Any, name: str, method: str) -> Any:
    if value is None or value == "":
        raise ValueError(f"verify(method={method!r}) needs {name}=...")
    return value


def _max_skew(value: Any) -> float:
    """`max_skew` as seconds; NaN would make every date look fresh and turn the replay window off."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"max_skew must be a number of seconds, not {type(value).__name__}")
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"max_skew must be a finite number of seconds, 0 or more, not {value!r}")
    return seconds


def _check_arguments(vendor: str, method: str, max_skew: Any) -> float:
    if vendor not in VENDORS:
        raise ValueError(f"callbacks know {', '.join(VENDORS)}, not {vendor!r}")
    if method not in METHODS:
        raise ValueError(f"unknown callback method {method!r}; Sama's are {', '.join(METHODS)}")
    return _max_skew(max_skew)


def _rejecter(vendor: str) -> Any:
    def reject(message: str, code: str, status: int = 401, field: str | None = None) -> CallbackRejected:
        return CallbackRejected(message, code=code, http_status=status, vendor=vendor, field=field)

    return reject


def _authenticate(vendor: str, method: str, headers: Any, raw: bytes | None, **proof: Unpack[Proof]) -> None:
    """Raises `CallbackRejected` unless the request proves it comes from the vendor. With ``raw`` None (the
    body not read yet), ``hmac`` checks only what the headers can show: both present, the signature header
    well-formed, the key id; the signature, the date's freshness and replays wait for the body. `proof`: the
    keyword arguments of `verify` (checked there, or by `Receiver`)."""
    reject = _rejecter(vendor)
    path: str | None = proof.get("path")
    if method == "basic":
        expected = f"{_need(proof.get('username'), 'username', method)}:{_need(proof.get('password'), 'password', method)}".encode()
        given = _header(headers, "Authorization")
        if not given:
            raise reject(
                "no Authorization header (basic auth expected)", "missing_credentials", field="Authorization"
            )
        scheme, _, encoded = given.strip().partition(" ")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True) if scheme.lower() == "basic" else None
        except (binascii.Error, ValueError):
            decoded = None
        if decoded is None:
            raise reject(
                "the Authorization header is not HTTP basic auth", "wrong_credentials", field="Authorization"
            )
        if not _same(decoded, expected):
            raise reject("wrong username or password", "wrong_credentials", field="Authorization")
    elif method == "token":
        expected_token = _need(proof.get("token"), "token", method)
        given = _header(headers, "X-Auth-Token")
        if not given:
            raise reject("no X-Auth-Token header", "missing_credentials", field="X-Auth-Token")
        if not _same(given.strip(), expected_token):
            raise reject("wrong X-Auth-Token", "wrong_credentials", field="X-Auth-Token")
    elif method == "access_key":
        expected_key = _need(proof.get("access_key"), "access_key", method)
        values = _query_values(proof.get("query"), path, "access_key")
        if not values:
            raise reject("no access_key in the callback URL", "missing_credentials", field="access_key")
        if len(values) != 1 or not _same(values[0], expected_key):
            raise reject("wrong access_key in the callback URL", "wrong_credentials", field="access_key")
    else:
        recipe = _recipe(proof.get("hmac_recipe", PROVISIONAL_HMAC))
        key = _need(proof.get("secret"), "secret", method)
        key = key.encode() if isinstance(key, str) else bytes(key)
        if path is None:
            raise ValueError(
                "verify(method='hmac') needs path=... (the request target as sent, with its query)"
            )
        date = _header(headers, recipe.date_header)
        auth = _header(headers, recipe.signature_header)
        if not date:
            raise reject(f"no {recipe.date_header} header", "missing_credentials", field=recipe.date_header)
        if not auth:
            raise reject(
                f"no {recipe.signature_header} header", "missing_credentials", field=recipe.signature_header
            )
        try:
            given_key_id, given_mac = recipe.parse_authorization(auth)
        except ValueError as e:
            raise reject(str(e), "bad_signature", field=recipe.signature_header) from None
        key_id = proof.get("key_id")
        if key_id is not None and not _same(given_key_id, key_id):
            raise reject("unknown key id", "wrong_credentials", field=recipe.signature_header)
        if raw is None:
            # A date that does not parse is refused after the signature too, with this same code: refused
            # now. Its freshness is not judged before the signature (see below).
            try:
                recipe.parse_date(date)
            except (TypeError, ValueError):
                raise reject(
                    f"{recipe.date_header} is not a date", "bad_signature", field=recipe.date_header
                ) from None
            return
        expected_mac = recipe.mac(
            key, recipe.string_to_sign(proof.get("http_method", "POST"), path, date, raw)
        )
        if not hmac.compare_digest(given_mac, expected_mac):
            raise reject(
                f"the signature does not match (tampered body or headers, wrong secret, or another recipe than "
                f"{recipe.name!r}{', which is provisional' if recipe.provisional else ''})",
                "bad_signature",
                field=recipe.signature_header,
            )
        # The date is checked after the signature, so an unsigned date is never trusted, even to refuse.
        try:
            sent = recipe.parse_date(date)
        except (TypeError, ValueError):
            raise reject(
                f"{recipe.date_header} is not a date", "bad_signature", field=recipe.date_header
            ) from None
        now = proof.get("now")
        if now is None:
            now_dt = dt.datetime.now(dt.timezone.utc)
        elif isinstance(now, dt.datetime):
            now_dt = now if now.tzinfo else now.replace(tzinfo=dt.timezone.utc)
        else:
            now_dt = dt.datetime.fromtimestamp(float(now), dt.timezone.utc)
        skew, max_skew = abs((now_dt - sent).total_seconds()), proof.get("max_skew", 300)
        if skew > max_skew:
            raise reject(
                f"{recipe.date_header} is {skew:.0f} s away from now (more than {max_skew:g} s): stale or replayed",
                "stale",
                status=403,
                field=recipe.date_header,
            )
        replay_cache: ReplayCache | None = proof.get("replay_cache")
        if replay_cache is not None and not replay_cache.check_and_add(given_mac):
            raise reject("this signature was already accepted: a replay", "replayed", status=403)


_ESCAPES = re.compile(r"\\.", re.S)
_NOT_STRUCTURE = re.compile(r'[^"\[\]{}]+')
_STRINGS = re.compile(r'"[^"]*"')
_STEP = str.maketrans({"[": "\x01", "{": "\x01", "]": "\xff", "}": "\xff"})


def _nesting(text: str) -> int:
    """How deep the JSON `text` nests, in C-speed passes: escapes dropped (so no quote is escaped), then all
    but quotes and brackets, then the strings; what is left are the brackets outside strings."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:  # the common case: nothing to measure
        return 0
    brackets = _STRINGS.sub("", _NOT_STRUCTURE.sub("", _ESCAPES.sub("", text))).replace('"', "")
    steps = array.array("b", brackets.translate(_STEP).encode("latin-1"))  # +1 opens, -1 closes
    return max(itertools.accumulate(steps), default=0)


def _parse_json(raw: bytes, reject: Any) -> Any:
    """The body's JSON, nested at most `MAX_JSON_DEPTH` deep (json.loads recurses once per level: a deep
    enough body raises RecursionError, or worse on a thread with a small stack)."""
    try:
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")  # the encodings json.loads accepts
    except (UnicodeDecodeError, LookupError):
        raise reject("the body is not JSON", "bad_body", status=400) from None
    if _nesting(text) > MAX_JSON_DEPTH:
        raise reject(f"the body's JSON is nested deeper than {MAX_JSON_DEPTH} levels", "bad_body", status=400)
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise reject("the body is not JSON", "bad_body", status=400) from None


class Proof(TypedDict, total=False):
    """The keyword arguments of `verify` (what proves a callback comes from the vendor, and the request's
    target); `Receiver` takes the credentials and `max_skew`, `hmac_recipe` among them."""

    secret: str | bytes | None
    key_id: str | None
    username: str | None
    password: str | None
    token: str | None
    access_key: str | None
    query: str | Mapping[str, Any] | None
    path: str | None
    http_method: str
    now: dt.datetime | float | None
    max_skew: float
    hmac_recipe: HmacRecipe | str
    replay_cache: ReplayCache | None


def verify(vendor: str, method: str, headers: Any, body: bytes | str, **proof: Unpack[Proof]) -> Any:
    """Checks one callback request and returns its parsed JSON payload, or raises `CallbackRejected`.

    `vendor`: ``"sama"``. `method`: ``"basic"`` (`username`, `password`), ``"access_key"`` (`access_key`;
    the request's `query` string or mapping, or its `path` with the query), ``"token"`` (`token`) or
    ``"hmac"`` (`secret`, optionally `key_id` to require; the request `path` with its query, as sent).
    `headers`: a dict, an `http.client.HTTPMessage` or (name, value) pairs. `body`: the raw bytes, as
    received (the HMAC covers them byte for byte).

    HMAC only: the date header must lie within `max_skew` seconds (finite, 0 or more) of `now` (default: the
    current time), and with a `replay_cache` a signature already accepted is refused. The HMAC recipe
    (`hmac_recipe`, an `HmacRecipe` or a registered name) defaults to labelport's **provisional** reading of
    Sama's, which Sama has not confirmed: see the module docstring.

    Every comparison of a credential or signature is constant-time. A body that is not JSON, or JSON nested
    deeper than `MAX_JSON_DEPTH`, is refused as ``bad_body`` (400). A wrong argument (unknown vendor or
    method, a credential missing for the method, a non-finite or negative `max_skew`) is a `ValueError`, not
    a rejection.
    """
    unknown = set(proof) - Proof.__optional_keys__
    if unknown:
        raise TypeError(f"verify() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
    proof["max_skew"] = _check_arguments(vendor, method, proof.get("max_skew", 300))
    raw = body.encode() if isinstance(body, str) else bytes(body)
    _authenticate(vendor, method, headers, raw, **proof)
    return _parse_json(raw, _rejecter(vendor))


_MAX_HEAD = 64 * 1024  # the request line and headers together
_LINGER_SECONDS = 1.0  # after answering without reading the body: how long, and how much, to read and drop
_LINGER_BYTES = 1024 * 1024
_DIGITS = re.compile(r"[0-9]+")
_BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 1\r\n\r\n"
)


class _HeadTooLarge(Exception):
    pass


class _RequestReader(io.RawIOBase):
    """The connection, read against one deadline for the whole request (a client sending a byte at a time
    cannot hold its thread past it) and, while `head_budget` is set, a bound on the bytes of the head."""

    def __init__(self, sock: socket.socket, deadline: float, head_budget: int) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline
        self.head_budget: int | None = head_budget

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive within the receiver's timeout")
        n = len(buffer)
        if self.head_budget is not None:
            if self.head_budget <= 0:
                raise _HeadTooLarge
            n = min(n, self.head_budget)
        self._sock.settimeout(remaining)
        got = self._sock.recv_into(buffer, n)
        if self.head_budget is not None:
            self.head_budget -= got
        return got


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a burst of connections waits in the backlog instead of being dropped
    receiver: Receiver
    slots: threading.BoundedSemaphore

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            # Every handler thread is taken: answer without starting another, and close.
            try:
                request.setblocking(False)
                request.send(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def setup(self) -> None:
        rx = self.server.receiver
        self.connection = self.request
        self.connection.settimeout(rx.timeout)
        self._reader = _RequestReader(self.connection, time.monotonic() + rx.timeout, _MAX_HEAD)
        self.rfile = io.BufferedReader(self._reader)
        self.wfile = self.connection.makefile("wb")

    def handle(self) -> None:
        # One request per connection (HTTP/1.0), so the deadline covers the connection.
        self.close_connection = True
        try:
            self.handle_one_request()
        except _HeadTooLarge:
            self._answer_raw(431)
        except (OSError, http.client.HTTPException):  # timed out, reset: nothing more to say
            pass

    def do_POST(self) -> None:  # noqa: N802
        rx = self.server.receiver
        # Credentials first, on the headers alone: a refused request is answered before its body is read.
        status = rx._check_headers(self.path, self.headers)
        length = 0
        if status is None:
            length, status = rx._check_length(self.headers)
        if status is not None:
            self._answer(status, linger=True)
            return
        self._reader.head_budget = None
        try:
            body = self._read_body(length)
        except TimeoutError:
            self._answer(rx._refuse("timeout", 408))
            return
        if body is None:
            self._answer(rx._refuse("bad_request", 400))
            return
        self._answer(rx._handle(self.path, self.headers, body))

    def _read_body(self, length: int) -> bytes | None:
        """The body, read as it arrives (never allocated ahead from the declared length); None if the client
        stopped sending before the end."""
        parts: list[bytes] = []
        got = 0
        while got < length:
            part = self.rfile.read1(min(65536, length - got))
            if not part:
                return None
            parts.append(part)
            got += len(part)
        return b"".join(parts)

    def _answer(self, status: int, linger: bool = False) -> None:
        self.connection.settimeout(self.server.receiver.timeout)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()
        if linger:
            self._linger()

    def _answer_raw(self, status: int) -> None:
        phrase = http.HTTPStatus(status).phrase
        try:
            self.connection.settimeout(self.server.receiver.timeout)
            self.wfile.write(
                f"HTTP/1.0 {status} {phrase}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            self.wfile.flush()
        except OSError:
            return
        self._linger()

    def _linger(self) -> None:
        """After answering without reading the body: stop sending, then read and drop what the client still
        sends, for a moment and a bounded amount, so that closing with unread data (a reset) does not destroy
        the answer before the client reads it."""
        try:
            self.connection.shutdown(socket.SHUT_WR)
            end = time.monotonic() + _LINGER_SECONDS
            left = _LINGER_BYTES
            buffer = bytearray(65536)
            while left > 0:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    break
                self.connection.settimeout(remaining)
                n = self.connection.recv_into(buffer, min(len(buffer), left))
                if not n:
                    break
                left -= n
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a whole number, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    return value


def _positive_seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{name} must be a finite number of seconds more than 0, not {value!r}")
    return seconds


_NEEDS = {
    "basic": ("username", "password"),
    "token": ("token",),
    "access_key": ("access_key",),
    "hmac": ("secret",),
}


class Receiver:
    """A small HTTP server on a thread for scripts and tests: verifies every POST, answers 200 to the valid
    ones and 401/403 to the refused ones, and keeps each accepted payload once.

        with lp.callbacks.Receiver("sama", "token", token=token, port=8080) as rx:
            print(rx.url)                          # give it to your Sama project manager
            payload = rx.get(timeout=60)           # or: for payload in rx: ...; or rx.payloads()

    Credentials and `max_skew`, `hmac_recipe` as `verify`. HMAC callbacks carry a replay cache (a signature
    is accepted once). For every method, a body already accepted (the vendor retrying after an answer it did
    not see) is answered 200 again but not handed out twice. Not a production server: no TLS; put it behind
    your own HTTPS endpoint if the vendor must reach it from outside.

    Bounded against hostile clients: credentials are checked on the headers before the body is read (401 at
    once; for ``hmac``, whose signature covers the body, the headers must be present and well-formed, and the
    signature is checked once the body is in); a body larger than `max_body` bytes (default `MAX_BODY`,
    10 MiB) is answered 413 unread; a request that has not arrived whole within `timeout` seconds (default
    `REQUEST_TIMEOUT`, 10) is closed (408 if its headers came); at most `max_connections` (default
    `MAX_CONNECTIONS`, 32) are served at once, further ones answered 503. A malformed Content-Length, a body
    that is not JSON or is JSON nested deeper than `MAX_JSON_DEPTH` are answered 400, a chunked body 411, a
    head over 64 KiB 431. Memory is bounded by about `max_connections` x `max_body`.
    """

    def __init__(
        self,
        vendor: str,
        method: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_skew: float = 300,
        hmac_recipe: HmacRecipe | str = PROVISIONAL_HMAC,
        max_body: int = MAX_BODY,
        timeout: float = REQUEST_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        **credentials: Any,
    ) -> None:
        allowed = {"secret", "key_id", "username", "password", "token", "access_key"}
        unknown = set(credentials) - allowed
        if unknown:
            raise TypeError(f"Receiver does not take {', '.join(sorted(unknown))}")
        # Fails now (ValueError) on a wrong vendor, method, missing credential or limit, not at the first
        # callback.
        skew = _check_arguments(vendor, method, max_skew)
        for name in _NEEDS[method]:
            _need(credentials.get(name), name, method)
        self.max_body = _positive_int(max_body, "max_body")
        self.timeout = _positive_seconds(timeout, "timeout")
        self.max_connections = _positive_int(max_connections, "max_connections")
        self.vendor, self.method = vendor, method
        self._kwargs = dict(credentials, max_skew=skew, hmac_recipe=_recipe(hmac_recipe))
        self._replays = ReplayCache(ttl=2 * skew + 60)
        self._bodies: set[bytes] = set()
        self._lock = threading.Lock()
        self._accepted: list[Any] = []
        self._queue: queue.Queue[Any] = queue.Queue()
        #: Every refusal: (code, HTTP status answered). Never the credentials.
        self.rejected: list[tuple[str, int]] = []
        self._server = _Server((host, port), _Handler)
        self._server.receiver = self
        self._server.slots = threading.BoundedSemaphore(self.max_connections)
        self.port: int = self._server.server_port
        #: The base URL to configure as the callback URL (add a path or the access_key query as needed).
        self.url = f"http://{host}:{self.port}/"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="labelport-callbacks", daemon=True
        )
        self._thread.start()

    def _refuse(self, code: str, status: int) -> int:
        with self._lock:
            self.rejected.append((code, status))
        return status

    def _check_headers(self, path: str, headers: Any) -> int | None:
        """The status refusing a request on its headers alone, or None to go on and read its body."""
        try:
            _authenticate(self.vendor, self.method, headers, None, path=path, **self._kwargs)
        except CallbackRejected as e:
            return self._refuse(e.code or "rejected", e.http_status)
        return None

    def _check_length(self, headers: Any) -> tuple[int, int | None]:
        """(the body's length, None), or (0, the status refusing it) for a length that is missing for a
        chunked body, malformed, or over `max_body`."""
        if headers.get("Transfer-Encoding") is not None:
            return 0, self._refuse("length_required", 411)
        values = {v.strip() for v in headers.get_all("Content-Length") or []}
        if not values:
            return 0, None
        text = values.pop()
        if values or not _DIGITS.fullmatch(text):
            return 0, self._refuse("bad_request", 400)
        if len(text) > 15 or int(text) > self.max_body:  # int() of a huge digit string is itself an error
            return 0, self._refuse("too_large", 413)
        return int(text), None

    def _handle(self, path: str, headers: Any, body: bytes) -> int:
        try:
            payload = verify(
                self.vendor, self.method, headers, body, path=path, replay_cache=self._replays, **self._kwargs
            )
        except CallbackRejected as e:
            with self._lock:
                self.rejected.append((e.code or "rejected", e.http_status))
            return e.http_status
        digest = hashlib.sha256(body).digest()
        with self._lock:
            if digest in self._bodies:
                return 200
            self._bodies.add(digest)
            self._accepted.append(payload)
        self._queue.put(payload)
        return 200

    def payloads(self) -> list[Any]:
        """Every payload accepted so far, in arrival order."""
        with self._lock:
            return list(self._accepted)

    def get(self, timeout: float | None = None) -> Any:
        """The next accepted payload not yet taken by `get` or iteration; `queue.Empty` after `timeout`."""
        return self._queue.get(timeout=timeout)

    def __iter__(self) -> Iterator[Any]:
        """Each accepted payload as it arrives (blocks; stops when the receiver is closed)."""
        while True:
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._closed:
                    return
                continue
            yield item

    _closed = False

    def close(self) -> None:
        """Stops the server (waits for it); accepted payloads stay readable."""
        if not self._closed:
            self._closed = True
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<labelport.callbacks.Receiver {self.vendor} {self.method} at {self.url} accepted={len(self._accepted)}>"

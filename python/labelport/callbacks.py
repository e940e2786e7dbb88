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

import base64
import binascii
import collections
import datetime as dt
import email.utils
import hashlib
import hmac
import http.server
import json
import queue
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from labelport._labelport import LabelportError

__all__ = [
    "PROVISIONAL_HMAC",
    "CallbackRejected",
    "HmacRecipe",
    "Receiver",
    "ReplayCache",
    "register_hmac_recipe",
    "verify",
]

VENDORS = ("sama",)
METHODS = ("basic", "access_key", "token", "hmac")


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


def verify(
    vendor: str,
    method: str,
    headers: Any,
    body: bytes | str,
    *,
    secret: str | bytes | None = None,
    key_id: str | None = None,
    username: str | None = None,
    password: str | None = None,
    token: str | None = None,
    access_key: str | None = None,
    query: str | Mapping[str, Any] | None = None,
    path: str | None = None,
    http_method: str = "POST",
    now: dt.datetime | float | None = None,
    max_skew: float = 300,
    hmac_recipe: HmacRecipe | str = PROVISIONAL_HMAC,
    replay_cache: ReplayCache | None = None,
) -> Any:
    """Checks one callback request and returns its parsed JSON payload, or raises `CallbackRejected`.

    `vendor`: ``"sama"``. `method`: ``"basic"`` (`username`, `password`), ``"access_key"`` (`access_key`;
    the request's `query` string or mapping, or its `path` with the query), ``"token"`` (`token`) or
    ``"hmac"`` (`secret`, optionally `key_id` to require; the request `path` with its query, as sent).
    `headers`: a dict, an `http.client.HTTPMessage` or (name, value) pairs. `body`: the raw bytes, as
    received (the HMAC covers them byte for byte).

    HMAC only: the date header must lie within `max_skew` seconds of `now` (default: the current time), and
    with a `replay_cache` a signature already accepted is refused. The HMAC recipe (`hmac_recipe`, an
    `HmacRecipe` or a registered name) defaults to labelport's **provisional** reading of Sama's, which
    Sama has not confirmed: see the module docstring.

    Every comparison of a credential or signature is constant-time. A wrong argument (unknown vendor or
    method, a credential missing for the method) is a `ValueError`, not a rejection.
    """
    if vendor not in VENDORS:
        raise ValueError(f"callbacks.verify knows {', '.join(VENDORS)}, not {vendor!r}")
    if method not in METHODS:
        raise ValueError(f"unknown callback method {method!r}; Sama's are {', '.join(METHODS)}")
    raw = body.encode() if isinstance(body, str) else bytes(body)

    def reject(message: str, code: str, status: int = 401, field: str | None = None) -> CallbackRejected:
        return CallbackRejected(message, code=code, http_status=status, vendor=vendor, field=field)

    if method == "basic":
        expected = f"{_need(username, 'username', method)}:{_need(password, 'password', method)}".encode()
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
        expected_token = _need(token, "token", method)
        given = _header(headers, "X-Auth-Token")
        if not given:
            raise reject("no X-Auth-Token header", "missing_credentials", field="X-Auth-Token")
        if not _same(given.strip(), expected_token):
            raise reject("wrong X-Auth-Token", "wrong_credentials", field="X-Auth-Token")
    elif method == "access_key":
        expected_key = _need(access_key, "access_key", method)
        values = _query_values(query, path, "access_key")
        if not values:
            raise reject("no access_key in the callback URL", "missing_credentials", field="access_key")
        if len(values) != 1 or not _same(values[0], expected_key):
            raise reject("wrong access_key in the callback URL", "wrong_credentials", field="access_key")
    else:
        recipe = _recipe(hmac_recipe)
        key = _need(secret, "secret", method)
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
        if key_id is not None and not _same(given_key_id, key_id):
            raise reject("unknown key id", "wrong_credentials", field=recipe.signature_header)
        expected_mac = recipe.mac(key, recipe.string_to_sign(http_method, path, date, raw))
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
        if now is None:
            now_dt = dt.datetime.now(dt.timezone.utc)
        elif isinstance(now, dt.datetime):
            now_dt = now if now.tzinfo else now.replace(tzinfo=dt.timezone.utc)
        else:
            now_dt = dt.datetime.fromtimestamp(float(now), dt.timezone.utc)
        skew = abs((now_dt - sent).total_seconds())
        if skew > max_skew:
            raise reject(
                f"{recipe.date_header} is {skew:.0f} s away from now (more than {max_skew:g} s): stale or replayed",
                "stale",
                status=403,
                field=recipe.date_header,
            )
        if replay_cache is not None and not replay_cache.check_and_add(given_mac):
            raise reject("this signature was already accepted: a replay", "replayed", status=403)

    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise reject("the body is not JSON", "bad_body", status=400) from None


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        status = self.server.receiver._handle(self.path, self.headers, body)
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


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
        **credentials: Any,
    ) -> None:
        allowed = {"secret", "key_id", "username", "password", "token", "access_key"}
        unknown = set(credentials) - allowed
        if unknown:
            raise TypeError(f"Receiver does not take {', '.join(sorted(unknown))}")
        # Fails now (ValueError) on a wrong vendor, method or missing credential, not at the first callback.
        if vendor not in VENDORS:
            raise ValueError(f"callbacks know {', '.join(VENDORS)}, not {vendor!r}")
        if method not in METHODS:
            raise ValueError(f"unknown callback method {method!r}; Sama's are {', '.join(METHODS)}")
        self.vendor, self.method = vendor, method
        self._kwargs = dict(credentials, max_skew=max_skew, hmac_recipe=_recipe(hmac_recipe))
        self._replays = ReplayCache(ttl=2 * max_skew + 60)
        self._bodies: set[bytes] = set()
        self._lock = threading.Lock()
        self._accepted: list[Any] = []
        self._queue: queue.Queue[Any] = queue.Queue()
        #: Every refusal: (code, HTTP status answered). Never the credentials.
        self.rejected: list[tuple[str, int]] = []
        self._server = _Server((host, port), _Handler)
        self._server.receiver = self
        self.port: int = self._server.server_port
        #: The base URL to configure as the callback URL (add a path or the access_key query as needed).
        self.url = f"http://{host}:{self.port}/"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="labelport-callbacks", daemon=True
        )
        self._thread.start()

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

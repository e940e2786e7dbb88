"""Transport security: TLS with the system's roots plus a CA bundle given by option, against a real HTTPS
server on 127.0.0.1 whose certificate only that bundle vouches for; plain http refused off loopback."""

from __future__ import annotations

import http.server
import json
import pickle
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import labelport as lp
import pytest


class Handler(http.server.BaseHTTPRequestHandler):
    """Answers like a vendor that logs in and lists: any POST gets a token, any GET `{"ok": true}`."""

    seen: list[str] = []

    def _answer(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Handler.seen.append("POST " + self.path)
        self._answer({"access_token": "t0k3n", "token_type": "bearer", "expires_in": 3600})

    def do_GET(self) -> None:  # noqa: N802
        Handler.seen.append("GET " + self.path)
        self._answer({"ok": True})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on 127.0.0.1 whose certificate a private CA signed; (base URL, the CA as a PEM bundle)."""
    d = tmp_path_factory.mktemp("tls")
    ca, ca_key, cert, key, csr = (
        d / n for n in ("ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "server.csr")
    )
    ext = d / "server.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    # A private certificate authority, and a server certificate for 127.0.0.1 that only it signed.
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-subj",
        "/CN=labelport test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        "/CN=127.0.0.1",
    )
    openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "1",
        "-out",
        str(cert),
        "-extfile",
        str(ext),
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", ca
    finally:
        server.shutdown()


def client(base_url: str, **kw) -> lp.Client:
    return lp.Client("alegion", project="p", base_url=base_url, username="u", password="pw", **kw)


def test_an_unknown_certificate_authority_is_refused(tls_server):
    url, _ = tls_server
    Handler.seen.clear()
    with pytest.raises(lp.LabelportError) as err:
        client(url, max_retries=0).request("GET", "/workflows")
    assert "could not reach" in err.value.message, err.value.message  # the login, the first call, failed
    assert Handler.seen == []  # nothing crossed an unverified connection


def test_a_ca_bundle_by_option_or_environment_is_trusted(tls_server, monkeypatch):
    url, cert = tls_server
    Handler.seen.clear()
    assert client(url, ca_bundle=cert).request("GET", "/workflows") == {"ok": True}
    assert client(url, ca_bundle=str(cert)).request("GET", "/workflows") == {"ok": True}
    assert "GET /api/v1/workflows" in Handler.seen
    monkeypatch.setenv("LABELPORT_ALEGION_CA_BUNDLE", str(cert))
    assert client(url).request("GET", "/workflows") == {"ok": True}


def test_a_pickled_client_keeps_its_ca_bundle_from_another_directory(tls_server, tmp_path, monkeypatch):
    url, cert = tls_server
    monkeypatch.chdir(cert.parent)
    c = client(url, ca_bundle="ca.pem")  # relative: the spec must carry it as an absolute path
    spec = c.spec(include_credentials=True)
    assert spec.ca_bundle == str(cert)
    monkeypatch.chdir(tmp_path)
    Handler.seen.clear()
    monkeypatch.setenv("LABELPORT_ALEGION_USERNAME", "u")  # a pickled client carries no credentials
    monkeypatch.setenv("LABELPORT_ALEGION_PASSWORD", "pw")
    assert pickle.loads(pickle.dumps(c)).request("GET", "/workflows") == {"ok": True}
    assert pickle.loads(pickle.dumps(spec)).client().request("GET", "/workflows") == {"ok": True}
    assert Handler.seen.count("GET /api/v1/workflows") == 2
    # Given to a spec directly, and changed or dropped by replace().
    made = lp.ClientSpec("alegion", "p", base_url=url, ca_bundle=cert, username="u", password="pw")
    assert made.ca_bundle == str(cert) and made.client().request("GET", "/workflows") == {"ok": True}
    assert made.replace(ca_bundle=None).ca_bundle is None
    with pytest.raises(lp.LabelportError):
        made.replace(ca_bundle=None, max_retries=0).client().request("GET", "/workflows")


def test_a_bad_ca_bundle_is_invalid_input_naming_it(tmp_path):
    with pytest.raises(lp.InvalidInput) as err:
        client("https://127.0.0.1:9", ca_bundle=tmp_path / "missing.pem")
    assert err.value.field == "ca_bundle" and "missing.pem" in str(err.value)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(lp.InvalidInput) as err:
        client("https://127.0.0.1:9", ca_bundle=junk)
    assert err.value.field == "ca_bundle" and "no PEM certificate" in str(err.value)
    with pytest.raises(lp.InvalidInput):
        client("https://127.0.0.1:9", ca_bundle=42)


def test_plain_http_is_refused_off_loopback_unless_allowed():
    with pytest.raises(lp.InvalidInput) as err:
        client("http://labels.example.com")
    assert err.value.field == "base_url" and "allow_insecure" in str(err.value)
    client("http://labels.example.com", allow_insecure=True)  # built, nothing sent yet

"""Numbers arrive as the vendor wrote them: every float labelport decodes (results, records, ``request``) is the
double Python's own ``json`` module gives for the same text, and integers up to 64 bits stay exact.

serde_json's default float parser may land one ULP off for some decimal strings (``0.9945999999999999``
became ``0.9946``); Cargo.toml enables its ``float_roundtrip`` feature. A label's confidence or a box coordinate
must not change on its way from the vendor to a DataFrame.
"""

from __future__ import annotations

import json
import random
import re
import struct
from collections.abc import Callable
from typing import Any

import labelport as lp

BID = "11111111-2222-3333-4444-555555555555"

# Decimal texts that sit near a rounding boundary, the extremes, and what a vendor's float formatting gives.
HARD = [
    "0.9945999999999999",
    "0.1",
    "0.30000000000000004",
    "2.2250738585072011e-308",
    "2.2250738585072014e-308",
    "4.9e-324",
    "1.7976931348623157e308",
    "1e23",
    "8.98846567431158e307",
    "9007199254740993.0",
    "123456789012345678901234567890.5",
    "0.000001",
    "-0.0",
    "3.141592653589793238462643383279",
]
# Exact up to 64 bits; a wider integer arrives as the nearest float (serde_json keeps no digits past u64 without
# its arbitrary_precision feature, which would slow every number down): docs/contract.md, "The envelope".
BIG_INTS = ["9007199254740993", "-9223372036854775808", "18446744073709551615"]
WIDER = "123456789012345678901234567890"


def random_texts(n: int, seed: int = 7) -> list[str]:
    """Shortest reprs and 17-digit forms of random doubles across the exponent range."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        (x,) = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))
        if x != x or x in (float("inf"), float("-inf")):
            continue
        out.append(repr(x))
        out.append(f"{x:.17g}")
    return out


def fake_alegion(
    hostile_server: Callable[..., Any], http_answer: Callable[..., bytes], texts: list[str]
) -> Any:
    """A fake Alegion whose batch ``BID`` has one result per number text, the text written verbatim in
    ``resultData.value``, all on page 1 (Alegion's pages count from 1)."""
    template = (
        '{"createdAt":"2026-01-01T00:00:00Z","resultData":{"value":VALUE,"list":[VALUE]},'
        '"inputRecord":{"id":"rec-INDEX","metadata":"kINDEX","status":"COMPLETE"}}'
    )
    items = [template.replace("VALUE", t).replace("INDEX", str(i)) for i, t in enumerate(texts)]
    page = "[" + ",".join(items) + "]"

    def answer(method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        if path.startswith("/api/v1/login"):
            return http_answer(200, json.dumps({"access_token": "t", "expires_in": 3600}))
        if re.fullmatch(r"/api/v1/batches/[0-9a-f-]+", path):
            return http_answer(200, json.dumps({"id": BID, "name": "b"}))
        first = re.search(r"[?&]page=(\d+)", path) is None or re.search(r"[?&]page=1(&|$)", path) is not None
        return http_answer(200, page if first else "[]", {"X-Total-Count": str(len(items))})

    srv = hostile_server(answer)
    client = lp.Client("alegion", project="wf-1", base_url=srv.url, username="u", password="p", max_retries=0)
    return client, page


def test_results_floats_are_the_doubles_python_json_gives(hostile_server, http_answer):
    texts = HARD + random_texts(500)
    client, _ = fake_alegion(hostile_server, http_answer, texts)
    got = client.batch(BID).results().to_list()
    assert len(got) == len(texts)
    by_key = {r["key"]: r["output"] for r in got}
    wrong = []
    for i, t in enumerate(texts):
        want = json.loads(t)
        have = by_key[f"k{i}"]
        if repr(have["value"]) != repr(want) or repr(have["list"][0]) != repr(want):
            wrong.append((t, have["value"], want))
    assert not wrong, f"{len(wrong)} of {len(texts)} numbers decoded differently, e.g. {wrong[:3]}"


def test_big_integers_stay_exact(hostile_server, http_answer):
    client, _ = fake_alegion(hostile_server, http_answer, BIG_INTS)
    got = {r["key"]: r["output"]["value"] for r in client.batch(BID).results().to_list()}
    for i, t in enumerate(BIG_INTS):
        assert got[f"k{i}"] == json.loads(t), t
        assert type(got[f"k{i}"]) is int


def test_an_integer_wider_than_64_bits_is_the_nearest_float(hostile_server, http_answer):
    client, _ = fake_alegion(hostile_server, http_answer, [WIDER])
    (r,) = client.batch(BID).results().to_list()
    assert r["output"]["value"] == float(WIDER)


def test_request_decodes_the_body_as_python_json_does(hostile_server, http_answer):
    texts = HARD + random_texts(200, seed=11)
    client, page = fake_alegion(hostile_server, http_answer, texts)
    assert repr(client.request("GET", f"/batches/{BID}/results")) == repr(json.loads(page))

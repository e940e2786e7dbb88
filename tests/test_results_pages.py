"""Pages of results reach Python through one ``orjson.loads`` each (src/py/envelope_pages.rs); labelport's own
decoder, envelope by envelope, stays the reference and takes every page orjson would read differently or not at
all (a value nested deeper than ``MAX_JSON_DEPTH``, a number beyond the double range, a lone surrogate). These
tests put both roads side by side on the values where JSON decoders differ, against a fake Alegion whose results
carry each value verbatim. No timing here: the speed is BENCHMARKS.md's business.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import labelport as lp
import pytest
from labelport import _labelport as native

BID = "11111111-2222-3333-4444-555555555555"
LIMIT = 128  # labelport.MAX_JSON_DEPTH

# Texts where decoders are known to part: float rounding, the ends of the integer range, negative zero,
# underflow, escapes, surrogate pairs, control characters, line separators, repeated keys, empty containers.
TRICKY = [
    "0.9945999999999999",
    "2.2250738585072011e-308",
    "4.9e-324",
    "1e-400",
    "-1e-400",
    "1.7976931348623157e308",
    "1e23",
    "-0",
    "-0.0",
    "0",
    "1E2",
    "9007199254740993",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "true",
    "false",
    "null",
    '""',
    '"plain"',
    r'"caf\u00e9 \ud83d\ude00 \u2028\u2029 \u0000 \n\t\"\\ \/"',
    '"raw UTF-8: café ✓ 😀"',
    '{"a": 1, "a": 2, "b": {"a": [1, 2.5, "x"]}}',
    "{}",
    "[]",
    "[[[[[]]]]]",
    '{"points": [' + ",".join(f"[{i}, {i}.5]" for i in range(500)) + "]}",
]


def fake_alegion(
    hostile_server: Callable[..., Any], http_answer: Callable[..., bytes], outputs: list[str]
) -> tuple[lp.Client, str]:
    """A fake Alegion whose batch ``BID`` has one result per text of ``outputs``, written verbatim as its
    ``resultData``, served in pages of the size asked for (so a test can split them over several pages)."""
    template = (
        '{"createdAt":"2026-01-01T00:00:%02d.%03dZ","resultData":VALUE,'
        '"inputRecord":{"id":"rec-INDEX","metadata":"kINDEX","status":"COMPLETE","data":{"i":INDEX}}}'
    )
    items = [
        (template % (i // 1000 % 60, i % 1000)).replace("VALUE", t).replace("INDEX", str(i))
        for i, t in enumerate(outputs)
    ]

    def answer(method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        if path.startswith("/api/v1/login"):
            return http_answer(200, json.dumps({"access_token": "t", "expires_in": 3600}))
        if re.fullmatch(r"/api/v1/batches/[0-9a-f-]+", path):
            return http_answer(200, json.dumps({"id": BID, "name": "b"}))
        page = int(m.group(1)) if (m := re.search(r"[?&]page=(\d+)", path)) else 1
        size = int(m.group(1)) if (m := re.search(r"[?&]pageSize=(\d+)", path)) else 1000
        chunk = items[(page - 1) * size : page * size]
        return http_answer(200, "[" + ",".join(chunk) + "]", {"X-Total-Count": str(len(items))})

    srv = hostile_server(answer)
    client = lp.Client("alegion", project="wf-1", base_url=srv.url, username="u", password="p", max_retries=0)
    return client, srv.url


def typed(value: Any) -> Any:
    """`value` with every scalar tagged by its exact type (`1`, `1.0` and `True` apart; `0.0` and `-0.0` too)."""
    if type(value) is dict:
        return ("dict", [(k, typed(v)) for k, v in value.items()])
    if type(value) is list:
        return ("list", [typed(v) for v in value])
    return (type(value).__name__, repr(value))


def on_both_roads(read: Callable[[], Any]) -> tuple[Any, Any, tuple[int, int], tuple[int, int]]:
    """`read()` with orjson's road on, then with labelport's own decoder only; and the pages each road took
    meanwhile, as (orjson, own) for each run."""
    before = native._set_fast_pages(True)
    try:
        c0 = native._fast_pages_counts()
        fast = read()
        c1 = native._fast_pages_counts()
        native._set_fast_pages(False)
        own = read()
        c2 = native._fast_pages_counts()
    finally:
        native._set_fast_pages(before)
    return fast, own, (c1[0] - c0[0], c1[1] - c0[1]), (c2[0] - c1[0], c2[1] - c1[1])


def outcomes(stream: Iterator[dict[str, Any]]) -> list[Any]:
    """Each step of iterating `stream`: the result, or the error it raised (iteration goes on after one)."""
    out: list[Any] = []
    while True:
        try:
            out.append(typed(next(stream)))
        except StopIteration:
            return out
        except lp.VendorError as e:
            out.append(("error", e.code, str(e)))


def test_orjson_is_a_declared_dependency_and_results_use_it():
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    dependencies = re.search(r"^dependencies = \[(.*?)\]", pyproject, re.M | re.S)
    assert dependencies and re.search(r'"orjson\b', dependencies.group(1)), "orjson in [project] dependencies"
    assert native._fast_pages_available()


def test_tricky_values_are_the_same_on_both_roads_and_as_python_json_reads_them(hostile_server, http_answer):
    client, _ = fake_alegion(hostile_server, http_answer, TRICKY)
    fast, own, fast_roads, own_roads = on_both_roads(lambda: client.batch(BID).results().to_list())
    assert fast_roads == (1, 0), "orjson read the page"
    assert own_roads == (0, 1)
    assert [typed(r) for r in fast] == [typed(r) for r in own]
    for r, text in zip(fast, TRICKY, strict=True):
        want = json.loads(text)
        if isinstance(want, int) and not -(2**63) <= want < 2**64:
            want = float(want)  # wider than 64 bits: the nearest float (docs/contract.md)
        assert typed(r["output"]) == typed(want), text


def test_iterating_listing_and_async_agree_across_pages(hostile_server, http_answer):
    client, url = fake_alegion(hostile_server, http_answer, TRICKY * 40)  # 1,160 results: two pages

    def read() -> Any:
        async def aread() -> list[Any]:
            ac = lp.AsyncClient("alegion", project="wf-1", base_url=url, username="u", password="p")
            try:
                return [typed(r) async for r in (await ac.batch(BID)).results()]
            finally:
                await ac.close()

        stream = client.batch(BID).results()
        head = [typed(next(stream)) for _ in range(700)]  # part of page 1 by iteration, the rest listed
        return (
            head + [typed(r) for r in stream.to_list()],
            outcomes(client.batch(BID).results()),
            asyncio.run(aread()),
        )

    fast, own, fast_roads, _ = on_both_roads(read)
    assert fast_roads[1] == 0 and fast_roads[0] >= 4
    assert fast == own
    listed, iterated, asynced = fast
    assert listed == iterated == asynced and len(listed) == len(TRICKY) * 40


def test_a_value_orjson_refuses_goes_to_labelports_decoder_and_fails_at_that_result_only(
    hostile_server, http_answer
):
    # 1e400 is valid JSON but no double: labelport's decoder refuses it (bad_response), at that result.
    client, _ = fake_alegion(hostile_server, http_answer, ['{"v": 1}', '{"v": 1e400}', '{"v": 3}'])
    fast, own, fast_roads, _ = on_both_roads(lambda: outcomes(client.batch(BID).results()))
    assert fast_roads == (0, 1), "the page went to labelport's own decoder"
    assert fast == own
    assert [x[0] for x in fast] == ["dict", "error", "dict"]
    assert fast[1][1] == "bad_response"
    with pytest.raises(lp.VendorError):
        client.batch(BID).results().to_list()


def test_a_lone_surrogate_is_refused_on_both_roads_alike(hostile_server, http_answer):
    client, _ = fake_alegion(hostile_server, http_answer, ['"ok"', r'"\ud800 alone"', '"ok too"'])

    def read() -> Any:
        try:
            return outcomes(client.batch(BID).results())
        except lp.VendorError as e:  # refused with the whole page, before any result
            return ("page refused", e.code)

    fast, own, _, _ = on_both_roads(read)
    assert fast == own


@pytest.mark.parametrize("depth, ok", [(LIMIT, True), (LIMIT + 1, False)])
def test_the_depth_limit_holds_on_the_orjson_road(hostile_server, http_answer, depth, ok):
    """orjson reads up to 1,024 levels: a page with a value deeper than MAX_JSON_DEPTH goes to labelport's
    decoder, which refuses that value at its result; one at the limit stays on orjson's road."""
    deep = "[" * depth + "]" * depth
    client, _ = fake_alegion(hostile_server, http_answer, ['{"v": 1}', deep, '{"v": 3}'])
    fast, own, fast_roads, _ = on_both_roads(lambda: outcomes(client.batch(BID).results()))
    assert fast == own
    assert fast_roads == ((1, 0) if ok else (0, 1))
    assert [x[0] for x in fast] == (["dict", "dict", "dict"] if ok else ["dict", "error", "dict"])
    if not ok:
        assert str(LIMIT) in fast[1][2]


def test_watermark_and_to_jsonl_follow_the_results_handed_out(hostile_server, http_answer, tmp_path):
    client, _ = fake_alegion(hostile_server, http_answer, [f'{{"v": {i}}}' for i in range(1500)])
    stream = client.batch(BID).results()
    got = [next(stream) for _ in range(1200)]  # into the second page
    assert stream.watermark == got[-1]["completed_at"] == "2026-01-01T00:00:01.199Z"
    n = stream.to_jsonl(tmp_path / "rest.jsonl")
    assert n == 300 and stream.watermark == "2026-01-01T00:00:01.499Z"
    lines = (tmp_path / "rest.jsonl").read_text().splitlines()
    listed = client.batch(BID).results().to_list()[1200:]
    assert [json.loads(line) for line in lines] == listed


def test_negative_zero_is_the_int_python_json_reads_on_every_road(hostile_server, http_answer):
    """serde_json reads the integer `-0` as the float -0.0; Python's json and orjson read the int 0, as
    docs/contract.md promises: labelport's own decoder now does too (results and `client.request`)."""
    text = '{"a": -0, "b": [-0, -0.0, -0e1, "-0"], "c": {"-0": -0}}'
    client, _ = fake_alegion(hostile_server, http_answer, [text])
    fast, own, _, _ = on_both_roads(lambda: client.batch(BID).results().to_list())
    assert typed(fast[0]["output"]) == typed(own[0]["output"]) == typed(json.loads(text))
    assert typed(client.request("GET", f"/batches/{BID}/results")[0]["resultData"]) == typed(json.loads(text))

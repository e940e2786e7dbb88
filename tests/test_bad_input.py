"""Bad input, table-driven: each case raises a typed exception that names the row and field or the request,
and the sandbox's own counts show what was sent (for record problems: nothing).

    python tests/test_bad_input.py     # prints the table for RELIABILITY.md
"""

from __future__ import annotations

import datetime as dt
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import labelport as lp
import pytest

IMPORT = "POST /api/v1/batches/{batchId}/records/import"


@dataclass
class Case:
    name: str
    action: Callable[[Any], Any]  # takes a context with .sb, .client, .batch
    raises: type[BaseException]
    names: str  # a substring the error must contain: the row, field, key or request at fault
    field: str | None = None  # the error's .field, where one field is at fault
    sends_records: bool = False  # whether records may reach the vendor (False: nothing may be sent)


def up(records: Any, **kw: Any) -> Callable[[Any], Any]:
    return lambda ctx: ctx.batch.upload(records, **kw)


def good(i: int) -> dict[str, Any]:
    return {"k": f"r{i}", "caption": "ok"}


CASES = [
    Case(
        "a row that is a string",
        up([good(0), "oops"], key="k"),
        lp.InvalidInput,
        "record #1 is a str",
        "records",
    ),
    Case(
        "a row that is a list",
        up([good(0), ["a", 1]], key="k"),
        lp.InvalidInput,
        "record #1 is a list",
        "records",
    ),
    Case("a row that is None", up([None], key="k"), lp.InvalidInput, "record #0 is a NoneType", "records"),
    Case("records given as one dict", up(good(0), key="k"), lp.InvalidInput, "single dict", "records"),
    Case(
        "records given as a string",
        up("k,caption\nr1,x", key="k"),
        lp.InvalidInput,
        "not a string",
        "records",
    ),
    Case("records that are not iterable", up(42, key="k"), lp.InvalidInput, "not int", "records"),
    Case("an empty upload", up([], key="k"), lp.InvalidInput, "nothing to upload", "records"),
    Case(
        "NaN in a dict",
        up([good(0), {"k": "r1", "score": math.nan}], key="k"),
        lp.InvalidInput,
        "record #1",
        "score",
    ),
    Case(
        "infinity in a dict",
        up([{"k": "r0", "score": math.inf}], key="k"),
        lp.InvalidInput,
        "no JSON form",
        "score",
    ),
    Case(
        "bytes where text is due",
        up([{"k": "r0", "caption": b"\xff"}], key="k"),
        lp.InvalidInput,
        "bytes",
        "caption",
    ),
    Case("a set value", up([{"k": "r0", "tags": {"a"}}], key="k"), lp.InvalidInput, "set", "tags"),
    Case(
        "a datetime in a plain dict",
        up([{"k": "r0", "at": dt.datetime(2026, 1, 1)}], key="k"),
        lp.InvalidInput,
        "datetime",
        "at",
    ),
    Case(
        "an integer beyond 64 bits", up([{"k": "r0", "n": 2**70}], key="k"), lp.InvalidInput, "too large", "n"
    ),
    Case(
        "a non-string key inside a nested dict",
        up([{"k": "r0", "meta": {1: "a"}}], key="k"),
        lp.InvalidInput,
        "not a string",
        "meta",
    ),
    Case(
        "a value in a nested list",
        up([{"k": "r0", "boxes": [[1, 2], [3, math.nan]]}], key="k"),
        lp.InvalidInput,
        "NaN",
        "boxes[1][1]",
    ),
    Case(
        "a lone surrogate in a string",
        up([{"k": "r0", "caption": "\ud800"}], key="k"),
        lp.InvalidInput,
        "UTF-8",
        "caption",
    ),
    Case(
        "duplicate keys inside one upload", up([good(0), good(1), good(0)], key="k"), lp.DuplicateRecord, "r0"
    ),
    Case("duplicate content without a key", up([{"a": 1}, {"a": 1}]), lp.DuplicateRecord, "same content"),
    Case(
        "a row without the key field",
        up([good(0), {"caption": "x"}], key="k"),
        lp.InvalidInput,
        'record #1 has no key field "k"; its fields are "caption"',
        "k",
    ),
    Case(
        "a key column that no record has (a typo)",
        up([{"image_id": "a", "url": "u"}], key="imageid"),
        lp.InvalidInput,
        'its fields are "image_id", "url"',
        "imageid",
    ),
    Case("a null key", up([{"k": None}], key="k"), lp.InvalidInput, "record #0", "k"),
    Case("a float key", up([{"k": 1.5}], key="k"), lp.InvalidInput, "string or an integer", "k"),
    Case("an empty key", up([{"k": ""}], key="k"), lp.InvalidInput, "empty key", "k"),
    Case(
        "an option the vendor does not take",
        up([good(0)], key="k", priority=3),
        lp.InvalidInput,
        "priority",
        "priority",
    ),
    Case(
        "a misspelt argument of upload",
        up([good(0)], keys="k"),
        lp.InvalidInput,
        "did you mean key=?",
        "keys",
    ),
    Case(
        "an unknown on_error",
        up([good(0)], key="k", on_error="ignore"),
        lp.InvalidInput,
        "on_error",
        "on_error",
    ),
    Case(
        "an unknown vendor",
        lambda ctx: lp.Client("labelbox", project="p"),
        lp.InvalidInput,
        "unknown vendor",
        "vendor",
    ),
    Case(
        "a credential of the wrong type",
        lambda ctx: lp.Client(
            "alegion", project=ctx.sb.project, base_url=ctx.sb.url, username="sandbox", password=["x"]
        ),
        lp.InvalidInput,
        "password",
        "password",
    ),
    Case(
        "an argument the vendor does not take",
        lambda ctx: lp.Client(
            "alegion", project=ctx.sb.project, base_url=ctx.sb.url, api_key="x", **ctx.sb.credentials
        ),
        lp.InvalidInput,
        "api_key",
        "api_key",
    ),
    Case(
        "a missing project",
        lambda ctx: lp.Client("alegion", base_url=ctx.sb.url, **ctx.sb.credentials),
        lp.InvalidInput,
        "LABELPORT_ALEGION_PROJECT",
        "project",
    ),
    Case(
        "a base URL that is not http(s)",
        lambda ctx: lp.Client(
            "alegion", project=ctx.sb.project, base_url="ftp://example.com", **ctx.sb.credentials
        ),
        lp.InvalidInput,
        "scheme",
        "base_url",
    ),
    Case(
        "plain http to a remote host",
        lambda ctx: lp.Client(
            "alegion", project=ctx.sb.project, base_url="http://example.com", **ctx.sb.credentials
        ),
        lp.InvalidInput,
        "allow_insecure",
        "base_url",
    ),
    Case(
        "a malformed batch id",
        lambda ctx: ctx.client.batch("not-a-uuid!"),
        lp.NotFound,  # a malformed id names no batch (docs/contract.md), and is never sent
        "an Alegion batch id is a UUID",
    ),
    Case(
        "an unknown batch id",
        lambda ctx: ctx.client.batch("00000000-0000-0000-0000-00000000abcd"),
        lp.NotFound,
        "no batch",
    ),
    Case(
        "an unknown option of create_batch",
        lambda ctx: ctx.client.create_batch("x", color="red"),
        lp.InvalidInput,
        "color",
        "color",
    ),
    Case(
        "a since that is not a time",
        lambda ctx: ctx.batch.results(since="last tuesday"),
        lp.InvalidInput,
        "RFC 3339",
        "since",
    ),
    Case(
        "an unknown status filter",
        lambda ctx: ctx.batch.records(status="done"),
        lp.InvalidInput,
        "unknown status",
        "status",
    ),
    Case(
        "a negative wait timeout",
        lambda ctx: ctx.batch.wait(timeout=-1),
        lp.InvalidInput,
        "timeout",
        "timeout",
    ),
    Case(
        "an HTTP method that is not one",
        lambda ctx: ctx.client.request("GE T", "/workflows"),
        lp.InvalidInput,
        "not an HTTP method",
        "method",
    ),
    Case(
        "a full URL to request()",
        lambda ctx: ctx.client.request("GET", "https://evil.example/x"),
        lp.InvalidInput,
        "not a full URL",
        "path",
    ),
    Case(
        "a response that is not the JSON expected",
        lambda ctx: (
            ctx.sb.inject(status=200, method="GET", path="/results", body="<html>oops</html>"),
            ctx.batch.results().to_list(),
        ),
        lp.VendorError,
        "unexpected results page",
    ),
    Case(
        "a connection cut short on every retry",
        lambda ctx: (
            ctx.sb.inject(method="GET", path="/results", reset=True, times=50),
            lp.Client(
                "alegion", project=ctx.sb.project, base_url=ctx.sb.url, max_retries=2, **ctx.sb.credentials
            )
            .batch(ctx.batch.id)
            .results()
            .to_list(),
        ),
        lp.VendorError,
        "connection failed",
    ),
]


class Ctx:
    def __init__(self, sb: lp.sandbox.Sandbox, client: lp.Client, batch: lp.Batch) -> None:
        self.sb, self.client, self.batch = sb, client, batch


def imports(sb: lp.sandbox.Sandbox) -> int:
    return sum(int(n) for k, n in sb.stats()["requests"].items() if k.rpartition(" ")[0] == IMPORT)


def run_case(case: Case) -> BaseException:
    with lp.sandbox.start("alegion", seed=3) as sb:
        client = sb.client()
        batch = client.create_batch("bad-input")
        before = imports(sb)
        with pytest.raises(case.raises) as info:
            case.action(Ctx(sb, client, batch))
        err = info.value
        assert isinstance(err, lp.LabelportError)
        assert case.names in str(err), f"{case.name}: {err!s} does not name {case.names!r}"
        if case.field is not None:
            assert err.field == case.field, f"{case.name}: field {err.field!r}, wanted {case.field!r}"
        if not case.sends_records:
            assert imports(sb) == before, f"{case.name}: records were sent"
            assert sb.stats().get("records_total", 0) == 0
        return err


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_a_typed_error_naming_what_is_wrong(case):
    run_case(case)


if __name__ == "__main__":
    print("| bad input | raises | message (as the user sees it) |")
    print("|---|---|---|")
    for case in CASES:
        err = run_case(case)
        # Escaped for Markdown: a table cell's bar, and brackets (`boxes[1][1]` would read as a reference link).
        text = str(err).replace("|", "\\|").replace("[", "\\[").replace("]", "\\]")
        print(f"| {case.name} | `{type(err).__name__}` | {text} |")
    sys.exit(0)

"""The ledgers (docs/vendors/<vendor>.md) list every wire fact labelport relies on, each with its source. This
test records every request path, query parameter and body field labelport sends during each vendor's round
trip (the sandbox's ``record_wire``) and fails on any the vendor's ledger does not list: nothing goes on the
wire that no one has looked up."""

from __future__ import annotations

import pathlib
import re
from typing import Any

import labelport as lp
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

VENDORS = lp.vendors()


def ledger(vendor: str) -> list[tuple[str, str, list[str]]]:
    """The ledger table's rows: (kind, endpoint, names), backticks removed. A ``query`` or ``body`` row's names
    are the parameters and JSON paths exactly as sent (``a.b``, ``a[].b``; ``<field>`` stands for any one
    segment, and at the end for the rest of the path, e.g. ``[].data.<field>`` for a record's own fields)."""
    rows = []
    text = (ROOT / "docs" / "vendors" / f"{vendor}.md").read_text()
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 5 or not line.startswith("|"):
            continue
        kind, endpoint, name = cells[1], cells[2], cells[3]
        if kind in ("kind", "---") or set(kind) <= {"-", ":"}:
            continue
        rows.append((kind, endpoint.strip("`"), re.findall(r"`([^`]+)`", name)))
    return rows


def norm(path: str) -> str:
    """A path with every ``{placeholder}`` alike and no query: the ledgers and the simulators name them apart."""
    return re.sub(r"\{[^}]*\}", "{}", path.split("?", 1)[0]).rstrip("/")


def endpoint_of(route: str, endpoints: list[str]) -> str | None:
    """The ledger endpoint a simulator route is: the longest ledger path it ends with, for the same method; else a
    ledger endpoint that is a URL handed out by the vendor (``PUT {upload_url}``)."""
    method, _, path = route.partition(" ")
    best = None
    for e in endpoints:
        e_method, _, e_path = e.partition(" ")
        if e_method != method or not e_path.startswith("/"):
            continue
        if norm(path) == norm(e_path) or norm(path).endswith(norm(e_path)):
            if best is None or len(norm(e_path)) > len(norm(best.partition(" ")[2])):
                best = e
    if best is None:
        handed_out = [
            e for e in endpoints if e.partition(" ")[0] == method and e.partition(" ")[2].startswith("{")
        ]
        if len(handed_out) == 1:
            best = handed_out[0]
    return best


def same(a: str, b: str) -> bool:
    """One endpoint, however its placeholders and query are written (``job/{batch_id}/status?input_type=batch``)."""
    return a.partition(" ")[0] == b.partition(" ")[0] and norm(a.partition(" ")[2]) == norm(
        b.partition(" ")[2]
    )


def pattern(name: str) -> re.Pattern[str]:
    """A ledger name as a pattern: ``<field>`` is any one segment; a trailing one, the rest of the path."""
    parts = re.split(r"(<[^>]+>)", name)
    out = ""
    for i, part in enumerate(parts):
        if part.startswith("<") and part.endswith(">"):
            out += ".+" if i == len(parts) - 1 or parts[i + 1] == "" else r"[^.\[\]]+"
        else:
            out += re.escape(part)
    return re.compile(out)


def listed(names: list[str], sent: str) -> bool:
    return any(pattern(n).fullmatch(sent) for n in names)


def round_trip(vendor: str) -> dict[str, Any]:
    """What a user's first day sends: create, list, upload, follow, read back, re-run."""
    records, key = lp.sandbox.sample_records(vendor, 30, prefix="ledger")
    with lp.sandbox.start(vendor, seed=5, record_wire=True) as sb, sb.client() as client:
        batch = client.create_batch("ledger", exist_ok=True)
        if client.capabilities["operations"].get("list_batches", True):
            client.batches()
        job = batch.upload(records, key=key)
        job.status()
        job.wait(timeout=60)
        client.batch(batch.id).status()  # after the upload: before it, a Sama or Deepen batch is NotFound
        batch.wait(timeout=60, poll_interval=0.1)
        stream = batch.results()
        stream.to_list()
        batch.results(since=stream.watermark).to_list()
        batch.result_pages()
        batch.records().to_list()
        batch.upload(records, key=key).wait(timeout=60)
        return sb.stats()["wire"]


@pytest.mark.parametrize("vendor", VENDORS)
def test_every_name_sent_is_in_the_ledger(vendor):
    rows = ledger(vendor)
    endpoints = [e for kind, e, _ in rows if kind == "endpoint"]
    assert endpoints, f"docs/vendors/{vendor}.md lists no endpoint"
    missing = []
    wire = round_trip(vendor)
    assert wire, "the sandbox recorded nothing"
    for route, sent in wire.items():
        if route.split(" ", 1)[1].startswith("/_sim/"):
            continue
        endpoint = endpoint_of(route, endpoints)
        if endpoint is None:
            missing.append(f"endpoint {route}")
            continue
        for kind in ("query", "body"):
            if kind == "query" and endpoint.partition(" ")[2].startswith("{"):
                continue  # a URL the vendor handed out: its query is the vendor's, sent as given
            # Rows with no endpoint hold for every call (a credential in the query, say).
            names = [n for k, e, ns in rows if k == kind and (e == "" or same(e, endpoint)) for n in ns]
            missing += [f"{kind} {endpoint} {name}" for name in sent[kind] if not listed(names, name)]
    assert not missing, f"sent but not in docs/vendors/{vendor}.md:\n" + "\n".join(missing)


def test_the_matching_rules():
    assert pattern("data.<field>").fullmatch("data.image_id.nested")
    assert pattern("files[].file_size").fullmatch("files[].file_size")
    assert not pattern("files").fullmatch("files[].file_size")
    assert pattern("<k>.x").fullmatch("a.x") and not pattern("<k>.x").fullmatch("a.b.x")
    eps = ["GET /batches/{batch_id}", "GET /workflows/{p}/batches/{b}", "PUT {upload_url}"]
    assert endpoint_of("GET /api/v1/workflows/{id}/batches/{bid}", eps) == "GET /workflows/{p}/batches/{b}"
    assert endpoint_of("GET /api/v1/batches/{batchId}", eps) == "GET /batches/{batch_id}"
    assert endpoint_of("PUT /_storage/{name}", eps) == "PUT {upload_url}"
    assert endpoint_of("POST /api/v1/batches/{batchId}", eps) is None

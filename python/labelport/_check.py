"""``labelport check`` and ``client.check()``: a read-only probe of a real account against the vendor's ledger.

The ledger (docs/vendors/<vendor>.md, built into the package) lists every wire fact labelport relies on, each
``confirmed`` by a source, ``inferred`` or ``guessed``. The probe reads what an account already holds (its batches,
one page of a batch's records and results, every GET endpoint of the ledger it can address) and says, for each
response field the ledger names, whether the live API confirmed or contradicted it, and what page size the server
actually served. The report names no secret (credentials are replaced by ``***``): attach it to a bug report.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from labelport._labelport import _ledger

#: What a probe asks for when it checks a page size: more than any vendor is known to serve.
ASKED_PAGE_SIZE = 1000
PAGE_SIZE_NAMES = ("pageSize", "page_size", "per_page", "limit", "size")
PAGE_NAMES = ("page", "page_number", "pageNumber")


@dataclass
class Row:
    kind: str
    endpoint: str
    name: str
    confidence: str
    relies_on: str = ""


@dataclass
class Finding:
    """One line of the report: ``verdict`` is confirmed, contradicted, not seen, not probed, failed or ok."""

    verdict: str
    what: str
    detail: str = ""
    ledger: str = ""


@dataclass
class Report:
    vendor: str
    base_url: str
    project: str
    wrote: bool
    findings: list[Finding] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list, repr=False)

    def add(self, verdict: str, what: str, detail: str = "", ledger: str = "") -> None:
        self.findings.append(Finding(verdict, what, self._redact(detail), ledger))

    def _redact(self, text: str) -> str:
        for s in self.secrets:
            if s and len(s) >= 4:
                text = text.replace(s, "***")
        return text

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.verdict] = out.get(f.verdict, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "vendor": self.vendor,
            "base_url": self._redact(self.base_url),
            "project": self.project,
            "wrote": self.wrote,
            "counts": self.counts(),
            "findings": [f.__dict__ for f in self.findings],
        }

    def to_text(self) -> str:
        from labelport import __version__

        lines = [
            f"labelport {__version__} check: {self.vendor} at {self._redact(self.base_url)}, project {self.project}",
            "wrote one tiny batch (--write)" if self.wrote else "read-only: nothing was written",
        ]
        for f in self.findings:
            ledger = f"  [ledger: {f.ledger}]" if f.ledger else ""
            detail = f": {f.detail}" if f.detail else ""
            lines.append(f"  {f.verdict.upper():<12} {f.what}{detail}{ledger}")
        lines.append("summary: " + ", ".join(f"{n} {v}" for v, n in sorted(self.counts().items())))
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.to_text()


def ledger_rows(vendor: str) -> list[Row]:
    """The ledger table of ``vendor``: (kind, endpoint, first backticked name, confidence)."""
    rows = []
    for line in _ledger(vendor).splitlines():
        cells = [c.strip() for c in line.split("|")]
        if (
            not line.startswith("|")
            or len(cells) < 8
            or cells[1] in ("kind", "")
            or set(cells[1]) <= {"-", ":"}
        ):
            continue
        names = re.findall(r"`([^`]+)`", cells[3])
        rows.append(Row(cells[1], cells[2].strip("`"), names[0] if names else "", cells[-2], cells[4]))
    return rows


def _segments(path: str) -> list[tuple[str, str]] | None:
    """``a[].b`` as [("a", "[]"), ("b", "")]; ``{id}.x``: every value of a map; None when not a field path."""
    if not path or re.search(r"[\s()<>,]", path):
        return None
    out = []
    for seg in path.split("."):
        m = re.fullmatch(r"([^\[\]]*)(\[\d*\])?", seg)
        if not m:
            return None
        out.append((m.group(1), m.group(2) or ""))
    return out


def lookup(body: Any, path: str) -> tuple[str, str]:
    """Whether ``path`` is in ``body``: ("present", its JSON types), ("absent", where), or ("empty", why)."""
    segs = _segments(path)
    if segs is None:
        return "skip", "not a field path"
    nodes = [body]
    for name, index in segs:
        if not nodes:
            return "empty", "no item to look in"
        found = []
        for node in nodes:
            if name.startswith("{") and name.endswith("}"):
                found += list(node.values()) if isinstance(node, dict) else []
            elif name == "":
                found.append(node)  # a top-level list: `[].x`
            elif isinstance(node, dict) and name in node:
                found.append(node[name])
        if not found:
            return "absent", f"none of {len(nodes)} object(s) has {name or path!r}"
        if index:
            items = [x for node in found if isinstance(node, list) for x in node]
            if index != "[]":
                items = items[:1]
            if not items:
                return "empty", f"{name or 'the body'} is an empty list"
            found = items
        nodes = found
    types = sorted({_json_type(n) for n in nodes})
    detail = f"in {len(nodes)} item(s), as {'/'.join(types)}"
    # The words a state field holds are what a vendor's documents most often leave open: show them.
    if re.search(r"(status|state|stage)$", segs[-1][0]) and all(isinstance(n, str) for n in nodes):
        words = sorted(set(nodes))
        if len(words) <= 8:
            detail += ": " + ", ".join(words)
    # So is the form of a time written as text (a zone or none, fractions): shown with its digits as 9.
    if re.search(r"(_at|At|[dD]ate|[tT]ime)$", segs[-1][0]) and all(isinstance(n, str) for n in nodes):
        forms = sorted({re.sub(r"\d", "9", n) for n in nodes})
        if len(forms) <= 3:
            detail += ", like " + ", ".join(forms)
    return "present", detail


#: The most field paths a record's shape shows, and how deep it looks.
MAX_SHAPE = 40
SHAPE_DEPTH = 3


def _shape(value: Any, prefix: str = "", depth: int = SHAPE_DEPTH) -> list[str]:
    """The key paths of a vendor's answer down to ``depth`` (``result.data.annotations``; ``x[]`` for a list of
    objects): names only, never values."""
    if isinstance(value, list):
        objects = [v for v in value if isinstance(v, dict)][:3]
        return sorted({p for v in objects for p in _shape(v, prefix + "[]", depth)}) if objects else []
    if not isinstance(value, dict) or depth == 0:
        return []
    out = []
    for k, v in value.items():
        path = f"{prefix}.{k}" if prefix else str(k)
        deeper = _shape(v, path, depth - 1)
        out += deeper or [path]
    return out


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    return "list" if isinstance(v, list) else "object"


def _fill(endpoint: str, values: dict[str, str]) -> tuple[str, str] | None:
    """``GET /a/{project}/b?x=1`` with its placeholders filled: (method, path with the ledger's query); None if
    one cannot be."""
    method, _, path = endpoint.partition(" ")
    if not path.startswith("/"):
        return None
    missing = [p for p in re.findall(r"\{([^}]*)\}", path) if p not in values]
    if missing:
        return None
    return method, re.sub(r"\{([^}]*)\}", lambda m: values[m.group(1)], path)


def _items(body: Any) -> list[Any] | None:
    """A listing's items: the body if it is a list, else its one list-valued field."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        lists = [v for v in body.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
    return None


def _tiny_record(vendor: str) -> tuple[dict[str, Any], str]:
    from labelport.sandbox import sample_records

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    records, key = sample_records(vendor, 1, prefix=f"labelport-check-{stamp}")
    return records[0], key


def run(
    client: Any, *, batch: str | None = None, write: bool = False, secrets: list[str] | None = None
) -> Report:
    """Probe ``client``'s account (``client.check()`` calls this with the client's credentials as ``secrets``, so
    the report can redact them); see the module's docstring."""
    import labelport as lp

    report = Report(client.vendor, client.base_url, client.project, write, secrets=list(secrets or []))
    rows = ledger_rows(client.vendor)

    target = None
    try:
        if client.capabilities["operations"].get("list_batches", True):
            batches = client.batches()
            report.add("ok", "login and list batches", f"{len(batches)} batch(es)")
            if batch is None and batches:
                target = max(batches, key=lambda b: b.created_at or "")
        else:
            report.add("not probed", "list batches", "the vendor's API keeps no list of batches")
        if write:
            record, key = _tiny_record(client.vendor)
            target = client.create_batch(f"labelport-check-{record[key]}")
            target.upload([record], key=key).wait(timeout=300)
            report.add("ok", "write", f"created batch {target.id} with one record")
        elif batch is not None:
            target = client.batch(batch)
    except lp.LabelportError as e:
        report.add("failed", "login, listing or the --write batch", f"{type(e).__name__}: {e}")
        return report

    values = {"project": client.project}
    if target is None:
        report.add(
            "not probed", "a batch's records and results", "no batch: pass batch= (--batch ID) or write=True"
        )
    else:
        # The batch's own answer names its ids on the wire (Deepen's dataset_id, where the neutral id is a
        # reservation); the neutral id fills what it does not name.
        try:
            raw = target.raw
        except lp.LabelportError:
            raw = {}
        for name, value in (raw or {}).items():
            if isinstance(value, (str, int)) and not isinstance(value, bool) and name != "project":
                values[name] = str(value)
        for name in ("batch_id", "batchId", "dataset_id", "datasetId", "id"):
            values.setdefault(name, target.id)
        total = _probe_batch(report, target)
        _probe_paging(report, client, rows, values, total)
    _probe_fields(report, client, rows, values)
    return report


async def arun(
    client: Any, *, batch: str | None = None, write: bool = False, secrets: list[str] | None = None
) -> Report:
    """``AsyncClient.check``: ``run`` with a sync view of the same client, on a worker thread (the probe makes
    blocking calls, and the event loop must stay free)."""
    import asyncio

    return await asyncio.to_thread(run, client, batch=batch, write=write, secrets=secrets)


def _probe_batch(report: Report, batch: Any) -> int | None:
    import labelport as lp

    total = None
    try:
        status = batch.status()
        total = status.get("total")
        report.add("ok", f"batch {batch.id} status", ", ".join(f"{k}={v}" for k, v in status.items()))
    except lp.LabelportError as e:
        report.add("failed", f"batch {batch.id} status", f"{type(e).__name__}: {e}")
    for what, read in (("records", batch.records), ("results", batch.results)):
        try:
            stream = read(include_raw=True)
            first = [next(stream, None) for _ in range(5)]
            got = [r for r in first if r is not None]
            stream.close()
            statuses = sorted({str(r.get("status")) for r in got})
            detail = f"first {len(got)} read; statuses {', '.join(statuses)}"
            # What the vendor's answer left empty, and its shape: where labelport found what it reports.
            empty = sorted({k for r in got for k, v in r.items() if v is None and k != "raw"})
            if empty:
                detail += f"; empty: {', '.join(empty)}"
            shapes = sorted({p for r in got for p in _shape(r.get("raw"))})
            if shapes:
                detail += f"; the vendor's fields: {', '.join(shapes[:MAX_SHAPE])}"
                detail += " ..." if len(shapes) > MAX_SHAPE else ""
            report.add("ok", f"batch {batch.id} {what}", detail)
        except lp.UnsupportedOperation:
            report.add("not probed", f"batch {batch.id} {what}", "the vendor's API cannot list them")
        except lp.LabelportError as e:
            report.add("failed", f"batch {batch.id} {what}", f"{type(e).__name__}: {e}")
    return total if isinstance(total, int) else None


def _probe_paging(
    report: Report, client: Any, rows: list[Row], values: dict[str, str], total: int | None
) -> None:
    """Each listing that takes a page size, asked for ASKED_PAGE_SIZE: how many items the server served."""
    import labelport as lp

    by_endpoint: dict[str, set[str]] = {}
    for r in rows:
        if r.kind == "query" and r.endpoint.startswith("GET "):
            by_endpoint.setdefault(r.endpoint, set()).add(r.name)
    for endpoint, names in by_endpoint.items():
        size = next((n for n in PAGE_SIZE_NAMES if n in names), None)
        filled = _fill(endpoint, values)
        if size is None or filled is None:
            continue
        page = next((n for n in PAGE_NAMES if n in names), None)
        params: dict[str, Any] = {size: ASKED_PAGE_SIZE}
        if page:
            params[page] = 1
        try:
            path, _, query = filled[1].partition("?")
            params = {**dict(urllib.parse.parse_qsl(query)), **params}
            items = _items(client.request("GET", path, params=params))
            if items is None:
                report.add("not seen", f"paging {endpoint}", "the answer holds no single list")
                continue
            served = len(items)
            detail = f"asked {ASKED_PAGE_SIZE} a page ({size}), served {served}"
            capped = False
            if served < ASKED_PAGE_SIZE and page and served > 0:
                more = _items(client.request("GET", path, params={**params, page: 2})) or []
                capped = len(more) > 0
            elif served < ASKED_PAGE_SIZE and total is not None and served < total and "{" in endpoint:
                capped = True
            if capped:
                report.add(
                    "contradicted",
                    f"paging {endpoint}",
                    detail + f": the server serves at most {served} a page",
                )
            else:
                report.add("confirmed", f"paging {endpoint}", detail + " (no cap below the size asked)")
        except lp.LabelportError as e:
            report.add("failed", f"paging {endpoint}", f"{type(e).__name__}: {e}")


def _probe_fields(report: Report, client: Any, rows: list[Row], values: dict[str, str]) -> None:
    """Every response field of every GET endpoint the probe can address: present or not in the live answer.
    An endpoint that needs an id the probe lacks waits until an answer names one: the ledger's ``id`` rows say
    which field of which endpoint's answer fills which placeholder (a Sama task's ``batch_id`` is the
    ``{sama_batch}`` of its creation job)."""
    fields: dict[str, list[Row]] = {}
    ids: dict[str, list[tuple[str, str]]] = {}
    # A query flag labelport always sends as `true` or `false` shapes the answer (Deepen's labels are a map by
    # file id only with `labels_with_file_ids_order=true`): the probe sends it too.
    flags: dict[str, dict[str, str]] = {}
    for r in rows:
        flag = re.match(r"`(true|false)`", r.relies_on)
        if r.kind == "query" and r.name and flag:
            flags.setdefault(r.endpoint, {})[r.name] = flag.group(1)
        if r.kind == "id" and r.endpoint.startswith("GET ") and r.name:
            named = re.search(r"\{(\w+)\}", r.relies_on)
            if named:
                ids.setdefault(r.endpoint, []).append((named.group(1), r.name))
                fields.setdefault(r.endpoint, [])
        # Headers (`X-Total-Count`, `Link`: capitalised) and error bodies are not in a successful answer's body.
        if r.name[:1].isupper() or re.search(r"\berror", r.relies_on):
            continue
        if r.kind == "response" and r.endpoint.startswith("GET ") and r.name:
            fields.setdefault(r.endpoint, []).append(r)
    pending = list(fields)
    while pending:
        ready = [e for e in pending if _fill(e, values) is not None]
        if not ready:
            break
        for endpoint in ready:
            pending.remove(endpoint)
            body = _read(report, client, endpoint, values, flags)
            if body is None:
                continue
            for placeholder, path in ids.get(endpoint, []):
                found = _first_scalar(body, path)
                if found is not None:
                    values.setdefault(placeholder, found)
            for r in fields[endpoint]:
                verdict, detail = lookup(body, r.name)
                if verdict == "skip":
                    continue
                word = {"present": "confirmed", "absent": "contradicted", "empty": "not seen"}[verdict]
                if verdict == "absent" and r.relies_on.startswith("optional:"):
                    # A fallback name, or a field only some answers carry: its absence contradicts nothing.
                    word, detail = "not seen", f"{detail} (optional)"
                report.add(word, f"{endpoint} {r.name}", detail, ledger=r.confidence)
    for endpoint in pending:
        report.add("not probed", endpoint, "needs an id the probe does not have")


def _read(
    report: Report, client: Any, endpoint: str, values: dict[str, str], flags: dict[str, dict[str, str]]
) -> Any:
    """The answer of a ledger GET endpoint with its placeholders filled and the ``flags`` labelport always sends
    it; None (and a finding) when it fails."""
    import labelport as lp

    filled = _fill(endpoint, values)
    assert filled is not None
    path, _, query = filled[1].partition("?")
    params = {**flags.get(endpoint, {}), **dict(urllib.parse.parse_qsl(query))}
    try:
        return client.request("GET", path, params=params or None)
    except lp.NotFound as e:
        # The ledger names an endpoint the server does not have (for this id): that is an answer.
        report.add("contradicted", endpoint, f"the server has no such endpoint here: {e}")
    except lp.LabelportError as e:
        report.add("failed", endpoint, f"{type(e).__name__}: {e}")
    return None


def _first_scalar(body: Any, path: str) -> str | None:
    """The first string or integer at ``path`` (``tasks[].id``) in ``body``, as text."""
    segs = _segments(path)
    if segs is None:
        return None
    nodes = [body]
    for name, index in segs:
        nodes = [n[name] if name else n for n in nodes if isinstance(n, dict) and name in n or not name]
        if index:
            nodes = [x for n in nodes if isinstance(n, list) for x in n]
    for n in nodes:
        if isinstance(n, (str, int)) and not isinstance(n, bool):
            return str(n)
    return None

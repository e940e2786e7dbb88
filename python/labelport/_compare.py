"""``lp.compare``: the results of two or more sources (batches, or lists of envelopes) aligned on the record
key, with agreement, disagreements, consensus and turnaround as pandas DataFrames. docs/compare.md defines
every number.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from itertools import combinations
from typing import Any

from labelport._agreement import IOU_MATCH, Box, cohen_kappa, iou, krippendorff_alpha, match_boxes
from labelport._records import _invalid
from labelport._values import FAILED, KINDS, STATES, Extractor, infer_kind, read

__all__ = ["Comparison", "compare"]

#: The columns of ``agreement()``, in order.
AGREEMENT_COLUMNS = (
    "field",
    "kind",
    "records",
    "compared",
    "agreement",
    "kappa",
    "alpha",
    "mean_iou",
    "matched",
    "unmatched",
    *STATES[1:],
)


def _pandas() -> Any:
    from labelport._records import need

    return need("pandas", "pandas", "labelport.compare")


def _envelopes(name: str, source: Any, progress: Any) -> list[dict[str, Any]]:
    """Every record of a source: ``batch.records()`` (every status, so exceptions and unfinished records are
    counted), or ``batch.results()`` where the vendor cannot list records; or the envelopes given."""
    from labelport._labelport import AsyncBatch, Batch, UnsupportedOperation

    if isinstance(source, AsyncBatch):
        raise _invalid(
            f"sources[{name!r}] is an AsyncBatch: pass its envelopes (a list) or a Batch", "sources"
        )
    if isinstance(source, Batch):
        try:
            return source.records(progress=progress).to_list()
        except UnsupportedOperation:
            return source.results(progress=progress).to_list()
    if isinstance(source, str | bytes | Mapping) or not isinstance(source, Iterable):
        raise _invalid(
            f"sources[{name!r}] must be a Batch or an iterable of envelope dicts, not {type(source).__name__}",
            "sources",
        )
    items = list(source)
    for i, e in enumerate(items):
        if not isinstance(e, Mapping) or e.get("key") is None:
            raise _invalid(f"sources[{name!r}] item #{i} is not an envelope dict with a 'key'", "sources")
    return [dict(e) for e in items]


def _better(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """Of two envelopes of one key in one source, the completed one, then the later completed one."""
    rank = (new.get("status") == "completed", str(new.get("completed_at") or ""))
    return rank > (old.get("status") == "completed", str(old.get("completed_at") or ""))


def _parse_fields(fields: Any, names: list[str], outputs: dict[str, list[Any]]) -> dict[str, Any]:
    """``{field: ({source: extractor}, kind)}`` from what the user gave, or from the shared output fields."""
    parsed: dict[str, Any] = {}
    if fields is None:
        shared = None
        for n in names:
            keys = {k for o in outputs[n] if isinstance(o, Mapping) for k in o}
            shared = keys if shared is None else shared & keys
        if not shared:
            raise _invalid(
                "the sources share no output field: name the ones to compare with fields=", "fields"
            )
        for f in sorted(shared):
            sample = [o.get(f) for n in names for o in outputs[n] if isinstance(o, Mapping)]
            parsed[f] = ({n: f for n in names}, infer_kind(sample))
        return parsed
    if not isinstance(fields, Mapping) or not fields:
        raise _invalid("fields must be a dict of name -> kind or (path or callable, kind)", "fields")
    for f, spec in fields.items():
        if isinstance(spec, str):
            how: Any = f
            kind = spec
        elif isinstance(spec, tuple) and len(spec) == 2:
            how, kind = spec
        else:
            raise _invalid(f"fields[{f!r}] must be a kind or a (path or callable, kind) pair", "fields")
        if kind not in KINDS:
            raise _invalid(f"fields[{f!r}]: kind must be one of {', '.join(KINDS)}, not {kind!r}", "fields")
        if isinstance(how, Mapping):
            unknown = [s for s in how if s not in names]
            lacking = [s for s in names if s not in how]
            if unknown or lacking:
                raise _invalid(
                    f"fields[{f!r}] names {'unknown sources ' + str(unknown) if unknown else ''}"
                    f"{'; ' if unknown and lacking else ''}"
                    f"{'no path for the sources ' + str(lacking) if lacking else ''}",
                    "fields",
                )
            per = dict(how)
        else:
            per = dict.fromkeys(names, how)
        for s, h in per.items():
            if not (isinstance(h, str) and h) and not callable(h):
                raise _invalid(f"fields[{f!r}] for {s!r}: a dotted path or a callable, not {h!r}", "fields")
        parsed[str(f)] = (per, kind)
    return parsed


def compare(
    sources: Mapping[str, Any],
    fields: Mapping[str, str | tuple[Extractor | Mapping[str, Extractor], str]] | None = None,
    *,
    progress: Any = False,
) -> Comparison:
    """Aligns the records of two or more sources on their key. ``sources``: name -> ``Batch`` (its
    ``records()``: every record in every status) or an iterable of envelopes (e.g. ``batch.results()``).
    ``fields``: name -> kind (the field's path is its name) or ``(path or callable, kind)``, where the path
    or callable may be a dict per source; kinds ``category``, ``number``, ``text``, ``box``, ``boxes``.
    Without ``fields``, every top-level output field all sources share, its kind inferred."""
    if not isinstance(sources, Mapping) or len(sources) < 2:
        raise _invalid("compare needs a dict of two or more sources, name -> Batch or envelopes", "sources")
    for name in sources:
        if not isinstance(name, str) or not name:
            raise _invalid(f"source names must be non-empty strings, not {name!r}", "sources")
    by_source: dict[str, dict[str, dict[str, Any]]] = {}
    duplicates: dict[str, int] = {}
    for name, source in sources.items():
        table: dict[str, dict[str, Any]] = {}
        dup = 0
        for e in _envelopes(name, source, progress):
            k = str(e["key"])
            if k in table:
                dup += 1
                if not _better(e, table[k]):
                    continue
            table[k] = e
        by_source[name] = table
        duplicates[name] = dup
    names = list(by_source)
    outputs = {n: [e.get("output") for e in by_source[n].values()] for n in names}
    return Comparison(by_source, _parse_fields(fields, names, outputs), duplicates)


def _agree(kind: str, values: list[Any]) -> bool:
    if kind == "box":
        return all(iou(a, b) >= IOU_MATCH for a, b in combinations(values, 2))
    if kind == "boxes":
        return all(match_boxes(a, b)[1] == 0 for a, b in combinations(values, 2))
    return len(set(values)) == 1


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    t = re.sub(r"(\.\d{6})\d+", r"\1", text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    t = re.sub(r"\.(\d{1,5})(?=[+-]|$)", lambda m: "." + m.group(1).ljust(6, "0"), t)
    try:
        d = datetime.fromisoformat(t)
    except ValueError:
        return None
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def _boxes_similarity(a: tuple[Box, ...], b: tuple[Box, ...]) -> float:
    if not a and not b:
        return 1.0
    matched, _ = match_boxes(a, b)
    return sum(matched) / max(len(a), len(b))


class Comparison:
    """Two or more sources' records aligned on the key; made by ``lp.compare``."""

    def __init__(
        self,
        by_source: dict[str, dict[str, dict[str, Any]]],
        fields: dict[str, tuple[dict[str, Extractor], str]],
        duplicates: dict[str, int],
    ) -> None:
        self.sources: list[str] = list(by_source)
        self.fields: dict[str, str] = {f: kind for f, (_, kind) in fields.items()}
        self._by_source = by_source
        self._duplicates = duplicates
        self.keys: list[str] = sorted({k for t in by_source.values() for k in t})
        # field -> key -> [(state, value) per source]
        self._cells: dict[str, dict[str, list[tuple[str, Any]]]] = {
            f: {k: [read(by_source[s].get(k), per[s], kind) for s in self.sources] for k in self.keys}
            for f, (per, kind) in fields.items()
        }

    def values(self, field: str) -> Any:
        """One row per record key, one column per source: the value of ``field``, normalised (boxes as
        ``(x1, y1, x2, y2)``), or ``<missing>``, ``<exception>``, ``<unfinished>``, ``<absent>``,
        ``<invalid: TYPE>``."""
        pd = _pandas()
        self._check_field(field)
        rows = {k: [self._show(c) for c in cells] for k, cells in self._cells[field].items()}
        return pd.DataFrame.from_dict(rows, orient="index", columns=self.sources).rename_axis("key")

    @staticmethod
    def _show(cell: tuple[str, Any]) -> Any:
        state, value = cell
        if state == "ok":
            return value
        if state == "invalid":
            return f"<invalid: {type(value).__name__}>"
        return f"<{state}>"

    def _check_field(self, field: str) -> None:
        if field not in self._cells:
            raise _invalid(f"no field {field!r}: the comparison has {', '.join(self._cells)}", "field")

    def agreement(self) -> Any:
        """Per field: records, records compared (two or more sources with a value), the share of those where
        the sources agree, Cohen's kappa (two sources; categories and texts), Krippendorff's alpha (nominal for
        categories and texts, interval for numbers; missing values allowed), mean IoU and matched / unmatched
        boxes (box, boxes), and how many cells were missing, exception, unfinished, absent or invalid."""
        pd = _pandas()
        rows = []
        for f, kind in self.fields.items():
            cells = self._cells[f]
            states = Counter(state for row in cells.values() for state, _ in row)
            compared = agreed = matched = unmatched = 0
            ious: list[float] = []
            units: list[list[Any]] = []
            pairs: list[tuple[Any, Any]] = []
            for row in cells.values():
                ok = [v for state, v in row if state == "ok"]
                units.append(ok)
                if len(row) == 2 and all(state == "ok" for state, _ in row):
                    pairs.append((row[0][1], row[1][1]))
                if len(ok) < 2:
                    continue
                compared += 1
                agreed += _agree(kind, ok)
                if kind == "box":
                    ious.append(statistics.fmean(iou(a, b) for a, b in combinations(ok, 2)))
                elif kind == "boxes":
                    for a, b in combinations(ok, 2):
                        m, u = match_boxes(a, b)
                        ious.extend(m)
                        matched += len(m)
                        unmatched += u
            categorical = kind in ("category", "text")
            kappa = (
                cohen_kappa([a for a, _ in pairs], [b for _, b in pairs])
                if categorical and len(self.sources) == 2
                else math.nan
            )
            if categorical:
                alpha = krippendorff_alpha(units, "nominal")
            elif kind == "number":
                alpha = krippendorff_alpha(units, "interval")
            else:
                alpha = math.nan
            rows.append(
                {
                    "field": f,
                    "kind": kind,
                    "records": len(cells),
                    "compared": compared,
                    "agreement": agreed / compared if compared else math.nan,
                    "kappa": kappa,
                    "alpha": alpha,
                    "mean_iou": statistics.fmean(ious) if ious else math.nan,
                    "matched": matched if kind == "boxes" else pd.NA,
                    "unmatched": unmatched if kind == "boxes" else pd.NA,
                    **{s: states[s] for s in STATES[1:]},
                }
            )
        return pd.DataFrame(rows, columns=list(AGREEMENT_COLUMNS))

    def disagreements(self, field: str | None = None) -> Any:
        """The records where two or more sources have a value and they differ (by the rule ``agreement``
        uses): one row per record and field, with each source's value (or its state, as ``values()``)."""
        pd = _pandas()
        if field is not None:
            self._check_field(field)
        rows = []
        for f, kind in self.fields.items():
            if field is not None and f != field:
                continue
            for k, row in self._cells[f].items():
                ok = [v for state, v in row if state == "ok"]
                if len(ok) >= 2 and not _agree(kind, ok):
                    rows.append(
                        {
                            "key": k,
                            "field": f,
                            **{s: self._show(c) for s, c in zip(self.sources, row, strict=True)},
                        }
                    )
        return pd.DataFrame(rows, columns=["key", "field", *self.sources])

    def consensus(self, strategy: str = "majority") -> Any:
        """One label per record and field: ``value``, ``votes`` (sources with a value), ``support`` (the share
        of votes behind the value) and ``tie``. Categories and texts: the most frequent value (a tie: the tied
        value the earliest source gave, flagged); numbers: the median; a box: the one with the highest mean IoU
        to the others; lists of boxes: the list with the highest mean matched-IoU similarity to the others."""
        pd = _pandas()
        if strategy != "majority":
            raise _invalid(f"strategy must be 'majority', not {strategy!r}", "strategy")
        rows = []
        for f, kind in self.fields.items():
            for k, row in self._cells[f].items():
                ok = [v for state, v in row if state == "ok"]
                value, support, tie = self._pick(kind, ok)
                rows.append(
                    {"key": k, "field": f, "value": value, "votes": len(ok), "support": support, "tie": tie}
                )
        return pd.DataFrame(rows, columns=["key", "field", "value", "votes", "support", "tie"])

    @staticmethod
    def _pick(kind: str, ok: list[Any]) -> tuple[Any, float, bool]:
        if not ok:
            return None, math.nan, False
        n = len(ok)
        if kind in ("category", "text"):
            counts = Counter(ok)
            top = max(counts.values())
            winners = [v for v in counts if counts[v] == top]  # in the order first given
            return winners[0], top / n, len(winners) > 1
        if kind == "number":
            median = statistics.median(ok)
            return median, sum(1 for v in ok if v == median) / n, False
        if n == 1:
            return ok[0], 1.0, False
        if kind == "box":
            sim: Callable[[Any, Any], float] = iou

            def close(a: Any, b: Any) -> bool:
                return iou(a, b) >= IOU_MATCH

        else:
            sim = _boxes_similarity

            def close(a: Any, b: Any) -> bool:
                return match_boxes(a, b)[1] == 0

        scores = [statistics.fmean(sim(a, b) for j, b in enumerate(ok) if j != i) for i, a in enumerate(ok)]
        best = max(scores)
        chosen = scores.index(best)
        winner = ok[chosen]
        tie = any(s == best and ok[i] != winner for i, s in enumerate(scores))
        support = sum(1 for j, b in enumerate(ok) if j == chosen or close(winner, b)) / n
        return winner, support, tie

    def turnaround(self) -> Any:
        """Per source: records it holds, ``finished`` (completed or exception), ``completed``, ``exceptions``,
        ``unfinished``, ``exception_rate`` (exceptions / finished), ``timed`` (completed records with both
        ``created_at`` and ``completed_at``; 0 where the vendor gives no creation time) and the median and
        90th percentile of ``completed_at - created_at`` in seconds over them, and ``duplicates`` (envelopes
        of a key seen before, one of which was kept)."""
        pd = _pandas()
        rows = []
        timed = self.turnaround_seconds()
        for s in self.sources:
            envs = list(self._by_source[s].values())
            statuses = Counter(e.get("status") for e in envs)
            exceptions = sum(statuses[x] for x in FAILED)
            completed = statuses["completed"]
            finished = completed + exceptions
            seconds = timed[s]
            rows.append(
                {
                    "source": s,
                    "records": len(envs),
                    "finished": finished,
                    "completed": completed,
                    "exceptions": exceptions,
                    "unfinished": len(envs) - finished,
                    "exception_rate": exceptions / finished if finished else math.nan,
                    "timed": len(seconds),
                    "median_s": _quantile(seconds, 0.5),
                    "p90_s": _quantile(seconds, 0.9),
                    "duplicates": self._duplicates[s],
                }
            )
        return pd.DataFrame(rows).set_index("source")

    def turnaround_seconds(self) -> dict[str, list[float]]:
        """Per source, the seconds from ``created_at`` to ``completed_at`` of each timed completed record."""
        out: dict[str, list[float]] = {}
        for s in self.sources:
            out[s] = []
            for e in self._by_source[s].values():
                start, end = _parse_time(e.get("created_at")), _parse_time(e.get("completed_at"))
                if e.get("status") == "completed" and start is not None and end is not None:
                    out[s].append((end - start).total_seconds())
        return out

    def plot(self) -> Any:
        """A matplotlib figure: agreement per field (with kappa and alpha), the time to label per source, and the
        counts of each value of the first category field per source (the ``plot`` extra)."""
        from labelport._plots import comparison_figure

        return comparison_figure(self)

    def _repr_html_(self) -> str:
        from labelport._display import comparison_html

        return comparison_html(self)

    def __repr__(self) -> str:
        return f"<labelport.Comparison sources={self.sources} fields={list(self.fields)} records={len(self.keys)}>"


def _quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile with linear interpolation between order statistics (numpy's default)."""
    if not values:
        return math.nan
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)

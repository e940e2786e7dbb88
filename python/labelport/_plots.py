"""Pictures of a comparison and of a batch (matplotlib, the ``plot`` extra).

Figures are built with ``matplotlib.figure.Figure``, never through pyplot: no window opens, no global figure
is left behind, and Jupyter shows the returned figure once, as the cell's result.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["batch_report", "comparison_figure"]

COLOURS = ("#2a6f9a", "#e08a1e", "#4c9a2a", "#b03a48", "#7a5195", "#6b6b6b")


def _figure(width: float, height: float) -> Any:
    from labelport._records import need

    need("matplotlib", "plot", "labelport's plots")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _counts_axis(ax: Any, counts: dict[str, Counter[Any]], title: str) -> None:
    """Grouped bars: one group per value, one bar per source."""
    values = sorted({v for c in counts.values() for v in c}, key=str)[:20]
    if not values:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        return
    width = 0.8 / max(1, len(counts))
    for i, (name, c) in enumerate(counts.items()):
        xs = [j + i * width for j in range(len(values))]
        ax.bar(xs, [c.get(v, 0) for v in values], width, label=name, color=COLOURS[i % len(COLOURS)])
    ax.set_xticks([j + width * (len(counts) - 1) / 2 for j in range(len(values))])
    ax.set_xticklabels([str(v) for v in values], rotation=30, ha="right")
    ax.set_ylabel("records")
    ax.set_title(title)
    ax.legend(fontsize="small")


def _seconds_axis(ax: Any, seconds: dict[str, list[float]], title: str) -> None:
    timed = {n: s for n, s in seconds.items() if s}
    untimed = [n for n, s in seconds.items() if not s]
    if timed:
        try:
            ax.boxplot(list(timed.values()), orientation="horizontal")  # matplotlib 3.10 and later
        except TypeError:
            ax.boxplot(list(timed.values()), vert=False)
        ax.set_yticks(range(1, len(timed) + 1))
        ax.set_yticklabels(list(timed))
    note = f"no creation time: {', '.join(untimed)}" if untimed else ""
    if note:
        ax.text(0.99, 0.01, note, ha="right", va="bottom", fontsize="small", transform=ax.transAxes)
    ax.set_xlabel("seconds from created_at to completed_at")
    ax.set_title(title)


def comparison_figure(cmp: Any) -> Any:
    """Three panels: agreement per field (share agreeing, with kappa and alpha where defined), the time to label
    per source, and the counts of each value of the first category field per source."""
    fig = _figure(13, 4)
    agree_ax, time_ax, count_ax = fig.subplots(1, 3)
    table = cmp.agreement()
    fields = table["field"].tolist()
    ys = range(len(fields))
    bars = agree_ax.barh(list(ys), table["agreement"].fillna(0).tolist(), color=COLOURS[0], label="agreement")
    agree_ax.bar_label(bars, labels=[f"{v:.2f}" if v == v else "n/a" for v in table["agreement"]], padding=3)
    for column, marker in (("kappa", "o"), ("alpha", "D")):
        vals = table[column]
        pts = [(v, y) for v, y in zip(vals.tolist(), ys, strict=True) if v == v]  # NaN: not defined here
        if pts:
            agree_ax.scatter(
                [p[0] for p in pts], [p[1] for p in pts], marker=marker, color="black", label=column
            )
    agree_ax.set_yticks(list(ys))
    agree_ax.set_yticklabels(fields)
    defined = [v for v in table[["kappa", "alpha"]].to_numpy().ravel().tolist() if v == v]
    agree_ax.set_xlim(min([0.0, *defined]) - 0.02, 1.02)
    agree_ax.set_title("agreement per field")
    agree_ax.legend(fontsize="small", loc="lower right")

    _seconds_axis(time_ax, cmp.turnaround_seconds(), "time to label")

    category = next((f for f, k in cmp.fields.items() if k in ("category", "text")), None)
    if category is None:
        _counts_axis(count_ax, {}, "label counts (no category field)")
    else:
        values = cmp.values(category)
        counts = {
            s: Counter(v for v in values[s].tolist() if not (isinstance(v, str) and v.startswith("<")))
            for s in cmp.sources
        }
        _counts_axis(count_ax, counts, f"{category}: label counts")
    return fig


def batch_report(batch: Any, field: str | None = None, *, progress: Any = False) -> Any:
    """Three panels for one batch: records by status, time to label, and the counts of ``field``'s values."""
    return report_figure(batch.vendor, batch.records(progress=progress).to_list(), field)


async def abatch_report(batch: Any, field: str | None = None, *, progress: Any = False) -> Any:
    """`batch_report` of an ``AsyncBatch``: the records read asynchronously, the figure drawn here."""
    return report_figure(batch.vendor, await batch.records(progress=progress).to_list(), field)


def report_figure(vendor: str, envelopes: list[dict[str, Any]], field: str | None) -> Any:
    from labelport._compare import _parse_time

    fig = _figure(13, 4)
    status_ax, time_ax, count_ax = fig.subplots(1, 3)
    statuses = Counter(e.get("status") for e in envelopes)
    words = sorted(statuses, key=str)
    status_ax.bar([str(w) for w in words], [statuses[w] for w in words], color=COLOURS[0])
    status_ax.set_title(f"{len(envelopes):,} records by status")
    seconds = []
    for e in envelopes:
        start, end = _parse_time(e.get("created_at")), _parse_time(e.get("completed_at"))
        if start is not None and end is not None:
            seconds.append((end - start).total_seconds())
    _seconds_axis(time_ax, {vendor: seconds}, "time to label")
    outputs = [e["output"] for e in envelopes if isinstance(e.get("output"), dict)]
    if field is None:
        field = next((k for o in outputs for k, v in o.items() if isinstance(v, str)), None)
    counts = Counter(
        o[field] for o in outputs if field is not None and isinstance(o.get(field), str | int | bool)
    )
    _counts_axis(count_ax, {vendor: counts} if counts else {}, f"{field}: label counts")
    return fig

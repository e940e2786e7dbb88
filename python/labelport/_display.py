"""What a notebook cell shows for a ``Batch``, a ``Job`` and a ``Comparison``: counts, a progress bar and the
latest error, as HTML (``_repr_html_``).

``Batch`` and ``Job`` are native classes (src/py/); their ``_repr_html_`` and ``Batch.report`` are attached
here, in Python, when ``labelport`` is imported. Every string shown is escaped, and only what labelport's own
errors and status calls return is shown: their messages are already scrubbed of secrets.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["batch_html", "comparison_html", "install", "job_html"]

STATUS_WORDS = ("pending", "in_progress", "completed", "exception", "canceled", "rejected", "failed")
FINISHED = ("completed", "exception", "canceled", "failed")

_STYLE = "font-family: sans-serif; font-size: 13px"


def _bar(done: int, total: int, colour: str = "#4c9a2a") -> str:
    share = done / total if total else 0.0
    return (
        f'<div style="width: 240px; height: 10px; background: #ddd; border-radius: 3px" '
        f'title="{done} of {total}"><div style="width: {share * 100:.1f}%; height: 10px; '
        f'background: {colour}; border-radius: 3px"></div></div>'
        f"<span>{done:,} of {total:,} finished ({share:.0%})</span>"
    )


def _error(err: BaseException) -> str:
    return (
        f'<div style="color: #b00020">latest error: {html.escape(type(err).__name__)}: '
        f"{html.escape(str(err))}</div>"
    )


def _title(kind: str, vendor: str, ident: str, name: str | None = None) -> str:
    named = f" <b>{html.escape(name)}</b>" if name else ""
    return f"<div><b>{kind}</b>{named} · {html.escape(vendor)} · <code>{html.escape(ident)}</code></div>"


def batch_html(batch: Any) -> str:
    """A batch's counts by status (read from the vendor now), a bar of finished records, or the error the
    status call raised."""
    head = _title("labelport.Batch", batch.vendor, batch.id, batch.name)
    try:
        status = batch.status()
    except Exception as e:
        return f'<div style="{_STYLE}">{head}{_error(e)}</div>'
    total = int(status.get("total", 0))
    finished = sum(int(status.get(s, 0)) for s in FINISHED)
    cells = "".join(
        f"<td style='padding: 0 8px'>{html.escape(s)}<br><b>{int(status.get(s, 0)):,}</b></td>"
        for s in STATUS_WORDS
        if s in status
    )
    done = "done" if status.get("done") else "labelling"
    return (
        f'<div style="{_STYLE}">{head}<table><tr>{cells}</tr></table>{_bar(finished, total)} · {done}</div>'
    )


def job_html(job: Any) -> str:
    """An upload's state and counts, a bar of the records the vendor holds, and its latest refusal."""
    head = _title("labelport.Job", "batch " + job.batch_id, job.id)
    try:
        status = job.status()
    except Exception as e:
        return f'<div style="{_STYLE}">{head}{_error(e)}</div>'
    total, done = int(status.get("total", 0)), int(status.get("done", 0))
    counts = ", ".join(f"{k} {html.escape(str(status.get(k)))}" for k in ("state", "failed", "skipped"))
    latest = ""
    if status.get("failed"):
        try:
            failures = job.failures()
        except Exception as e:
            latest = _error(e)
        else:
            if failures:
                f = failures[-1]
                latest = (
                    f'<div style="color: #b00020">latest refusal: {html.escape(str(f.get("key")))}: '
                    f"{html.escape(str(f.get('code')))}: {html.escape(str(f.get('message')))}</div>"
                )
    bar = _bar(done, total, "#2a6f9a").replace("finished", "held by the vendor")
    return f'<div style="{_STYLE}">{head}<div>{counts}</div>{bar}{latest}</div>'


def comparison_html(cmp: Any) -> str:
    """The sources, the agreement table and the turnaround table."""
    agreement = cmp.agreement().to_html(index=False, na_rep="", float_format=lambda v: f"{v:.3f}")
    turnaround = cmp.turnaround().to_html(na_rep="", float_format=lambda v: f"{v:.3g}")
    names = ", ".join(html.escape(s) for s in cmp.sources)
    return (
        f'<div style="{_STYLE}"><div><b>labelport.Comparison</b> of {names} · {len(cmp.keys):,} records</div>'
        f"<div><b>agreement</b></div>{agreement}<div><b>turnaround</b></div>{turnaround}</div>"
    )


def install() -> None:
    """Attaches ``_repr_html_`` to ``Batch`` and ``Job`` (and their async mirrors are left alone: their
    status is a coroutine) and ``report`` to ``Batch`` and ``AsyncBatch`` (a coroutine there)."""
    from labelport._labelport import AsyncBatch, Batch, Job
    from labelport._plots import abatch_report, batch_report

    def batch_repr_html(self: Any) -> str:
        return batch_html(self)

    def job_repr_html(self: Any) -> str:
        return job_html(self)

    def report(self: Any, field: str | None = None, *, progress: Any = False) -> Any:
        """A matplotlib figure of this batch: records by status, the time to label each completed record, and the
        counts of each value of one output field (``field``; default: the first text field of the outputs)."""
        return batch_report(self, field=field, progress=progress)

    async def areport(self: Any, field: str | None = None, *, progress: Any = False) -> Any:
        """As ``Batch.report`` (a coroutine): the records are read asynchronously."""
        return await abatch_report(self, field=field, progress=progress)

    # The stubs (_labelport.pyi) declare all four.
    setattr(Batch, "_repr_html_", batch_repr_html)  # noqa: B010
    setattr(Job, "_repr_html_", job_repr_html)  # noqa: B010
    setattr(Batch, "report", report)  # noqa: B010
    setattr(AsyncBatch, "report", areport)  # noqa: B010

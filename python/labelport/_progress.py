"""Progress displays for ``upload``, ``wait`` and exports.

One display per call, chosen when the call starts:

- in Jupyter, or on a terminal, with tqdm installed: a ``tqdm`` bar (a widget in Jupyter when ipywidgets is
  there, a text bar otherwise);
- on a terminal without tqdm: one line on stderr, rewritten in place;
- anywhere else (ETL logs, CI, captured output): an INFO line on the ``labelport.progress`` logger at most every
  ``labelport.config.progress_log_every`` seconds, and one when the call ends.

``progress=False`` turns it off for a call, ``progress=True`` forces it on, ``None`` follows
``labelport.config.progress``; ``wait`` and ``upload`` also take a callable, called with a status dict.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from labelport import config

__all__ = ["Display", "counter", "upload_bar", "wait_progress"]

log = logging.getLogger("labelport.progress")

FINAL = ("completed", "exception", "canceled", "rejected", "failed")
# A terminal line is redrawn at most this often (seconds).
LINE_REDRAW_S = 0.1


def _invalid(message: str) -> Exception:
    from labelport._labelport import InvalidInput

    err = InvalidInput(message)
    err.message = message
    err.field = "progress"
    return err


def _wanted(progress: Any) -> bool:
    if progress is None:
        return bool(config.progress)
    if isinstance(progress, bool):
        return progress
    raise _invalid(f"progress must be True, False, None or a callable, not {type(progress).__name__}")


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where stderr is not a terminal, yet a bar is what the user sees)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:
        return False
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _stderr_is_tty() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def _tqdm_class(notebook: bool) -> Any:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return None
    if notebook:
        try:
            import ipywidgets  # noqa: F401
        except ImportError:
            from tqdm.std import tqdm as text_bar  # tqdm.auto would warn about the missing widgets

            return text_bar
        from tqdm.notebook import tqdm as widget_bar

        return widget_bar
    from tqdm.auto import tqdm as auto_bar

    return auto_bar


class Display:
    """Shows one counter moving towards an optional total."""

    def __init__(self, desc: str, total: int | None, unit: str) -> None:
        self.desc = desc
        self.total = total
        self.unit = unit
        self.n = 0
        self.started = time.monotonic()

    def update(self, n: int, total: int | None = None) -> None:
        """Set the count to ``n`` (absolute, not an increment)."""
        self.n = int(n)
        if total is not None:
            self.total = int(total)

    def close(self, ok: bool = True) -> None:
        pass

    def text(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = f", {self.n / elapsed:,.0f} {self.unit}/s" if elapsed > 0 and self.n else ""
        if self.total:
            pct = min(100, 100 * self.n // self.total)
            return f"{self.desc}: {self.n:,}/{self.total:,} {self.unit} {pct}% ({elapsed:.1f} s{rate})"
        return f"{self.desc}: {self.n:,} {self.unit} ({elapsed:.1f} s{rate})"


class TqdmDisplay(Display):
    def __init__(self, cls: Any, desc: str, total: int | None, unit: str) -> None:
        super().__init__(desc, total, unit)
        self.bar = cls(total=total, desc=desc, unit=f" {unit}", leave=True, dynamic_ncols=True)

    def update(self, n: int, total: int | None = None) -> None:
        if total is not None and total != self.bar.total:
            self.bar.total = total
            self.bar.refresh()
        n = int(n)
        if n != self.bar.n:
            self.bar.update(n - self.bar.n)
        self.n = n

    def close(self, ok: bool = True) -> None:
        self.bar.close()


class LineDisplay(Display):
    """One line on stderr, rewritten in place."""

    def __init__(self, desc: str, total: int | None, unit: str) -> None:
        super().__init__(desc, total, unit)
        self.shown = ""
        self.last = 0.0

    def _draw(self, end: str = "") -> None:
        text = self.text()
        sys.stderr.write("\r" + text.ljust(len(self.shown)) + end)
        sys.stderr.flush()
        self.shown = text

    def update(self, n: int, total: int | None = None) -> None:
        super().update(n, total)
        now = time.monotonic()
        if now - self.last >= LINE_REDRAW_S:
            self.last = now
            self._draw()

    def close(self, ok: bool = True) -> None:
        self._draw("\n")


class LogDisplay(Display):
    """INFO lines on ``labelport.progress`` at most every ``config.progress_log_every`` seconds, and a last one."""

    def __init__(self, desc: str, total: int | None, unit: str) -> None:
        super().__init__(desc, total, unit)
        self.last = self.started
        self.logged = ""

    def update(self, n: int, total: int | None = None) -> None:
        super().update(n, total)
        now = time.monotonic()
        if now - self.last >= float(config.progress_log_every):
            self.last = now
            self._log()

    def _log(self, suffix: str = "") -> None:
        text = self.text() + suffix
        if text != self.logged:
            log.info("%s", text)
            self.logged = text

    def close(self, ok: bool = True) -> None:
        self._log("" if ok else " (stopped)")


def display(desc: str, total: int | None, unit: str) -> Display:
    """The display that suits where output goes now."""
    notebook = in_notebook()
    tty = _stderr_is_tty()
    if notebook or tty:
        cls = _tqdm_class(notebook)
        if cls is not None:
            return TqdmDisplay(cls, desc, total, unit)
        return LineDisplay(desc, total, unit)
    return LogDisplay(desc, total, unit)


class _Callback(Display):
    """A user's callable, given ``{"done": n, "total": total}`` on every tick where the count moved."""

    def __init__(
        self, fn: Callable[[dict[str, Any]], object], desc: str, total: int | None, unit: str
    ) -> None:
        super().__init__(desc, total, unit)
        self.fn = fn
        self.reported: int | None = None

    def update(self, n: int, total: int | None = None) -> None:
        super().update(n, total)
        if self.n != self.reported:
            self.reported = self.n
            self.fn({"done": self.n, "total": self.total})


def upload_bar(progress: Any, total: int | None) -> Display | None:
    """The display of one upload (called by ``Batch.upload``): ``update(records handled)``, then ``close(ok)``."""
    if callable(progress):
        return _Callback(progress, "upload", total, "records")
    if not _wanted(progress):
        return None
    return display("upload", total, "records")


class WaitBar:
    """``Batch.wait``'s display: called with each status dict, moves a bar of finished records."""

    def __init__(self) -> None:
        self.display: Display | None = None

    def __call__(self, status: Mapping[str, Any]) -> None:
        total = int(status.get("total") or 0)
        finished = sum(int(status.get(s) or 0) for s in FINAL)
        if self.display is None:
            self.display = display("labeling", total, "records")
        self.display.update(finished, total)

    def close(self, ok: bool = True) -> None:
        if self.display is not None:
            self.display.close(ok)


def wait_progress(progress: Any) -> Callable[[Mapping[str, Any]], object] | None:
    """What ``Batch.wait`` calls after each poll: a user's callable as given, a ``WaitBar``, or ``None``."""
    if callable(progress):
        return progress  # type: ignore[no-any-return]
    if not _wanted(progress):
        return None
    return WaitBar()


def counter(progress: Any, desc: str, total: int | None = None, unit: str = "results") -> Display | None:
    """A display for exports (``to_pandas``, ``to_parquet``, ...): ``update(n)`` as rows arrive."""
    if callable(progress):
        return _Callback(progress, desc, total, unit)
    if not _wanted(progress):
        return None
    return display(desc, total, unit)

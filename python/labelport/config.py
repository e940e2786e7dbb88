"""Process-wide defaults. Change them by assignment::

    import labelport as lp
    lp.config.progress = False        # no progress bars or progress log lines unless a call asks for them
    lp.config.progress_log_every = 30  # seconds between progress log lines when output is not a terminal
    lp.config.upload_chunk = 10_000    # records read, checked and sent at a time from a DataFrame, file or iterator

Each is read when a call starts, so a change applies to the calls made after it.
"""

from __future__ import annotations

__all__ = ["progress", "progress_log_every", "upload_chunk"]

#: Show progress on ``upload``, ``wait`` and DataFrame/file exports when the call passes no ``progress=``: a
#: ``tqdm.auto`` bar when tqdm is installed (a widget in Jupyter), one updating line on a terminal otherwise, and
#: when output is not a terminal (ETL logs) an INFO line on the ``labelport.progress`` logger at most every
#: ``progress_log_every`` seconds.
progress: bool = True

#: Seconds between two progress log lines when output is not a terminal.
progress_log_every: float = 5.0

#: Records read, checked and sent at a time when ``upload`` gets anything but a list or tuple (a DataFrame, Arrow
#: data, a file, an iterator). Memory grows with it; every chunk is a round of calls to the vendor.
upload_chunk: int = 50_000

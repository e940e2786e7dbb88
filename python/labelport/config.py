"""Process-wide defaults. Change them by assignment::

    import labelport as lp
    lp.config.progress = False        # no progress bars or progress log lines unless a call asks for them
    lp.config.progress_log_every = 30  # seconds between progress log lines when output is not a terminal
"""

from __future__ import annotations

__all__ = ["progress", "progress_log_every"]

#: Show progress on ``upload``, ``wait`` and DataFrame/file exports when the call passes no ``progress=``: a
#: ``tqdm.auto`` bar when tqdm is installed (a widget in Jupyter), one updating line on a terminal otherwise, and
#: when output is not a terminal (ETL logs) an INFO line on the ``labelport.progress`` logger at most every
#: ``progress_log_every`` seconds.
progress: bool = True

#: Seconds between two progress log lines when output is not a terminal.
progress_log_every: float = 5.0

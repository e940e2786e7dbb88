"""The one place the command line writes files (``--output``, ``--watermark-file``).

A regular file, or a path where nothing is yet, is written to a temporary file beside it and moved over it
only once complete, so no reader sees half a file. Anything else that is already there (a pipe, a FIFO, a
character device such as /dev/null or a terminal, /dev/stdout) is opened and written to as it is: moving a
file over it would put a regular file in its place and send nothing where the user pointed. A path that is
the command's own stdout is written through stdout, whatever it is.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)  # follows links: /dev/stdout -> /proc/self/fd/1 -> the pipe itself
    except FileNotFoundError:
        return None


def _is_stream(out: TextIO, st: os.stat_result) -> bool:
    try:
        return os.path.samestat(os.fstat(out.fileno()), st)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False  # stdout replaced by an object without a file descriptor (tests)


def _target(path: str, out: TextIO) -> tuple[str, os.stat_result | None]:
    """``"stdout"``, ``"direct"`` (an existing non-regular file) or ``"replace"``."""
    st = _stat(path)
    if st is None:
        return "replace", None
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file to write", path)
    if _is_stream(out, st):
        return "stdout", st
    return ("replace" if stat.S_ISREG(st.st_mode) else "direct"), st


def check(path: str, out: TextIO) -> None:
    """Raises now (OSError) for a path no output can go to, before anything is fetched."""
    _target(path, out)


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


@contextmanager
def _replacing(path: str) -> Iterator[str]:
    """A temporary path beside ``path``, moved over it only when the block completes. The result has the
    mode of the file it replaces, or for a new file the mode the user's umask gives (mkstemp makes 0600)."""
    target = os.path.abspath(path)
    st = _stat(target)
    fd, tmp = tempfile.mkstemp(
        dir=os.path.dirname(target), prefix=f".{os.path.basename(target)}.", suffix=".part"
    )
    try:
        os.fchmod(fd, stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask())
    finally:
        os.close(fd)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _open_existing(path: str) -> io.BufferedWriter:
    # No O_CREAT, no O_TRUNC: the node is written to as it is, never created, truncated or chmodded.
    return open(os.open(path, os.O_WRONLY), "wb")


@contextmanager
def text(path: str, out: TextIO) -> Iterator[TextIO]:
    """``path`` opened for writing UTF-8 text, as the module docstring says."""
    kind, _ = _target(path, out)
    if kind == "stdout":
        yield out
        out.flush()
    elif kind == "direct":
        with io.TextIOWrapper(_open_existing(path), encoding="utf-8") as f:
            yield f
    else:
        with _replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            yield f


@contextmanager
def spooled(path: str | None, out: TextIO) -> Iterator[str]:
    """A path for a writer that needs one (csv, parquet). For a regular file, the temporary file beside it;
    for stdout (``path`` None, or naming stdout) and other non-regular files, a spool file whose bytes are
    copied there once complete (a CSV header needs every column first; parquet writes its footer last)."""
    kind = "stdout" if path is None else _target(path, out)[0]
    if kind == "replace":
        assert path is not None
        with _replacing(path) as tmp:
            yield tmp
        return
    with tempfile.TemporaryDirectory() as d:
        tmp = os.path.join(d, "spool")
        yield tmp
        with open(tmp, "rb") as src:
            if kind == "direct":
                assert path is not None
                with _open_existing(path) as dst:
                    shutil.copyfileobj(src, dst)
                return
            out.flush()
            buffer = getattr(out, "buffer", None)
            if buffer is not None:
                shutil.copyfileobj(src, buffer)
                buffer.flush()
            else:  # a text-only stream: only text formats reach it (parquet needs --output)
                shutil.copyfileobj(io.TextIOWrapper(src, encoding="utf-8", newline=""), out)
            out.flush()

"""What ``labelport.compare`` compares: a field's value read from an envelope and normalised for its kind.

Every read ends in one of these states, so nothing is dropped without being counted: ``ok`` (a value),
``missing`` (the source has no record of that key), ``exception`` (the record finished without labels),
``unfinished`` (not finished yet), ``absent`` (finished, but its output lacks the field) and ``invalid`` (a
value of a type the kind does not take).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from labelport._agreement import Box

__all__ = ["KINDS", "STATES", "Extractor", "infer_kind", "normalise", "read"]

KINDS = ("category", "number", "text", "box", "boxes")
STATES = ("ok", "missing", "exception", "unfinished", "absent", "invalid")
FAILED = ("exception", "failed", "canceled")

Extractor = str | Callable[[dict[str, Any]], Any]


class _Invalid(Exception):
    pass


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _Invalid
    f = float(v)
    if not math.isfinite(f):
        raise _Invalid
    return f


def _box(v: Any) -> Box:
    """A box from ``[x1, y1, x2, y2]``, a dict of ``x1, y1, x2, y2`` / ``xmin, ymin, xmax, ymax`` /
    ``x, y, w, h`` / ``x, y, width, height`` / ``left, top, width, height``, or points: a list of ``{x, y}``
    dicts (no other keys but ``z``), or a dict holding them under ``coordinates`` (Playment's rectangles): their bounding box."""
    if isinstance(v, Mapping):
        for a, b, c, d, size in (
            ("x1", "y1", "x2", "y2", False),
            ("xmin", "ymin", "xmax", "ymax", False),
            ("x", "y", "w", "h", True),
            ("x", "y", "width", "height", True),
            ("left", "top", "width", "height", True),
        ):
            if all(k in v for k in (a, b, c, d)):
                x1, y1, p, q = (_number(v[k]) for k in (a, b, c, d))
                x2, y2 = (x1 + p, y1 + q) if size else (p, q)
                break
        else:
            if "coordinates" in v:
                return _box(v["coordinates"])
            raise _Invalid
    elif isinstance(v, Sequence) and not isinstance(v, str | bytes):
        if len(v) >= 2 and all(isinstance(p, Mapping) and set(p) <= {"x", "y", "z"} for p in v):
            xs = [_number(p.get("x")) for p in v]
            ys = [_number(p.get("y")) for p in v]
            return (min(xs), min(ys), max(xs), max(ys))
        if len(v) != 4:
            raise _Invalid
        x1, y1, x2, y2 = (_number(p) for p in v)
    else:
        raise _Invalid
    if x2 < x1 or y2 < y1:
        raise _Invalid
    return (x1, y1, x2, y2)


def normalise(value: Any, kind: str) -> Any:
    """The value as the measures take it, or raises ``ValueError`` when the kind does not take it."""
    try:
        if kind == "category":
            if not isinstance(value, str | int | bool):
                raise _Invalid
            return value
        if kind == "text":
            if not isinstance(value, str):
                raise _Invalid
            return value
        if kind == "number":
            return _number(value)
        if kind == "box":
            return _box(value)
        if kind == "boxes":
            if not isinstance(value, Sequence) or isinstance(value, str | bytes):
                raise _Invalid
            return tuple(_box(b) for b in value)
    except _Invalid:
        raise ValueError(f"not a {kind}: {type(value).__name__}") from None
    raise ValueError(f"unknown kind {kind!r}")


def _lookup(output: Any, path: str) -> tuple[bool, Any]:
    node = output
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, Sequence) and not isinstance(node, str) and part.lstrip("-").isdigit():
            i = int(part)
            if not -len(node) <= i < len(node):
                return False, None
            node = node[i]
        else:
            return False, None
    return True, node


def read(envelope: dict[str, Any] | None, how: Extractor, kind: str) -> tuple[str, Any]:
    """``(state, value)`` of one field of one source's envelope (``None``: the source lacks the record). A
    path is dotted (``answers.class``, ``annotations.rectangles``, ``boxes.0``) and read from ``output``; a
    callable is given the whole envelope and returns the value (``None``: absent)."""
    if envelope is None:
        return "missing", None
    status = envelope.get("status")
    if status in FAILED:
        return "exception", None
    if status != "completed":
        return "unfinished", None
    if callable(how):
        value = how(envelope)
        found = value is not None
    else:
        found, value = _lookup(envelope.get("output"), how)
    if not found or value is None:
        return "absent", None
    try:
        return "ok", normalise(value, kind)
    except ValueError:
        return "invalid", value


def infer_kind(values: Sequence[Any]) -> str:
    """The kind of a shared output field, from its first non-null value: text or bool a category, a number a
    number, a box a box, a list of boxes boxes; anything else a category (its values then count as invalid)."""
    for v in values:
        if v is None:
            continue
        if isinstance(v, str | bool):
            return "category"
        if isinstance(v, int | float):
            return "number"
        for kind in ("box", "boxes"):
            try:
                normalise(v, kind)
                return kind
            except ValueError:
                pass
        return "category"
    return "category"

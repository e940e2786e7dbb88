"""The measures behind ``labelport.compare``, on plain Python values (docs/compare.md defines each one).

Nothing here knows about vendors, batches or DataFrames: values come in as lists per record, already
normalised by ``_values`` (categories and texts as they are, numbers as floats, boxes as ``(x1, y1, x2, y2)``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

__all__ = [
    "IOU_MATCH",
    "Box",
    "cohen_kappa",
    "iou",
    "krippendorff_alpha",
    "match_boxes",
]

#: Two boxes of two lists are a match at this IoU or more.
IOU_MATCH = 0.5

Box = tuple[float, float, float, float]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes ``(x1, y1, x2, y2)``; two boxes of no area are 1.0 when equal,
    else 0.0."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    if union <= 0.0:
        return 1.0 if a == b else 0.0
    return inter / union


def match_boxes(a: Sequence[Box], b: Sequence[Box], threshold: float = IOU_MATCH) -> tuple[list[float], int]:
    """Greedy matching of two lists of boxes: every pair at ``threshold`` IoU or more, highest IoU first (ties
    in list order), taken when neither box is matched yet. Returns the matched pairs' IoUs and the number of
    boxes of either list left unmatched."""
    pairs = sorted(
        ((iou(x, y), i, j) for i, x in enumerate(a) for j, y in enumerate(b)),
        key=lambda p: (-p[0], p[1], p[2]),
    )
    used_a: set[int] = set()
    used_b: set[int] = set()
    matched: list[float] = []
    for value, i, j in pairs:
        if value < threshold:
            break
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        matched.append(value)
    return matched, len(a) + len(b) - 2 * len(matched)


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float:
    """Cohen's kappa of two raters over the same items: ``(p_o - p_e) / (1 - p_e)``, with ``p_o`` the share of
    items they agree on and ``p_e = sum_c p1(c) * p2(c)`` from each rater's own category shares. NaN when there
    is no item, or when ``p_e`` is 1 (both raters always give one and the same category)."""
    n = len(first)
    if n != len(second):
        raise ValueError("cohen_kappa needs two sequences of one length")
    if n == 0:
        return math.nan
    p_o = sum(1 for x, y in zip(first, second, strict=True) if x == y) / n
    c1, c2 = Counter(first), Counter(second)
    p_e = sum(c1[c] * c2[c] for c in c1) / (n * n)
    if p_e >= 1.0:
        return math.nan
    return (p_o - p_e) / (1.0 - p_e)


def krippendorff_alpha(units: Sequence[Sequence[Hashable | float]], metric: str = "nominal") -> float:
    """Krippendorff's alpha over ``units`` (one list of the values given to each record, missing ones left
    out): ``1 - (n - 1) * sum_u [D_u / (m_u - 1)] / D``, where only units of ``m_u >= 2`` values count, ``n``
    is the number of their values, ``D_u`` sums the distance over the ordered pairs of values within unit
    ``u`` and ``D`` over the ordered pairs of all ``n`` values. Distance: ``nominal`` 0 for equal values, else
    1; ``interval`` the squared difference. NaN when no unit has two values or every value is the same."""
    pairable = [list(u) for u in units if len(u) >= 2]
    n = sum(len(u) for u in pairable)
    if n == 0:
        return math.nan
    if metric == "nominal":

        def within(values: list[Any]) -> float:
            return float(len(values) ** 2 - sum(c * c for c in Counter(values).values()))

    elif metric == "interval":

        def within(values: list[Any]) -> float:
            s = math.fsum(values)
            return 2.0 * len(values) * math.fsum(v * v for v in values) - 2.0 * s * s

    else:
        raise ValueError(f"metric must be 'nominal' or 'interval', not {metric!r}")
    expected = within([v for u in pairable for v in u])
    if expected <= 0.0:
        return math.nan
    observed = math.fsum(within(u) / (len(u) - 1) for u in pairable)
    return 1.0 - (n - 1) * observed / expected

"""examples/bake_off.ipynb runs headless in a real Jupyter kernel (nbclient) and shows what it promises: both uploads
completed, a batch as HTML, an agreement table of one row per field, consensus, turnaround, and its pictures."""

from __future__ import annotations

import ast

import pytest

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")
pytest.importorskip("PIL")


def test_the_bake_off_notebook_runs_and_shows_its_outputs(run_notebook):
    nb = run_notebook("bake_off.ipynb", timeout=120)

    statuses = ast.literal_eval(nb.result("fan_out")["text/plain"])
    assert set(statuses) == {"alegion", "sama"}
    for s in statuses.values():
        assert (s["state"], s["done"], s["total"]) == ("completed", 500, 500)

    batch = nb.result("batch")["text/html"]
    assert "labelport.Batch" in batch and "500 of 500 finished (100%)" in batch

    agreement = nb.result("agreement")
    body = agreement["text/html"].split("<tbody>")[1].split("</tbody>")[0]
    assert body.count("<tr") == 1  # one row: one field, "label"
    assert "label" in agreement["text/plain"] and "category" in agreement["text/plain"]

    assert "key" in nb.result("disagreements")["text/plain"]
    assert "support" in nb.result("consensus")["text/plain"]
    turnaround = nb.result("turnaround")["text/plain"]
    assert "alegion" in turnaround and "sama" in turnaround

    for tag in ("plot", "report", "show"):
        images = nb.images(tag)
        assert len(images) == 1, f"cell {tag!r} draws {len(images)} pictures"
        assert len(images[0]) > 1000

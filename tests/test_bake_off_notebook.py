"""examples/bake_off.ipynb runs headless in a real Jupyter kernel (nbclient) and shows what it promises: both uploads
completed, a batch as HTML, an agreement table of one row per field, consensus, turnaround, and its pictures."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("pandas")
pytest.importorskip("matplotlib")
pytest.importorskip("PIL")

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "bake_off.ipynb"


def test_the_bake_off_notebook_runs_and_shows_its_outputs(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        "commit the notebook without outputs"
    )
    nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    by_tag = {tag: c for c in nb.cells if c.cell_type == "code" for tag in c.metadata.get("tags", [])}

    def result(tag: str) -> dict:
        outputs = [o for o in by_tag[tag].outputs if o.output_type == "execute_result"]
        assert outputs, f"cell {tag!r} shows no result"
        return outputs[-1].data

    statuses = ast.literal_eval(result("fan_out")["text/plain"])
    assert set(statuses) == {"alegion", "sama"}
    for s in statuses.values():
        assert (s["state"], s["done"], s["total"]) == ("completed", 500, 500)

    batch = result("batch")["text/html"]
    assert "labelport.Batch" in batch and "500 of 500 finished (100%)" in batch

    agreement = result("agreement")
    body = agreement["text/html"].split("<tbody>")[1].split("</tbody>")[0]
    assert body.count("<tr") == 1  # one row: one field, "label"
    assert "label" in agreement["text/plain"] and "category" in agreement["text/plain"]

    assert "key" in result("disagreements")["text/plain"]
    assert "support" in result("consensus")["text/plain"]
    turnaround = result("turnaround")["text/plain"]
    assert "alegion" in turnaround and "sama" in turnaround

    for tag in ("plot", "report", "show"):
        images = [o for o in by_tag[tag].outputs if "image/png" in o.get("data", {})]
        assert len(images) == 1, f"cell {tag!r} draws {len(images)} pictures"
        assert len(images[0].data["image/png"]) > 1000

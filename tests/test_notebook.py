"""examples/quickstart.ipynb runs headless in a real Jupyter kernel (nbclient) and shows what it promises: the input
frame, an upload and a wait with progress, the labels as a DataFrame of the right shape joined back on the key,
and a bar chart."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "quickstart.ipynb"


def test_the_quickstart_notebook_runs_and_shows_its_outputs(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        "commit the notebook without outputs"
    )
    nbclient.NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    by_tag = {tag: c for c in nb.cells if c.cell_type == "code" for tag in c.metadata.get("tags", [])}

    def result(tag: str) -> str:
        outputs = [o for o in by_tag[tag].outputs if o.output_type == "execute_result"]
        assert outputs, f"cell {tag!r} shows no result"
        return str(outputs[-1].data["text/plain"])

    def stderr(tag: str) -> str:
        return "".join(
            o.text for o in by_tag[tag].outputs if o.output_type == "stream" and o.name == "stderr"
        )

    assert "text/html" in [o for o in by_tag["input"].outputs if o.output_type == "execute_result"][0].data
    assert ast.literal_eval(result("upload")) == {
        "state": "completed",
        "done": 100,
        "total": 100,
        "failed": 0,
        "skipped": 0,
    }
    assert "upload: 100%" in stderr("upload")  # a progress bar in the cell's output
    assert ast.literal_eval(result("wait"))["completed"] == 100
    assert "labeling: 100%" in stderr("wait")

    # 7 envelope columns, input.image_id/url/caption/taken_at, output.label/confidence: 100 rows, 13 columns.
    assert ast.literal_eval(result("shape")) == (100, 13)
    # The 4 input columns, the key and 2 label columns: every record joined back on its integer key.
    assert ast.literal_eval(result("joined")) == (100, 7)

    images = [o for o in by_tag["chart"].outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1 and len(images[0].data["image/png"]) > 1000

"""examples/quickstart.ipynb runs headless in a real Jupyter kernel (nbclient) and shows what it promises: the input
frame, an upload and a wait with progress, the labels as a DataFrame of the right shape joined back on the key,
and a bar chart."""

from __future__ import annotations

import ast

import pytest

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")


def test_the_quickstart_notebook_runs_and_shows_its_outputs(run_notebook):
    nb = run_notebook("quickstart.ipynb")
    by_tag, stderr = nb.by_tag, nb.stderr

    def result(tag: str) -> str:
        return str(nb.result(tag)["text/plain"])

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

"""The notebooks in examples/ run, top to bottom, in a real Jupyter kernel, on small settings.

Each runs in a copy of examples/ (its run folders go there, not into the repository) with
CONVLAB_QUICK=1, which the notebooks read to train on a few hundred images of the digits set.
The notebooks are committed without outputs; an error in any cell fails the test.
"""

import os
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))


def test_there_is_a_notebook_per_claim_and_one_for_the_workflow():
    names = {path.stem for path in NOTEBOOKS}
    claims = {
        "optimizers",
        "activations",
        "clipping",
        "batch-norm",
        "degradation",
        "receptive-field",
        "lr-finder",
    }
    assert names == {"workflow", *(f"experiment-{claim}" for claim in claims)}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_the_notebook_runs_and_shows_its_results(path, tmp_path, monkeypatch):
    notebook = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    folder = shutil.copytree(EXAMPLES, tmp_path / "examples")
    monkeypatch.setenv("CONVLAB_QUICK", "1")
    monkeypatch.setenv("CONVLAB_NUM_WORKERS", "0")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    shown = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    html = [
        o
        for o in shown
        if o.get("output_type") in ("execute_result", "display_data") and "text/html" in o.get("data", {})
    ]
    assert html, "every notebook shows at least one result as HTML (a table)"

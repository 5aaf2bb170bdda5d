"""Every notebook in notebooks/ runs top to bottom on the CPU (CI executes them all).

The notebooks read CIFAR-10 from ``MINISE_DATA``; without it they are skipped, with the reason.
"""
import os
import pathlib
import time

import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
BUDGET_S = 600   # all notebooks together on 2 cores


@pytest.mark.skipif(not os.path.exists(os.environ.get("MINISE_DATA", "")),
                    reason="MINISE_DATA does not name the CIFAR-10 archive the notebooks read")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    import nbclient
    import nbformat

    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    nbclient.NotebookClient(notebook, timeout=BUDGET_S, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for cell in notebook.cells if cell.cell_type == "code"
              for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    assert time.perf_counter() - start < BUDGET_S


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 1, "notebooks/ holds no notebook"

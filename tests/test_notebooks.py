"""Every notebook in notebooks/ runs top to bottom on the CPU (CI executes them all).

The notebooks read CIFAR-10 from ``MINISE_DATA``; without it they are skipped, with the reason.
A failing notebook fails its test with the notebook, the cell and the error, not nbclient's
coloured traceback.
"""
import os
import pathlib
import time

import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
BUDGET_S = 600   # all notebooks together on 2 cores


def run_notebook(path, timeout=BUDGET_S):
    """Execute the notebook at ``path`` in its folder; pytest.fail naming the cell that raised."""
    import nbclient
    import nbformat
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(path, as_version=4)
    try:
        nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}}).execute()
    except CellExecutionError as err:
        code_cells = [c for c in notebook.cells if c.cell_type == "code"]
        failed = next(i for i, c in enumerate(code_cells, 1)
                      if any(o.get("output_type") == "error" for o in c.get("outputs", [])))
        pytest.fail(f"{path.name}: code cell {failed} of {len(code_cells)} raised {err.ename}: {err.evalue}\n"
                    f"--- the cell ---\n{code_cells[failed - 1].source}", pytrace=False)


@pytest.mark.skipif(not os.path.exists(os.environ.get("MINISE_DATA", "")),
                    reason="MINISE_DATA does not name the CIFAR-10 archive the notebooks read")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    start = time.perf_counter()
    run_notebook(path)
    assert time.perf_counter() - start < BUDGET_S


def test_a_failing_cell_is_named(tmp_path):
    import nbformat

    cells = ["x = 1", "y = x + 1", "raise ValueError(f'boom {y}')", "z = 3"]
    path = tmp_path / "broken.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), path)
    with pytest.raises(pytest.fail.Exception) as failure:
        run_notebook(path, timeout=120)
    message = str(failure.value)
    assert message.startswith("broken.ipynb: code cell 3 of 4 raised ValueError: boom 2")
    assert "raise ValueError(f'boom {y}')" in message and "\x1b[" not in message


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 1, "notebooks/ holds no notebook"

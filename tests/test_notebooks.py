"""Every notebook in notebooks/ runs top to bottom on the CPU (CI executes them all: 08 and 09,
the build-it-yourself notebooks, in tests/test_exercises.py, blank and with the solutions filled).

The notebooks read CIFAR-10 from ``MINISE_DATA``; without it they are skipped, with the reason.
A failing notebook fails its test with the notebook, the cell and the error, not nbclient's
coloured traceback.
"""
import os
import pathlib
import time

import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
BUILD_IT_YOURSELF = ("08", "09")    # run by tests/test_exercises.py, blank and with the solutions filled
RUN_HERE = [p for p in NOTEBOOKS if p.name[:2] not in BUILD_IT_YOURSELF]
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
@pytest.mark.parametrize("path", RUN_HERE, ids=[p.name for p in RUN_HERE])
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


LESSONS = [p for p in NOTEBOOKS if p.name[:2] in ("01", "02", "03", "04", "08", "09")]


@pytest.mark.parametrize("path", LESSONS, ids=[p.name for p in LESSONS])
def test_no_answer_is_in_view(path):
    """The cells a learner edits hold an empty answer or a stub; no solution is written out in a
    markdown cell; the committed outputs print no verdict but 'not yet'."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    edited = [c for c in notebook.cells if {"answer", "blank"} & set(c.metadata.get("tags", []))]
    assert edited, f"{path.name} marks no cell as the learner's"
    for cell in edited:
        code = [line for line in cell.source.splitlines() if line.strip() and not line.strip().startswith(("#", '"""'))]
        assert code[-1].strip() in ("raise NotImplementedError",) or code == [code[0]] and "= None" in code[0], cell.source
    for cell in notebook.cells:
        assert "<details>" not in cell.source and "# the solution" not in cell.source, cell.source[:200]
        for output in cell.get("outputs", []):
            text = output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
            assert ": correct" not in text and "is what minise measures" not in text, text[:200]

"""The BLAS thread count: set only when asked, read without side effects."""
import os
import subprocess
import sys

import pytest
from threadpoolctl import threadpool_info

from minise.execution import threads


def _in_fresh_process(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def _blas_threads():
    return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


def test_importing_and_running_minise_leaves_blas_alone():
    """A learner's own products keep BLAS's threads: nothing limits them on import, on
    get_num_threads or on a training step."""
    code = ("import numpy, os; from threadpoolctl import threadpool_info\n"
            "blas = lambda: sorted(i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas')\n"
            "before = blas()\n"
            "import minise; from minise.models import se_resnet20; from minise.optim import SGD; "
            "from minise.step import TrainStep\n"
            "model = se_resnet20(min_hidden=4).double()\n"
            "TrainStep(model, SGD(model.parameters(), lr=0.1))(numpy.ones((2, 3, 8, 8)), numpy.array([0, 1]))\n"
            "print(before, blas(), minise.get_num_threads(), len(os.sched_getaffinity(0)), sep=';')")
    run = _in_fresh_process(code, OPENBLAS_NUM_THREADS="2")
    assert run.returncode == 0, run.stderr
    before, after, got, affinity = run.stdout.strip().split(";")
    assert before == after == "[2]" and got == affinity


def test_set_num_threads_limits_blas_and_is_what_get_num_threads_reports():
    before = threads.get_num_threads(), _blas_threads()
    try:
        threads.set_num_threads(1)
        assert _blas_threads() == {1} and threads.get_num_threads() == 1
        threads.set_num_threads(3)
        assert _blas_threads() == {3} and threads.get_num_threads() == 3
    finally:
        threads.set_num_threads(max(before[1]))
        threads._state["threads"] = None if before[0] == threads.available_cpus() else before[0]


@pytest.mark.parametrize("bad", [0, -2, 1.5, "4", True, None])
def test_set_num_threads_refuses_what_is_not_a_positive_int(bad):
    with pytest.raises(ValueError, match="positive int"):
        threads.set_num_threads(bad)


def test_the_environment_variable_gives_the_runs_default_and_a_bad_value_is_named(monkeypatch):
    monkeypatch.setenv(threads.ENV, "3")
    assert threads.default_num_threads() == 3
    monkeypatch.setenv(threads.ENV, "")
    assert threads.default_num_threads() == threads.available_cpus()
    monkeypatch.setenv(threads.ENV, "many")
    with pytest.raises(ValueError, match="MINISE_NUM_THREADS='many'.*positive"):
        threads.default_num_threads()

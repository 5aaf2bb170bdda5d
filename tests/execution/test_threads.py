"""The thread count: its sources, its checks, and the BLAS limit that keeps cores unshared."""
import os
import subprocess
import sys

import pytest
from threadpoolctl import threadpool_info

from minise.execution import threads


def _in_fresh_process(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_default_is_the_cpus_this_process_may_use():
    run = _in_fresh_process("import os, minise.execution as e; print(e.get_num_threads(), len(os.sched_getaffinity(0)))",
                            MINISE_NUM_THREADS="")
    got, affinity = run.stdout.split()
    assert got == affinity


def test_the_environment_variable_sets_it_and_a_bad_value_is_named():
    assert _in_fresh_process("import minise.execution as e; print(e.get_num_threads())",
                             MINISE_NUM_THREADS="3").stdout.strip() == "3"
    bad = _in_fresh_process("import minise.execution as e; e.get_num_threads()", MINISE_NUM_THREADS="many")
    assert bad.returncode != 0 and "MINISE_NUM_THREADS='many'" in bad.stderr and "positive" in bad.stderr


@pytest.mark.parametrize("bad", [0, -2, 1.5, "4", True, None])
def test_set_num_threads_refuses_what_is_not_a_positive_int(bad):
    with pytest.raises(ValueError, match="positive int"):
        threads.set_num_threads(bad)


def test_blas_is_held_to_one_thread_so_threads_never_oversubscribe():
    before = threads.get_num_threads()
    try:
        threads.set_num_threads(3)
        blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
        assert blas and set(blas) == {1}
        assert threads.get_num_threads() == 3 and threads.pool()._max_workers == 3
    finally:
        threads.set_num_threads(before)

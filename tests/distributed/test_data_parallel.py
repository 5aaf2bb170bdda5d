"""Data parallelism gives the numbers of one process on the whole batch: real worker processes
under mpiexec (tests/distributed/steps.py), compared with the same steps in this process."""
import os
import subprocess
import sys

import numpy as np
import pytest

from minise.distributed import shard, sum_over_workers, world

from .steps import run
from .workers import mpi_env, mpiexec_command

HERE = os.path.dirname(__file__)


def workers_run(tmp_path, workers, dtype):
    out = tmp_path / f"w{workers}"
    out.mkdir()
    command = mpiexec_command(workers, [os.path.join(HERE, "steps.py"), str(out), dtype])
    done = subprocess.run(command, env=mpi_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    return [dict(np.load(out / f"rank{r}.npz")) for r in range(workers)]


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    out = tmp_path_factory.mktemp("alone")
    run(out, "float64")
    return dict(np.load(out / "rank0.npz"))


@pytest.mark.parametrize("workers", [1, 2, 3, 4])
def test_workers_match_one_process_in_float64(tmp_path, alone, workers):
    """Weights, BatchNorm's running statistics, momentum buffers and the loss after three steps on
    shards of 7 (4+3, 3+2+2, 2+2+2+1): those of one process on the whole batch, to 1e-10."""
    ranks = workers_run(tmp_path, workers, "float64")
    for key, expected in alone.items():
        got = ranks[0][key]
        assert got.dtype == expected.dtype, key
        scale = max(1.0, float(np.abs(expected).max()))
        assert np.abs(got - expected).max() <= 1e-10 * scale, f"{key} with {workers} workers"
    assert int(ranks[0]["seen"]) == 3 * 7


@pytest.mark.parametrize("workers", [2, 3])
def test_every_worker_holds_the_same_state_bit_for_bit(tmp_path, workers):
    ranks = workers_run(tmp_path, workers, "float32")
    for r, state in enumerate(ranks[1:], start=1):
        for key, value in ranks[0].items():
            assert np.array_equal(state[key], value), f"{key} differs between worker 0 and worker {r}"


def test_the_same_worker_count_twice_is_bit_identical(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = workers_run(tmp_path / "a", 3, "float32")[0], workers_run(tmp_path / "b", 3, "float32")[0]
    for key, value in first.items():
        assert np.array_equal(second[key], value), key


def test_shards_are_contiguous_cover_the_batch_and_differ_by_at_most_one():
    for n in (1, 7, 128, 130):
        for size in (1, 2, 3, 4, 16):
            spans = [shard(n, r, size) for r in range(size)]
            assert spans[0][0] == 0 and spans[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
            lengths = [hi - lo for lo, hi in spans]
            assert max(lengths) - min(lengths) <= 1
    with pytest.raises(ValueError, match="rank"):
        shard(10, 4, 4)


def test_alone_the_communicator_sums_nothing_and_needs_no_mpi():
    comm = world()
    assert (comm.rank, comm.size) == (0, 1)
    a = np.arange(3.0)
    assert comm.all_sum(a) is a and comm.broadcast({"k": 1}) == {"k": 1}
    parts = (a, 4)
    assert sum_over_workers(*parts) == parts
    # in a fresh process: importing minise and using the stand-in never imports mpi4py
    done = subprocess.run([sys.executable, "-c", "import sys, minise, minise.nn, minise.gradcheck; "
                           "import minise.distributed as d; d.world(); print('mpi4py' in sys.modules)"],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert done.stdout.strip() == "False", done.stderr

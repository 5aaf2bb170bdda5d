"""Starting real worker processes in tests: the mpiexec of the MPICH wheel beside this Python."""
import os
import sys

from minise.distributed.launch import mpiexec

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def mpi_env(**extra):
    """The environment for workers: this checkout's minise first, one BLAS thread each, and no
    MINISE_WORKERS from the test session (each test says how many it wants)."""
    env = {k: v for k, v in os.environ.items() if k != "MINISE_WORKERS"}
    env.update(PYTHONPATH=REPO, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", **extra)
    return env


def mpiexec_command(workers, argv):
    """``mpiexec -n workers python argv...`` (more workers than cores is allowed: they take turns)."""
    return [mpiexec(), "-n", str(workers), sys.executable, *argv]

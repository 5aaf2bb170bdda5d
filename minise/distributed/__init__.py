"""Data parallelism over worker processes: every worker holds the model and runs its shard of
each batch; the workers meet only to sum what must be summed.

    from minise import distributed
    comm = distributed.world()            # rank, size, all_sum, broadcast, barrier
    lo, hi = distributed.shard(128, comm.rank, comm.size)     # this worker's samples of a batch

In one process (``minise train --workers 1``, a notebook, the tests of layers) ``world()`` is a
stand-in that sums nothing and needs no MPI. Under ``mpiexec`` (which ``minise train`` starts
itself, ``launch.py``) it is MPI's world communicator, through mpi4py.

``sum_over_workers(*parts)`` is what a layer calls where its math sums over the batch and the
batch is spread over the workers: BatchNorm's statistics (synchronised BatchNorm).
"""
from .comm import SingleProcess, say, sum_over_workers, use_own_gpu, world
from .shard import shard

__all__ = ["SingleProcess", "say", "shard", "sum_over_workers", "use_own_gpu", "world"]

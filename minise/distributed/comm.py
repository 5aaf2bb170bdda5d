"""The communicator: a stand-in in one process, MPI's world under ``mpiexec``.

Both offer the same calls:
    rank, size              this worker's index and the number of workers
    all_sum(array)          the element-wise sum over workers, written into ``array`` in place
    broadcast(obj, root)    ``obj`` from worker ``root`` (any picklable value), on every worker
    barrier()               wait until every worker gets here
"""
import os

import numpy  # host buffers for MPI; the layers' arrays may be CuPy's

from ..backend import get_array_module, to_numpy

# Variables set by MPI launchers for each process they start (MPICH's hydra: PMI_SIZE; Open MPI:
# OMPI_COMM_WORLD_SIZE). A process started by neither runs alone and never imports mpi4py.
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")
# ... and this process's index among those on its own machine (one GPU each).
_LOCAL_RANK_VARIABLES = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK")

_world = {}


class SingleProcess:
    """One worker: every sum is over itself alone."""

    rank, size = 0, 1

    def all_sum(self, array):
        return array

    def broadcast(self, obj, root=0):
        return obj

    def barrier(self):
        pass


class MPIWorld:
    """MPI_COMM_WORLD through mpi4py. Arrays are summed with one Allreduce, on the host: a CuPy
    array is copied over and back (the MPICH wheel is not CUDA-aware)."""

    def __init__(self):
        from mpi4py import MPI

        self._mpi, self._comm = MPI, MPI.COMM_WORLD
        self.rank, self.size = self._comm.Get_rank(), self._comm.Get_size()

    def all_sum(self, array):
        host = array if isinstance(array, numpy.ndarray) else to_numpy(array)
        if not host.flags.c_contiguous:
            raise ValueError(f"all_sum: the array must be C-contiguous, got strides {host.strides}")
        self._comm.Allreduce(self._mpi.IN_PLACE, host, op=self._mpi.SUM)
        if host is not array:
            array[...] = get_array_module(array).asarray(host)
        return array

    def broadcast(self, obj, root=0):
        return self._comm.bcast(obj, root=root)

    def barrier(self):
        self._comm.Barrier()

    def abort(self, code=1):
        """End every worker of the run now (MPI_Abort): one that failed must not leave the
        others waiting in a sum."""
        self._comm.Abort(code)


def world():
    """The communicator of this run: MPI's world under an MPI launcher with more than one
    process, else the single-process stand-in."""
    if "comm" not in _world:
        size = next((os.environ[v] for v in _SIZE_VARIABLES if v in os.environ), "1")
        _world["comm"] = MPIWorld() if int(size) > 1 else SingleProcess()
    return _world["comm"]


def say(*args, **kwargs):
    """``print`` on worker 0 alone: a run's messages are said once, whatever the worker count."""
    if world().rank == 0:
        print(*args, **kwargs)


def use_own_gpu():
    """With several workers on a machine with GPUs, worker i of that machine computes on GPU
    i mod (the number of GPUs): a worker owns one GPU. Alone, the current GPU is kept."""
    if world().size == 1:
        return
    from ..backend import cupy
    local = int(next((os.environ[v] for v in _LOCAL_RANK_VARIABLES if v in os.environ), "0"))
    cupy.cuda.Device(local % cupy.cuda.runtime.getDeviceCount()).use()


def sum_over_workers(*parts):
    """The sums of the whole global batch from this worker's partial sums: ``parts`` (arrays of
    one dtype, or numbers) are packed into one buffer, summed over workers in one reduction and
    returned in the same order (numbers as floats). In one process they come back unchanged."""
    comm = world()
    if comm.size == 1:
        return parts
    arrays = [p for p in parts if hasattr(p, "shape")]
    xp = get_array_module(arrays[0]) if arrays else numpy
    dtype = arrays[0].dtype if arrays else numpy.float64
    flat = xp.concatenate([xp.asarray(p, dtype=dtype).reshape(-1) for p in parts])
    comm.all_sum(flat)
    out, at = [], 0
    for p in parts:
        size = int(p.size) if hasattr(p, "shape") else 1
        piece = flat[at:at + size]
        out.append(piece.reshape(p.shape) if hasattr(p, "shape") else float(piece[0]))
        at += size
    return tuple(out)

"""How many threads NumPy's BLAS library uses in this process.

    minise.set_num_threads(1)        # `minise train --threads 1` calls it for the run
    minise.get_num_threads()         # the value set, else the CPUs this process may run on

minise runs its layers on one thread per process; more cores mean more worker processes
(data parallelism, ``minise.distributed``). Only the matrix products can use more threads, in
OpenBLAS (or whichever BLAS NumPy was built with). Nothing is limited on import or on first
use: a learner's own NumPy products keep every core until ``set_num_threads`` is called.
"""
import os

ENV = "MINISE_NUM_THREADS"

_state = {"threads": None, "blas": None}


def available_cpus():
    """The CPUs this process may run on (its affinity mask), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:              # pragma: no cover - macOS and Windows have no affinity call
        return os.cpu_count() or 1


def default_num_threads():
    """``$MINISE_NUM_THREADS`` when set, else every CPU this process may use."""
    text = os.environ.get(ENV)
    if text is None or not text.strip():
        return available_cpus()
    try:
        return check_num_threads(int(text))
    except ValueError:
        raise ValueError(f"{ENV}={text!r}: expected a positive whole number of threads") from None


def check_num_threads(threads):
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"the number of threads must be a positive int, got {threads!r}")
    return threads


def set_num_threads(threads):
    """Hold NumPy's BLAS library to ``threads`` threads in this process from now on. OpenMP
    runtimes (PyTorch's, where it is loaded) are left alone."""
    from threadpoolctl import ThreadpoolController

    check_num_threads(threads)
    if _state["blas"] is None:
        _state["blas"] = ThreadpoolController().select(user_api="blas")
    _state["blas"].limit(limits=threads)
    _state["threads"] = threads


def get_num_threads():
    """The count given to ``set_num_threads``, else the CPUs this process may use; it changes
    nothing."""
    return _state["threads"] if _state["threads"] is not None else available_cpus()

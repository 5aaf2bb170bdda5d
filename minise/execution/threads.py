"""How many CPU threads minise uses, and the pool that runs batch chunks on them.

    minise.set_num_threads(4)        # or MINISE_NUM_THREADS=4, or `minise train --threads 4`
    minise.get_num_threads()         # default: the CPUs this process may run on

With T threads, the CPU layers split a batch into cache-sized chunks and run them on a pool of
T threads, with NumPy's BLAS library held to one thread, so pool threads x BLAS threads never
exceed T. With T = 1 the chunks run in turn on the caller's thread. (The BLAS limit holds for
the whole process once minise has chosen its thread count.)
"""
import os
from concurrent.futures import ThreadPoolExecutor

ENV = "MINISE_NUM_THREADS"

_state = {"threads": None, "pool": None, "blas": None}


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
    """Use ``threads`` CPU threads from now on (1: the chunks run in turn on the caller's thread;
    ``batch.whole_batch()`` is the plain path)."""
    check_num_threads(threads)
    if threads != _state["threads"]:
        if _state["pool"] is not None:
            _state["pool"].shutdown(wait=True)
        _state.update(threads=threads, pool=None)
        _limit_blas(1)


def get_num_threads():
    """The number of CPU threads minise uses (set_num_threads, else the default)."""
    if _state["threads"] is None:
        set_num_threads(default_num_threads())
    return _state["threads"]


def pool():
    """The thread pool of ``get_num_threads()`` workers (made on first use)."""
    if _state["pool"] is None:
        _state["pool"] = ThreadPoolExecutor(get_num_threads(), thread_name_prefix="minise")
    return _state["pool"]


def _limit_blas(threads):
    """Hold the BLAS libraries (NumPy's) to ``threads`` threads. OpenMP runtimes (PyTorch's,
    where it is loaded) are left alone."""
    from threadpoolctl import ThreadpoolController

    if _state["blas"] is None:
        _state["blas"] = ThreadpoolController().select(user_api="blas")
    _state["blas"].limit(limits=threads)

"""Reused work buffers for temporaries.

Fresh large allocations are slow: the memory is paged in again on first touch every time.
Layers therefore write their big temporaries (a padded copy, a column matrix) into
``scratch(...)`` buffers that live across calls, used within a single forward or backward
call. One buffer per (name, shape, dtype, device) serves every layer of that shape, which
keeps a deep network's memory small. Each thread has its own, so that two models may run on
two threads.

Contents are undefined on return: callers overwrite them. A scratch buffer is never returned
from forward or backward, since the next call reuses it.
"""
import threading

import numpy  # dtype names only: the buffers come from the caller's array module

from ..backend import get_array_module

_SCRATCH = threading.local()


def scratch(name, shape, dtype, xp):
    """A temporary shared by every layer of this thread; valid until the next request for the
    same name, shape and dtype."""
    buffers = thread_buffers()
    key = (name, tuple(shape), numpy.dtype(dtype), xp.__name__)     # str(dtype) would cost 10 us a call
    buf = buffers.get(key)
    if buf is None or get_array_module(buf) is not xp:
        buf = buffers[key] = xp.empty(shape, dtype=dtype)
    return buf


def thread_buffers():
    """This thread's scratch buffers, by (name, shape, dtype, array module)."""
    if not hasattr(_SCRATCH, "buffers"):
        _SCRATCH.buffers = {}
    return _SCRATCH.buffers

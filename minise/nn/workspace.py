"""Reused work buffers.

Fresh large allocations are slow: the memory is paged in again on first touch every time.
Layers therefore write their big temporaries into buffers that live across calls:

- ``Module.workspace(...)``: owned by one layer, for arrays kept from forward to backward;
- ``scratch(...)``: shared by all layers, for temporaries used within a single forward or
  backward call (a padded copy, a column matrix of dout). One buffer per (name, shape, dtype,
  device) serves every layer of that shape, which keeps a deep network's memory small.

Contents are undefined on return: callers overwrite them. Neither kind may be returned from
forward or backward, since the next call reuses it.
"""
from ..backend import get_array_module

_SCRATCH = {}


def reuse(pool, name, shape, dtype, xp):
    """``pool[name]`` if it has this shape, dtype and array module; else a new empty array."""
    buf = pool.get(name)
    if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype or get_array_module(buf) is not xp:
        buf = xp.empty(shape, dtype=dtype)
        pool[name] = buf
    return buf


def scratch(name, shape, dtype, xp):
    """A temporary shared by every layer; valid until the next request for the same name."""
    key = (name, tuple(shape), str(dtype), xp.__name__)
    return reuse(_SCRATCH, key, shape, dtype, xp)

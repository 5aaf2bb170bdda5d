"""Plain functions that the GPU may replace with fused kernels, and the CPU with faster NumPy.

    # minise/nn/im2col.py: the plain lines, the reference
    @accelerated("padded_im2col")
    def padded_im2col(x, kernel_size, stride, padding, out): ...

    # minise/gpu/conv.py: its GPU version, with the same name, arguments and result
    @gpu_version(im2col.padded_im2col)
    def padded_im2col(x, kernel_size, stride, padding, out): ...

For CuPy arguments (an array, or a list of arrays, among the positional arguments) the call
goes to the GPU version, if one is registered. Every GPU version follows one convention: it
takes the plain function's arguments and returns its result, or ``NotImplemented`` where it
does not apply (an unsupported dtype, an array too large for 32-bit indices, no cuBLAS
library, several data-parallel workers); the plain lines then run. ``f.plain`` is always the
plain function and ``f.gpu`` its GPU version (None until one is registered, and where CuPy is
missing). tests/gpu checks each GPU version against its plain function.

Nothing here imports the GPU package: ``minise/__init__.py`` imports ``minise.gpu`` last,
where CuPy is installed, and each of its modules registers its versions with ``gpu_version``.

    @numpy_version(conv_channels_last.forward)
    def forward_math(self, x): ...        # the formula, as a learner reads it

A layer's method may likewise have a NumPy version: the same sums in another order, faster on
one CPU core (``fast(layer, *arrays)``, or ``NotImplemented``). It runs for NumPy arrays only;
CuPy arrays run the plain method (and its GPU kernels) unchanged. ``with plain_on_cpu():``
runs the plain methods on the CPU too (tests hold each NumPy version equal to its formula).
"""
import contextlib
import functools

import numpy

from ..backend import cupy

_CUPY_ARRAY = cupy.ndarray if cupy is not None else ()    # isinstance(x, ()) is always False
_NUMPY_VERSIONS = {"on": True}


def accelerated(name):
    """Mark a plain function that a GPU version may replace for CuPy arrays. ``name`` is the
    plain function's own name: its GPU version is registered under it."""
    def wrap(plain):
        if name != plain.__name__:
            raise ValueError(f"accelerated({name!r}) marks the function {plain.__name__!r}: the name must be "
                             f"the plain function's own, {plain.__name__!r}")

        @functools.wraps(plain)
        def run(*args, **kwargs):
            gpu = run.gpu
            if gpu is not None and _on_gpu(args):
                result = gpu(*args, **kwargs)
                if result is not NotImplemented:
                    return result
            return plain(*args, **kwargs)

        run.plain, run.gpu = plain, None
        return run
    return wrap


def gpu_version(plain_function):
    """Register the decorated function as the GPU version of ``plain_function`` (marked
    ``@accelerated``); the two have the same name."""
    if not hasattr(plain_function, "plain"):
        raise TypeError(f"gpu_version: {getattr(plain_function, '__qualname__', plain_function)!r} is not "
                        "marked @accelerated, so nothing would call its GPU version")

    def register(fn):
        if fn.__name__ != plain_function.__name__:
            raise ValueError(f"gpu_version: the GPU version of {plain_function.__name__!r} must have its name, "
                             f"got {fn.__name__!r}")
        plain_function.gpu = fn
        return fn
    return register


def _on_gpu(args):
    """Whether a positional argument is a CuPy array or a list (tuple) that starts with one."""
    for a in args:
        if isinstance(a, _CUPY_ARRAY) or (type(a) in (list, tuple) and a and isinstance(a[0], _CUPY_ARRAY)):
            return True
    return False


def numpy_version(fast):
    """Mark a layer method whose NumPy arguments ``fast(layer, *args)`` runs instead."""
    def wrap(plain):
        @functools.wraps(plain)
        def run(layer, *args):
            if _NUMPY_VERSIONS["on"] and all(isinstance(a, numpy.ndarray) for a in args):
                result = fast(layer, *args)
                if result is not NotImplemented:
                    return result
            return plain(layer, *args)

        run.plain = plain
        return run
    return wrap


@contextlib.contextmanager
def plain_on_cpu():
    """Within ``with``: the plain methods run for NumPy arrays too (their formulas as written)."""
    before = _NUMPY_VERSIONS["on"]
    _NUMPY_VERSIONS["on"] = False
    try:
        yield
    finally:
        _NUMPY_VERSIONS["on"] = before

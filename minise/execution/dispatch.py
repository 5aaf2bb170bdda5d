"""Plain functions that the GPU may replace with fused kernels, and the CPU with faster NumPy.

    @accelerated("im2col")
    def padded_im2col(x, kernel_size, stride, padding, out): ...   # the plain lines: the reference

For CuPy arguments the call goes to the GPU version registered under the same name
(``minise.gpu``), if there is one. Every GPU version follows one convention: it takes the
plain function's arguments and returns its result, or ``NotImplemented`` where it does not
apply (an unsupported dtype, an array too large for 32-bit indices, no cuBLAS library); the
plain lines then run. tests/gpu checks each GPU version against its plain function.

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

_GPU_VERSIONS = {}
_NUMPY_VERSIONS = {"on": True}


def gpu_version(name):
    """Register the decorated function as the GPU version of the plain function ``name``."""
    def register(fn):
        _GPU_VERSIONS[name] = fn
        return fn
    return register


def accelerated(name):
    """Mark a plain function whose GPU version (registered as ``name``) runs for CuPy arrays."""
    def wrap(plain):
        if cupy is None:
            return plain

        @functools.wraps(plain)
        def run(*args, **kwargs):
            if any(isinstance(a, cupy.ndarray) for a in args):
                fused = _gpu_versions().get(name)
                if fused is not None:
                    result = fused(*args, **kwargs)
                    if result is not NotImplemented:
                        return result
            return plain(*args, **kwargs)

        run.plain = plain
        return run
    return wrap


def _gpu_versions():
    if not _GPU_VERSIONS:
        from .. import gpu  # noqa: F401  (importing it registers its kernels)
    return _GPU_VERSIONS


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

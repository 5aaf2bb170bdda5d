"""Plain functions that the GPU may replace with fused kernels.

    @accelerated("im2col")
    def padded_im2col(x, kernel_size, stride, padding, out): ...   # the plain lines: the reference

For CuPy arguments the call goes to the GPU version registered under the same name
(``minise.gpu``), if there is one. Every GPU version follows one convention: it takes the
plain function's arguments and returns its result, or ``NotImplemented`` where it does not
apply (an unsupported dtype, an array too large for 32-bit indices, no cuBLAS library); the
plain lines then run. tests/gpu checks each GPU version against its plain function.
"""
import functools

from ..backend import cupy

_GPU_VERSIONS = {}


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

"""matmul on the GPU: cuBLAS's GEMM called through its C API.

CuPy refuses to call cuBLAS while a CUDA graph is being recorded (``graph.CudaGraph``),
although cuBLAS itself supports it; so minise calls cuBLAS itself, through a handle of its own
(one per GPU). Using this one path eagerly too keeps recorded and eager steps bit for bit equal.
"""
import numpy

from ..execution.dispatch import gpu_version
from ..nn import ops
from .common import cupy


@gpu_version(ops.matmul)
def matmul(a, b, out=None):
    """``a @ b`` for 2-D float32/float64 matrices; NotImplemented for anything else or where the
    cuBLAS library can't be found (then ``cupy.matmul`` runs, and graphs can't be recorded)."""
    if a.dtype not in _Cublas.GEMM or a.ndim != 2 or b.ndim != 2:
        return NotImplemented
    device = cupy.cuda.Device().id
    if device not in _cublas:
        _cublas[device] = _Cublas.create()
    if _cublas[device] is None:
        return NotImplemented
    return _cublas[device].gemm(a, b, out)


class _Cublas:
    """Row-major GEMMs through cuBLAS's C API (ctypes), with a handle and workspace of our own,
    so that a CUDA graph can record them. cuBLAS is column-major: a C-contiguous (r, c) array
    is its transpose with leading dimension c, so C = A @ B is computed as C^T = B^T A^T."""

    GEMM = {numpy.dtype("float32"): "cublasSgemm_v2", numpy.dtype("float64"): "cublasDgemm_v2"}
    WORKSPACE_BYTES = 32 << 20        # cuBLAS's own size on Hopper; set, so capture never allocates

    @classmethod
    def create(cls):
        """A handle for the current GPU, or None where libcublas can't be located."""
        import ctypes.util

        cupy.cuda.device.get_cublas_handle()               # makes CuPy load libcublas
        try:                                               # the copy CuPy loaded, on Linux
            with open("/proc/self/maps") as maps:
                path = next((line.split()[-1] for line in maps if "libcublas.so" in line), None)
        except OSError:
            path = None
        path = path or ctypes.util.find_library("cublas")
        return cls(path) if path else None

    def __init__(self, path):
        import ctypes

        self.ctypes, self.lib = ctypes, ctypes.CDLL(path)
        self.handle = ctypes.c_void_p()
        self._check(self.lib.cublasCreate_v2(ctypes.byref(self.handle)), "cublasCreate")
        self.workspace = cupy.empty(self.WORKSPACE_BYTES, dtype=numpy.uint8)
        self._check(self.lib.cublasSetWorkspace_v2(self.handle, ctypes.c_void_p(self.workspace.data.ptr),
                                                   ctypes.c_size_t(self.WORKSPACE_BYTES)), "cublasSetWorkspace")

    def _check(self, status, what):
        if status != 0:
            raise RuntimeError(f"{what} failed with cuBLAS status {status}")

    def _operand(self, x):
        """(x, op, leading dimension) for x as the column-major transpose of a row-major matrix."""
        if x.flags.c_contiguous:
            return x, 0, x.shape[1]                     # CUBLAS_OP_N
        if x.flags.f_contiguous:
            return x, 1, x.shape[0]                     # x.T is C-contiguous: CUBLAS_OP_T
        x = cupy.ascontiguousarray(x)
        return x, 0, x.shape[1]

    def gemm(self, a, b, out=None):
        (m, k), (k2, n) = a.shape, b.shape
        if k != k2 or a.dtype != b.dtype:
            raise ValueError(f"matmul: cannot multiply {a.dtype} {a.shape} by {b.dtype} {b.shape}")
        if out is None:
            out = cupy.empty((m, n), dtype=a.dtype)
        elif out.shape != (m, n) or out.dtype != a.dtype or not out.flags.c_contiguous:
            raise ValueError(f"matmul: out must be C-contiguous {a.dtype} {(m, n)}, got {out.dtype} {out.shape}")
        if m == 0 or n == 0 or k == 0:
            out[...] = 0
            return out
        a, op_a, lda = self._operand(a)
        b, op_b, ldb = self._operand(b)
        c = self.ctypes
        scalar = c.c_float if a.dtype == numpy.float32 else c.c_double
        one, zero = scalar(1), scalar(0)
        self._check(self.lib.cublasSetStream_v2(self.handle, c.c_void_p(cupy.cuda.get_current_stream().ptr)),
                    "cublasSetStream")
        self._check(getattr(self.lib, self.GEMM[a.dtype])(
            self.handle, op_b, op_a, n, m, k, c.byref(one), c.c_void_p(b.data.ptr), ldb,
            c.c_void_p(a.data.ptr), lda, c.byref(zero), c.c_void_p(out.data.ptr), n), "cublas gemm")
        return out


_cublas = {}          # GPU id -> its _Cublas handle (or None), made at the first CuPy matmul there

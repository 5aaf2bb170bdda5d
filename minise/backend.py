"""The one place that decides NumPy or CuPy.

Every layer asks ``xp = get_array_module(x)`` of its input and does its math with ``xp``, so
the same code runs on the CPU (NumPy arrays) and on the GPU (CuPy arrays). Nothing else in
minise imports CuPy.
"""
import contextlib
import functools

import numpy

try:  # CuPy is an optional extra: ``pip install -e .[gpu]``
    import cupy
except ImportError:  # pragma: no cover - depends on the machine
    cupy = None

DEVICES = ("cpu", "cuda")

GPU_INSTALL_HINT = (
    "install the GPU extra with `pip install -e .[gpu]` (CuPy for CUDA 12; "
    "use `pip install cupy-cuda13x` by hand for CUDA 13)"
)


def get_array_module(x):
    """Return ``numpy`` or ``cupy``, whichever owns ``x``."""
    if cupy is not None:
        return cupy.get_array_module(x)
    return numpy


def is_array(x):
    """True for a NumPy or CuPy ndarray."""
    return isinstance(x, numpy.ndarray) or (cupy is not None and isinstance(x, cupy.ndarray))


def device_of(x):
    """``"cuda"`` for a CuPy array, ``"cpu"`` for anything else."""
    return "cuda" if cupy is not None and isinstance(x, cupy.ndarray) else "cpu"


def check_device(device):
    """Validate a device name; for ``"cuda"`` also check that CuPy and a GPU are there."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cuda":
        if cupy is None:
            raise RuntimeError(f"device 'cuda' needs CuPy, which is not installed: {GPU_INSTALL_HINT}")
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except cupy.cuda.runtime.CUDARuntimeError as err:
            raise RuntimeError(f"device 'cuda' needs an NVIDIA GPU, and CUDA reports none: {err}") from err
        if count == 0:
            raise RuntimeError("device 'cuda' needs an NVIDIA GPU, and CUDA reports none")
    return device


def to_device(x, device):
    """Return ``x`` as an array on ``device`` (no copy when it is already there)."""
    check_device(device)
    if device == "cuda":
        return cupy.asarray(x)
    return to_numpy(x)


def to_numpy(x):
    """Return ``x`` as a NumPy array, copying it off the GPU if needed."""
    if cupy is not None and isinstance(x, cupy.ndarray):
        return cupy.asnumpy(x)
    return numpy.asarray(x)


def matmul(a, b, out=None):
    """``a @ b`` (``out``: a C-contiguous buffer for the result).

    NumPy: ``numpy.matmul``. CuPy, for 2-D float32/float64 matrices: cuBLAS called directly,
    through a handle of our own (``_Cublas``, one per GPU), because CuPy refuses to call cuBLAS
    while a CUDA graph is being recorded (``CudaGraph``), although cuBLAS itself supports it.
    Using the one path eagerly too keeps recorded and eager steps bit for bit equal. Where the
    cuBLAS library can't be found, ``cupy.matmul`` is used (and graphs can't be recorded).
    """
    xp = get_array_module(a)
    if xp is numpy or a.dtype not in _Cublas.GEMM or a.ndim != 2 or b.ndim != 2:
        return xp.matmul(a, b, out=out)
    device = cupy.cuda.Device().id
    if device not in _cublas:
        _cublas[device] = _Cublas.create()
    if _cublas[device] is None:
        return cupy.matmul(a, b, out=out)
    return _cublas[device].gemm(a, b, out)


def multiply_sum(subscripts, a, b):
    """``einsum(subscripts, a, b)`` where both operands have the same axes and the output keeps
    some of them, e.g. ``"ncl,ncl->c"``: sum(a * b) over the other axes.

    NumPy's einsum does it without a temporary; CuPy's calls cuBLAS, which a CUDA graph can't
    record through CuPy, so on CuPy it is a reduction kernel of our own.
    """
    inputs, _, output = subscripts.partition("->")
    axes, _, other = inputs.partition(",")
    if axes != other or "".join(c for c in axes if c in output) != output:
        raise ValueError(f"multiply_sum: expected subscripts like 'ncl,ncl->c' (the same axes twice, "
                         f"the output's in input order), got {subscripts!r}")
    if get_array_module(a) is numpy:
        return numpy.einsum(subscripts, a, b)
    return _multiply_sum_kernel()(a, b, axis=tuple(i for i, c in enumerate(axes) if c not in output))


@functools.cache
def _multiply_sum_kernel():
    """sum(a * b) over the given axes in one CuPy kernel, without the product as a temporary."""
    return cupy.ReductionKernel("T u, T v", "T y", "u * v", "a + b", "y = a", "0", "minise_multiply_sum")


_C_TYPES = {"float32": "float", "float64": "double"}    # the dtypes our raw CUDA kernels are compiled for


def channel_sums(a, b=None, scale=1):
    """Per channel of (N, C, L) arrays: ``scale * sum(a)`` and, with ``b``, also ``scale *
    sum(a * b)``, each (C,), summed over n and l: BatchNorm's reductions.

    NumPy (and dtypes other than float32/64): ``einsum``. CuPy: one kernel in which blocks of
    256 threads each sum one channel of a few images (as many blocks as keep the GPU busy), then
    one kernel that adds each channel's block sums in a fixed order. CuPy's own reduction over
    axes (0, 2) gives each channel one block: 16 blocks for 16 channels, ~30 us for a
    (128, 16, 1024) array on an H100, against ~9 us here.
    """
    if b is not None and (b.shape != a.shape or b.dtype != a.dtype):
        raise ValueError(f"channel_sums: b must match a, {a.dtype} {a.shape}; got {b.dtype} {b.shape}")
    xp = get_array_module(a)
    if xp is numpy or a.dtype.name not in _C_TYPES or a.size >= 2 ** 31:
        sums = xp.einsum("ncl->c", a) * scale
        return sums if b is None else (sums, multiply_sum("ncl,ncl->c", a, b) * scale)
    N, C, L = a.shape
    parts = max(1, min(N, 1024 // C))                        # blocks per channel
    partial = cupy.empty((2, C, parts), dtype=a.dtype)
    sums, products = cupy.empty(C, dtype=a.dtype), cupy.empty(C, dtype=a.dtype)
    module = _channel_sums_module(a.dtype.name)
    module.get_function("minise_channel_partial_sums")(
        (parts, C), (256,), (cupy.ascontiguousarray(a), cupy.ascontiguousarray(a if b is None else b), partial,
                             numpy.int32(N), numpy.int32(C), numpy.int32(L), numpy.int32(parts)))
    module.get_function("minise_channel_sums")(
        (-(-C // 128),), (128,), (partial, sums, products, numpy.int32(C), numpy.int32(parts), a.dtype.type(scale)))
    return sums if b is None else (sums, products)


_CHANNEL_SUMS_KERNELS = r"""
extern "C" __global__ void minise_channel_partial_sums(const T* a, const T* b, T* partial,
                                                       int N, int C, int L, int parts) {
    // block (s, c) sums channel c of images n0 <= n < n1 into partial[0][c][s] (a) and [1][c][s] (a*b)
    __shared__ T shared_a[256], shared_ab[256];
    int c = blockIdx.y, s = blockIdx.x, per = (N + parts - 1) / parts;
    int n0 = s * per, count = (min(N, n0 + per) - n0) * L;
    T sa = 0, sab = 0;
    for (int k = threadIdx.x; k < count; k += blockDim.x) {
        int n = n0 + k / L, l = k - k / L * L;
        size_t at = ((size_t)n * C + c) * L + l;
        sa += a[at];
        sab += a[at] * b[at];
    }
    shared_a[threadIdx.x] = sa, shared_ab[threadIdx.x] = sab;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {      // tree sum within the block
        if (threadIdx.x < half) {
            shared_a[threadIdx.x] += shared_a[threadIdx.x + half];
            shared_ab[threadIdx.x] += shared_ab[threadIdx.x + half];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        partial[(size_t)c * parts + s] = shared_a[0];
        partial[((size_t)C + c) * parts + s] = shared_ab[0];
    }
}

extern "C" __global__ void minise_channel_sums(const T* partial, T* sums, T* products, int C, int parts, T scale) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    T sa = 0, sab = 0;
    for (int s = 0; s < parts; ++s) {
        sa += partial[(size_t)c * parts + s];
        sab += partial[((size_t)C + c) * parts + s];
    }
    sums[c] = sa * scale, products[c] = sab * scale;
}
"""


@functools.cache
def _channel_sums_module(dtype_name):
    """``_CHANNEL_SUMS_KERNELS`` compiled for float32 or float64."""
    return cupy.RawModule(code=f"typedef {_C_TYPES[dtype_name]} T;\n" + _CHANNEL_SUMS_KERNELS)


# The elementwise kernels below compute what the plain lines of ``nn.batchnorm`` and ``optim.sgd``
# compute, operation for operation and in their order; with fused multiply-adds switched off
# (``--fmad=false``) each operation rounds as the plain line does. (The reductions may sum in
# another order than NumPy's, so BatchNorm agrees to rounding, SGD bit for bit.)
_EXACT = ("--fmad=false",)


def fused_sgd_update(param, grad, buf, lr, momentum, weight_decay, dampening, nesterov):
    """One steady-state step of ``optim.SGD`` (a momentum buffer exists) as a single kernel on
    CuPy: ``param`` and ``buf`` are updated in place. Returns False, doing nothing, for NumPy
    arrays: there ``SGD.step()`` runs its plain lines, which are the reference.

    Per element, in the plain lines' order:  d = g + wd*p;  b = mu*b + (1 - tau)*d;
    p = p - lr*(d + mu*b if nesterov else b). Nine kernels per parameter become one; with
    fused multiply-adds switched off every operation rounds as the plain lines do, so the two
    agree bit for bit (tests/gpu). ``lr`` and ``momentum``: numbers or 0-d device arrays.
    """
    if get_array_module(param) is numpy:
        return False
    _sgd_kernel()(grad, lr, momentum, weight_decay, 1 - dampening, bool(nesterov), param, buf)
    return True


@functools.cache
def _sgd_kernel():
    """The kernel of ``fused_sgd_update`` (CuPy compiles it at its first call)."""
    return cupy.ElementwiseKernel(
        "T g, T lr, T mu, T wd, T keep, bool nesterov", "T p, T b",
        """
        T d = wd != 0 ? g + wd * p : g;       // g <- g + lambda*theta
        b = mu * b + keep * d;                 // b <- mu*b + (1 - tau)*g
        p = p - lr * (nesterov ? d + mu * b : b);
        """, "minise_sgd_update", options=_EXACT)


def fused_batch_norm_forward(x3, xc, gamma, beta, running_mean, running_var, momentum, eps):
    """``_BatchNorm.forward`` in training mode as seven CuPy kernels (its plain lines launch about
    twenty). Returns None, doing nothing, for NumPy arrays: there the layer's plain lines run,
    and they are the reference (tests/gpu compares the two).

    x3: (N, C, L) the input; xc: (N, C, L) written with x - mean; gamma, beta, running_mean,
    running_var: (C,), the running statistics updated in place with ``momentum``.
    Returns (out, inv_std): out (N, C, L) = gamma * xc * inv_std + beta, inv_std (C,).
    """
    if get_array_module(x3) is numpy:
        return None
    M = x3.shape[0] * x3.shape[2]
    mean = channel_sums(x3, scale=1 / M)
    cupy.subtract(x3, mean[:, None], out=xc)
    sum_sq = channel_sums(xc, xc)[1]
    inv_std, scale = cupy.empty_like(mean), cupy.empty_like(mean)
    _bn_statistics_kernel()(sum_sq, mean, gamma, M, 1 - momentum, momentum, momentum * M / (M - 1), eps,
                            running_mean, running_var, inv_std, scale)
    return _channel_affine_kernel()(xc, scale[:, None], beta[:, None]), inv_std


def fused_batch_norm_backward(d3, xc, inv_std, gamma, gamma_grad, beta_grad):
    """``_BatchNorm.backward`` in training mode as four CuPy kernels (the plain lines: about
    sixteen). None for NumPy arrays, as ``fused_batch_norm_forward``.

    d3, xc: (N, C, L); inv_std, gamma: (C,); gamma_grad and beta_grad (C,) accumulate.
    Returns dx: (N, C, L) = scale * (dout - mean(dout) - xhat * mean(dout * xhat)).
    """
    if get_array_module(d3) is numpy:
        return None
    M = d3.shape[0] * d3.shape[2]
    dbeta, sum_dout_xc = channel_sums(d3, xc)
    scale, k, v = (cupy.empty_like(dbeta) for _ in range(3))
    _bn_backward_kernel()(sum_dout_xc, dbeta, inv_std, gamma, M, gamma_grad, beta_grad, scale, k, v)
    return _bn_dx_kernel()(d3, xc, scale[:, None], k[:, None], v[:, None])


@functools.cache
def _bn_statistics_kernel():
    """Per channel: the biased variance, 1 / sqrt(var + eps), gamma / sqrt(var + eps), and the
    running statistics' update (the unbiased variance: var * M / (M - 1))."""
    return cupy.ElementwiseKernel(
        "T sum_sq, T mean, T gamma, T count, T keep, T m, T m_unbiased, T eps",
        "T rmean, T rvar, T inv_std, T scale",
        """
        T var = sum_sq / count;
        rmean = rmean * keep + m * mean;
        rvar = rvar * keep + m_unbiased * var;
        inv_std = 1 / sqrt(var + eps);
        scale = gamma * inv_std;
        """, "minise_bn_statistics", options=_EXACT)


@functools.cache
def _channel_affine_kernel():
    """x * scale + shift, scale and shift one value per channel: (C, 1) against (N, C, L)."""
    return cupy.ElementwiseKernel("T x, T scale, T shift", "T y", "y = x * scale + shift",
                                  "minise_channel_affine", options=_EXACT)


@functools.cache
def _bn_backward_kernel():
    """Per channel: dgamma = sum(dout * xhat) and dbeta accumulated into the gradients; the
    coefficients of dx = scale * dout - k * xc - v."""
    return cupy.ElementwiseKernel(
        "T sum_dout_xc, T dbeta, T inv_std, T gamma, T count", "T gamma_grad, T beta_grad, T scale, T k, T v",
        """
        T dgamma = sum_dout_xc * inv_std;
        gamma_grad += dgamma;
        beta_grad += dbeta;
        scale = gamma * inv_std;
        k = scale * inv_std * dgamma / count;
        v = scale * dbeta / count;
        """, "minise_bn_backward", options=_EXACT)


@functools.cache
def _bn_dx_kernel():
    """dx = dout * scale - xc * k - v, per channel coefficients (C, 1) against (N, C, L)."""
    return cupy.ElementwiseKernel("T dout, T xc, T scale, T k, T v", "T dx", "dx = dout * scale - xc * k - v",
                                  "minise_bn_dx", options=_EXACT)


def fused_im2col(x, kernel_size, stride, padding, out):
    """``nn.im2col.im2col(pad_input(x, padding), ...)`` as one CuPy kernel that reads x directly
    (zero where the padded input is zero), so the padded copy is never written. Returns False,
    doing nothing, for NumPy arrays (there the plain functions run, and they are the reference)
    and for arrays the kernel can't take (see ``_launch_conv_kernel``).

    x: (N, C, H, W); out: (C*kh*kw, N*Ho*Wo), C-contiguous, filled with
    out[(c, i, j), (n, ho, wo)] = x[n, c, ho*sh - ph + i, wo*sw - pw + j] (0 outside x).
    The same values as the plain copy, bit for bit (tests/gpu).
    """
    if get_array_module(x) is numpy:
        return False
    geometry = _conv_geometry(x.shape, kernel_size, stride, padding)
    N, C, _, _, kh, kw, _, _, _, _, Ho, Wo = geometry
    _check_columns(out, (C * kh * kw, N * Ho * Wo), x.dtype, "out")
    return _launch_conv_kernel("minise_im2col", N * C * Ho * Wo, cupy.ascontiguousarray(x), out, geometry)


def fused_col2im(cols, x_shape, kernel_size, stride, padding):
    """``nn.im2col.col2im`` as one CuPy kernel: each input pixel gathers the column entries that
    were copied from it, in the plain loop's (i, j) order, so the sums round as there. Returns
    dx: (N, C, H, W), or None where the plain function runs instead (as ``fused_im2col``).

    cols: (C*kh*kw, N*Ho*Wo).
    """
    if get_array_module(cols) is numpy:
        return None
    geometry = _conv_geometry(x_shape, kernel_size, stride, padding)
    N, C, _, _, kh, kw, _, _, _, _, Ho, Wo = geometry
    _check_columns(cols, (C * kh * kw, N * Ho * Wo), cols.dtype, "cols")
    dx = cupy.empty(x_shape, dtype=cols.dtype)
    return dx if _launch_conv_kernel("minise_col2im", dx.size, cols, dx, geometry) else None


def _conv_geometry(x_shape, kernel_size, stride, padding):
    """(N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo): the conv kernels' arguments after the arrays.
    Ho and Wo as ``nn.im2col.output_size`` computes them (the backend does not import nn)."""
    N, C, H, W = x_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    return N, C, H, W, kh, kw, sh, sw, ph, pw, (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1


# im2col: one thread per (n, c, ho, wo), which copies the kh*kw pixels of that patch in channel
# c to their kh*kw rows of cols; neighbouring threads hold neighbouring output pixels, so every
# write is coalesced. col2im: one thread per pixel of dx. Index arithmetic in 32 bits (the
# launcher checks the sizes), offsets into the arrays in 64.
_CONV_KERNELS = r"""
extern "C" __global__ void minise_im2col(const T* x, T* cols, int N, int C, int H, int W, int kh, int kw,
                                         int sh, int sw, int ph, int pw, int Ho, int Wo) {
    int t = blockIdx.x * blockDim.x + threadIdx.x, L = Ho * Wo;
    if (t >= N * C * L) return;
    int p = t % L, c = t / L % C, n = t / L / C;             // t = (n, c, p), p = (ho, wo)
    int ho = p / Wo, wo = p - ho * Wo;
    size_t P = (size_t)N * L;                                // columns of cols
    const T* xnc = x + ((size_t)n * C + c) * H * W;
    T* col = cols + (size_t)c * kh * kw * P + (size_t)n * L + p;   // row (c, 0, 0), column (n, ho, wo)
    for (int i = 0; i < kh; ++i) {
        int h = ho * sh - ph + i;                            // the pixel of x (unpadded)
        for (int j = 0; j < kw; ++j) {
            int w = wo * sw - pw + j;
            col[(i * kw + j) * P] = (h >= 0 && h < H && w >= 0 && w < W) ? xnc[h * W + w] : (T)0;
        }
    }
}

extern "C" __global__ void minise_col2im(const T* cols, T* dx, int N, int C, int H, int W, int kh, int kw,
                                         int sh, int sw, int ph, int pw, int Ho, int Wo) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= N * C * H * W) return;
    int w = t % W, h = t / W % H, c = t / (H * W) % C, n = t / (H * W) / C;
    size_t P = (size_t)N * Ho * Wo;
    T sum = 0;
    for (int i = 0; i < kh; ++i) {                           // the patches (ho, wo) that copied it:
        int hs = h + ph - i;                                 // ho*sh + i = h + ph
        if (hs < 0 || hs % sh != 0 || hs / sh >= Ho) continue;
        for (int j = 0; j < kw; ++j) {
            int ws = w + pw - j;
            if (ws < 0 || ws % sw != 0 || ws / sw >= Wo) continue;
            sum += cols[((size_t)c * kh * kw + i * kw + j) * P + ((size_t)n * Ho + hs / sh) * Wo + ws / sw];
        }
    }
    dx[t] = sum;
}
"""


def _check_columns(cols, shape, dtype, name):
    """The kernels index ``cols`` by the geometry alone: refuse a matrix of another shape, dtype
    or memory order rather than read or write past its end."""
    if cols.shape != shape or cols.dtype != dtype or not cols.flags.c_contiguous:
        raise ValueError(f"{name} must be a C-contiguous {dtype} column matrix of shape {shape}, "
                         f"got {cols.dtype} {cols.shape}{'' if cols.flags.c_contiguous else ' (not C-contiguous)'}")


def _launch_conv_kernel(name, threads, source, target, geometry):
    """Run one of ``_CONV_KERNELS`` with one thread per output entry it names. False, running
    nothing, where a 32-bit index could overflow or the dtype is neither float32 nor float64."""
    if max(source.size, target.size) >= 2 ** 31 or source.dtype.name not in _C_TYPES:
        return False
    if threads == 0:
        return True                                          # an empty output: nothing to fill
    block = 256
    kernel = _conv_kernel_module(source.dtype.name).get_function(name)
    kernel((-(-threads // block),), (block,), (source, target, *map(numpy.int32, geometry)))
    return True


@functools.cache
def _conv_kernel_module(dtype_name):
    """The conv kernels compiled for float32 (T = float) or float64 (T = double)."""
    return cupy.RawModule(code=f"typedef {_C_TYPES[dtype_name]} T;\n" + _CONV_KERNELS)


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


class CudaGraph:
    """GPU work recorded once as a CUDA graph and replayed with one launch.

        graph = CudaGraph()
        graph.run(step)       # an ordinary call, on the graph's stream and memory pool
        graph.record(step)    # records the kernels step() launches; runs none of them
        graph.replay()        # runs them all, on the same arrays

    A replay repeats the recorded kernels on the recorded addresses, so ``fn`` must work on
    arrays that outlive the graph (updating state in place) and must not read values back to
    the host. Everything runs on one stream that is ordered with the default stream, and draws
    from a private memory pool: memory the recorded kernels use stays reserved for them,
    whatever other code allocates or frees between replays. Run ``fn`` once with ``run`` before
    ``record``: that compiles its kernels and fills the pool.
    """

    def __init__(self):
        if cupy is None:
            raise RuntimeError(f"CUDA graphs need CuPy, which is not installed: {GPU_INSTALL_HINT}")
        self.pool = cupy.cuda.MemoryPool()
        self.stream = cupy.cuda.Stream()      # a blocking stream: no overlap with default-stream work
        self.graph = None

    def run(self, fn):
        with self._context():
            return fn()

    def record(self, fn):
        with self._context():
            # "relaxed": a first-time allocation inside fn may call cudaMalloc, which is allowed
            self.stream.begin_capture(cupy.cuda.runtime.streamCaptureModeRelaxed)
            try:
                fn()
            except BaseException:
                self.stream.end_capture()     # leave the stream usable; the partial graph is dropped
                raise
            self.graph = self.stream.end_capture()

    def replay(self):
        self.graph.launch(self.stream)

    @contextlib.contextmanager
    def _context(self):
        """The graph's memory pool and stream."""
        with cupy.cuda.using_allocator(self.pool.malloc), self.stream:
            yield

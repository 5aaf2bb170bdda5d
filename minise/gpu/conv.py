"""A convolution's column matrix on the GPU: im2col and col2im as one kernel each."""
import functools

import numpy

from ..execution.dispatch import gpu_version
from ..nn import im2col as plain
from .common import C_TYPES, cupy


@gpu_version(plain.padded_im2col)
def padded_im2col(x, kernel_size, stride, padding, out):
    """``nn.im2col.padded_im2col`` as one kernel that reads x directly (zero where the padded
    input is zero), so the padded copy is never written. The same values, bit for bit.

    x: (N, C, H, W); out: (C*kh*kw, N*Ho*Wo), C-contiguous, filled with
    out[(c, i, j), (n, ho, wo)] = x[n, c, ho*sh - ph + i, wo*sw - pw + j] (0 outside x).
    """
    geometry = _conv_geometry(x.shape, kernel_size, stride, padding)
    N, C, _, _, kh, kw, _, _, _, _, Ho, Wo = geometry
    _check_columns(out, (C * kh * kw, N * Ho * Wo), x.dtype, "out")
    if not _fits(x, out):
        return NotImplemented
    _launch_conv_kernel("minise_im2col", N * C * Ho * Wo, cupy.ascontiguousarray(x), out, geometry)
    return out


@gpu_version(plain.col2im)
def col2im(cols, x_shape, kernel_size, stride, padding):
    """``nn.im2col.col2im`` as one kernel: each input pixel gathers the column entries that
    were copied from it, in the plain loop's (i, j) order, so the sums round as there.

    cols: (C*kh*kw, N*Ho*Wo) -> dx: (N, C, H, W).
    """
    geometry = _conv_geometry(x_shape, kernel_size, stride, padding)
    N, C, _, _, kh, kw, _, _, _, _, Ho, Wo = geometry
    _check_columns(cols, (C * kh * kw, N * Ho * Wo), cols.dtype, "cols")
    dx = cupy.empty(x_shape, dtype=cols.dtype)
    if not _fits(cols, dx):
        return NotImplemented
    _launch_conv_kernel("minise_col2im", dx.size, cols, dx, geometry)
    return dx


def _conv_geometry(x_shape, kernel_size, stride, padding):
    """(N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo): the conv kernels' arguments after the arrays.
    Ho and Wo as ``nn.im2col.output_size`` computes them."""
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


def _fits(*arrays):
    """Whether the conv kernels take these arrays: float32 or float64, 32-bit indices enough."""
    return all(a.dtype.name in C_TYPES for a in arrays) and max(a.size for a in arrays) < 2 ** 31


def _launch_conv_kernel(name, threads, source, target, geometry):
    """Run one of ``_CONV_KERNELS`` with one thread per output entry it names."""
    if threads == 0:
        return                                               # an empty output: nothing to fill
    block = 256
    kernel = _conv_kernel_module(source.dtype.name).get_function(name)
    kernel((-(-threads // block),), (block,), (source, target, *map(numpy.int32, geometry)))


@functools.cache
def _conv_kernel_module(dtype_name):
    """The conv kernels compiled for float32 (T = float) or float64 (T = double)."""
    return cupy.RawModule(code=f"typedef {C_TYPES[dtype_name]} T;\n" + _CONV_KERNELS)

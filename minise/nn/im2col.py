"""im2col and col2im: convolution as one matrix product.

For a kernel of size kh x kw, each output pixel (n, ho, wo) sees the input patch
x[n, :, ho*sh : ho*sh+kh, wo*sw : wo*sw+kw] (of the padded input). Stacking every patch as a
column gives ``cols`` of shape (C*kh*kw, N*Ho*Wo), and the convolution becomes
``W.reshape(O, C*kh*kw) @ cols``.

``im2col`` builds the patches as a strided *view* of the input (``as_strided``), no copy, no
Python loop; the single copy is into the ``cols`` matrix that the matrix product needs.
"""
from ..backend import get_array_module
from ..execution import accelerated
from .workspace import scratch


def output_size(size, kernel, stride, padding):
    """Ho = floor((H + 2p - k) / s) + 1, the number of window positions along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


def pad_input(x, padding, out=None, value=0):
    """Pad the last two axes of x (N, C, H, W) by ``padding = (ph, pw)`` with ``value``.

    With ``out`` (a reused buffer of the padded shape) only the interior is written each call;
    the border is filled once per call too, which is cheap next to the interior.
    """
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    xp = get_array_module(x)
    N, C, H, W = x.shape
    if out is None:
        out = xp.empty((N, C, H + 2 * ph, W + 2 * pw), dtype=x.dtype)
    out[:, :, :ph, :] = value
    out[:, :, H + ph:, :] = value
    out[:, :, :, :pw] = value
    out[:, :, :, W + pw:] = value
    out[:, :, ph:ph + H, pw:pw + W] = x
    return out


def im2col(x_padded, kernel_size, stride, out=None):
    """Patches of an already padded x (N, C, Hp, Wp) as a matrix (C*kh*kw, N*Ho*Wo).

    Row index = (c, i, j) in C order, column index = (n, ho, wo): ``cols[(c,i,j), (n,ho,wo)] =
    x_padded[n, c, ho*sh + i, wo*sw + j]``.
    """
    xp = get_array_module(x_padded)
    (kh, kw), (sh, sw) = kernel_size, stride
    N, C, Hp, Wp = x_padded.shape
    Ho, Wo = (Hp - kh) // sh + 1, (Wp - kw) // sw + 1
    # windows[n, c, ho, wo, i, j] = x_padded[n, c, ho*sh + i, wo*sw + j]: a view, no copy. A step
    # of ho moves sh rows and a step of i one row, so both walk the row stride (likewise wo, j).
    # (numpy's sliding_window_view(x_padded, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw] is the same
    # view; CuPy's copies the window shape to the device, which a CUDA graph may not record.)
    sN, sC, sH, sW = x_padded.strides
    windows = xp.lib.stride_tricks.as_strided(x_padded, shape=(N, C, Ho, Wo, kh, kw),
                                              strides=(sN, sC, sH * sh, sW * sw, sH, sW))
    if out is None:
        out = xp.empty((C * kh * kw, N * Ho * Wo), dtype=x_padded.dtype)
    # the one copy: reorder the view to (c, i, j, n, ho, wo) straight into the matrix
    out.reshape(C, kh, kw, N, Ho, Wo)[...] = windows.transpose(1, 4, 5, 0, 2, 3)
    return out


@accelerated("padded_im2col")
def padded_im2col(x, kernel_size, stride, padding, out):
    """im2col(pad_input(x, padding)) into ``out``: (C*kh*kw, N*Ho*Wo), the padded copy in a
    scratch buffer. On the GPU one kernel does both (``minise.gpu.conv``)."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    (ph, pw) = padding
    if ph or pw:
        x = pad_input(x, padding, out=scratch("padded", (N, C, H + 2 * ph, W + 2 * pw), x.dtype, xp))
    return im2col(x, kernel_size, stride, out=out)


@accelerated("col2im")
def col2im(cols, x_shape, kernel_size, stride, padding):
    """The adjoint of im2col: add each column back onto the input pixels it was copied from.

    cols: (C*kh*kw, N*Ho*Wo); returns dx: (N, C, H, W), a new array. A pixel that sat in
    several patches receives the sum of their gradients. One strided slice-add per kernel
    offset (i, j): a loop over kh*kw offsets, never over pixels. On the GPU: one kernel
    (``minise.gpu.conv``).
    """
    xp = get_array_module(cols)
    N, C, H, W = x_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    Ho, Wo = output_size(H, kh, sh, ph), output_size(W, kw, sw, pw)
    out = scratch("dx_padded", (N, C, H + 2 * ph, W + 2 * pw), cols.dtype, xp)
    out[...] = 0
    cols = cols.reshape(C, kh, kw, N, Ho, Wo)
    for i in range(kh):
        for j in range(kw):
            # the (i, j) entry of every patch came from x_padded[:, :, i + ho*sh, j + wo*sw]
            out[:, :, i:i + sh * Ho:sh, j:j + sw * Wo:sw] += cols[:, i, j].transpose(1, 0, 2, 3)
    return out[:, :, ph:ph + H, pw:pw + W].copy()


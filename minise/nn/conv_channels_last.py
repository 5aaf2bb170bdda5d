"""Conv2d on the CPU, the fast way: the same sums as ``Conv2d``'s im2col formula, in another order.

``Conv2d.forward_math`` and ``backward_math`` read as the math: im2col, one product, col2im.
For NumPy arrays they run as below instead (``execution.numpy_version``); the GPU keeps the
formula and its kernels. Two changes, both measured on one core (benchmarks/README.md):

- Channels last. A column row is one output pixel, ``cols[(n, ho, wo), (i, j, c)] =
  x_padded[n, ho*sh + i, wo*sw + j, c]``, so a row is copied from kw*C contiguous floats of
  an (N, H, W, C) image, and the product ``cols @ W_rows`` (W_rows: (kh*kw*C, O)) writes the
  output as (N, Ho, Wo, O) directly. The output is handed on as its (N, O, Ho, Wo) transpose:
  the logical shape of every docstring, with channels-last strides (PyTorch's
  ``channels_last`` memory format). Element-wise layers and reductions keep that layout, so the
  next convolution reads its input with no transpose.
- Blocks of images. The column matrix of a block of images stays in the cache while the product
  reads it (a whole batch's is tens of MB); the weight gradient adds the blocks' products in
  block order, so a run is deterministic.
"""
import numpy

from .im2col import output_size
from .workspace import scratch

BLOCK_BYTES = 1 << 20       # a block's column matrix, about the size of a core's L2 cache
MIN_BLOCK = 4               # images: fewer cost more in Python calls than the cache saves


def forward(conv, x):
    """out: (N, O, Ho, Wo), channels-last strides; out = cols @ W_rows (+ bias) block by block."""
    N, O = x.shape[0], conv.out_channels
    Ho, Wo = conv._out_hw(x)
    w_rows = _weight_rows(conv.weight.data)
    out = numpy.empty((N, Ho, Wo, O), dtype=x.dtype)
    for block in _blocks(x, Ho * Wo * w_rows.shape[0]):
        cols = columns(x[block], conv.kernel_size, conv.stride, conv.padding)
        numpy.matmul(cols, w_rows, out=out[block].reshape(-1, O))
    if conv.bias is not None:
        out += conv.bias.data
    return out.transpose(0, 3, 1, 2)


def backward(conv, dout):
    """dx, and dW, db added into the parameters' .grad:
    dW_rows = sum over blocks of cols.T @ dout_rows,   db = dout summed over n, ho, wo,
    dx: stride 1, a convolution of dout with the flipped kernel; else col2im(dout_rows @ W_rows.T)."""
    x = conv._x
    (kh, kw), (ph, pw) = conv.kernel_size, conv.padding
    O, C = conv.out_channels, conv.in_channels
    d = numpy.ascontiguousarray(dout.transpose(0, 2, 3, 1))            # (N, Ho, Wo, O)
    Ho, Wo = d.shape[1:3]
    w_rows = _weight_rows(conv.weight.data)
    transposed = conv.stride == (1, 1) and ph < kh and pw < kw
    if transposed:      # dx = dout_padded convolved with the flipped kernel, (kh*kw*O, C) rows
        w_flipped = _weight_rows(conv.weight.data[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        dx = numpy.empty((x.shape[0],) + x.shape[2:] + (C,), dtype=dout.dtype)   # (N, H, W, C)
    else:
        dx = numpy.zeros((x.shape[0], x.shape[2] + 2 * ph, x.shape[3] + 2 * pw, C), dtype=dout.dtype)
    dw_rows = numpy.zeros_like(w_rows)
    widest = max(w_rows.shape[0], kh * kw * O if transposed else 0)      # dout's columns may be wider
    for block in _blocks(x, Ho * Wo * widest):
        d_rows = d[block].reshape(-1, O)
        cols = columns(x[block], conv.kernel_size, conv.stride, conv.padding)
        dw_rows += cols.T @ d_rows
        if transposed:
            dout_cols = columns(d[block].transpose(0, 3, 1, 2), (kh, kw), (1, 1), (kh - 1 - ph, kw - 1 - pw),
                                "dout_cols")
            numpy.matmul(dout_cols, w_flipped, out=dx[block].reshape(-1, C))
        else:
            _add_back(d_rows @ w_rows.T, dx[block], conv.kernel_size, conv.stride, (Ho, Wo))
    conv.weight.grad += dw_rows.reshape(kh, kw, C, O).transpose(3, 2, 0, 1)
    if conv.bias is not None:
        conv.bias.grad += d.sum(axis=(0, 1, 2))
    if not transposed:
        dx = dx[:, ph:dx.shape[1] - ph, pw:dx.shape[2] - pw]
    return dx.transpose(0, 3, 1, 2)


def columns(x, kernel_size, stride, padding, name="cols"):
    """cols: (N*Ho*Wo, kh*kw*C), row (n, ho, wo) holding the patch x_padded[n, :, ho*sh + i,
    wo*sw + j] in (i, j, c) order; x: (N, C, H, W), any strides (channels-last: no transpose).
    A scratch buffer (``name``), as is the padded copy: valid until the next call."""
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    N, C, H, W = x.shape
    Ho, Wo = output_size(H, kh, sh, ph), output_size(W, kw, sw, pw)
    image = x.transpose(0, 2, 3, 1)                                     # (N, H, W, C), a view
    if ph or pw:
        padded = scratch(name + "_padded", (N, H + 2 * ph, W + 2 * pw, C), x.dtype, numpy)
        padded[:, :ph], padded[:, ph + H:], padded[:, :, :pw], padded[:, :, pw + W:] = 0, 0, 0, 0
        padded[:, ph:ph + H, pw:pw + W] = image
        image = padded
    sN, sH, sW, sC = image.strides
    windows = numpy.lib.stride_tricks.as_strided(image, shape=(N, Ho, Wo, kh, kw, C),
                                                 strides=(sN, sH * sh, sW * sw, sH, sW, sC))
    cols = scratch(name, (N, Ho, Wo, kh, kw, C), x.dtype, numpy)
    cols[...] = windows
    return cols.reshape(N * Ho * Wo, kh * kw * C)


def _add_back(dcols, dx_padded, kernel_size, stride, out_hw):
    """col2im, channels last: each row's (i, j) entries added onto the padded pixels they came from."""
    (kh, kw), (sh, sw), (Ho, Wo) = kernel_size, stride, out_hw
    N, C = dx_padded.shape[0], dx_padded.shape[3]
    dcols = dcols.reshape(N, Ho, Wo, kh, kw, C)
    for i in range(kh):
        for j in range(kw):
            dx_padded[:, i:i + sh * Ho:sh, j:j + sw * Wo:sw] += dcols[:, :, :, i, j]


def _weight_rows(weight):
    """weight (O, C, kh, kw) -> W_rows (kh*kw*C, O), rows in the columns' (i, j, c) order."""
    O = weight.shape[0]
    return numpy.ascontiguousarray(weight.transpose(2, 3, 1, 0)).reshape(-1, O)


def _blocks(x, row_floats):
    """Slices of the batch whose column matrices hold about BLOCK_BYTES each."""
    N = x.shape[0]
    per_block = max(MIN_BLOCK, BLOCK_BYTES // (row_floats * x.dtype.itemsize))
    return [slice(a, min(a + per_block, N)) for a in range(0, N, per_block)]

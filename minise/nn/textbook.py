"""Textbook versions of the layers: plain loops, written to be read, not to run fast.

Each function is the formula of its docstring, one output element (or one gradient term) at a
time. The layers in ``minise.nn`` compute the same numbers with im2col, strided slices and
whole-batch array operations; ``tests/nn/test_textbook.py`` holds the two equal.

Every backward takes ``dout`` followed by the forward's arguments and returns the gradient of
each array argument, in order (``None`` for a bias that is ``None``):

    conv2d_forward(x, weight, bias, stride=1, padding=0) -> out
    conv2d_backward(dout, x, weight, bias, stride=1, padding=0) -> (dx, dweight, dbias)
    batch_norm2d_forward(x, gamma, beta, eps=1e-5) -> out                  (train mode)
    batch_norm2d_backward(dout, x, gamma, beta, eps=1e-5) -> (dx, dgamma, dbeta)
    max_pool2d_forward(x, kernel_size, stride=None, padding=0) -> out
    max_pool2d_backward(dout, x, kernel_size, stride=None, padding=0) -> dx
    se_block_forward(x, w1, b1, w2, b2) -> out
    se_block_backward(dout, x, w1, b1, w2, b2) -> (dx, dw1, db1, dw2, db2)

``stride``, ``padding`` and ``kernel_size`` are an int or an (h, w) pair; ``stride=None`` in
pooling means the kernel size, as in PyTorch. Shapes: x (N, C, H, W), weight (O, C, kh, kw),
gamma and beta (C,), w1 (C//r, C), w2 (C, C//r), b1 (C//r,) or None, b2 (C,) or None.
"""
import math

from ..backend import get_array_module
from .im2col import output_size, pad_input


def _pair(value):
    """An int or an (h, w) pair -> (h, w)."""
    return tuple(value) if hasattr(value, "__len__") else (value, value)


# ---- Conv2d ---------------------------------------------------------------------------------
def conv2d_forward(x, weight, bias, stride=1, padding=0):
    """The convolution (PyTorch's cross-correlation), one output pixel at a time.

    x: (N, C, H, W), weight: (O, C, kh, kw), bias: (O,) or None -> out: (N, O, Ho, Wo),
    Ho = (H + 2*ph - kh) // sh + 1 (likewise Wo).
    out[n, o, ho, wo] = b[o] + sum_{c,i,j} weight[o, c, i, j] * x_pad[n, c, ho*sh + i, wo*sw + j]
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    O, _, kh, kw = weight.shape
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    Ho, Wo = output_size(H, kh, sh, ph), output_size(W, kw, sw, pw)
    x_pad = pad_input(x, (ph, pw))
    out = xp.zeros((N, O, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for o in range(O):
            for ho in range(Ho):
                for wo in range(Wo):
                    patch = x_pad[n, :, ho * sh:ho * sh + kh, wo * sw:wo * sw + kw]   # (C, kh, kw)
                    out[n, o, ho, wo] = (patch * weight[o]).sum()
                    if bias is not None:
                        out[n, o, ho, wo] += bias[o]
    return out


def conv2d_backward(dout, x, weight, bias, stride=1, padding=0):
    """Each output pixel sends its gradient back along the products that made it.

    dout: (N, O, Ho, Wo) -> dx: (N, C, H, W), dweight: (O, C, kh, kw), dbias: (O,) or None.
    out[n, o, ho, wo] used weight[o] times the patch of x_pad under the window, so
        dweight[o]                   += dout[n, o, ho, wo] * patch
        dx_pad[n, :, window(ho, wo)] += dout[n, o, ho, wo] * weight[o]
        dbias[o]                     += dout[n, o, ho, wo]
    Overlapping windows add into the same pixels; the padding's gradient is cut off at the end.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    O, _, kh, kw = weight.shape
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    x_pad = pad_input(x, (ph, pw))
    dx_pad = xp.zeros(x_pad.shape, dtype=x.dtype)
    dweight = xp.zeros(weight.shape, dtype=weight.dtype)
    for n in range(N):
        for o in range(O):
            for ho in range(dout.shape[2]):
                for wo in range(dout.shape[3]):
                    rows, cols = slice(ho * sh, ho * sh + kh), slice(wo * sw, wo * sw + kw)
                    g = dout[n, o, ho, wo]
                    dweight[o] += g * x_pad[n, :, rows, cols]
                    dx_pad[n, :, rows, cols] += g * weight[o]
    dbias = None if bias is None else dout.sum(axis=(0, 2, 3))
    return dx_pad[:, :, ph:ph + H, pw:pw + W], dweight, dbias


# ---- BatchNorm2d (train mode) ------------------------------------------------------------------
def batch_norm2d_forward(x, gamma, beta, eps=1e-5):
    """Normalise each channel over its M = N*H*W values with the batch's own statistics.

    x: (N, C, H, W), gamma, beta: (C,) -> out: (N, C, H, W).
        mu_c  = (1/M) sum_{n,h,w} x[n, c, h, w]
        var_c = (1/M) sum_{n,h,w} (x[n, c, h, w] - mu_c)^2          (biased)
        out[n, c, h, w] = gamma_c * (x[n, c, h, w] - mu_c) / sqrt(var_c + eps) + beta_c
    (The running statistics that BatchNorm2d also updates do not change the output.)
    """
    xp = get_array_module(x)
    out = xp.zeros_like(x)
    for c in range(x.shape[1]):
        mu, var = _channel_stats(x[:, c])
        for n, h, w in _positions(x):
            x_hat = (x[n, c, h, w] - mu) / math.sqrt(var + eps)
            out[n, c, h, w] = gamma[c] * x_hat + beta[c]
    return out


def batch_norm2d_backward(dout, x, gamma, beta, eps=1e-5):
    """The chain rule through x_hat, var and mu, one step at a time (beta is not needed).

    dout: (N, C, H, W) -> dx: (N, C, H, W), dgamma, dbeta: (C,). Per channel, with M values,
    std = sqrt(var + eps) and sums over n, h, w:
        dbeta  = sum dout                  dgamma = sum dout * x_hat
        dx_hat = dout * gamma
        dvar   = sum dx_hat * (x - mu) * (-1/2) * std^-3
        dmu    = sum dx_hat * (-1 / std)   (var's own dependence on mu sums to zero)
        dx     = dx_hat / std + dvar * 2 (x - mu) / M + dmu / M
    """
    xp = get_array_module(x)
    dx = xp.zeros_like(x)
    dgamma = xp.zeros_like(gamma)
    dbeta = xp.zeros_like(beta)
    for c in range(x.shape[1]):
        mu, var = _channel_stats(x[:, c])
        std = math.sqrt(var + eps)
        M = x[:, c].size
        dvar = dmu = 0.0
        for n, h, w in _positions(x):
            x_hat = (x[n, c, h, w] - mu) / std
            dbeta[c] += dout[n, c, h, w]
            dgamma[c] += dout[n, c, h, w] * x_hat
            dx_hat = dout[n, c, h, w] * gamma[c]
            dvar += dx_hat * (x[n, c, h, w] - mu) * -0.5 * std ** -3
            dmu += -dx_hat / std
        for n, h, w in _positions(x):
            dx_hat = dout[n, c, h, w] * gamma[c]
            dx[n, c, h, w] = dx_hat / std + dvar * 2 * (x[n, c, h, w] - mu) / M + dmu / M
    return dx, dgamma, dbeta


def _channel_stats(values):
    """The mean and the biased variance of one channel's values (any shape)."""
    mu = values.sum() / values.size
    var = ((values - mu) ** 2).sum() / values.size
    return float(mu), float(var)


def _positions(x):
    """Every (n, h, w) of x: (N, C, H, W), in order."""
    N, _, H, W = x.shape
    return ((n, h, w) for n in range(N) for h in range(H) for w in range(W))


# ---- MaxPool2d ----------------------------------------------------------------------------------
def max_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """The largest value under each window; padding counts as -inf, so it never wins.

    x: (N, C, H, W) -> out: (N, C, Ho, Wo), Ho = (H + 2*ph - kh) // sh + 1 (likewise Wo).
    out[n, c, ho, wo] = max_{i,j} x_pad[n, c, ho*sh + i, wo*sw + j]
    """
    xp = get_array_module(x)
    out_shape, windows = _pool_windows(x, kernel_size, stride, padding)
    out = xp.zeros(out_shape, dtype=x.dtype)
    for (n, c, ho, wo), window in windows:
        out[n, c, ho, wo] = window.max()
    return out


def max_pool2d_backward(dout, x, kernel_size, stride=None, padding=0):
    """The whole gradient of an output goes to the input that won its window.

    dout: (N, C, Ho, Wo) -> dx: (N, C, H, W).
    dx[n, c, ho*sh + i*, wo*sw + j*] += dout[n, c, ho, wo], (i*, j*) = the window's argmax
    (the first in row-major order on ties, as in PyTorch). A pixel that wins several
    overlapping windows receives the sum.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw) = _pool_geometry(kernel_size, stride, padding)
    dx_pad = xp.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=x.dtype)
    _, windows = _pool_windows(x, kernel_size, stride, padding)
    for (n, c, ho, wo), window in windows:
        k = int(window.argmax())                  # the first maximum, counting row by row
        i, j = divmod(k, kw)
        dx_pad[n, c, ho * sh + i, wo * sw + j] += dout[n, c, ho, wo]
    return dx_pad[:, :, ph:ph + H, pw:pw + W]


def _pool_geometry(kernel_size, stride, padding):
    kernel_size = _pair(kernel_size)
    return kernel_size, _pair(kernel_size if stride is None else stride), _pair(padding)


def _pool_windows(x, kernel_size, stride, padding):
    """The output shape, and ((n, c, ho, wo), window) for every window of x padded with -inf."""
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw) = _pool_geometry(kernel_size, stride, padding)
    Ho, Wo = output_size(H, kh, sh, ph), output_size(W, kw, sw, pw)
    x_pad = pad_input(x, (ph, pw), value=float("-inf"))
    windows = (((n, c, ho, wo), x_pad[n, c, ho * sh:ho * sh + kh, wo * sw:wo * sw + kw])
               for n in range(N) for c in range(C) for ho in range(Ho) for wo in range(Wo))
    return (N, C, Ho, Wo), windows


# ---- the SE block ---------------------------------------------------------------------------------
def se_block_forward(x, w1, b1, w2, b2):
    """Squeeze, excite, rescale, for one sample and one channel at a time.

    x: (N, C, H, W), w1: (C//r, C), b1: (C//r,) or None, w2: (C, C//r), b2: (C,) or None
    -> out: (N, C, H, W).
        z[c] = (1/(H*W)) sum_{h,w} x[n, c, h, w]                 squeeze
        a = w1 z + b1,  u = max(a, 0)                             first FC, ReLU
        e = w2 u + b2,  s = 1 / (1 + exp(-e))                     second FC, sigmoid
        out[n, c, h, w] = s[c] * x[n, c, h, w]                    rescale
    """
    xp = get_array_module(x)
    out = xp.zeros_like(x)
    for n in range(x.shape[0]):
        *_, s = _se_stages(x[n], w1, b1, w2, b2)
        for c in range(x.shape[1]):
            out[n, c] = s[c] * x[n, c]
    return out


def se_block_backward(dout, x, w1, b1, w2, b2):
    """Back through rescale, sigmoid, FC, ReLU, FC and squeeze; x's two paths add.

    dout: (N, C, H, W) -> dx: (N, C, H, W), dw1, db1, dw2, db2 shaped like w1, b1, w2, b2
    (db1, db2 None where b1, b2 are None). Per sample:
        ds[c]  = sum_{h,w} dout[n, c, h, w] * x[n, c, h, w]       s scaled the whole map
        de     = ds * s * (1 - s)                                 sigmoid' from its output
        dw2   += outer(de, u),  db2 += de,  du = w2^T de
        da     = du * [a > 0]                                     ReLU
        dw1   += outer(da, z),  db1 += da,  dz = w1^T da
        dx[n, c, h, w] = dout[n, c, h, w] * s[c]  +  dz[c] / (H*W)
    The first term is the direct path through the product, the second the path through s.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    dx = xp.zeros_like(x)
    dw1, dw2 = xp.zeros_like(w1), xp.zeros_like(w2)
    db1 = None if b1 is None else xp.zeros_like(b1)
    db2 = None if b2 is None else xp.zeros_like(b2)
    for n in range(N):
        z, a, u, s = _se_stages(x[n], w1, b1, w2, b2)
        ds = xp.array([(dout[n, c] * x[n, c]).sum() for c in range(C)])
        de = ds * s * (1 - s)
        dw2 += xp.outer(de, u)
        du = w2.T @ de
        da = du * (a > 0)
        dw1 += xp.outer(da, z)
        dz = w1.T @ da
        if db2 is not None:
            db2 += de
        if db1 is not None:
            db1 += da
        for c in range(C):
            dx[n, c] = dout[n, c] * s[c] + dz[c] / (H * W)
    return dx, dw1, db1, dw2, db2


def _se_stages(x_n, w1, b1, w2, b2):
    """One sample x_n: (C, H, W) -> z (C,), a (C//r,), u = relu(a), s (C,)."""
    xp = get_array_module(x_n)
    C, H, W = x_n.shape
    z = xp.array([x_n[c].sum() / (H * W) for c in range(C)])
    a = w1 @ z + (0 if b1 is None else b1)
    u = xp.maximum(a, 0)
    e = w2 @ u + (0 if b2 is None else b2)
    s = 1 / (1 + xp.exp(-e))
    return z, a, u, s

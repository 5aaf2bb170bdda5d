"""One answer to each blank of notebooks/08_build_your_own_se.ipynb.

Each backward takes the upstream gradient first, returns new arrays and writes into none of
its arguments. The library's own layers compute the same numbers: ``nn.SEBlock``'s
``squeeze_backward``, ``excite_backward`` and ``rescale_backward``, and ``nn.Linear``,
``nn.ReLU`` and ``nn.Sigmoid``'s ``backward``.
"""
from ..backend import get_array_module
from .forward import excite, squeeze


def squeeze_backward(dz, x_shape):
    """dz: (N, C) -> dx: (N, C, H, W). z is a mean over H*W pixels: each gets dz / (H*W)."""
    N, C, H, W = x_shape
    xp = get_array_module(dz)
    return xp.ones(x_shape, dtype=dz.dtype) * (dz / (H * W))[:, :, None, None]


def linear_backward(dout, x, W):
    """out = x @ W.T + b.  dout: (N, out), x: (N, in), W: (out, in) -> (dx, dW, db).

    dx = dout @ W  (N, in),   dW = dout.T @ x  (out, in),   db = sum over n of dout  (out,)
    """
    return dout @ W, dout.T @ x, dout.sum(axis=0)


def relu_backward(dout, x):
    """out = max(x, 0). dout, x: any shape -> dx = dout where x > 0, else 0."""
    return dout * (x > 0)


def sigmoid_backward(dout, x, out):
    """out = sigmoid(x). dx = dout * sigmoid'(x) = dout * out * (1 - out), from the output."""
    return dout * out * (1 - out)


def excite_backward(ds, cache, W1, W2):
    """ds: (N, C, 1, 1) -> (dz (N, C), dW1 (C//r, C), dW2 (C, C//r), db2 (C,)).

    Back through the four steps of ``excite`` in reverse: sigmoid, FC, ReLU, FC.
    """
    de = sigmoid_backward(ds.reshape(cache["s"].shape), cache["e"], cache["s"])
    dh, dW2, db2 = linear_backward(de, cache["h"], W2)
    da = relu_backward(dh, cache["a"])
    dz, dW1, _ = linear_backward(da, cache["z"], W1)      # the first FC has no bias
    return dz, dW1, dW2, db2


def rescale_backward(dout, x, s):
    """out = x * s.  dout, x: (N, C, H, W), s: (N, C, 1, 1) -> (dx, ds), by the product rule:

    dx = dout * s,   ds = sum over h, w of dout * x, kept (N, C, 1, 1) like s
    """
    return dout * s, (dout * x).sum(axis=(2, 3), keepdims=True)


def se_block_backward(dout, x, W1, W2, b2):
    """dout: (N, C, H, W) -> (dx, dW1, dW2, db2).

    x reaches the output twice, as the factor of the product and through s = excite(squeeze(x)),
    so dx is the sum of the two paths' gradients.
    """
    s, cache = excite(squeeze(x), W1, W2, b2)
    dx_direct, ds = rescale_backward(dout, x, s)
    dz, dW1, dW2, db2 = excite_backward(ds, cache, W1, W2)
    dx_through_s = squeeze_backward(dz, x.shape)
    return dx_direct + dx_through_s, dW1, dW2, db2

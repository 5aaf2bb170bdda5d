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


def max_squeeze_backward(x, dz):
    """z = max over h, w of x. x: (N, C, H, W), dz: (N, C) -> dx: (N, C, H, W).

    Only the largest pixel of each map moves z, with slope 1: it gets all of dz, the others 0.
    """
    N, C, H, W = x.shape
    xp = get_array_module(x)
    flat = x.reshape(N, C, H * W)
    dx = xp.zeros_like(flat)
    winner = flat.argmax(axis=2)                        # (N, C): where each map's maximum is
    xp.put_along_axis(dx, winner[:, :, None], dz[:, :, None], axis=2)
    return dx.reshape(N, C, H, W)


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


def batch_norm_backward(dout, x, gamma, eps):
    """BatchNorm2d in training mode. dout, x: (N, C, H, W), gamma: (C,) -> (dx, dgamma, dbeta).

    Per channel, over its M = N*H*W values: x_hat = (x - mu) / sqrt(var + eps). x reaches the
    output directly and through mu and var; the closed form of the three paths is
        dx = gamma / sqrt(var + eps) * (dout - mean(dout) - x_hat * mean(dout * x_hat))
    """
    mu = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)                  # biased: divided by M
    std = (var + eps) ** 0.5
    x_hat = (x - mu) / std
    mean_dout = dout.mean(axis=(0, 2, 3), keepdims=True)
    mean_dout_xhat = (dout * x_hat).mean(axis=(0, 2, 3), keepdims=True)
    dx = gamma[None, :, None, None] / std * (dout - mean_dout - x_hat * mean_dout_xhat)
    return dx, (dout * x_hat).sum(axis=(0, 2, 3)), dout.sum(axis=(0, 2, 3))


def conv_backward(dout, x, weight, padding):
    """Conv2d with stride 1. dout: (N, O, Ho, Wo), x: (N, C, H, W), weight: (O, C, kh, kw) ->
    (dx, dweight, dbias).

    Kernel offset (i, j) read the window x_pad[:, :, i:i+Ho, j:j+Wo] with weight[:, :, i, j],
    so it sends dout back to that window through the same weights, and its weight gradient
    sums dout times that window over the batch and the output pixels.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    O, _, kh, kw = weight.shape
    Ho, Wo = dout.shape[2:]
    p = padding
    x_pad = xp.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    dx_pad, dweight = xp.zeros_like(x_pad), xp.zeros_like(weight)
    for i in range(kh):
        for j in range(kw):
            window = x_pad[:, :, i:i + Ho, j:j + Wo]                            # (N, C, Ho, Wo)
            dweight[:, :, i, j] = xp.einsum("nohw,nchw->oc", dout, window)
            dx_pad[:, :, i:i + Ho, j:j + Wo] += xp.einsum("nohw,oc->nchw", dout, weight[:, :, i, j])
    return dx_pad[:, :, p:p + H, p:p + W], dweight, dout.sum(axis=(0, 2, 3))

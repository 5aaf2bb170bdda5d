"""The SE block's forward passes that the exercises start from, written out as functions.

The excitation's first FC has no bias and its second has one, as in ``nn.SEBlock``'s default
``bias=(False, True)``. Shapes: x (N, C, H, W), z (N, C), W1 (C//r, C), W2 (C, C//r), b2 (C,).
"""
from ..backend import get_array_module


def squeeze(x):
    """x: (N, C, H, W) -> z: (N, C), z[n, c] = mean over h, w of x[n, c, h, w]."""
    return x.mean(axis=(2, 3))


def excite(z, W1, W2, b2):
    """z: (N, C) -> s: (N, C, 1, 1), and the cache the backward pass needs.

        a = z @ W1.T          (N, C//r)   first FC (no bias)
        h = max(a, 0)         (N, C//r)   ReLU
        e = h @ W2.T + b2     (N, C)      second FC
        s = sigmoid(e)        (N, C)      the gates, in (0, 1)
    cache: {"z", "a", "h", "e", "s"}, each (N, ...) as above; s comes back shaped (N, C, 1, 1)
    so that it broadcasts over H and W in the rescale.
    """
    xp = get_array_module(z)
    a = z @ W1.T
    h = xp.maximum(a, 0)
    e = h @ W2.T + b2
    s = 1 / (1 + xp.exp(-e))
    return s[:, :, None, None], {"z": z, "a": a, "h": h, "e": e, "s": s}


def rescale(x, s):
    """x: (N, C, H, W), s: (N, C, 1, 1) -> out = x * s: every channel scaled by its gate."""
    return x * s


def se_block(x, W1, W2, b2):
    """x: (N, C, H, W) -> out: (N, C, H, W): squeeze, excite, rescale."""
    s, _ = excite(squeeze(x), W1, W2, b2)
    return rescale(x, s)

"""Normalisation and data augmentation for image batches (N, C, H, W), on NumPy or CuPy arrays.

Every function asks ``xp = get_array_module(x)`` of its input and does its math with ``xp``, so
a batch already on the GPU stays there. Random numbers come from a host-side
``numpy.random.Generator``: only a few per image are needed, and one generator for both
devices makes a seed give the same augmentation on CPU and GPU.
"""
import numpy

from ..backend import get_array_module

PAD_MODES = ("reflect", "constant")


def channel_stats(x, chunk=4096):
    """Per-channel mean and std of uint8 images scaled to [0, 1].

    x: uint8 (N, C, H, W). Returns (mean, std), float64 arrays of shape (C,) of x's array module;
    std is the population std (ddof=0), over all N*H*W pixels of a channel.
    """
    xp = get_array_module(x)
    _check_uint8(x, "channel_stats")
    total = xp.zeros(x.shape[1], xp.float64)
    total_sq = xp.zeros(x.shape[1], xp.float64)
    # In chunks: a float64 copy of all 50,000 CIFAR images would take 1.2 GB. The sums stay
    # exact, since they are sums of integers far below 2**53.
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk].astype(xp.float64)
        total += part.sum(axis=(0, 2, 3))
        total_sq += (part * part).sum(axis=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / (count * 255.0)
    var = total_sq / (count * 255.0 ** 2) - mean * mean
    return mean, xp.sqrt(xp.maximum(var, 0.0))  # maximum: rounding may dip a zero variance below 0


def normalize(x, mean, std, dtype="float32"):
    """``(x / 255 - mean) / std`` per channel, as a new array of ``dtype``.

    x: uint8 (N, C, H, W) or (C, H, W); mean, std: C values (e.g. from :func:`channel_stats`).
    Returns an array of x's array module, same shape as x.
    """
    xp = get_array_module(x)
    _check_uint8(x, "normalize")
    mean = xp.asarray(mean, dtype=xp.float64).reshape(-1, 1, 1)  # broadcasts over (…, C, H, W)
    std = xp.asarray(std, dtype=xp.float64).reshape(-1, 1, 1)
    if mean.shape[0] != x.shape[-3] or std.shape[0] != x.shape[-3]:
        raise ValueError(f"normalize: mean and std need {x.shape[-3]} values (one per channel), "
                         f"got {mean.shape[0]} and {std.shape[0]}")
    # One fused scale and shift, computed in float64 and applied in place in the target dtype.
    scale = (1.0 / (255.0 * std)).astype(dtype)
    shift = (mean / std).astype(dtype)
    out = x.astype(dtype)
    out *= scale
    out -= shift
    return out


def random_crop_flip(x, rng, padding=4, pad_mode="reflect"):
    """Random crop after padding, and random horizontal flip, with a new draw for every image.

    x: (N, C, H, W) array, NumPy or CuPy, any dtype (kept). rng: numpy.random.Generator.
    Each image is padded by ``padding`` pixels on every side ("reflect" mirrors the border
    without repeating it, "constant" pads zeros), an H x W window is cut at a random offset
    (dy, dx) in [0, 2 * padding], and the result is mirrored left-right with probability 0.5.
    The generator draws dy (N values), then dx (N), then the flips (N), so a seed fixes the output.
    """
    n = x.shape[0] if getattr(x, "ndim", 0) == 4 else 0
    return crop_flip(x, *crop_flip_draws(n, rng, padding), padding=padding, pad_mode=pad_mode)


def crop_flip_draws(n, rng, padding=4):
    """The random numbers of ``random_crop_flip`` for n images: (dy, dx, flip), drawn in that
    order. Data-parallel workers draw them for the whole batch and each applies its shard's."""
    dy = rng.integers(0, 2 * padding + 1, size=n)
    dx = rng.integers(0, 2 * padding + 1, size=n)
    return dy, dx, rng.random(n) < 0.5


def crop_flip(x, dy, dx, flip, padding=4, pad_mode="reflect"):
    """Image i of x (N, C, H, W) padded by ``padding``, cut at offset (dy[i], dx[i]) and mirrored
    left-right where flip[i]."""
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
    if x.ndim != 4:
        raise ValueError(f"random_crop_flip expects a batch (N, C, H, W), got shape {x.shape}")
    xp = get_array_module(x)
    n, c, h, w = x.shape
    padded = xp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), mode=pad_mode)
    # Crop and flip are one gather: output pixel (i, :, r, s) reads padded row dy[i] + r and
    # column dx[i] + s, or dx[i] + (w - 1 - s) when image i is flipped. The index arrays are
    # built on the host (N*(H+W) small ints) and broadcast to (N, 1, H, W) on the device.
    rows = dy[:, None] + numpy.arange(h)                               # (N, H)
    cols = numpy.where(flip[:, None], numpy.arange(w)[::-1], numpy.arange(w)) + dx[:, None]  # (N, W)
    return padded[xp.arange(n)[:, None, None, None], xp.arange(c)[None, :, None, None],
                  xp.asarray(rows)[:, None, :, None], xp.asarray(cols)[:, None, None, :]]


def _check_uint8(x, caller):
    if x.dtype != numpy.uint8:
        raise TypeError(f"{caller} expects uint8 images (0..255), got dtype {x.dtype}")

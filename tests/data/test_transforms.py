"""channel_stats, normalize and random_crop_flip, on NumPy (and CuPy where it is installed)."""
import numpy as np
import pytest

from minise.data import channel_stats, normalize, random_crop_flip


def images(n=8, seed=0, shape=(3, 32, 32)):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


# --- channel_stats and normalize ----------------------------------------------------------------

def test_channel_stats_against_float64_formula():
    x = images(37)
    scaled = x / 255.0
    mean, std = channel_stats(x, chunk=5)  # chunks that do not divide N
    assert mean.shape == (3,) and std.shape == (3,) and mean.dtype == std.dtype == np.float64
    np.testing.assert_allclose(mean, scaled.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, scaled.std(axis=(0, 2, 3)), rtol=1e-12)
    # Channels really are separate.
    x[:, 1] = 255
    mean, std = channel_stats(x)
    assert mean[1] == 1.0 and std[1] == 0.0 and mean[0] < 1.0


def test_channel_stats_rejects_floats():
    with pytest.raises(TypeError, match="uint8"):
        channel_stats(images().astype(np.float32))


@pytest.mark.parametrize("dtype", ["float32", "float64", np.float16])
def test_normalize_formula_and_dtype(dtype):
    x = images(5)
    mean, std = np.array([0.1, 0.5, 0.9]), np.array([0.2, 0.25, 0.3])
    out = normalize(x, mean, std, dtype=dtype)
    assert out.shape == x.shape and out.dtype == np.dtype(dtype)
    want = (x / 255.0 - mean[:, None, None]) / std[:, None, None]
    tol = 1e-2 if np.dtype(dtype) == np.float16 else 1e-5
    np.testing.assert_allclose(out.astype(np.float64), want, rtol=tol, atol=tol)


def test_normalize_with_own_stats_gives_zero_mean_unit_std():
    x = images(64)
    out = normalize(x, *channel_stats(x), dtype="float64")
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0.0, atol=1e-10)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1.0, atol=1e-10)
    single = normalize(x[0], *channel_stats(x), dtype="float64")  # one (C, H, W) image
    np.testing.assert_allclose(single, out[0])


def test_normalize_errors():
    with pytest.raises(ValueError, match="3 values"):
        normalize(images(), [0.5, 0.5], [0.2, 0.2])
    with pytest.raises(TypeError, match="uint8"):
        normalize(images().astype(np.float64), [0.5] * 3, [0.2] * 3)


# --- random_crop_flip ----------------------------------------------------------------------------

def reference_crop_flip(x, seed, padding, pad_mode):
    """One image at a time, with np.pad, drawing offsets and flips as documented."""
    rng = np.random.default_rng(seed)
    n, _, h, w = x.shape
    dy = rng.integers(0, 2 * padding + 1, size=n)
    dx = rng.integers(0, 2 * padding + 1, size=n)
    flip = rng.random(n) < 0.5
    out = np.empty_like(x)
    for i in range(n):
        padded = np.pad(x[i], ((0, 0), (padding, padding), (padding, padding)), mode=pad_mode)
        crop = padded[:, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = crop[:, :, ::-1] if flip[i] else crop
    return out


@pytest.mark.parametrize("pad_mode", ["reflect", "constant"])
@pytest.mark.parametrize("padding", [1, 4])
def test_crop_flip_matches_np_pad_reference(pad_mode, padding):
    x = images(32).astype(np.float32)
    out = random_crop_flip(x, np.random.default_rng(7), padding=padding, pad_mode=pad_mode)
    np.testing.assert_array_equal(out, reference_crop_flip(x, 7, padding, pad_mode))


def test_crop_flip_keeps_shape_dtype_and_is_deterministic():
    for dtype in (np.float32, np.float64, np.uint8):
        x = images(16, shape=(3, 8, 10)).astype(dtype)  # H != W
        a = random_crop_flip(x, np.random.default_rng(3))
        b = random_crop_flip(x, np.random.default_rng(3))
        assert a.shape == x.shape and a.dtype == x.dtype
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, random_crop_flip(x, np.random.default_rng(4)))


def test_padding_zero_only_flips():
    x = images(64).astype(np.float32)
    out = random_crop_flip(x, np.random.default_rng(0), padding=0)
    same = [np.array_equal(o, i) for o, i in zip(out, x)]
    mirrored = [np.array_equal(o, i[:, :, ::-1]) for o, i in zip(out, x)]
    assert all(s or m for s, m in zip(same, mirrored))
    assert any(same) and any(mirrored)  # both happen in a batch of 64


def test_offsets_differ_across_the_batch():
    """Find each output's (dy, dx, flip) by brute force: a batch must use many different ones."""
    x = images(48, shape=(3, 12, 12)).astype(np.float64)
    out = random_crop_flip(x, np.random.default_rng(1), padding=2)
    found = set()
    for o, img in zip(out, x):
        padded = np.pad(img, ((0, 0), (2, 2), (2, 2)), mode="reflect")
        matches = [(dy, dx, f) for dy in range(5) for dx in range(5) for f in (False, True)
                   if np.array_equal(o, padded[:, dy:dy + 12, dx:dx + 12][:, :, ::-1] if f
                                     else padded[:, dy:dy + 12, dx:dx + 12])]
        assert len(matches) == 1  # random images: exactly one crop explains the output
        found.add(matches[0])
    assert len({(dy, dx) for dy, dx, _ in found}) >= 10


def test_reflect_padding_content():
    """Reflect padding checked by hand, without np.pad: padded row -k reads row k, row H-1+k reads H-1-k."""
    x = np.arange(2 * 1 * 6 * 6, dtype=np.float32).reshape(2, 1, 6, 6)
    out = random_crop_flip(x, np.random.default_rng(0), padding=2)
    rng = np.random.default_rng(0)  # the documented draws: dy (N), dx (N), flips (N)
    dy, dx, flip = rng.integers(0, 5, size=2), rng.integers(0, 5, size=2), rng.random(2) < 0.5
    assert (dy != 2).any() or (dx != 2).any()  # the seed gives a real shift somewhere

    def reflect(i, size):  # independent of np.pad: mirror at both ends, border not repeated
        i = abs(i)
        return 2 * (size - 1) - i if i >= size else i

    for n in range(2):
        rows = [reflect(dy[n] - 2 + r, 6) for r in range(6)]
        cols = [reflect(dx[n] - 2 + c, 6) for c in range(6)]
        want = x[n, 0][np.ix_(rows, cols)]
        np.testing.assert_array_equal(out[n, 0], want[:, ::-1] if flip[n] else want)


def test_crop_flip_errors():
    with pytest.raises(ValueError, match="pad_mode"):
        random_crop_flip(images().astype(np.float32), np.random.default_rng(0), pad_mode="wrap")
    with pytest.raises(ValueError, match="batch"):
        random_crop_flip(images()[0].astype(np.float32), np.random.default_rng(0))


# --- the same on the GPU -------------------------------------------------------------------------

@pytest.mark.gpu
def test_cupy_matches_numpy():
    import cupy

    x = images(16)
    xg = cupy.asarray(x)
    mean, std = channel_stats(x)
    mean_g, std_g = channel_stats(xg)
    assert isinstance(mean_g, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(mean_g), mean, rtol=1e-12)
    np.testing.assert_allclose(cupy.asnumpy(std_g), std, rtol=1e-12)
    xn = normalize(x, mean, std)
    xn_g = normalize(xg, mean_g, std_g)
    assert isinstance(xn_g, cupy.ndarray) and xn_g.dtype == np.float32
    np.testing.assert_allclose(cupy.asnumpy(xn_g), xn, rtol=1e-6, atol=1e-6)
    for pad_mode in ("reflect", "constant"):
        a = random_crop_flip(xn, np.random.default_rng(5), pad_mode=pad_mode)
        b = random_crop_flip(xn_g, np.random.default_rng(5), pad_mode=pad_mode)
        assert isinstance(b, cupy.ndarray)
        np.testing.assert_array_equal(cupy.asnumpy(b), a)

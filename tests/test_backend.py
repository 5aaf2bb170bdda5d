"""The backend's helpers that layers call instead of NumPy directly (GPU paths: tests/gpu)."""
import numpy as np
import pytest

from minise.backend import channel_sums, matmul, multiply_sum


def test_multiply_sum_is_einsum_and_refuses_other_subscripts():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 3, 5, 2)), rng.standard_normal((4, 3, 5, 2))
    np.testing.assert_array_equal(multiply_sum("nchw,nchw->nc", a, b), np.einsum("nchw,nchw->nc", a, b))
    for bad in ("nchw,nhcw->nc", "nchw,nchw->cn", "nchw->nc"):
        with pytest.raises(ValueError, match="expected subscripts like 'ncl,ncl->c'"):
            multiply_sum(bad, a, b)


def test_matmul_on_numpy_is_numpy_matmul():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 7)), rng.standard_normal((3, 7)).T
    np.testing.assert_array_equal(matmul(a, b), a @ b)
    out = np.empty((5, 3))
    assert matmul(a, b, out=out) is out
    np.testing.assert_array_equal(out, a @ b)


def test_channel_sums_on_numpy_are_the_scaled_einsums():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 4, 5))
    sums, products = channel_sums(a, b, scale=0.25)
    np.testing.assert_array_equal(sums, np.einsum("ncl->c", a) * 0.25)
    np.testing.assert_array_equal(products, np.einsum("ncl,ncl->c", a, b) * 0.25)
    np.testing.assert_array_equal(channel_sums(a), np.einsum("ncl->c", a))
    with pytest.raises(ValueError, match=r"channel_sums: b must match a, float64 \(3, 4, 5\); got float64 \(3, 4, 6\)"):
        channel_sums(a, rng.standard_normal((3, 4, 6)))

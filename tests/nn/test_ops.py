"""The array operations layers share (nn.ops) on NumPy; their GPU versions: tests/gpu."""
import numpy as np
import pytest

from minise.nn.ops import matmul, multiply_sum


def test_multiply_sum_is_einsum_and_refuses_other_subscripts():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 3, 5, 2)), rng.standard_normal((4, 3, 5, 2))
    np.testing.assert_array_equal(multiply_sum("nchw,nchw->nc", a, b), np.einsum("nchw,nchw->nc", a, b))
    for bad in ("nchw,nhcw->nc", "nchw,nchw->cn", "nchw->nc"):
        with pytest.raises(ValueError, match="ncl,ncl->c"):
            multiply_sum(bad, a, b)


def test_matmul_on_numpy_is_numpy_matmul():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 7)), rng.standard_normal((3, 7)).T
    np.testing.assert_array_equal(matmul(a, b), a @ b)
    out = np.empty((5, 3))
    assert matmul(a, b, out=out) is out
    np.testing.assert_array_equal(out, a @ b)

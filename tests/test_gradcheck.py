"""The numeric gradient checker itself: rel_error, numeric_gradient, gradcheck's promises."""
import numpy as np
import pytest

from minise import nn
from minise.gradcheck import THRESHOLD, GradcheckResult, gradcheck, numeric_gradient, rel_error


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# ---- rel_error ----------------------------------------------------------------------------
def test_rel_error_is_max_difference_over_scale():
    a = np.array([1.0, -4.0, 2.0])
    b = np.array([1.0, -3.0, 2.5])
    assert rel_error(a, b) == pytest.approx(1.0 / 4.0)
    assert rel_error(b, a) == pytest.approx(1.0 / 4.0)
    assert rel_error(a, a) == 0.0
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error(np.zeros(2), np.array([0.0, 1e-3])) == pytest.approx(1.0)
    assert rel_error(1000 * a, 1000 * b) == pytest.approx(rel_error(a, b))    # scale free
    assert rel_error(np.zeros((0,)), np.zeros((0,))) == 0.0
    assert not rel_error(np.array([np.nan, 1.0]), np.array([1.0, 1.0])) <= THRESHOLD   # NaN never passes


# ---- numeric_gradient ---------------------------------------------------------------------
def test_numeric_gradient_of_a_cube():
    x = _x((3, 4))
    saved = x.copy()
    g = numeric_gradient(lambda: float(np.sum(x ** 3)), x)
    np.testing.assert_allclose(g, 3 * saved ** 2, rtol=1e-8, atol=1e-8)
    np.testing.assert_array_equal(x, saved)                  # restored exactly
    assert g.shape == x.shape and g.dtype == x.dtype


def test_numeric_gradient_of_a_mixed_function():
    x = _x((5,), seed=1)
    w = _x((5,), seed=2)
    g = numeric_gradient(lambda: float(np.sin(x) @ w + np.prod(x[:2])), x)
    expected = np.cos(x) * w
    expected[0] += x[1]
    expected[1] += x[0]
    np.testing.assert_allclose(g, expected, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("layout", ["fortran", "transposed"])
def test_numeric_gradient_of_a_non_contiguous_array(layout):
    """The docstring promises x is perturbed in place whatever its layout."""
    base = _x((3, 4))
    x = np.asfortranarray(base) if layout == "fortran" else base.T
    saved = x.copy()
    g = numeric_gradient(lambda: float(np.sum(x ** 3)), x)
    np.testing.assert_array_equal(x, saved)
    np.testing.assert_allclose(g, 3 * saved ** 2, rtol=1e-8, atol=1e-8)


def test_gradcheck_accepts_a_non_contiguous_input():
    nn.manual_seed(0)
    x = _x((4, 3)).T                                          # (3, 4), Fortran-ordered
    result = gradcheck(nn.Linear(4, 2), x)
    assert result.passed, str(result)


# ---- gradcheck ----------------------------------------------------------------------------
def test_gradcheck_leaves_the_module_unchanged():
    nn.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
    block(_x((2, 3, 4, 4)).astype(np.float32))          # some running statistics, cached state
    block[0].weight.grad[...] = 0.5                     # and a gradient the user accumulated
    before = {k: v.copy() for k, v in block.state_dict().items()}
    grad_before = block[0].weight.grad.copy()
    x = _x((2, 3, 4, 4), seed=1).astype(np.float32)
    x_before = x.copy()
    result = gradcheck(block, x)
    assert result.passed, str(result)
    after = block.state_dict()
    assert list(after) == list(before)
    for k in before:
        assert after[k].dtype == before[k].dtype, k
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    assert all(p.data.dtype == np.float32 and p.grad.dtype == np.float32 for p in block.parameters())
    np.testing.assert_array_equal(block[0].weight.grad, grad_before)
    np.testing.assert_array_equal(x, x_before)
    assert x.dtype == np.float32
    assert all(m.training for m in block.modules())


def test_gradcheck_works_for_float32_modules_by_copying_to_float64():
    """In float32, h = 1e-6 would be below the resolution of the inputs; the check only passes
    because it runs on a float64 copy."""
    nn.manual_seed(0)
    se = nn.SEBlock(6, 2)
    assert se.sequence[2].weight.data.dtype == np.float32
    result = gradcheck(se, _x((2, 6, 3, 3)).astype(np.float32))
    assert result.passed, str(result)
    assert max(result.errors.values()) < 1e-7
    assert se.sequence[2].weight.data.dtype == np.float32


def test_gradcheck_result_names_every_tensor():
    nn.manual_seed(0)
    result = gradcheck(nn.Conv2d(2, 3, 3, padding=1), _x((1, 2, 4, 4)))
    assert list(result.errors) == ["input", "weight", "bias"]
    assert all(0 <= e < 1e-7 for e in result.errors.values())


def test_gradcheck_passes_a_correct_module_whose_true_gradient_is_zero():
    """Train-mode BatchNorm removes any per-channel constant, so the gradient of a conv bias
    in front of it is exactly zero. Both gradients are then rounding noise (numeric ~1e-10,
    analytic ~1e-16) and a purely relative error calls them 100% different."""
    nn.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=True), nn.BatchNorm2d(3))
    result = gradcheck(model, _x((2, 2, 4, 4)))
    assert result.errors["0.weight"] < 1e-7 and result.errors["input"] < 1e-7    # the real gradients
    assert result.passed, str(result)


def test_gradcheck_on_the_loss():
    target = np.array([0, 2, 1, 4])
    result = gradcheck(nn.CrossEntropyLoss(label_smoothing=0.2), _x((4, 5)), target)
    assert list(result.errors) == ["input"] and result.passed, str(result)


def test_gradcheck_uses_the_given_dout():
    seen = []

    class Spy(nn.Identity):
        def backward(self, dout):
            seen.append(dout)
            return super().backward(dout)

    dout = _x((2, 3), seed=5)
    assert gradcheck(Spy(), _x((2, 3)), dout=dout).passed
    np.testing.assert_array_equal(seen[-1], dout)


def test_gradcheck_detects_a_wrong_scale():
    class DoubledTanh(nn.Tanh):
        def backward(self, dout):
            return 2 * super().backward(dout)

    result = gradcheck(DoubledTanh(), _x((3, 4)))
    assert not result.passed
    assert result.errors["input"] == pytest.approx(0.5, rel=1e-5)      # |2g - g| / |2g|


def test_result_passed_and_str():
    ok = GradcheckResult({"input": 1e-9, "weight": 5e-8})
    assert ok.passed and ok.threshold == THRESHOLD == 1e-7
    lines = str(ok).splitlines()
    assert len(lines) == 2
    assert lines[0].split() == ["input", "1.00e-09", "pass"]
    assert lines[1].split() == ["weight", "5.00e-08", "pass"]
    bad = GradcheckResult({"input": 1e-9, "bias": 2e-3})
    assert not bad.passed
    assert str(bad).splitlines()[1].split() == ["bias", "2.00e-03", "FAIL"]
    assert GradcheckResult({"input": 1e-5}, threshold=1e-4).passed
    assert not GradcheckResult({"input": float("nan")}).passed
    assert GradcheckResult({"input": THRESHOLD}).passed                    # the bound is inclusive


def test_gradcheck_threshold_argument():
    class SlightlyOff(nn.Tanh):
        def backward(self, dout):
            return super().backward(dout) * (1 + 1e-4)

    x = _x((3, 3))
    assert not gradcheck(SlightlyOff(), x).passed
    assert gradcheck(SlightlyOff(), x, threshold=1e-3).passed

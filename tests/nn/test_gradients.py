"""Every backward pass against central differences (minise.gradcheck), plus proof that the
checker itself can catch a wrong backward."""
import copy

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from minise import nn
from minise.gradcheck import gradcheck, numeric_gradient
from minise.gradcheck_cases import standard_cases
from minise.nn.validate import check_dout

FEW = settings(max_examples=20, deadline=None)

CASES = list(standard_cases())


@pytest.mark.parametrize("layer, config, module, x, args", CASES,
                         ids=[f"{c[0]}[{c[1]}]" for c in CASES])
def test_standard_case(layer, config, module, x, args):
    result = gradcheck(module, x, *args)
    assert result.errors, "gradcheck compared nothing"
    assert result.passed, f"{layer} {config}:\n{result}"


def test_standard_cases_cover_every_layer():
    layers = {c[0] for c in CASES}
    expected = {"Conv2d", "BatchNorm1d", "BatchNorm2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
                "Linear", "ReLU", "Sigmoid", "Tanh", "Identity", "Flatten", "Unflatten", "SEBlock",
                "BasicBlock", "Bottleneck", "SEBottleneck", "CrossEntropyLoss"}
    assert expected <= layers, f"missing: {expected - layers}"


def _rng_x(seed, shape):
    # seed + 1: gradcheck draws its dout from default_rng(0); x must not be that same draw
    return np.random.default_rng(seed + 1).standard_normal(shape)


def _errors_against_module_scale(module, x):
    """max|analytic - numeric| of each tensor over the largest analytic gradient of any tensor,
    with gradcheck's dout (default_rng(0)) and h."""
    m = copy.deepcopy(module).double()
    out = m(x)
    dout = np.random.default_rng(0).standard_normal(out.shape)
    m.zero_grad()
    analytic = {"input": m.backward(dout)}
    analytic.update((n, p.grad.copy()) for n, p in m.named_parameters())
    f = lambda: float((m(x) * dout).sum())                       # noqa: E731
    numeric = {"input": numeric_gradient(f, x)}
    numeric.update((n, numeric_gradient(f, p.data)) for n, p in m.named_parameters())
    scale = max(float(np.abs(a).max(initial=0)) for a in analytic.values())
    return {n: float(np.abs(analytic[n] - numeric[n]).max(initial=0)) / scale for n in analytic}


def _check(module, x):
    result = gradcheck(module, x)
    names = {"input"} | {name for name, _ in module.named_parameters()}
    assert set(result.errors) == names
    if result.passed:
        return
    # gradcheck's error is relative to each tensor's own largest entry. Where a tensor's true
    # gradient is tiny (a dead ReLU unit in a 1-2 unit SE bottleneck, cancellation), both sides
    # are rounding noise (~1e-10 |f|) and that ratio means nothing; judge such a tensor against
    # the module's largest gradient instead. A wrong backward is off by far more than 1e-7.
    errors = _errors_against_module_scale(module, x)
    assert max(errors.values()) <= 1e-7, f"{module!r} x={x.shape}:\n{result}\nvs module scale: {errors}"


# ---- hypothesis-drawn shapes ---------------------------------------------------------------
@FEW
@given(N=st.integers(1, 2), C=st.integers(1, 3), O=st.integers(1, 3), H=st.integers(1, 7),
       W=st.integers(1, 7), k=st.integers(1, 5), s=st.integers(1, 3), p=st.integers(0, 2),
       bias=st.booleans(), seed=st.integers(0, 2**16))
def test_conv2d_gradients(N, C, O, H, W, k, s, p, bias, seed):
    assume(H + 2 * p >= k and W + 2 * p >= k)
    nn.manual_seed(seed)
    _check(nn.Conv2d(C, O, k, stride=s, padding=p, bias=bias), _rng_x(seed, (N, C, H, W)))


@FEW
@given(N=st.integers(1, 2), C=st.integers(1, 3), H=st.integers(1, 7), W=st.integers(1, 7),
       kh=st.integers(1, 4), kw=st.integers(1, 4), s=st.integers(1, 3), p=st.integers(0, 2),
       kind=st.sampled_from([nn.MaxPool2d, nn.AvgPool2d]), seed=st.integers(0, 2**16))
def test_pool_gradients(N, C, H, W, kh, kw, s, p, kind, seed):
    assume(2 * p <= min(kh, kw))
    assume(H + 2 * p >= kh and W + 2 * p >= kw)
    _check(kind((kh, kw), stride=s, padding=p), _rng_x(seed, (N, C, H, W)))


@FEW
@given(N=st.integers(1, 3), C=st.integers(1, 3), H=st.integers(1, 4), W=st.integers(1, 4),
       train=st.booleans(), seed=st.integers(0, 2**16))
def test_batchnorm2d_gradients(N, C, H, W, train, seed):
    assume(not train or N * H * W >= 2)
    rng = np.random.default_rng(seed + 1)
    bn = nn.BatchNorm2d(C)
    bn.weight.data[...] = rng.uniform(0.5, 1.5, C)
    bn.bias.data[...] = rng.standard_normal(C)
    bn.running_mean[...] = rng.standard_normal(C)
    bn.running_var[...] = rng.uniform(0.5, 2.0, C)
    _check(bn.train(train), _rng_x(seed, (N, C, H, W)))


@FEW
@given(N=st.integers(1, 2), C=st.integers(2, 9), r=st.integers(2, 4), H=st.integers(1, 4),
       W=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_seblock_gradients(N, C, r, H, W, seed):
    assume(C % r != 0 and C // r >= 1)
    nn.manual_seed(seed)
    _check(nn.SEBlock(C, r), _rng_x(seed, (N, C, H, W)))


# ---- the checker catches broken backward passes ----------------------------------------------
class SEBlockWithoutExcitationPath(nn.SEBlock):
    """Wrong on purpose: forgets that x also reaches the output through s."""

    def backward(self, dout):
        check_dout(self, dout, self._out)
        return dout * self.s


class _BatchNormWithOwnDx(nn.BatchNorm2d):
    """Train-mode BatchNorm2d whose dx is replaced by ``broken_dx``; the parameter gradients
    still come from the real backward. Works from the cached input only, not from internals."""

    def forward(self, x):
        self._x_in = x
        return super().forward(x)

    def backward(self, dout):
        super().backward(dout)                      # the (correct) parameter gradients
        x = self._x_in
        mean = x.mean(axis=(0, 2, 3), keepdims=True)
        var = x.var(axis=(0, 2, 3), keepdims=True)
        scale = self.weight.data.reshape(1, -1, 1, 1) / np.sqrt(var + self.eps)
        xhat = (x - mean) / np.sqrt(var + self.eps)
        return self.broken_dx(dout, xhat, scale)


class BatchNormWithoutMeanTerms(_BatchNormWithOwnDx):
    """Wrong on purpose: dx = gamma * dout / sqrt(var + eps), as if mu and var were constants,
    i.e. both mean terms of the closed form are dropped."""

    @staticmethod
    def broken_dx(dout, xhat, scale):
        return dout * scale


class BatchNormWithoutVarianceTerm(_BatchNormWithOwnDx):
    """Wrong on purpose: keeps - mean(dout) but drops - xhat * mean(dout * xhat).
    Invisible to an all-ones dout."""

    @staticmethod
    def broken_dx(dout, xhat, scale):
        return (dout - dout.mean(axis=(0, 2, 3), keepdims=True)) * scale


class BatchNormRecomputedCorrectly(_BatchNormWithOwnDx):
    """The right closed form through the same helper: shows the helper itself is sound."""

    @staticmethod
    def broken_dx(dout, xhat, scale):
        axes = (0, 2, 3)
        return (dout - dout.mean(axis=axes, keepdims=True)
                - xhat * (dout * xhat).mean(axis=axes, keepdims=True)) * scale


def _bn(cls, C, seed=3):
    rng = np.random.default_rng(seed)
    bn = cls(C)
    bn.weight.data[...] = rng.uniform(0.5, 1.5, C)
    bn.bias.data[...] = rng.standard_normal(C)
    return bn


def test_gradcheck_catches_seblock_without_excitation_path():
    x = _rng_x(0, (2, 6, 3, 3))
    nn.manual_seed(0)
    good = nn.SEBlock(6, 2)
    nn.manual_seed(0)
    broken = SEBlockWithoutExcitationPath(6, 2)
    assert gradcheck(good, x).passed
    result = gradcheck(broken, x)
    assert not result.passed
    assert result.errors["input"] > 1e-4, str(result)
    assert "FAIL" in str(result)


@pytest.mark.parametrize("cls", [BatchNormWithoutMeanTerms, BatchNormWithoutVarianceTerm])
def test_gradcheck_catches_batchnorm_without_mean_terms(cls):
    x = _rng_x(1, (4, 3, 3, 2))
    assert gradcheck(_bn(BatchNormRecomputedCorrectly, 3), x).passed
    result = gradcheck(_bn(cls, 3), x)
    assert not result.passed
    assert result.errors["input"] > 1e-3, str(result)


def test_all_ones_dout_cannot_tell_the_broken_batchnorm_apart():
    """f = sum(BN(x)) does not depend on x, so with an all-ones dout the true dx is 0, and the
    broken backward (no variance term) also returns ~0: an all-ones check would accept it. A
    random dout (gradcheck's default) exposes it."""
    x = _rng_x(1, (4, 3, 3, 2))
    ones = np.ones_like(x)
    dx = {}
    for cls in (nn.BatchNorm2d, BatchNormWithoutVarianceTerm):
        bn = _bn(cls, 3).double()
        bn(x)
        dx[cls] = bn.backward(ones)
        bn_for_f = _bn(cls, 3).double()
        numeric = numeric_gradient(lambda: float(bn_for_f(x).sum()), x)
        assert np.abs(dx[cls] - numeric).max() < 1e-7          # "passes" against all-ones
    assert np.abs(dx[BatchNormWithoutVarianceTerm] - dx[nn.BatchNorm2d]).max() < 1e-12

    dout = np.random.default_rng(0).standard_normal(x.shape)
    random_dx = {}
    for cls in (nn.BatchNorm2d, BatchNormWithoutVarianceTerm):
        bn = _bn(cls, 3).double()
        bn(x)
        random_dx[cls] = bn.backward(dout)
    assert np.abs(random_dx[BatchNormWithoutVarianceTerm] - random_dx[nn.BatchNorm2d]).max() > 1e-2
    assert not gradcheck(_bn(BatchNormWithoutVarianceTerm, 3), x).passed


def test_gradcheck_default_dout_is_random_not_ones():
    """A module that records the dout it is given: gradcheck's default must not be all ones."""
    seen = []

    class Spy(nn.Identity):
        def backward(self, dout):
            seen.append(dout.copy())
            return super().backward(dout)

    gradcheck(Spy(), _rng_x(0, (3, 4)))
    assert seen
    dout = seen[-1]
    assert dout.dtype == np.float64
    assert np.unique(dout).size == dout.size                 # no repeated value, so not constant
    assert dout.std() > 0.3


# ---- MaxPool2d with a large window (more than 256 offsets) ----------------------------------
def test_maxpool_large_window_gradient():
    """Global max pooling of a 17x17 map: 289 window offsets. The winner index must not wrap."""
    x = np.random.default_rng(0).standard_normal((1, 2, 17, 17))
    x[0, 0, 16, 16] = 10.0      # offset 288 wins in channel 0
    x[0, 1, 0, 3] = 10.0        # offset 3 wins in channel 1
    pool = nn.MaxPool2d(17).double()
    out = pool(x)
    assert out.shape == (1, 2, 1, 1)
    np.testing.assert_array_equal(out.ravel(), [10.0, 10.0])
    dx = pool.backward(np.array([[[[2.0]], [[3.0]]]]))
    expected = np.zeros_like(x)
    expected[0, 0, 16, 16] = 2.0
    expected[0, 1, 0, 3] = 3.0
    np.testing.assert_array_equal(dx, expected)

"""Your backward passes inside a real network: the replacements compute the library's gradients
when your functions are right, and other gradients when they are not."""
import functools

import numpy as np
import pytest

from minise import models, nn
from minise.exercises import solutions, variants
from minise.exercises.your_layers import YourBatchNorm2d, YourSEBlock, loss_curve, with_your_backward


def _model():
    nn.manual_seed(0)
    return models.se_resnet20().double()


def _gradients(model, x, dout):
    model.zero_grad()
    model(x)
    dx = model.backward(dout)
    return dx, {name: p.grad.copy() for name, p in model.named_parameters()}


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return rng.standard_normal((4, 3, 8, 8)), rng.standard_normal((4, 10))


def test_your_right_backward_gives_the_librarys_gradients(batch):
    x, dout = batch
    mine = with_your_backward(_model(), solutions.se_block_backward, solutions.batch_norm_backward)
    replaced = [type(m) for m in mine.modules() if isinstance(m, (YourSEBlock, YourBatchNorm2d))]
    assert replaced.count(YourSEBlock) == 9 and replaced.count(YourBatchNorm2d) == 21
    dx_lib, grads_lib = _gradients(_model(), x, dout)
    dx_mine, grads_mine = _gradients(mine, x, dout)
    assert list(grads_mine) == list(grads_lib)                     # the same names, in the same order
    np.testing.assert_allclose(dx_mine, dx_lib, rtol=1e-10, atol=1e-12)
    for name in grads_lib:
        np.testing.assert_allclose(grads_mine[name], grads_lib[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_a_wrong_backward_changes_the_gradients(batch):
    x, dout = batch
    wrong = functools.partial(variants.se_block_backward, slip="direct_path_missing")
    dx_lib, _ = _gradients(_model(), x, dout)
    dx_wrong, _ = _gradients(with_your_backward(_model(), wrong), x, dout)
    assert np.abs(dx_wrong - dx_lib).max() > 1e-3 * np.abs(dx_lib).max()


def test_eval_mode_batch_norm_keeps_the_librarys_backward(batch):
    x, dout = batch
    calls = []

    def recorded(*args):
        calls.append(1)
        return solutions.batch_norm_backward(*args)

    model = with_your_backward(_model(), batch_norm_backward=recorded).eval()
    dx_lib, _ = _gradients(_model().eval(), x, dout)
    dx_mine, _ = _gradients(model, x, dout)
    assert not calls
    np.testing.assert_allclose(dx_mine, dx_lib, rtol=1e-12)


def test_an_se_block_with_other_biases_is_refused():
    block = nn.SEBlock(16, 4, bias=(True, True))
    with pytest.raises(ValueError, match="bias"):
        YourSEBlock(block, solutions.se_block_backward)


def test_the_loss_curve_has_one_loss_per_step_and_the_same_batches_for_the_same_seed():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((8, 3, 8, 8)), rng.integers(0, 10, 8)
    first, second = (loss_curve(_model(), x, y, epochs=2, batch_size=4) for _ in range(2))
    assert first.shape == (4,) and np.array_equal(first, second)

"""The textbook loop versions (minise.nn.textbook) against the fast layers, forward and backward,
parameter gradients included, on small float64 shapes."""
import numpy as np
import pytest

from minise import nn
from minise.nn import textbook

EXACT = dict(rtol=1e-10, atol=1e-12)


def _random(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape)


def _forward_backward(layer, x, seed):
    """Run the fast layer once; return (out, dout, dx) with a random upstream gradient."""
    layer.zero_grad()
    out = layer(x)
    dout = _random(seed + 100, out.shape)
    return out, dout, layer.backward(dout)


@pytest.mark.parametrize("shape, kernel, stride, padding, bias", [
    ((2, 3, 5, 5), (3, 3), 1, 1, True),
    ((1, 2, 6, 5), (3, 2), (2, 1), (0, 1), False),
    ((2, 1, 7, 7), (2, 2), 3, 2, True),
    ((1, 3, 4, 4), (1, 1), 1, 0, True),
])
def test_conv2d_matches_the_layer(shape, kernel, stride, padding, bias):
    nn.manual_seed(0)
    conv = nn.Conv2d(shape[1], 4, kernel, stride=stride, padding=padding, bias=bias).double()
    x = _random(1, shape)
    out, dout, dx = _forward_backward(conv, x, seed=1)
    b = conv.bias.data if bias else None
    np.testing.assert_allclose(textbook.conv2d_forward(x, conv.weight.data, b, stride, padding), out, **EXACT)
    dx_ref, dweight, dbias = textbook.conv2d_backward(dout, x, conv.weight.data, b, stride, padding)
    np.testing.assert_allclose(dx_ref, dx, **EXACT)
    np.testing.assert_allclose(dweight, conv.weight.grad, **EXACT)
    if bias:
        np.testing.assert_allclose(dbias, conv.bias.grad, **EXACT)
    else:
        assert dbias is None


@pytest.mark.parametrize("shape", [(2, 3, 4, 4), (3, 2, 1, 5), (4, 1, 1, 1)])
def test_batch_norm2d_matches_the_layer_in_train_mode(shape):
    bn = nn.BatchNorm2d(shape[1]).double()
    bn.weight.data[...] = _random(2, shape[1])
    bn.bias.data[...] = _random(3, shape[1])
    x = 3 + 2 * _random(4, shape)
    out, dout, dx = _forward_backward(bn, x, seed=4)
    np.testing.assert_allclose(textbook.batch_norm2d_forward(x, bn.weight.data, bn.bias.data), out, **EXACT)
    dx_ref, dgamma, dbeta = textbook.batch_norm2d_backward(dout, x, bn.weight.data, bn.bias.data)
    np.testing.assert_allclose(dx_ref, dx, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(dgamma, bn.weight.grad, **EXACT)
    np.testing.assert_allclose(dbeta, bn.bias.grad, **EXACT)


@pytest.mark.parametrize("shape, kernel, stride, padding", [
    ((2, 3, 4, 4), 2, None, 0),
    ((1, 2, 5, 7), (3, 2), (2, 1), (1, 1)),
    ((2, 1, 6, 6), 3, 2, 1),
])
def test_max_pool2d_matches_the_layer(shape, kernel, stride, padding):
    pool = nn.MaxPool2d(kernel, stride=stride, padding=padding)
    x = _random(5, shape)
    out, dout, dx = _forward_backward(pool, x, seed=5)
    np.testing.assert_array_equal(textbook.max_pool2d_forward(x, kernel, stride, padding), out)
    np.testing.assert_allclose(textbook.max_pool2d_backward(dout, x, kernel, stride, padding), dx, **EXACT)


def test_max_pool2d_ties_go_to_the_first_maximum_like_the_layer():
    """Integer inputs tie often; the winner of a tie decides where the gradient goes."""
    pool = nn.MaxPool2d(3, stride=1, padding=1)
    x = np.random.default_rng(6).integers(0, 3, (2, 2, 5, 5)).astype(np.float64)
    out, dout, dx = _forward_backward(pool, x, seed=6)
    np.testing.assert_allclose(textbook.max_pool2d_backward(dout, x, 3, 1, 1), dx, **EXACT)


@pytest.mark.parametrize("bias", [(False, True), (True, True), (False, False)])
def test_se_block_matches_the_layer(bias):
    nn.manual_seed(7)
    se = nn.SEBlock(6, 2, bias=bias).double()
    for p in se.parameters():
        p.data *= 4                    # gates spread over (0, 1), some ReLU units off
    params = dict(se.named_parameters())
    w1, w2 = params["sequence.2.weight"].data, params["sequence.4.weight"].data
    b1 = params["sequence.2.bias"].data if bias[0] else None
    b2 = params["sequence.4.bias"].data if bias[1] else None
    x = _random(8, (3, 6, 3, 4))
    out, dout, dx = _forward_backward(se, x, seed=8)
    np.testing.assert_allclose(textbook.se_block_forward(x, w1, b1, w2, b2), out, **EXACT)
    dx_ref, dw1, db1, dw2, db2 = textbook.se_block_backward(dout, x, w1, b1, w2, b2)
    np.testing.assert_allclose(dx_ref, dx, **EXACT)
    np.testing.assert_allclose(dw1, params["sequence.2.weight"].grad, **EXACT)
    np.testing.assert_allclose(dw2, params["sequence.4.weight"].grad, **EXACT)
    for name, grad in (("sequence.2.bias", db1), ("sequence.4.bias", db2)):
        if name in params:
            np.testing.assert_allclose(grad, params[name].grad, **EXACT)
        else:
            assert grad is None


def test_the_loops_work_on_float32_without_upcasting():
    x = _random(12, (1, 2, 4, 4)).astype(np.float32)
    w = _random(13, (3, 2, 3, 3)).astype(np.float32)
    assert textbook.conv2d_forward(x, w, None, 1, 1).dtype == np.float32
    assert textbook.conv2d_backward(np.ones((1, 3, 4, 4), np.float32), x, w, None, 1, 1)[1].dtype == np.float32
    assert textbook.max_pool2d_forward(x, 2).dtype == np.float32

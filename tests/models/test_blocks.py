"""Residual blocks: attribute names and state_dict keys as in the seed post, shortcut choice,
output shapes, and the residual gradient as the sum of its two paths."""
import numpy as np
import pytest

from minise import nn
from minise.models import BasicBlock, Bottleneck, SEBottleneck


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _bn_keys(prefix):
    return [f"{prefix}.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]


def test_basic_block_attributes_and_keys():
    block = BasicBlock(4, 8, stride=2)
    assert [n for n, _ in block.named_children()] == ["block", "shortcut", "relu"]
    assert block.se_block is None
    assert [type(m).__name__ for m in block.block] == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d"]
    expected = (["block.0.weight"] + _bn_keys("block.1") + ["block.3.weight"] + _bn_keys("block.4")
                + ["shortcut.0.weight"] + _bn_keys("shortcut.1"))
    assert set(block.state_dict()) == set(expected)
    sd = block.state_dict()
    assert sd["block.0.weight"].shape == (8, 4, 3, 3)
    assert sd["block.3.weight"].shape == (8, 8, 3, 3)
    assert sd["shortcut.0.weight"].shape == (8, 4, 1, 1)
    assert block.block[0].stride == (2, 2) and block.block[3].stride == (1, 1)
    assert block.block[0].bias is None and block.block[3].bias is None


def test_basic_block_with_se():
    block = BasicBlock(4, 4, reduction_ratio=2)
    assert [n for n, _ in block.named_children()] == ["block", "se_block", "shortcut", "relu"]
    assert isinstance(block.se_block, nn.SEBlock)
    assert {"se_block.sequence.2.weight", "se_block.sequence.4.weight", "se_block.sequence.4.bias"} <= set(block.state_dict())
    assert block.se_block.sequence[2].weight.shape == (2, 4)


def test_se_bottleneck_attributes_and_keys():
    block = SEBottleneck(64, 16, 16, stride=2)
    assert [n for n, _ in block.named_children()] == ["block", "se_block", "shortcut", "relu"]
    assert [type(m).__name__ for m in block.block] == [
        "Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d"]
    expected = (["block.0.weight"] + _bn_keys("block.1") + ["block.3.weight"] + _bn_keys("block.4")
                + ["block.6.weight"] + _bn_keys("block.7")
                + ["se_block.sequence.2.weight", "se_block.sequence.4.weight", "se_block.sequence.4.bias"]
                + ["shortcut.0.weight"] + _bn_keys("shortcut.1"))
    sd = block.state_dict()
    assert set(sd) == set(expected)
    assert sd["block.0.weight"].shape == (16, 64, 1, 1)
    assert sd["block.3.weight"].shape == (16, 16, 3, 3)
    assert sd["block.6.weight"].shape == (64, 16, 1, 1)
    assert sd["se_block.sequence.2.weight"].shape == (4, 64)
    assert sd["shortcut.0.weight"].shape == (64, 64, 1, 1)
    assert block.block[3].stride == (2, 2) and block.block[0].stride == (1, 1)   # stride on the 3x3
    assert block.shortcut[0].stride == (2, 2)


def test_bottleneck_has_no_se_block():
    block = Bottleneck(16, 4)
    assert block.se_block is None and block.expansion == 4
    assert not any(k.startswith("se_block") for k in block.state_dict())


@pytest.mark.parametrize("factory, identity", [
    (lambda: BasicBlock(4, 4), True),
    (lambda: BasicBlock(4, 4, stride=2), False),
    (lambda: BasicBlock(4, 8), False),
    (lambda: Bottleneck(8, 2), True),
    (lambda: Bottleneck(4, 2), False),
    (lambda: SEBottleneck(8, 2, 2, stride=2), False),
], ids=["basic-same", "basic-stride2", "basic-wider", "bottleneck-same", "bottleneck-wider", "se-bottleneck-stride2"])
def test_shortcut_identity_or_projection(factory, identity):
    block = factory()
    assert isinstance(block.shortcut, nn.Sequential)
    if identity:
        assert len(block.shortcut) == 0
        assert not any(k.startswith("shortcut") for k in block.state_dict())
    else:
        assert [type(m).__name__ for m in block.shortcut] == ["Conv2d", "BatchNorm2d"]
        conv = block.shortcut[0]
        assert conv.kernel_size == (1, 1) and conv.bias is None and conv.stride == (block.stride,) * 2


@pytest.mark.parametrize("factory, x_shape, out_shape", [
    (lambda: BasicBlock(4, 4), (2, 4, 6, 6), (2, 4, 6, 6)),
    (lambda: BasicBlock(4, 8, stride=2), (2, 4, 6, 6), (2, 8, 3, 3)),
    (lambda: BasicBlock(3, 6, stride=2, reduction_ratio=3), (1, 3, 5, 5), (1, 6, 3, 3)),
    (lambda: Bottleneck(8, 2), (2, 8, 4, 4), (2, 8, 4, 4)),
    (lambda: Bottleneck(4, 4, stride=2), (2, 4, 8, 8), (2, 16, 4, 4)),
    (lambda: SEBottleneck(16, 4, 4), (1, 16, 4, 4), (1, 16, 4, 4)),
    (lambda: SEBottleneck(16, 8, 4, stride=2), (1, 16, 7, 7), (1, 32, 4, 4)),
], ids=["basic-s1", "basic-s2", "basic-se-s2", "bottleneck-s1", "bottleneck-s2", "se-bottleneck-s1",
        "se-bottleneck-s2-odd"])
def test_output_shapes(factory, x_shape, out_shape):
    block = factory()
    out = block(_x(x_shape).astype(np.float32))
    assert out.shape == out_shape
    assert out.dtype == np.float32
    assert np.all(out >= 0)                     # the final ReLU
    assert block.backward(np.ones(out_shape, dtype=np.float32)).shape == x_shape


BLOCKS = [
    (lambda: BasicBlock(4, 4), (2, 4, 4, 4)),
    (lambda: BasicBlock(4, 6, stride=2), (2, 4, 5, 5)),
    (lambda: BasicBlock(4, 4, reduction_ratio=2), (2, 4, 4, 4)),
    (lambda: Bottleneck(8, 2), (2, 8, 3, 3)),
    (lambda: SEBottleneck(4, 2, 2, stride=2), (2, 4, 4, 4)),
]
BLOCK_IDS = ["basic", "basic-projection", "basic-se", "bottleneck", "se-bottleneck-projection"]


def _twins(factory, seed=0):
    nn.manual_seed(seed)
    a = factory().double()
    b = factory().double()
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("factory, shape", BLOCKS, ids=BLOCK_IDS)
def test_forward_is_relu_of_branch_plus_shortcut(factory, shape):
    block, twin = _twins(factory)
    x = _x(shape)
    out = block(x)
    branch = twin.block(x)
    if twin.se_block is not None:
        branch = twin.se_block(branch)
    shortcut = twin.shortcut(x)
    if len(twin.shortcut) == 0:
        assert shortcut is x
    np.testing.assert_allclose(out, np.maximum(branch + shortcut, 0), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("factory, shape", BLOCKS, ids=BLOCK_IDS)
def test_residual_dx_is_branch_plus_shortcut_gradient(factory, shape):
    block, twin = _twins(factory)
    x = _x(shape)
    out = block(x)
    dout = _x(out.shape, seed=1)
    dx = block.backward(dout)

    # the two paths one by one, through the twin's submodules
    branch = twin.block(x)
    if twin.se_block is not None:
        branch = twin.se_block(branch)
    pre = branch + twin.shortcut(x)
    d = dout * (pre > 0)                                   # through the final ReLU
    d_branch = twin.se_block.backward(d) if twin.se_block is not None else d
    dx_branch = twin.block.backward(d_branch)
    dx_shortcut = twin.shortcut.backward(d)
    if len(twin.shortcut) == 0:
        np.testing.assert_array_equal(dx_shortcut, d)
    assert np.abs(dx_branch).max() > 1e-6 and np.abs(dx_shortcut).max() > 1e-6
    np.testing.assert_allclose(dx, dx_branch + dx_shortcut, rtol=1e-12, atol=1e-13)
    # and the parameter gradients agree, path by path
    grads = dict(twin.named_parameters())
    for name, p in block.named_parameters():
        np.testing.assert_allclose(p.grad, grads[name].grad, rtol=1e-12, atol=1e-13, err_msg=name)

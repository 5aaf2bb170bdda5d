"""benchmarks.cpu_floor: its parts time what they claim to (the products are the layers'
products, the stand-ins hand back what the convolutions gave)."""
import numpy as np
import pytest

from benchmarks.cpu_floor import conv_layers, product_runs, record_convolutions, stub_convolutions
from minise.execution import plain_on_cpu
from minise.models import resnet20
from minise.nn import Conv2d
from minise.nn.im2col import col2im
from minise.optim import SGD
from minise.step import TrainStep


@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 1), (1, 0)])
def test_the_timed_products_are_the_layers_products(stride, padding):
    rng = np.random.default_rng(0)
    conv = Conv2d(4, 6, 3, stride=stride, padding=padding, bias=False).double()
    x = rng.standard_normal((2, 4, 7, 7))
    with plain_on_cpu():                 # the products of the formula (im2col, channels first)
        out = conv(x)
        dout = rng.standard_normal(out.shape)
        dx = conv.backward(dout)
    forward, backward = product_runs(conv, x, dout)
    N, O, Ho, Wo = out.shape
    np.testing.assert_allclose(forward().reshape(O, N, Ho, Wo).transpose(1, 0, 2, 3), out, rtol=1e-12)
    dw, dx_product = backward()
    np.testing.assert_allclose(dw.T.reshape(conv.weight.data.shape), conv.weight.grad, rtol=1e-12)
    if stride == 1:
        dx_from_product = dx_product.reshape(4, 2, 7, 7).transpose(1, 0, 2, 3)
    else:
        dx_from_product = col2im(dx_product, x.shape, conv.kernel_size, conv.stride, conv.padding)
    np.testing.assert_allclose(dx_from_product, dx, rtol=1e-10, atol=1e-12)


def test_stand_ins_give_back_the_recorded_convolutions_and_are_removed_after():
    rng = np.random.default_rng(1)
    model = resnet20().double()
    step = TrainStep(model, SGD(model.parameters(), lr=0.0))     # lr 0: the weights stay as they are
    x, y = rng.standard_normal((4, 3, 8, 8)), rng.integers(0, 10, 4)
    seen = record_convolutions(model, step, x, y)
    assert set(seen) == {id(c) for c in conv_layers(model)} and len(seen) == 21   # stem, 18 in blocks, 2 shortcuts
    real_forward = Conv2d.forward
    expected = model(x)
    for conv in conv_layers(model):
        conv.weight.data[...] = 0                    # real convolutions would now give other logits
    with stub_convolutions({k: v["out"] for k, v in seen.items()}, {k: v["dx"] for k, v in seen.items()}):
        assert Conv2d.forward is not real_forward
        np.testing.assert_array_equal(model(x), expected)
        first = conv_layers(model)[0]
        assert first.backward(np.zeros_like(seen[id(first)]["dout"])) is seen[id(first)]["dx"]
    assert Conv2d.forward is real_forward
    assert not np.array_equal(model(x), expected)    # the real ones are back, with the zeroed weights

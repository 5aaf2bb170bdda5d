"""Conv2d's NumPy version (channels last, blocks of images) against its formula (plain_on_cpu):
the same output, input gradient and parameter gradients, to rounding, for every kernel, stride,
padding and input layout; the output keeps the (N, O, Ho, Wo) shape with channels-last strides."""
import numpy as np
import pytest

from minise import nn
from minise.execution import plain_on_cpu
from minise.nn import conv_channels_last

CONFIGS = [  # in, out, kernel, stride, padding, bias
    (3, 4, 3, 1, 1, True), (4, 6, 3, 2, 1, False), (5, 3, 1, 1, 0, True), (4, 8, 1, 2, 0, False),
    (2, 3, (3, 2), (2, 1), (0, 1), True), (3, 2, 5, 1, 2, True), (3, 4, 3, 1, 0, False), (2, 2, 2, 3, 1, True),
]


def _run(conv, x, dout):
    conv.zero_grad()
    out = conv(x)
    dx = conv.backward(dout)
    return out, dx, {n: p.grad.copy() for n, p in conv.named_parameters()}


@pytest.mark.parametrize("channels_last_input", [False, True], ids=["nchw", "nhwc-strided"])
@pytest.mark.parametrize("config", CONFIGS, ids=[str(c) for c in CONFIGS])
def test_numpy_version_matches_the_formula(monkeypatch, config, channels_last_input):
    monkeypatch.setattr(conv_channels_last, "MIN_BLOCK", 2)     # 7 images: blocks of 2, 2, 2, 1
    monkeypatch.setattr(conv_channels_last, "BLOCK_BYTES", 1)
    c_in, c_out, k, s, p, bias = config
    nn.manual_seed(0)
    conv = nn.Conv2d(c_in, c_out, k, stride=s, padding=p, bias=bias).double()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, c_in, 9, 8))
    if channels_last_input:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    dout = rng.standard_normal(conv(x).shape)
    with plain_on_cpu():
        expected = _run(conv, x, dout)
    got = _run(conv, x, dout)
    for what, a, b in (("out", expected[0], got[0]), ("dx", expected[1], got[1])):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12, err_msg=what)
    for name in expected[2]:
        np.testing.assert_allclose(got[2][name], expected[2][name], rtol=1e-12, atol=1e-12, err_msg=name)
    out = got[0]
    assert out.shape == expected[0].shape and out.transpose(0, 2, 3, 1).flags.c_contiguous


def test_a_training_step_of_se_resnet20_matches_the_formula_everywhere():
    """Channels-last outputs flow through BatchNorm, ReLU, the SE blocks and the residual adds:
    two SGD steps give the weights and running statistics of the formula, to rounding."""
    from minise.models import se_resnet20
    from minise.optim import SGD
    from minise.step import TrainStep
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((5, 3, 8, 8)), rng.integers(0, 10, 5)) for _ in range(2)]

    def train():
        nn.manual_seed(0)
        model = se_resnet20(min_hidden=4).double()
        step = TrainStep(model, SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4))
        for x, y in batches:
            step(x, y)
        return model.state_dict()
    with plain_on_cpu():
        expected = train()
    got = train()
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-9, atol=1e-12, err_msg=name)

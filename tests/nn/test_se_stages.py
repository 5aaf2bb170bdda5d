"""The SE block's teaching API: squeeze, excite, rescale and their backward passes."""
import numpy as np
import pytest

from minise import nn


def _block(C=6, r=2, seed=0):
    nn.manual_seed(seed)
    return nn.SEBlock(C, r).double()


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def test_stages_compose_to_forward():
    se = _block()
    x = _x((2, 6, 3, 4))
    out = se(x)
    z = se.squeeze(x)
    s = se.excite(z)
    np.testing.assert_allclose(se.rescale(x, s), out, rtol=1e-14)
    np.testing.assert_allclose(z, x.mean(axis=(2, 3)), rtol=1e-14)


def test_excite_is_fc_relu_fc_sigmoid():
    se = _block()
    z = _x((3, 6), seed=1)
    w1 = se.sequence[2].weight.data
    w2, b2 = se.sequence[4].weight.data, se.sequence[4].bias.data
    expected = _sigmoid(np.maximum(z @ w1.T, 0) @ w2.T + b2).reshape(3, 6, 1, 1)
    np.testing.assert_allclose(se.excite(z), expected, rtol=1e-13)


def test_z_and_s_readable_after_forward():
    se = _block()
    assert se.z is None and se.s is None
    x = _x((2, 6, 3, 3)) * 5
    se(x)
    assert se.z.shape == (2, 6) and se.s.shape == (2, 6, 1, 1)
    np.testing.assert_allclose(se.z, x.mean(axis=(2, 3)), rtol=1e-14)
    assert np.all(se.s > 0) and np.all(se.s < 1)
    np.testing.assert_allclose(se.s, se.excite(se.z), rtol=1e-14)


def test_squeeze_backward_spreads_evenly():
    se = _block()
    x = _x((2, 6, 3, 5))
    se.squeeze(x)
    dz = _x((2, 6), seed=2)
    dx = se.squeeze_backward(dz)
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, np.broadcast_to(dz[:, :, None, None] / 15, x.shape), rtol=1e-14)


def test_rescale_backward_is_the_product_rule():
    x = _x((2, 3, 4, 5))
    s = _sigmoid(_x((2, 3, 1, 1), seed=1))
    dout = _x((2, 3, 4, 5), seed=2)
    dx, ds = nn.SEBlock.rescale_backward(dout, x, s)
    np.testing.assert_allclose(dx, dout * s, rtol=1e-14)
    assert ds.shape == (2, 3, 1, 1)
    expected = np.einsum("nchw,nchw->nc", dout, x).reshape(2, 3, 1, 1)
    np.testing.assert_allclose(ds, expected, rtol=1e-12)


def test_backward_is_direct_plus_excitation_path():
    se = _block()
    x = _x((2, 6, 3, 3))
    dout = _x((2, 6, 3, 3), seed=3)
    se(x)
    dx = se.backward(dout)
    grads = {n: p.grad.copy() for n, p in se.named_parameters()}
    # the same through the stages, on a twin
    twin = _block()
    s = twin.excite(twin.squeeze(x))
    direct, ds = twin.rescale_backward(dout, x, s)
    np.testing.assert_allclose(dx, direct + twin.squeeze_backward(twin.excite_backward(ds)), rtol=1e-12)
    for n, p in twin.named_parameters():
        np.testing.assert_allclose(grads[n], p.grad, rtol=1e-12, err_msg=n)
    # the excitation path is not negligible: leaving it out would be wrong
    assert np.abs(dx - direct).max() > 1e-3


def test_excite_backward_fills_fc_gradients():
    se = _block()
    z = _x((2, 6))
    se.excite(z)
    ds = _x((2, 6, 1, 1), seed=4)
    dz = se.excite_backward(ds)
    assert dz.shape == (2, 6)
    h = np.maximum(z @ se.sequence[2].weight.data.T, 0)
    s = _sigmoid(h @ se.sequence[4].weight.data.T + se.sequence[4].bias.data)
    g = ds.reshape(2, 6) * s * (1 - s)                                 # through the sigmoid
    np.testing.assert_allclose(se.sequence[4].bias.grad, g.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(se.sequence[4].weight.grad, g.T @ h, rtol=1e-12)
    dh = (g @ se.sequence[4].weight.data) * (h > 0)                      # through the ReLU
    np.testing.assert_allclose(se.sequence[2].weight.grad, dh.T @ z, rtol=1e-12)
    np.testing.assert_allclose(dz, dh @ se.sequence[2].weight.data, rtol=1e-12)


def test_parameter_count_and_names_for_64_16():
    se = nn.SEBlock(64, 16)
    sizes = {n: p.size for n, p in se.named_parameters()}
    assert sizes == {"sequence.2.weight": 256, "sequence.4.weight": 256, "sequence.4.bias": 64}
    assert sum(sizes.values()) == 576
    assert se.sequence[2].weight.size + (0 if se.sequence[2].bias is None else se.sequence[2].bias.size) == 256
    assert se.sequence[4].weight.size + se.sequence[4].bias.size == 320
    assert list(se.state_dict()) == ["sequence.2.weight", "sequence.4.weight", "sequence.4.bias"]
    assert se.state_dict()["sequence.2.weight"].shape == (4, 64)
    assert se.state_dict()["sequence.4.weight"].shape == (64, 4)


def test_sequence_layout():
    se = nn.SEBlock(8, 2)
    kinds = [type(m).__name__ for m in se.sequence]
    assert kinds == ["AdaptiveAvgPool2d", "Flatten", "Linear", "ReLU", "Linear", "Sigmoid", "Unflatten"]
    assert se.sequence[2].bias is None and se.sequence[4].bias is not None


@pytest.mark.parametrize("C, r, hidden", [(7, 3, 2), (6, 6, 1), (5, 1, 5), (64, 16, 4)])
def test_hidden_width_is_floor(C, r, hidden):
    se = nn.SEBlock(C, r)
    assert se.sequence[2].weight.shape == (hidden, C)
    assert se.sequence[4].weight.shape == (C, hidden)


def test_loads_torch_se_block_state_dict():
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    C, r = 8, 2
    torch.manual_seed(0)
    tseq = tnn.Sequential(tnn.AdaptiveAvgPool2d((1, 1)), tnn.Flatten(), tnn.Linear(C, C // r, bias=False),
                          tnn.ReLU(), tnn.Linear(C // r, C), tnn.Sigmoid(), tnn.Unflatten(1, (C, 1, 1))).double()
    sd = {f"sequence.{k}": v for k, v in tseq.state_dict().items()}
    se = nn.SEBlock(C, r).double()
    se.load_state_dict(sd)
    x = _x((2, C, 3, 3))
    t = torch.from_numpy(x)
    np.testing.assert_allclose(se(x), (t * tseq(t)).detach().numpy(), rtol=1e-12)

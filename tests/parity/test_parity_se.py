"""SEBlock parity with the seed post's PyTorch SE block (written out exactly as in the post)."""
import numpy as np
import pytest
import torch

import minise.nn as mnn
from seed_post import SEBlock


SE_CASES = [(64, 16, (2, 64, 4, 4)), (32, 4, (3, 32, 4, 4)), (7, 3, (2, 7, 3, 5)), (7, 3, (1, 7, 1, 1)),
            (5, 5, (2, 5, 2, 3))]
SE_IDS = [f"C{c}-r{r}-x{'x'.join(map(str, s))}" for c, r, s in SE_CASES]


def _pair(C, r, dtype, parity, gen):
    m, t = parity.cast_pair(mnn.SEBlock(C, r), SEBlock(C, r), dtype)
    with torch.no_grad():  # a bias spread wide enough that some gates are far from 0.5
        t.sequence[4].bias.copy_(torch.from_numpy(gen.normal(0, 1.0, C)))
    parity.load_t2m(m, t)
    return m, t


@pytest.mark.parametrize("dtype", [np.float64])
@pytest.mark.parametrize("C,r,shape", SE_CASES, ids=SE_IDS)
def test_se_block_parity(parity, gen, dtype, C, r, shape):
    m, t = _pair(C, r, dtype, parity, gen)
    parity.check_layout(m, t, order=True)
    assert [n for n, _ in m.named_parameters()] == ["sequence.2.weight", "sequence.4.weight", "sequence.4.bias"]
    assert m.sequence[2].weight.shape == (C // r, C)
    x = parity.randn(gen, shape, dtype)
    for mode in ("train", "eval"):  # the SE block has no mode-dependent layer; both must agree
        m.train(mode == "train")
        t.train(mode == "train")
        parity.forward_backward(m, t, x, dtype, gen, what=f"SEBlock({C}, {r}) {mode}")


@pytest.mark.parametrize("C,r,shape", SE_CASES, ids=SE_IDS)
def test_se_block_parity_float32(parity, gen, C, r, shape):
    """float32 (the default dtype): forward, dx and grads against the float64 truth, no worse
    than torch's own float32 (the FC-weight gradient sums with cancellation, so torch's float32
    is itself only ~2e-5 of max abs from the truth for SEBlock(64, 16))."""
    m32 = mnn.SEBlock(C, r)
    t32 = SEBlock(C, r)
    with torch.no_grad():
        t32.sequence[4].bias.copy_(torch.from_numpy(gen.normal(0, 1.0, C)))
    t64 = SEBlock(C, r).double()
    t64.load_state_dict(t32.state_dict())
    parity.load_t2m(m32, t32)
    assert all(p.dtype == np.float32 for p in m32.parameters())
    for mode in (True, False):
        m32.train(mode), t32.train(mode), t64.train(mode)
        parity.float32_parity(m32, t32, t64, parity.randn(gen, shape, np.float32),
                              parity.randn(gen, shape, np.float32), what=f"SEBlock({C}, {r}) float32")


def test_se_block_64_16_has_576_parameters():
    m = mnn.SEBlock(64, 16)
    n = sum(p.size for p in m.parameters())
    assert n == 576 == sum(p.numel() for p in SEBlock(64, 16).parameters())
    assert n == 64 * 4 + 4 * 64 + 64


@pytest.mark.parametrize("C,r,shape", SE_CASES[:3], ids=SE_IDS[:3])
def test_se_block_z_and_s_match_torch_hooks(parity, gen, C, r, shape):
    """minise's z (N, C) and s (N, C, 1, 1) equal torch's pooled descriptor (the output of
    sequence[1], Flatten) and sigmoid output (sequence[5])."""
    m, t = _pair(C, r, np.float64, parity, gen)
    seen = {}
    hooks = [t.sequence[1].register_forward_hook(lambda mod, i, o: seen.__setitem__("z", o.detach().clone())),
             t.sequence[5].register_forward_hook(lambda mod, i, o: seen.__setitem__("s", o.detach().clone()))]
    try:
        x = parity.randn(gen, shape, np.float64)
        t(torch.from_numpy(x))
        m(x)
    finally:
        for h in hooks:
            h.remove()
    N = shape[0]
    assert m.z.shape == (N, C) and m.s.shape == (N, C, 1, 1)
    parity.assert_close(m.z, seen["z"], dtype=np.float64, what="z")
    parity.assert_close(m.s.reshape(N, C), seen["s"], dtype=np.float64, what="s")
    parity.assert_close(m.z, x.mean(axis=(2, 3)), dtype=np.float64, what="z is the channel mean")


def test_se_block_minise_to_torch_state_dict(parity, gen):
    mnn.manual_seed(5)
    m = mnn.SEBlock(32, 4).double()
    t = SEBlock(32, 4).double()
    parity.load_m2t(t, m)
    parity.forward_backward(m, t, parity.randn(gen, (2, 32, 4, 4), np.float64), np.float64, gen)


def test_se_block_fan_out(parity, gen):
    """x feeds the product and the excitation: dx equals torch's, equals the sum of the two
    paths computed with minise's stage functions, and differs from either path alone."""
    m, t = _pair(32, 4, np.float64, parity, gen)
    x = parity.randn(gen, (2, 32, 4, 4), np.float64)
    _, dx, dout = parity.forward_backward(m, t, x, np.float64, gen)
    dx_direct, ds = m.rescale_backward(dout, x, m.s)
    m.zero_grad()
    dx_excite = m.squeeze_backward(m.excite_backward(ds))
    np.testing.assert_allclose(dx, dx_direct + dx_excite, rtol=1e-12, atol=1e-14)
    # torch's gradient through the gate alone (x detached in the product) is the excitation path
    xt = torch.tensor(x, requires_grad=True)
    (xt.detach() * t.sequence(xt)).backward(torch.from_numpy(dout))
    parity.assert_close(dx_excite, xt.grad, dtype=np.float64, what="excitation path")
    for part in (dx_direct, dx_excite):
        assert np.abs(dx - part).max() > 1e-3 * np.abs(dx).max()


def test_se_block_grads_accumulate(parity, gen):
    m, t = _pair(16, 4, np.float64, parity, gen)
    x = parity.randn(gen, (2, 16, 3, 3), np.float64)
    out = m(x)
    dout = parity.randn(gen, out.shape, np.float64)
    m.backward(dout)
    m.backward(dout)
    t(torch.from_numpy(x)).backward(torch.from_numpy(2 * dout))
    parity.compare_param_grads(m, t, np.float64)

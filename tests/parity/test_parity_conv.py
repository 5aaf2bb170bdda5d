"""Conv2d parity with torch.nn.Conv2d: forward, dx, dW, db, state_dict both ways."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import minise.nn as mnn

# (C, O, kernel, stride, padding, bias, x shape (N, C, H, W))
CASES = [
    (3, 4, 1, 1, 0, True, (2, 3, 5, 5)),
    (3, 4, 1, 2, 0, False, (2, 3, 5, 6)),
    (3, 2, 3, 1, 1, True, (2, 3, 5, 5)),
    (3, 2, 3, 2, 1, False, (2, 3, 7, 6)),
    (2, 3, 3, 1, 0, True, (1, 2, 4, 6)),
    (2, 3, 3, 2, 2, True, (2, 2, 5, 4)),
    (2, 2, 5, 1, 2, True, (2, 2, 6, 5)),
    (2, 2, 5, 2, 0, False, (1, 2, 7, 9)),
    (2, 2, 5, 2, 1, True, (1, 2, 5, 5)),
    (3, 2, (3, 1), (2, 1), (1, 0), False, (2, 3, 5, 4)),
    (2, 3, (1, 3), (1, 2), (0, 1), True, (2, 2, 3, 7)),
    (1, 2, (5, 3), (2, 1), (2, 1), True, (1, 1, 6, 4)),
    (4, 1, 3, 1, 1, True, (1, 4, 1, 1)),
    (2, 2, 1, 1, 2, True, (1, 2, 2, 3)),
]


def _ids():
    return [f"C{c}O{o}-k{k}-s{s}-p{p}-b{int(b)}-x{'x'.join(map(str, x))}" for c, o, k, s, p, b, x in CASES]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("C,O,k,s,p,bias,shape", CASES, ids=_ids())
def test_conv2d_parity(parity, gen, dtype, C, O, k, s, p, bias, shape):
    m = mnn.Conv2d(C, O, k, stride=s, padding=p, bias=bias)
    t = torch.nn.Conv2d(C, O, k, stride=s, padding=p, bias=bias)
    parity.cast_pair(m, t, dtype)
    parity.load_t2m(m, t)
    x = parity.randn(gen, shape, dtype)
    out, dx, _ = parity.forward_backward(m, t, x, dtype, gen, what="Conv2d")
    assert out.shape == tuple(t(torch.from_numpy(x)).shape)
    # the parameters of a float32 model stay float32 (the default), float64 after .double()
    assert m.weight.data.dtype == np.dtype(dtype) and m.weight.grad.dtype == np.dtype(dtype)


def test_conv2d_default_dtype_is_float32_and_init_bound():
    m = mnn.Conv2d(3, 5, 3)
    assert m.weight.data.dtype == np.float32 and m.bias.data.dtype == np.float32
    bound = 1 / np.sqrt(3 * 3 * 3)
    assert np.abs(m.weight.data).max() <= bound and np.abs(m.bias.data).max() <= bound


def test_conv2d_minise_to_torch_state_dict(parity, gen):
    """minise -> torch: torch loads minise's NumPy state_dict and computes the same thing."""
    mnn.manual_seed(7)
    m = mnn.Conv2d(3, 4, 3, stride=2, padding=1).double()
    t = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1).double()
    assert not torch.allclose(t.weight, torch.from_numpy(m.weight.data))  # the copy matters
    parity.load_m2t(t, m)
    parity.forward_backward(m, t, parity.randn(gen, (2, 3, 6, 5), np.float64), np.float64, gen)


def test_conv2d_load_casts_to_model_dtype(parity, gen):
    """Loading a float64 torch state_dict into a float32 model keeps it float32."""
    t = torch.nn.Conv2d(2, 3, 3, padding=1).double()
    m = mnn.Conv2d(2, 3, 3, padding=1)
    m.load_state_dict(t.state_dict())
    assert m.weight.data.dtype == np.float32 and m.bias.data.dtype == np.float32
    np.testing.assert_array_equal(m.weight.data, t.weight.detach().numpy().astype(np.float32))
    np.testing.assert_array_equal(m.bias.data, t.bias.detach().numpy().astype(np.float32))


def test_conv2d_grads_accumulate(parity, gen):
    """backward adds into Parameter.grad: two backward passes give twice torch's gradients."""
    m = mnn.Conv2d(2, 3, 3, stride=2, padding=1).double()
    t = torch.nn.Conv2d(2, 3, 3, stride=2, padding=1).double()
    parity.load_t2m(m, t)
    x = parity.randn(gen, (2, 2, 5, 5), np.float64)
    out = m(x)
    dout = parity.randn(gen, out.shape, np.float64)
    dx1 = m.backward(dout).copy()
    dx2 = m.backward(dout)
    np.testing.assert_array_equal(dx1, dx2)
    t(torch.from_numpy(x)).backward(torch.from_numpy(2 * dout))
    parity.compare_param_grads(m, t, np.float64)


def test_conv2d_shape_change_between_calls(parity, gen):
    """Work buffers are reused across calls; a new input shape must not leak stale data."""
    m = mnn.Conv2d(2, 3, 3, stride=1, padding=1).double()
    t = torch.nn.Conv2d(2, 3, 3, stride=1, padding=1).double()
    parity.load_t2m(m, t)
    for shape in [(2, 2, 5, 5), (1, 2, 3, 7), (2, 2, 5, 5)]:
        parity.forward_backward(m, t, parity.randn(gen, shape, np.float64), np.float64, gen)


@st.composite
def conv_configs(draw):
    N = draw(st.integers(1, 3))
    C = draw(st.integers(1, 4))
    O = draw(st.integers(1, 4))
    H = draw(st.integers(1, 8))
    W = draw(st.integers(1, 8))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    bias = draw(st.booleans())
    square = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    return N, C, O, H, W, (kh, kw), (sh, sw), (ph, pw), bias, square, seed


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.filter_too_much])
@given(cfg=conv_configs())
def test_conv2d_parity_hypothesis(parity, cfg):
    N, C, O, H, W, (kh, kw), (sh, sw), (ph, pw), bias, square, seed = cfg
    if square:  # exercise the int form of the arguments too
        kw, sw, pw, W = kh, sh, ph, H
    assume(H + 2 * ph >= kh and W + 2 * pw >= kw)
    if square:
        k, s, p = kh, sh, ph
    else:
        k, s, p = (kh, kw), (sh, sw), (ph, pw)
    gen = np.random.default_rng(seed)
    mnn.manual_seed(seed)
    torch.manual_seed(seed)
    m = mnn.Conv2d(C, O, k, stride=s, padding=p, bias=bias).double()
    t = torch.nn.Conv2d(C, O, k, stride=s, padding=p, bias=bias).double()
    parity.load_t2m(m, t)
    x = parity.randn(gen, (N, C, H, W), np.float64)
    out, _, _ = parity.forward_backward(m, t, x, np.float64, gen, what=f"Conv2d {cfg}")
    assert out.shape == (N, O, (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1)

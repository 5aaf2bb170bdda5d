"""The fast im2col convolution against the slow loop reference, the im2col/col2im adjoint pair,
and the work buffers that the convolution reuses between calls."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from minise import nn
from minise.nn.im2col import col2im, im2col, output_size, pad_input
from minise.nn.textbook import conv2d_forward as conv2d_reference

FEW = settings(max_examples=20, deadline=None)

shapes = dict(N=st.integers(1, 3), C=st.integers(1, 3), O=st.integers(1, 4), H=st.integers(1, 8),
              W=st.integers(1, 8), kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3),
              sw=st.integers(1, 3), ph=st.integers(0, 2), pw=st.integers(0, 2), seed=st.integers(0, 2**16))


def _valid(H, W, kh, kw, ph, pw):
    return H + 2 * ph >= kh and W + 2 * pw >= kw


def _conv(C, O, kh, kw, sh, sw, ph, pw, bias=True, seed=0):
    nn.manual_seed(seed)
    return nn.Conv2d(C, O, (kh, kw), stride=(sh, sw), padding=(ph, pw), bias=bias).double()


@FEW
@given(bias=st.booleans(), **shapes)
def test_forward_matches_reference(N, C, O, H, W, kh, kw, sh, sw, ph, pw, seed, bias):
    assume(_valid(H, W, kh, kw, ph, pw))
    conv = _conv(C, O, kh, kw, sh, sw, ph, pw, bias, seed)
    x = np.random.default_rng(seed).standard_normal((N, C, H, W))
    out = conv(x)
    ref = conv2d_reference(x, conv.weight.data, None if conv.bias is None else conv.bias.data,
                           (sh, sw), (ph, pw))
    assert out.shape == (N, O, output_size(H, kh, sh, ph), output_size(W, kw, sw, pw))
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


@FEW
@given(**shapes)
def test_im2col_col2im_are_adjoint(N, C, O, H, W, kh, kw, sh, sw, ph, pw, seed):
    """<im2col(pad(x)), c> == <x, col2im(c)>: col2im is exactly the transpose of im2col."""
    assume(_valid(H, W, kh, kw, ph, pw))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W))
    cols = im2col(pad_input(x, (ph, pw)), (kh, kw), (sh, sw))
    Ho, Wo = output_size(H, kh, sh, ph), output_size(W, kw, sw, pw)
    assert cols.shape == (C * kh * kw, N * Ho * Wo)
    c = rng.standard_normal(cols.shape)
    back = col2im(c, x.shape, (kh, kw), (sh, sw), (ph, pw))
    assert back.shape == x.shape
    lhs, rhs = float(np.sum(cols * c)), float(np.sum(x * back))
    assert abs(lhs - rhs) <= 1e-11 * max(1.0, np.abs(cols * c).sum())


@FEW
@given(**shapes)
def test_backward_is_the_adjoint_of_the_reference(N, C, O, H, W, kh, kw, sh, sw, ph, pw, seed):
    """The convolution is linear in x and in the weight, so for any dout
    <ref(x, W), dout> == <x, dx> == <W, dW>: both backward paths (stride 1 and col2im) checked
    against the loop reference, exactly and cheaply."""
    assume(_valid(H, W, kh, kw, ph, pw))
    conv = _conv(C, O, kh, kw, sh, sw, ph, pw, bias=False, seed=seed)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((N, C, H, W))
    ref = conv2d_reference(x, conv.weight.data, None, (sh, sw), (ph, pw))
    dout = rng.standard_normal(ref.shape)
    conv(x)
    dx = conv.backward(dout)
    pairing = float(np.sum(ref * dout))
    tol = 1e-11 * max(1.0, float(np.abs(ref * dout).sum()))
    assert abs(pairing - float(np.sum(x * dx))) <= tol
    assert abs(pairing - float(np.sum(conv.weight.data * conv.weight.grad))) <= tol


def test_im2col_layout():
    """cols[(c, i, j), (n, ho, wo)] = x_padded[n, c, ho*sh + i, wo*sw + j]"""
    rng = np.random.default_rng(0)
    xpad = rng.standard_normal((2, 3, 6, 7))
    (kh, kw), (sh, sw) = (2, 3), (2, 2)
    cols = im2col(xpad, (kh, kw), (sh, sw))
    Ho, Wo = output_size(6, kh, sh, 0), output_size(7, kw, sw, 0)
    for c in range(3):
        for i in range(kh):
            for j in range(kw):
                for n in range(2):
                    for ho in range(Ho):
                        for wo in range(Wo):
                            row, col = (c * kh + i) * kw + j, (n * Ho + ho) * Wo + wo
                            assert cols[row, col] == xpad[n, c, ho * sh + i, wo * sw + j]


def test_pad_input_reused_buffer_gets_a_clean_border():
    x = np.ones((1, 1, 2, 2))
    buf = np.full((1, 1, 4, 6), 9.0)
    out = pad_input(x, (1, 2), out=buf)
    assert out is buf
    expected = np.zeros((1, 1, 4, 6))
    expected[:, :, 1:3, 2:4] = 1
    np.testing.assert_array_equal(out, expected)


# ---- reused work buffers ------------------------------------------------------------------------
CONFIGS = [dict(k=3, s=1, p=1), dict(k=3, s=2, p=1), dict(k=1, s=1, p=1), dict(k=2, s=1, p=0),
           dict(k=3, s=1, p=0)]


def _pair(k, s, p):
    """The layer under test and a fresh twin with the same weights."""
    used, fresh = (_conv(3, 4, k, k, s, s, p, p, seed=5) for _ in range(2))
    return used, fresh


@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
def test_consecutive_passes_with_different_batch_sizes(cfg):
    used, _ = _pair(**cfg)
    rng = np.random.default_rng(0)
    for N, H in [(3, 6), (1, 6), (2, 5), (3, 6)]:
        x = rng.standard_normal((N, 3, H, H))
        _, fresh = _pair(**cfg)
        out = used(x)
        dout = rng.standard_normal(out.shape)
        used.zero_grad()
        dx = used.backward(dout)
        ref_out = fresh(x)
        np.testing.assert_allclose(out, ref_out, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(dx, fresh.backward(dout), rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(used.weight.grad, fresh.weight.grad, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(used.bias.grad, fresh.bias.grad, rtol=1e-13, atol=1e-13)
        ref = conv2d_reference(x, fresh.weight.data, fresh.bias.data, used.stride, used.padding)
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
def test_outputs_are_not_work_buffers(cfg):
    conv, _ = _pair(**cfg)
    rng = np.random.default_rng(1)
    x1, x2 = rng.standard_normal((2, 2, 3, 6, 6))
    out1 = conv(x1)
    out1_copy = out1.copy()
    dout1 = rng.standard_normal(out1.shape)
    dx1 = conv.backward(dout1)
    dx1_copy = dx1.copy()
    out2 = conv(x2)                                    # same shapes: the same work buffers
    dx2 = conv.backward(rng.standard_normal(out2.shape))
    np.testing.assert_array_equal(out1, out1_copy)
    np.testing.assert_array_equal(dx1, dx1_copy)
    assert not np.array_equal(out1, out2) and not np.array_equal(dx1, dx2)
    for name, buf in _work_buffers(conv):
        for returned in (out1, dx1, out2, dx2):
            assert not np.shares_memory(returned, buf), name


def _work_buffers(layer):
    """The scratch buffers shared by layers (this thread's: the test runs one thread)."""
    from minise.nn import workspace
    buffers = list(workspace.thread_buffers().items())
    assert buffers, "no work buffers found: the test would check nothing"
    return buffers


def test_two_layers_sharing_scratch_do_not_disturb_each_other():
    """Two convolutions of the same shape in one network: the second one's forward and backward
    reuse the same temporaries as the first one's; the first one's backward must still be right."""
    nn.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Tanh(), nn.Conv2d(3, 3, 3, padding=1),
                          nn.Tanh(), nn.Conv2d(3, 3, 3, stride=2, padding=1)).double()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 6, 6))
    out = model(x)
    dout = rng.standard_normal(out.shape)
    dx = model.backward(dout)
    # the same chain again, but each layer's forward re-run right before its own backward, so
    # no other layer can touch a shared temporary in between
    acts = [x]
    for layer in model:
        acts.append(layer(acts[-1]))
    d = dout
    for i in reversed(range(len(model))):
        layer = model[i]
        if isinstance(layer, nn.Conv2d):
            ref = conv2d_reference(acts[i], layer.weight.data, layer.bias.data, layer.stride, layer.padding)
            np.testing.assert_allclose(acts[i + 1], ref, rtol=1e-12, atol=1e-12)
        layer(acts[i])
        d = layer.backward(d)
    np.testing.assert_allclose(dx, d, rtol=1e-12, atol=1e-12)

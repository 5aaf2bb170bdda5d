"""Parity with torch for pooling, Linear, the activations, the shape layers and Sequential."""
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import minise.nn as mnn

DTYPES = [np.float64, np.float32]


# ---- pooling ------------------------------------------------------------------------------
POOL_CASES = [  # (kernel, stride, padding, x shape)
    (2, None, 0, (2, 3, 4, 4)),
    (2, None, 0, (1, 2, 5, 7)),
    (2, 1, 0, (2, 2, 4, 5)),
    (2, 2, 1, (2, 2, 5, 4)),
    (2, 1, 1, (1, 3, 3, 3)),
    (3, None, 0, (2, 2, 6, 7)),
    (3, 1, 0, (2, 2, 5, 4)),
    (3, 1, 1, (1, 2, 4, 4)),
    (3, 2, 1, (2, 3, 5, 6)),
    (3, 2, 0, (1, 1, 7, 7)),
    ((3, 2), (1, 2), (1, 0), (2, 2, 5, 6)),
]
POOL_IDS = [f"k{k}-s{s}-p{p}-x{'x'.join(map(str, x))}" for k, s, p, x in POOL_CASES]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k,s,p,shape", POOL_CASES, ids=POOL_IDS)
@pytest.mark.parametrize("kind", ["MaxPool2d", "AvgPool2d"])
def test_pool2d_parity(parity, gen, kind, dtype, k, s, p, shape):
    m = getattr(mnn, kind)(k, stride=s, padding=p)
    t = getattr(torch.nn, kind)(k, stride=s, padding=p)
    parity.check_layout(m, t)
    x = parity.randn(gen, shape, dtype)
    if kind == "MaxPool2d" and p:  # an all-negative input: padding must never win the max
        x = -np.abs(x) - 1
    parity.forward_backward(m, t, x, dtype, gen, what=kind)


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(N=st.integers(1, 2), C=st.integers(1, 3), H=st.integers(1, 7), W=st.integers(1, 7),
       k=st.integers(1, 3), s=st.one_of(st.none(), st.integers(1, 3)), p=st.integers(0, 1),
       kind=st.sampled_from(["MaxPool2d", "AvgPool2d"]), seed=st.integers(0, 2**31 - 1))
def test_pool2d_parity_hypothesis(parity, N, C, H, W, k, s, p, kind, seed):
    assume(2 * p <= k and H + 2 * p >= k and W + 2 * p >= k)
    gen = np.random.default_rng(seed)
    m = getattr(mnn, kind)(k, stride=s, padding=p)
    t = getattr(torch.nn, kind)(k, stride=s, padding=p)
    parity.forward_backward(m, t, parity.randn(gen, (N, C, H, W), np.float64), np.float64, gen,
                            what=f"{kind}(k={k}, s={s}, p={p}) on {(N, C, H, W)}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size,shape", [(1, (2, 3, 4, 4)), ((1, 1), (2, 3, 4, 4)), ((2, 2), (2, 3, 4, 4)),
                                         ((1, 1), (1, 2, 3, 5)), ((2, 1), (2, 2, 4, 3)),
                                         ((4, 4), (1, 2, 4, 4))])
def test_adaptive_avg_pool2d_parity(parity, gen, dtype, size, shape):
    m, t = mnn.AdaptiveAvgPool2d(size), torch.nn.AdaptiveAvgPool2d(size)
    parity.forward_backward(m, t, parity.randn(gen, shape, dtype), dtype, gen, what=f"AdaptiveAvgPool2d({size})")


# ---- Linear -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("n,fin,fout", [(4, 5, 3), (1, 3, 6), (3, 1, 1), (2, 64, 4)])
def test_linear_parity(parity, gen, dtype, bias, n, fin, fout):
    m = mnn.Linear(fin, fout, bias=bias)
    t = torch.nn.Linear(fin, fout, bias=bias)
    parity.cast_pair(m, t, dtype)
    parity.load_t2m(m, t)
    parity.forward_backward(m, t, parity.randn(gen, (n, fin), dtype), dtype, gen, what="Linear")


def test_linear_minise_to_torch_state_dict(parity, gen):
    mnn.manual_seed(3)
    m = mnn.Linear(5, 4)
    t = torch.nn.Linear(5, 4)
    parity.load_m2t(t, m)
    parity.forward_backward(m, t, parity.randn(gen, (3, 5), np.float32), np.float32, gen)


def test_linear_grads_accumulate(parity, gen):
    m = mnn.Linear(4, 3).double()
    t = torch.nn.Linear(4, 3).double()
    parity.load_t2m(m, t)
    x = parity.randn(gen, (5, 4), np.float64)
    dout = parity.randn(gen, (5, 3), np.float64)
    m(x)
    m.backward(dout)
    m.backward(dout)
    t(torch.from_numpy(x)).backward(torch.from_numpy(2 * dout))
    parity.compare_param_grads(m, t, np.float64)


# ---- activations --------------------------------------------------------------------------
def _with_extremes(gen, shape, dtype, extremes):
    x = gen.standard_normal(shape) * 3
    flat = x.reshape(-1)
    flat[: len(extremes)] = extremes
    flat[len(extremes)] = 0.0
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["ReLU", "Sigmoid", "Tanh"])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4, 4), (2, 1, 3, 2, 2)])
def test_activation_parity(parity, gen, kind, dtype, shape):
    m, t = getattr(mnn, kind)(), getattr(torch.nn, kind)()
    x = _with_extremes(gen, shape, dtype, [50.0, -50.0, 20.0, -20.0, 1e-3, -1e-3])
    parity.forward_backward(m, t, x, dtype, gen, what=kind)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_large_inputs(parity, gen, dtype):
    """|x| up to 1000: no overflow warning, no NaN; in float64 even the tiny outputs and
    gradients match torch's to 1e-10 *relative to each element*."""
    xs = np.array([-1000.0, -100.0, -50.0, -30.0, -10.0, -1.0, 0.0, 1.0, 10.0, 30.0, 50.0, 100.0, 1000.0])
    x = xs.astype(dtype).reshape(1, -1)
    m, t = mnn.Sigmoid(), torch.nn.Sigmoid()
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow is fine
        out, dx, dout = parity.forward_backward(m, t, x, dtype, gen, what="Sigmoid large |x|")
    assert np.all(np.isfinite(out)) and np.all((out >= 0) & (out <= 1))
    assert out[0, list(xs).index(50.0)] == pytest.approx(1.0, abs=1e-15 if dtype == np.float64 else 1e-7)
    if dtype == np.float64:
        xt = torch.tensor(x, requires_grad=True)
        ot = torch.sigmoid(xt)
        ot.backward(torch.from_numpy(dout))
        mask = np.abs(xs) <= 100  # exp(-1000) underflows to 0 in both
        np.testing.assert_allclose(out[0, mask], ot.detach().numpy()[0, mask], rtol=1e-10, atol=0)
        np.testing.assert_allclose(dx[0, mask], xt.grad.numpy()[0, mask], rtol=1e-10, atol=0)
        np.testing.assert_allclose(out[0, xs == -50.0], np.exp(-50.0) / (1 + np.exp(-50.0)), rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_at_zero(parity, gen, dtype):
    """torch's ReLU passes no gradient at exactly 0; neither may minise."""
    x = np.array([[-1.0, 0.0, 0.0, 2.0, -0.0, 3.0]], dtype=dtype)
    parity.forward_backward(mnn.ReLU(), torch.nn.ReLU(), x, dtype, gen, dout=np.ones_like(x))


# ---- shape layers -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("args,shape", [((), (2, 3, 4, 4)), ((0,), (2, 3, 4)), ((1, 2), (2, 3, 4, 5)),
                                        ((-3, -2), (2, 3, 4, 5)), ((2,), (2, 3, 4, 5)), ((), (3, 4))])
def test_flatten_parity(parity, gen, dtype, args, shape):
    m, t = mnn.Flatten(*args), torch.nn.Flatten(*args)
    parity.forward_backward(m, t, parity.randn(gen, shape, dtype), dtype, gen, what=f"Flatten{args}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim,sizes,shape", [(1, (3, 1, 1), (2, 3)), (1, (2, 3), (2, 6, 4)),
                                             (-1, (2, 2), (3, 2, 4)), (2, (1, 4), (2, 3, 4)),
                                             (0, (2, 1), (2, 5))])
def test_unflatten_parity(parity, gen, dtype, dim, sizes, shape):
    m, t = mnn.Unflatten(dim, sizes), torch.nn.Unflatten(dim, sizes)
    parity.forward_backward(m, t, parity.randn(gen, shape, dtype), dtype, gen, what=f"Unflatten({dim}, {sizes})")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4,), (2, 3), (2, 3, 4, 5)])
def test_identity_parity(parity, gen, dtype, shape):
    parity.forward_backward(mnn.Identity(), torch.nn.Identity(), parity.randn(gen, shape, dtype), dtype, gen)


# ---- Sequential ---------------------------------------------------------------------------
def _pair_of_nets():
    """A twin pair using every layer. (A bias directly before a train-mode BN has a gradient of
    exactly 0 up to rounding, so no biased layer feeds a BN here.)"""
    m = mnn.Sequential(
        mnn.Conv2d(3, 4, 3, padding=1), mnn.ReLU(), mnn.BatchNorm2d(4), mnn.MaxPool2d(2),
        mnn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False), mnn.BatchNorm2d(6), mnn.Tanh(),
        mnn.AvgPool2d(2, stride=1), mnn.AdaptiveAvgPool2d(1), mnn.Flatten(), mnn.Linear(6, 8, bias=False),
        mnn.BatchNorm1d(8), mnn.Sigmoid(), mnn.Identity(), mnn.Linear(8, 6), mnn.Unflatten(1, (2, 3)))
    t = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.BatchNorm2d(4), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False), torch.nn.BatchNorm2d(6), torch.nn.Tanh(),
        torch.nn.AvgPool2d(2, stride=1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(6, 8, bias=False),
        torch.nn.BatchNorm1d(8), torch.nn.Sigmoid(), torch.nn.Identity(), torch.nn.Linear(8, 6), torch.nn.Unflatten(1, (2, 3)))
    return m, t


@pytest.mark.parametrize("dtype", DTYPES)
def test_sequential_parity(parity, gen, dtype):
    m, t = parity.cast_pair(*_pair_of_nets(), dtype)
    parity.randomize_torch_(t, gen)
    parity.load_t2m(m, t)
    assert len(m) == len(t) and [type(c).__name__ for c in m] == [type(c).__name__ for c in t]
    for step in range(3):
        x = parity.randn(gen, (4, 3, 8, 8), dtype, scale=1 + step)
        parity.forward_backward(m, t, x, dtype, gen, what=f"Sequential train {step}",
                                )
        parity.compare_state(m, t, tol=None if dtype == np.float64 else 1e-5)
    m.eval()
    t.eval()
    parity.forward_backward(m, t, parity.randn(gen, (2, 3, 8, 8), dtype), dtype, gen, what="Sequential eval",
                            )


def test_sequential_minise_to_torch_state_dict(parity, gen):
    mnn.manual_seed(11)
    m, t = _pair_of_nets()
    m.double()
    t.double()
    for step in range(2):  # give minise's BN layers trained running stats
        m(parity.randn(gen, (4, 3, 8, 8), np.float64))
    parity.load_m2t(t, m)
    m.eval()
    t.eval()
    parity.forward_backward(m, t, parity.randn(gen, (2, 3, 8, 8), np.float64), np.float64, gen)


def test_sequential_state_dict_layout(parity):
    """Keys, shapes, dtypes *and order* of a nested model's state_dict equal torch's
    (torch lists each module's parameters and then its buffers, module by module)."""
    m, t = _pair_of_nets()
    parity.check_layout(m, t, order=True)


@pytest.mark.parametrize("make", [lambda nn: nn.Conv2d(3, 4, 3), lambda nn: nn.Conv2d(3, 4, 3, bias=False),
                                  lambda nn: nn.Linear(3, 2), lambda nn: nn.BatchNorm2d(3),
                                  lambda nn: nn.BatchNorm1d(3), lambda nn: nn.ReLU(), lambda nn: nn.MaxPool2d(2),
                                  lambda nn: nn.Sequential()],
                         ids=["conv", "conv-nobias", "linear", "bn2d", "bn1d", "relu", "maxpool", "empty-seq"])
def test_leaf_state_dict_layout(parity, make):
    parity.check_layout(make(mnn), make(torch.nn), order=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k,s,p", [(2, None, 0), (3, 1, 1), (3, 2, 1), (2, 1, 0)])
def test_maxpool2d_ties_route_like_torch(parity, gen, dtype, k, s, p):
    """Inputs with many equal values: the gradient goes to the same (first) maximum as torch's."""
    x = gen.integers(-2, 2, (2, 3, 5, 6)).astype(dtype)
    x[0, 0] = 1.0  # a whole channel of ties
    parity.forward_backward(mnn.MaxPool2d(k, stride=s, padding=p), torch.nn.MaxPool2d(k, stride=s, padding=p),
                            x, dtype, gen, what=f"MaxPool2d({k}, {s}, {p}) ties")


@pytest.mark.parametrize("mk,tk,shape", [(mnn.BatchNorm1d, torch.nn.BatchNorm1d, (1, 4)),
                                         (mnn.BatchNorm2d, torch.nn.BatchNorm2d, (1, 3, 1, 1))])
def test_batchnorm_one_value_per_channel_raises_like_torch(mk, tk, shape):
    x = np.ones(shape, dtype=np.float32)
    with pytest.raises(ValueError):
        tk(shape[1])(torch.from_numpy(x))
    with pytest.raises(ValueError):
        mk(shape[1])(x)
    mk(shape[1]).eval()(x)  # eval mode is fine with a single value, as in torch
    tk(shape[1]).eval()(torch.from_numpy(x))


@pytest.mark.parametrize("dim,sizes,shape", [(1, (-1, 2), (2, 6)), (1, (3, -1), (2, 6, 2)), (-1, (-1, 1, 1), (2, 5))])
def test_unflatten_inferred_size_minus_one(parity, gen, dim, sizes, shape):
    """torch.nn.Unflatten accepts one -1 in unflattened_size (the size is inferred)."""
    m, t = mnn.Unflatten(dim, sizes), torch.nn.Unflatten(dim, sizes)
    parity.forward_backward(m, t, parity.randn(gen, shape, np.float64), np.float64, gen,
                            what=f"Unflatten({dim}, {sizes})")

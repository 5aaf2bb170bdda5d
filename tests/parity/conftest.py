"""Shared helpers of the PyTorch-parity tests.

Every test builds a minise module and its ``torch.nn`` twin with the same constructor
arguments, copies the weights through ``state_dict`` and compares forward outputs, dx and every
parameter gradient (matched by name). The helpers live on the session-scoped ``parity`` fixture
(so no test imports ``conftest`` by name, which would clash with other test folders).

Tolerances: float64 to 1e-10, float32 to 1e-5, relative to the reference tensor's max abs.
"""
import types

import numpy as np
import pytest
import torch

import minise.nn as mnn

torch.set_num_threads(1)

TOL = {np.dtype("float64"): 1e-10, np.dtype("float32"): 1e-5}


def tol_for(dtype):
    return TOL[np.dtype(dtype)]


def as_numpy(a):
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def assert_close(got, want, dtype=None, tol=None, what="", scale=None):
    """``got`` (minise) equals ``want`` (torch) to ``tol`` relative to max|want|, same shape.

    ``scale`` raises the reference magnitude where ``want`` is a near-cancellation of larger
    terms (BatchNorm's dx with two values per channel is ~0 up to rounding)."""
    got, want = as_numpy(got), as_numpy(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != torch's {want.shape}"
    if tol is None:
        tol = tol_for(dtype if dtype is not None else want.dtype)
    if dtype is not None:
        assert got.dtype == np.dtype(dtype), f"{what}: dtype {got.dtype}, expected {np.dtype(dtype)}"
    assert np.all(np.isfinite(got)) or not np.all(np.isfinite(want)), f"{what}: non-finite values"
    scale = max(float(np.max(np.abs(want))) if want.size else 0.0, scale or 0.0)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=what)


def seed_all(seed=0):
    np.random.seed(seed)
    torch.manual_seed(seed)
    mnn.manual_seed(seed)


def cast_pair(m, t, dtype):
    """Put the minise module ``m`` and torch module ``t`` in ``dtype`` (float32 is the default)."""
    if np.dtype(dtype) == np.float64:
        m.double()
        t.double()
    else:
        m.float()
        t.float()
    return m, t


def check_layout(m, t, order=True):
    """state_dict keys, shapes and dtypes, and parameter and buffer names (in order) equal
    torch's; with ``order`` the state_dict's key order too. (The weight-copying helpers check
    the keys as a set, so that an order mismatch fails only the dedicated layout tests and
    does not hide the numerical comparisons.)"""
    msd, tsd = m.state_dict(), t.state_dict()
    if order:
        assert list(msd.keys()) == list(tsd.keys()), (
            f"state_dict key order differs from torch's:\n minise {list(msd)}\n torch  {list(tsd)}")
    else:
        assert sorted(msd) == sorted(tsd), f"state_dict keys differ: {sorted(msd)} vs torch's {sorted(tsd)}"
    for k in tsd:
        assert isinstance(msd[k], np.ndarray), f"{k}: state_dict value is {type(msd[k])}, not ndarray"
        assert msd[k].shape == tuple(tsd[k].shape), f"{k}: shape {msd[k].shape} != {tuple(tsd[k].shape)}"
        assert msd[k].dtype == tsd[k].numpy().dtype, f"{k}: dtype {msd[k].dtype} != {tsd[k].dtype}"
    mnames = [n for n, _ in m.named_parameters()]
    tnames = [n for n, _ in t.named_parameters()]
    assert mnames == tnames, f"parameter names {mnames} != torch's {tnames}"
    mbuf = [n for n, _ in m.named_buffers()]
    tbuf = [n for n, _ in t.named_buffers()]
    assert mbuf == tbuf, f"buffer names {mbuf} != torch's {tbuf}"


def load_t2m(m, t):
    """Copy torch's weights into minise through state_dict (torch tensors straight in)."""
    check_layout(m, t, order=False)
    m.load_state_dict(t.state_dict())
    compare_state(m, t)


def load_m2t(t, m):
    """Copy minise's weights into torch through state_dict (NumPy arrays -> torch tensors)."""
    check_layout(m, t, order=False)
    t.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    compare_state(m, t)


def compare_state(m, t, tol=None):
    """Every parameter and buffer of ``m`` equals torch's (num_batches_tracked exactly)."""
    msd, tsd = m.state_dict(), t.state_dict()
    assert sorted(msd) == sorted(tsd), f"state_dict keys differ: {sorted(msd)} vs torch's {sorted(tsd)}"
    for k, tv in tsd.items():
        tv = tv.detach().numpy()
        if tv.dtype.kind in "iu":
            assert msd[k].dtype == tv.dtype, f"{k}: dtype {msd[k].dtype} != {tv.dtype}"
            np.testing.assert_array_equal(msd[k], tv, err_msg=k)
        else:
            assert_close(msd[k], tv, dtype=tv.dtype, tol=tol, what=f"state {k}")


def randomize_torch_(t, gen, params=True):
    """Give torch's BatchNorm layers non-trivial weight, bias and running stats (and, with
    ``params``, every Linear/Conv bias a non-default value too) so weight copies are tested."""
    with torch.no_grad():
        for mod in t.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                n = mod.num_features
                mod.weight.copy_(torch.from_numpy(gen.uniform(0.5, 1.5, n)))
                mod.bias.copy_(torch.from_numpy(gen.normal(0, 0.5, n)))
                mod.running_mean.copy_(torch.from_numpy(gen.normal(0, 0.5, n)))
                mod.running_var.copy_(torch.from_numpy(gen.uniform(0.5, 2.0, n)))
                mod.num_batches_tracked.fill_(int(gen.integers(0, 5)))
    return t


def randn(gen, shape, dtype, scale=1.0, loc=0.0):
    return (loc + scale * gen.standard_normal(shape)).astype(dtype)


def forward_backward(m, t, x, dtype, gen, dout=None, tol=None, check_grads=True, what="",
                     dx_scale=None):
    """One forward and one backward of both modules on the same x and dout; compare the
    output, dx and every parameter gradient by name. Returns (out, dx, dout) of minise."""
    x = np.ascontiguousarray(x, dtype=dtype)
    x_before = x.copy()
    m.zero_grad()
    t.zero_grad(set_to_none=True)
    xt = torch.tensor(x, requires_grad=True)
    out_t = t(xt)
    out = m(x)
    np.testing.assert_array_equal(x, x_before, err_msg=f"{what}: forward wrote into its input")
    assert_close(out, out_t, dtype=dtype, tol=tol, what=f"{what} forward output")
    if dout is None:
        dout = randn(gen, out.shape, dtype)
    dout = np.ascontiguousarray(dout, dtype=dtype)
    dout_before = dout.copy()
    out_t.backward(torch.from_numpy(dout.copy()))
    dx = m.backward(dout)
    np.testing.assert_array_equal(dout, dout_before, err_msg=f"{what}: backward wrote into dout")
    scale = dx_scale(dout) if callable(dx_scale) else dx_scale
    assert_close(dx, xt.grad, dtype=dtype, tol=tol, what=f"{what} dx", scale=scale)
    if check_grads:
        compare_param_grads(m, t, dtype, tol=tol, what=what)
    return out, dx, dout


def compare_param_grads(m, t, dtype, tol=None, what=""):
    mp = dict(m.named_parameters())
    tp = dict(t.named_parameters())
    assert list(mp) == list(tp), f"{what}: parameter names {list(mp)} != torch's {list(tp)}"
    for name, p in tp.items():
        want = p.grad if p.grad is not None else torch.zeros_like(p)
        assert mp[name].grad.shape == mp[name].data.shape
        assert_close(mp[name].grad, want, dtype=dtype, tol=tol, what=f"{what} grad {name}")


def float32_parity(m32, t32, t64, x, dout, what="", slack=4.0):
    """float32 parity where the float32 result is ill-conditioned (long sums with cancellation,
    e.g. an SE block's FC-weight gradients): minise in float32 must be within 1e-5 (relative to
    max abs) of the float64 truth, or no more than ``slack`` times further from it than torch's
    own float32 result is. ``m32``/``t32`` are float32, ``t64`` the float64 twin; all three hold
    the same (float32-representable) weights. ``x`` and ``dout`` are float32 arrays."""
    x, dout = np.asarray(x, np.float32), np.asarray(dout, np.float32)
    results = {}
    for name, mod, dt in (("t32", t32, torch.float32), ("t64", t64, torch.float64)):
        mod.zero_grad(set_to_none=True)
        xt = torch.tensor(x, dtype=dt, requires_grad=True)
        out = mod(xt)
        out.backward(torch.from_numpy(dout).to(dt))
        results[name] = {"out": out.detach().numpy(), "dx": xt.grad.numpy(),
                         **{f"grad {k}": (p.grad if p.grad is not None else torch.zeros_like(p)).numpy()
                            for k, p in mod.named_parameters()}}
    m32.zero_grad()
    out = m32(x)
    dx = m32.backward(dout.copy())
    results["m32"] = {"out": out, "dx": dx, **{f"grad {k}": p.grad for k, p in m32.named_parameters()}}
    assert list(results["m32"]) == list(results["t64"])
    for key, truth in results["t64"].items():
        got = results["m32"][key]
        assert got.dtype == np.float32 and got.shape == truth.shape, f"{what} {key}: {got.dtype} {got.shape}"
        scale = float(np.abs(truth).max()) or 1.0
        err_m = float(np.abs(got - truth).max()) / scale
        err_t = float(np.abs(results["t32"][key] - truth).max()) / scale
        assert err_m <= max(TOL[np.dtype("float32")], slack * err_t), (
            f"{what} {key}: minise float32 is {err_m:.3g} from the float64 result (relative to max abs), "
            f"torch float32 is {err_t:.3g}")


@pytest.fixture(autouse=True)
def _seed_everything():
    seed_all(0)
    yield


@pytest.fixture
def gen():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def parity():
    return types.SimpleNamespace(
        TOL=TOL, tol_for=tol_for, assert_close=assert_close, seed_all=seed_all,
        cast_pair=cast_pair, check_layout=check_layout, load_t2m=load_t2m, load_m2t=load_m2t,
        compare_state=compare_state, randomize_torch_=randomize_torch_, randn=randn,
        forward_backward=forward_backward, compare_param_grads=compare_param_grads,
        as_numpy=as_numpy, float32_parity=float32_parity,
    )

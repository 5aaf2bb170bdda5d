"""BatchNorm1d/2d parity with torch: train-mode outputs and grads, running statistics after
several training steps (momentum and momentum=None), eval mode afterwards, eps variants."""
import numpy as np
import pytest
import torch

import minise.nn as mnn

# (minise class, torch class, x shape)
KINDS = [
    (mnn.BatchNorm2d, torch.nn.BatchNorm2d, (4, 3, 3, 2)),
    (mnn.BatchNorm2d, torch.nn.BatchNorm2d, (1, 2, 3, 3)),
    (mnn.BatchNorm2d, torch.nn.BatchNorm2d, (2, 5, 1, 3)),
    (mnn.BatchNorm1d, torch.nn.BatchNorm1d, (6, 4)),
    (mnn.BatchNorm1d, torch.nn.BatchNorm1d, (2, 4)),
    (mnn.BatchNorm1d, torch.nn.BatchNorm1d, (3, 2, 5)),
    (mnn.BatchNorm1d, torch.nn.BatchNorm1d, (1, 3, 4)),
]
KIND_IDS = [f"{mk.__name__}-{'x'.join(map(str, s))}" for mk, _, s in KINDS]

# (eps, momentum)
HYPER = [(1e-5, 0.1), (1e-3, 0.3), (0.5, None), (1e-5, None), (1e-1, 1.0)]


def _batch(parity, gen, shape, dtype, step):
    """A batch whose per-channel mean and scale change from step to step."""
    C = shape[1]
    bshape = (1, C) + (1,) * (len(shape) - 2)
    loc = gen.normal(step - 1.5, 1.0, C).reshape(bshape)
    scale = gen.uniform(0.5, 3.0, C).reshape(bshape)
    return (loc + scale * gen.standard_normal(shape)).astype(dtype)


def _dx_scale(t, x):
    """The natural size of BatchNorm's dx, max|dout| * max|gamma / sqrt(var + eps)|: dx is a
    difference of terms this large, so in float32 it is only known to ~1e-7 of it (with two
    values per channel dx is ~0 and pure rounding)."""
    axes = (0,) + tuple(range(2, x.ndim))
    var = x.astype(np.float64).var(axis=axes) if t.training else t.running_var.detach().numpy()
    gain = np.abs(t.weight.detach().numpy()) / np.sqrt(var + t.eps)
    return lambda dout: float(np.abs(dout).max() * gain.max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mk,tk,shape", KINDS, ids=KIND_IDS)
def test_batchnorm_train_parity(parity, gen, dtype, mk, tk, shape):
    C = shape[1]
    m, t = parity.cast_pair(mk(C), tk(C), dtype)
    parity.randomize_torch_(t, gen)
    parity.load_t2m(m, t)
    x = _batch(parity, gen, shape, dtype, 0)
    parity.forward_backward(m, t, x, dtype, gen, what=f"{mk.__name__} train", dx_scale=_dx_scale(t, x))
    parity.compare_state(m, t)  # the running stats after one step


@pytest.mark.parametrize("eps,momentum", HYPER, ids=[f"eps{e}-mom{mo}" for e, mo in HYPER])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mk,tk,shape", KINDS, ids=KIND_IDS)
def test_batchnorm_running_stats_then_eval(parity, gen, dtype, mk, tk, shape, eps, momentum):
    """4 training steps on different batches, then eval; compare every buffer after each step."""
    C = shape[1]
    m = mk(C, eps=eps, momentum=momentum)
    t = tk(C, eps=eps, momentum=momentum)
    parity.cast_pair(m, t, dtype)
    with torch.no_grad():  # learned affine parameters, default running stats
        t.weight.copy_(torch.from_numpy(gen.uniform(0.5, 1.5, C)))
        t.bias.copy_(torch.from_numpy(gen.normal(0, 0.5, C)))
    parity.load_t2m(m, t)
    for step in range(4):
        x = _batch(parity, gen, shape, dtype, step)
        parity.forward_backward(m, t, x, dtype, gen, what=f"step {step}", dx_scale=_dx_scale(t, x))
        parity.compare_state(m, t)
    sd = m.state_dict()
    assert int(sd["num_batches_tracked"]) == 4 == int(t.num_batches_tracked)
    # the running statistics have moved away from their initial values
    assert not np.allclose(sd["running_mean"], 0) and not np.allclose(sd["running_var"], 1)
    m.eval()
    t.eval()
    for step in range(2):
        x = _batch(parity, gen, shape, dtype, 5 + step)
        parity.forward_backward(m, t, x, dtype, gen, what=f"eval {step}")
    parity.compare_state(m, t)  # eval mode does not touch the running stats
    assert int(m.state_dict()["num_batches_tracked"]) == 4


@pytest.mark.parametrize("mk,tk,shape", [KINDS[0], KINDS[3], KINDS[5]], ids=[KIND_IDS[i] for i in (0, 3, 5)])
def test_batchnorm_eval_with_loaded_stats(parity, gen, mk, tk, shape):
    """Eval mode with running stats loaded from torch (non-trivial mean/var) in float64."""
    C = shape[1]
    m, t = parity.cast_pair(mk(C, eps=1e-3), tk(C, eps=1e-3), np.float64)
    parity.randomize_torch_(t, gen)
    parity.load_t2m(m, t)
    m.eval()
    t.eval()
    parity.forward_backward(m, t, _batch(parity, gen, shape, np.float64, 1), np.float64, gen, what="eval")
    parity.compare_state(m, t)


def test_batchnorm_minise_to_torch_state_dict(parity, gen):
    """minise -> torch after minise trained its running stats: torch's eval output matches."""
    m = mnn.BatchNorm2d(3, momentum=None).double()
    for step in range(3):
        x = _batch(parity, gen, (4, 3, 2, 2), np.float64, step)
        m(x)
    t = torch.nn.BatchNorm2d(3, momentum=None).double()
    parity.load_m2t(t, m)
    assert int(t.num_batches_tracked) == 3
    # momentum=None is a cumulative average: continuing training must still agree
    for step in range(3, 5):
        parity.forward_backward(m, t, _batch(parity, gen, (4, 3, 2, 2), np.float64, step), np.float64, gen)
        parity.compare_state(m, t)
    m.eval()
    t.eval()
    parity.forward_backward(m, t, _batch(parity, gen, (3, 3, 2, 2), np.float64, 9), np.float64, gen)


def test_batchnorm_state_dict_layout(parity):
    for mk, tk in [(mnn.BatchNorm2d, torch.nn.BatchNorm2d), (mnn.BatchNorm1d, torch.nn.BatchNorm1d)]:
        m, t = mk(5), tk(5)
        parity.check_layout(m, t)
        assert list(m.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
        parity.compare_state(m, t)  # the initial values too (ones, zeros, zeros, ones, 0)


def test_batchnorm_grads_accumulate(parity, gen):
    m = mnn.BatchNorm2d(3).double()
    t = torch.nn.BatchNorm2d(3).double()
    parity.randomize_torch_(t, gen)
    parity.load_t2m(m, t)
    x = _batch(parity, gen, (3, 3, 2, 2), np.float64, 0)
    out = m(x)
    dout = parity.randn(gen, out.shape, np.float64)
    m.backward(dout)
    m.backward(dout)
    t(torch.from_numpy(x)).backward(torch.from_numpy(2 * dout))
    parity.compare_param_grads(m, t, np.float64)

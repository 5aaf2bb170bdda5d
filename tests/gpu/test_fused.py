"""The fused kernels against their plain functions (NumPy and the plain lines on CuPy) and
against PyTorch on the GPU, forward and backward, in float64 where the kernels take it.

Run on a GPU machine with ``python -m pytest -m gpu``; skipped with the reason elsewhere.
"""
import copy

import numpy as np
import pytest

from minise import nn
from minise.backend import to_numpy
from minise.nn import batchnorm, loss
from minise.optim import optimizer, sgd

pytestmark = pytest.mark.gpu

def _close(gpu, reference, dtype, what):
    tol = 1e-12 if dtype == "float64" else 1e-4
    reference = to_numpy(reference)
    np.testing.assert_allclose(to_numpy(gpu), reference, rtol=tol, atol=tol * max(np.abs(reference).max(), 1e-30),
                               err_msg=what)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("N, K", [(7, 10), (300, 10), (3, 1), (5, 37)])
def test_fused_cross_entropy_matches_the_plain_lines_and_torch(N, K, smoothing, dtype):
    """More rows than threads (300), one class, many classes; the loss and dlogits."""
    import cupy
    import torch

    rng = np.random.default_rng(4)
    logits, target = (rng.standard_normal((N, K)) * 4).astype(dtype), rng.integers(0, K, N)
    device_logits, device_target = cupy.asarray(logits), cupy.asarray(target)
    loss_value, dlogits = loss.softmax_cross_entropy(device_logits, device_target, smoothing)
    assert loss_value.shape == () and loss_value.dtype == dlogits.dtype == np.dtype(dtype)
    for where, args in (("plain on CuPy", (device_logits, device_target)), ("NumPy", (logits, target))):
        plain_loss, plain_dlogits = loss.softmax_cross_entropy.plain(*args, smoothing)
        _close(loss_value, plain_loss, dtype, f"loss against the plain lines, {where}")
        _close(dlogits, plain_dlogits, dtype, f"dlogits against the plain lines, {where}")
    t_logits = torch.tensor(logits, device="cuda", requires_grad=True)
    t_loss = torch.nn.functional.cross_entropy(t_logits, torch.tensor(target, device="cuda"),
                                               label_smoothing=smoothing)
    t_loss.backward()
    _close(loss_value, t_loss.detach().cpu().numpy(), dtype, "loss against torch")
    _close(dlogits, t_logits.grad.cpu().numpy(), dtype, "dlogits against torch")


def test_fused_cross_entropy_gives_a_masked_class_no_loss():
    """A logit of -inf (q = 0) adds 0 to the loss and gets a zero gradient, as in the plain lines."""
    import cupy

    logits = cupy.asarray([[1.0, -np.inf, 0.5], [0.0, 2.0, -np.inf]])
    target = cupy.asarray([0, 1])
    value, dlogits = loss.softmax_cross_entropy(logits, target, 0.0)
    plain_value, plain_dlogits = loss.softmax_cross_entropy.plain(to_numpy(logits), to_numpy(target), 0.0)
    assert np.isfinite(float(value)) and float(value) == pytest.approx(float(plain_value), rel=1e-14)
    np.testing.assert_allclose(to_numpy(dlogits), plain_dlogits, rtol=1e-14)


SE_CASES = [dict(C=16, r=16, min_hidden=4, shape=(5, 16, 32, 32)), dict(C=64, r=16, shape=(3, 64, 8, 8)),
            dict(C=7, r=3, shape=(2, 7, 3, 5)), dict(C=8, r=2, shape=(1, 8, 1, 1)),
            dict(C=300, r=4, shape=(2, 300, 2, 3)),
            dict(C=8, r=4, bias=(True, True), shape=(3, 8, 4, 4)), dict(C=8, r=4, bias=(False, False), shape=(3, 8, 4, 4))]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", SE_CASES, ids=lambda c: f"C{c['C']}-r{c['r']}-{c.get('bias', 'default')}")
def test_fused_se_block_matches_the_plain_lines_and_torch(case, dtype):
    """out, z, s, dx and every gradient (added onto gradients already there), twice, so that
    gradients accumulate: the fused kernels against the plain layers on CuPy and on NumPy,
    and against the PyTorch twin on the GPU."""
    import cupy
    import torch
    from minise.twins import torch_twin

    case = dict(case)
    shape = case.pop("shape")
    nn.manual_seed(1)
    cpu = nn.SEBlock(case.pop("C"), case.pop("r"), **case).to(dtype=dtype)
    rng = np.random.default_rng(3)
    for p in cpu.parameters():                     # gates far from 0.5, and some hidden units dead
        p.data[...] = rng.standard_normal(p.shape) * 0.7
        p.grad[...] = rng.standard_normal(p.shape)
    plain_gpu, fused = copy.deepcopy(cpu).to("cuda"), copy.deepcopy(cpu).to("cuda")
    twin = torch_twin(cpu).cuda()
    for p, t in zip(cpu.parameters(), twin.parameters()):
        t.grad = torch.tensor(p.grad, device="cuda")
    for step in range(2):
        x = rng.standard_normal(shape).astype(dtype) * 2
        dout = rng.standard_normal(shape).astype(dtype)
        out = fused(cupy.asarray(x))
        dx = fused.backward(cupy.asarray(dout))
        assert fused.sequence[2]._x is None            # the fused kernels ran, not the layers
        tx = torch.tensor(x, device="cuda", requires_grad=True)
        t_out = twin(tx)
        t_out.backward(torch.tensor(dout, device="cuda"))
        references = {"plain on CuPy": _plain_se(plain_gpu, cupy.asarray(x), cupy.asarray(dout)),
                      "NumPy": (cpu(x), cpu.z, cpu.s, cpu.backward(dout)),
                      "torch": (t_out.detach(), None, None, tx.grad)}
        for where, (r_out, r_z, r_s, r_dx) in references.items():
            _close(out, r_out.cpu().numpy() if where == "torch" else r_out, dtype, f"out, step {step}, {where}")
            _close(dx, r_dx.cpu().numpy() if where == "torch" else r_dx, dtype, f"dx, step {step}, {where}")
            if r_z is not None:
                _close(fused.z, r_z, dtype, f"z, {where}")
                _close(fused.s, r_s, dtype, f"s, {where}")
        for (name, p), q, r, t in zip(fused.named_parameters(), plain_gpu.parameters(), cpu.parameters(),
                                      twin.parameters()):
            for where, reference in (("plain on CuPy", q.grad), ("NumPy", r.grad), ("torch", t.grad.cpu().numpy())):
                _close(p.grad, reference, dtype, f"{name}.grad, step {step}, {where}")


def _plain_se(block, x, dout):
    """The plain SEBlock lines on CuPy: out, z, s, dx."""
    out = nn.SEBlock.forward_math.plain(block, x)
    block._x = x
    return out, block.z, block.s, nn.SEBlock.backward_math.plain(block, dout)


@pytest.mark.parametrize("options", [dict(squeeze="max"), dict(excitation="tanh")], ids=["max", "tanh"])
def test_fused_se_block_leaves_other_options_to_the_plain_layers(options):
    import cupy

    block = nn.SEBlock(8, 2, **options).to("cuda")
    x = cupy.ones((2, 8, 3, 3))
    assert nn.SEBlock.forward_math.gpu(block, x) is NotImplemented
    block._x = x
    assert nn.SEBlock.backward_math.gpu(block, x) is NotImplemented


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", [(4, 3, 5), (128, 16, 1024), (7, 64, 64), (3, 1500, 2), (1, 2, 777), (130, 5, 1)])
def test_fused_batch_norm_functions_match_the_plain_lines(shape, dtype):
    """Blocks over a few images each (some blocks empty when the images don't divide), one
    channel and many, more channels than blocks; run twice: the channel counters are left at
    zero, so the second call gives the same numbers."""
    import cupy

    rng = np.random.default_rng(0)
    x = cupy.asarray((rng.standard_normal(shape) * 3 + 1).astype(dtype))
    d = cupy.asarray(rng.standard_normal(shape).astype(dtype))
    C = shape[1]
    gamma, beta = (cupy.asarray(rng.standard_normal(C).astype(dtype)) for _ in range(2))
    running = [cupy.asarray(rng.uniform(0.5, 1.5, C).astype(dtype)) for _ in range(2)]

    def run(forward, backward):
        running_mean, running_var = (a.copy() for a in running)
        out, xc, inv_std = forward(x, gamma, beta, running_mean, running_var, 0.1, 1e-5)
        return (out, xc, inv_std, running_mean, running_var, *backward(d, xc, inv_std, gamma))
    forward, backward = batchnorm.batch_norm_train_forward, batchnorm.batch_norm_train_backward
    results = [run(forward.gpu, backward.gpu), run(forward.gpu, backward.gpu), run(forward.plain, backward.plain)]
    names = ["out", "xc", "inv_std", "running_mean", "running_var", "dx", "dgamma", "dbeta"]
    for name, first, again, plain in zip(names, *results):
        assert cupy.array_equal(first, again), f"{name}: a second call differs"
        _close(first, plain, dtype, name)


def test_fused_batch_norm_leaves_several_workers_to_the_plain_lines(monkeypatch):
    """Synchronised BatchNorm: with more than one worker the statistics are summed over the
    workers in the plain lines, so the GPU versions step aside."""
    import cupy
    from minise.gpu import batchnorm as fused

    class Two:
        size = 2
    monkeypatch.setattr(fused, "world", lambda: Two())
    x = cupy.ones((2, 3, 4))
    c = cupy.ones(3)
    assert batchnorm.batch_norm_train_forward.gpu(x, c, c, c.copy(), c.copy(), 0.1, 1e-5) is NotImplemented
    assert batchnorm.batch_norm_train_backward.gpu(x, x, c, c) is NotImplemented


def test_zero_grad_is_one_kernel_for_every_parameter_and_falls_back_for_mixed_dtypes():
    import cupy
    from minise.optim import SGD

    rng = np.random.default_rng(0)
    params = [nn.Parameter(cupy.asarray(rng.standard_normal(s))) for s in [(3, 4), (5,), (2, 3, 2, 2), (1,)]]
    for p in params:
        p.grad[...] = cupy.asarray(rng.standard_normal(p.shape))
    SGD(params, lr=0.1).zero_grad()
    assert all(not cupy.any(p.grad) for p in params)
    mixed = [cupy.ones(3, dtype=cupy.float32), cupy.ones(4, dtype=cupy.float64)]
    assert optimizer.zero_arrays.gpu(mixed) is NotImplemented
    optimizer.zero_arrays(mixed)
    assert all(not cupy.any(a) for a in mixed)


def test_fused_sgd_update_falls_back_where_it_does_not_apply():
    """A strided array or mixed dtypes: the plain loop (one kernel per parameter) runs."""
    import cupy

    def arrays(dtype):
        return [cupy.arange(12, dtype=dtype).reshape(3, 4), cupy.ones(5, dtype=dtype)]
    strided = [a.T for a in arrays("float64")]
    assert sgd.momentum_update_all.gpu(strided, arrays("float64"), arrays("float64"), 0.1, 0.9, 0, 0, False) \
        is NotImplemented
    mixed = arrays("float32")[:1] + arrays("float64")[1:]
    assert sgd.momentum_update_all.gpu(mixed, mixed, mixed, 0.1, 0.9, 0, 0, False) is NotImplemented

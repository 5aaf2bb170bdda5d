"""CrossEntropyLoss parity with torch.nn.CrossEntropyLoss: the loss and the logits gradient."""
import numpy as np
import pytest
import torch

import minise.nn as mnn


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("N,K,scale", [(4, 10, 1.0), (1, 3, 1.0), (5, 2, 3.0), (3, 7, 100.0), (6, 5, 0.0)])
def test_cross_entropy_parity(parity, gen, dtype, label_smoothing, N, K, scale):
    logits = (scale * gen.standard_normal((N, K))).astype(dtype)
    target = gen.integers(0, K, N)
    m = mnn.CrossEntropyLoss(label_smoothing=label_smoothing)
    t = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    lt = torch.tensor(logits, requires_grad=True)
    loss_t = t(lt, torch.from_numpy(target))
    loss_t.backward()
    logits_before = logits.copy()
    loss = m(logits, target)
    np.testing.assert_array_equal(logits, logits_before)
    assert isinstance(loss, float)
    tol = parity.tol_for(dtype)
    assert loss == pytest.approx(loss_t.item(), rel=tol, abs=tol)
    parity.assert_close(m.backward(), lt.grad, dtype=dtype, what="dlogits")


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.5, 1.0])
def test_cross_entropy_extreme_logits(parity, gen, label_smoothing):
    """Logits of +-1000 do not overflow; the loss and gradient still match torch (float64)."""
    logits = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -999.0, -1000.0], [5.0, 5.0, 5.0]])
    target = np.array([1, 1, 2])
    m = mnn.CrossEntropyLoss(label_smoothing=label_smoothing)
    t = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    lt = torch.tensor(logits, requires_grad=True)
    loss_t = t(lt, torch.from_numpy(target))
    loss_t.backward()
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = m(logits, target)
        grad = m.backward()
    assert loss == pytest.approx(loss_t.item(), rel=1e-10)
    parity.assert_close(grad, lt.grad, dtype=np.float64, what="dlogits")


def test_cross_entropy_feeds_linear(parity, gen):
    """Loss gradient through a Linear layer, end to end against torch (float64)."""
    m, t = mnn.Linear(6, 4).double(), torch.nn.Linear(6, 4).double()
    parity.load_t2m(m, t)
    x = gen.standard_normal((5, 6))
    target = gen.integers(0, 4, 5)
    crit_m, crit_t = mnn.CrossEntropyLoss(0.1), torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    xt = torch.tensor(x, requires_grad=True)
    lt = crit_t(t(xt), torch.from_numpy(target))
    lt.backward()
    loss = crit_m(m(x), target)
    dx = m.backward(crit_m.backward())
    assert loss == pytest.approx(lt.item(), rel=1e-10)
    parity.assert_close(dx, xt.grad, dtype=np.float64, what="dx")
    parity.compare_param_grads(m, t, np.float64)


def test_masked_class_with_minus_inf_logit_matches_torch():
    """A class masked out with a -inf logit contributes nothing (not NaN) to the loss."""
    logits = np.array([[2.0, -np.inf, 0.5], [0.1, 0.3, -np.inf]])
    target = np.array([0, 1])
    loss_fn = mnn.CrossEntropyLoss()
    expected = torch.nn.CrossEntropyLoss()(torch.from_numpy(logits), torch.from_numpy(target))
    assert loss_fn(logits, target) == pytest.approx(float(expected), rel=1e-12)
    assert np.isfinite(loss_fn.backward()).all()

"""Shared helpers for the optimiser tests: twin parameter sets in minise and in PyTorch.

Helpers are handed out as fixtures (``twins``, ``assert_close``) so the test modules need no
import path tricks.
"""
import numpy as np
import pytest
import torch

import minise.optim
from minise.nn import Parameter

SHAPES = [(3, 4), (5,), (2, 3, 2, 2)]
# Gradient scales per step: large and small steps in turn, so that Adam's second moment
# falls as well as rises (AMSGrad's running max then differs from v) and momentum matters.
GRAD_SCALES = [1.0, 3.0, 0.1, 2.0, 0.01, 0.5, 1.5, 0.05]


def _assert_close(actual, expected, rtol, what=""):
    """Elementwise |a - e| <= rtol * (|e| + max|e|): relative error, on the array's scale.

    (The max|e| term keeps an element that happens to sit near zero from turning rounding
    into a huge "relative" error; everything else is held to ``rtol`` relative.)
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = float(np.abs(expected).max(initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


class Twins:
    """The same parameters twice: as minise ``Parameter``s and as ``torch.nn.Parameter``s.

    ``groups`` is ``None`` (one plain list of parameters) or a list of ``(indices, overrides)``,
    e.g. ``[([0, 1], {"lr": 0.1}), ([2], {"weight_decay": 0.0})]``, turned into param-group
    dicts for both libraries.
    """

    def __init__(self, dtype=np.float64, seed=0, shapes=SHAPES):
        self.dtype = np.dtype(dtype)
        self.rng = np.random.default_rng(seed)
        inits = [self.rng.standard_normal(s).astype(self.dtype) for s in shapes]
        self.mine = [Parameter(a.copy()) for a in inits]
        self.theirs = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in inits]

    def _params(self, params, groups):
        if groups is None:
            return list(params)
        return [dict(overrides, params=[params[i] for i in idx]) for idx, overrides in groups]

    def optimizers(self, name, groups=None, **kwargs):
        """``(minise optimiser, torch optimiser)`` of class ``name`` over the twin parameters."""
        mine = getattr(minise.optim, name)(self._params(self.mine, groups), **kwargs)
        theirs = getattr(torch.optim, name)(self._params(self.theirs, groups), **kwargs)
        return mine, theirs

    def feed_gradients(self, scale=1.0):
        """Give both twins the same fresh random gradient."""
        for m, t in zip(self.mine, self.theirs):
            g = (scale * self.rng.standard_normal(m.shape)).astype(self.dtype)
            m.grad[...] = g
            t.grad = torch.from_numpy(g.copy())

    def assert_match(self, rtol, what=""):
        for i, (m, t) in enumerate(zip(self.mine, self.theirs)):
            assert m.data.dtype == self.dtype, f"{what}: param {i} dtype changed to {m.data.dtype}"
            _assert_close(m.data, t.detach().numpy(), rtol, f"{what}: param {i}")


@pytest.fixture
def twins():
    """The ``Twins`` class: ``twins(dtype=np.float64, seed=0)``."""
    return Twins


@pytest.fixture
def assert_close():
    return _assert_close


@pytest.fixture
def grad_scales():
    return GRAD_SCALES

"""benchmarks.torch_recipe's recorded SGD update is torch.optim.SGD's arithmetic."""
import numpy as np
import pytest
import torch

from benchmarks.torch_recipe import sgd_update


@pytest.mark.parametrize("nesterov, weight_decay", [(True, 5e-4), (False, 0.0), (False, 1e-3)])
def test_sgd_update_steps_as_torch_sgd(nesterov, weight_decay):
    """Four steps with the learning rate and momentum changing, as a one-cycle schedule does,
    against torch.optim.SGD on a copy of the same parameters and gradients (float64)."""
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(s, generator=gen, dtype=torch.float64) for s in [(4, 3), (5,), (2, 3, 2, 2)]]
    ours, theirs = ([t.clone().requires_grad_() for t in start] for _ in range(2))
    optimizers = [torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=weight_decay)
                  for p in (ours, theirs)]
    for step, (lr, momentum) in enumerate([(0.1, 0.9), (0.05, 0.85), (0.2, 0.95), (0.01, 0.9)]):
        grads = [torch.randn(t.shape, generator=gen, dtype=torch.float64) for t in start]
        for params in (ours, theirs):
            for p, g in zip(params, grads):
                p.grad = g.clone()
        optimizers[1].param_groups[0].update(lr=lr, momentum=momentum)
        optimizers[1].step()
        if step == 0:                          # the first step makes the momentum buffers
            optimizers[0].step()
            continue
        bufs = [optimizers[0].state[p]["momentum_buffer"] for p in ours]
        sgd_update(torch, ours, bufs, torch.tensor(-lr, dtype=torch.float64), torch.tensor(momentum, dtype=torch.float64),
                   weight_decay, nesterov)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-14, atol=1e-15)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(optimizers[0].state[a]["momentum_buffer"].numpy(),
                                   optimizers[1].state[b]["momentum_buffer"].numpy(), rtol=1e-14, atol=1e-15)

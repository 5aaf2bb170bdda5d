"""benchmarks.gpu and the torch recipe's CUDA-graph step: they measure what they claim to."""
import copy

import numpy as np
import pytest

from minise import nn
from minise.models import se_resnet20

pytestmark = pytest.mark.gpu


def test_torch_graph_step_steps_as_torch_sgd_does():
    """Eight steps (three eager, one recorded, four replays) with the learning rate and
    momentum changing every step. Before each, the eager twin is set to the graph's weights
    and momentum buffers, so each step is compared on its own (float32 rounding does not pile
    up over the steps): the loss and the weights after it match torch.optim.SGD run eagerly."""
    import torch
    from benchmarks.torch_recipe import GraphStep
    from minise.twins import torch_twin

    torch.backends.cudnn.deterministic = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    nn.manual_seed(0)
    graphed = torch_twin(se_resnet20(min_hidden=4)).cuda()
    eager = copy.deepcopy(graphed)
    hyper = dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    optimizers = [torch.optim.SGD(m.parameters(), **hyper) for m in (eager, graphed)]
    schedulers = [torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=9, pct_start=0.3) for o in optimizers]
    graph_step = GraphStep(torch, graphed, optimizers[1])
    gen = torch.Generator(device="cuda").manual_seed(0)
    for step in range(8):
        eager.load_state_dict(graphed.state_dict())
        for p, q in zip(eager.parameters(), graphed.parameters()):
            if q in optimizers[1].state:
                optimizers[0].state[p]["momentum_buffer"] = optimizers[1].state[q]["momentum_buffer"].clone()
        x = torch.randn(16, 3, 32, 32, device="cuda", generator=gen)
        y = torch.randint(0, 10, (16,), device="cuda", generator=gen)
        loss = torch.nn.functional.cross_entropy(eager(x), y)
        optimizers[0].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[0].step()
        graph_loss = float(graph_step(x, y))
        assert graph_loss == pytest.approx(float(loss.detach()), rel=1e-5), f"loss, step {step}"
        for (name, a), b in zip(eager.state_dict().items(), graphed.state_dict().values()):
            np.testing.assert_allclose(b.cpu().numpy(), a.cpu().numpy(), rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name}, step {step}")
        for s in schedulers:
            s.step()
    assert graph_step.graph is not None


def test_kernels_by_layer_adds_up_to_the_step():
    """Every kernel of the step is given to one label, and the layers are those of the model."""
    import cupy
    import torch
    from benchmarks.gpu import kernels_by_layer

    def synchronize():
        cupy.cuda.Device().synchronize()
        torch.cuda.synchronize()
    counts, total = kernels_by_layer(torch, cupy, lambda: se_resnet20(min_hidden=4), synchronize, batch=8)
    assert sum(kernels for _, kernels in counts.values()) == total > 0
    assert counts[("Conv2d", "forward")][0] == 21 and counts[("SEBlock", "backward")][0] == 9
    assert counts[("BatchNorm2d", "forward")][1] > 0 and counts[("SGD step", "")][1] >= 1

"""What data parallelism adds to a training step: each worker's share of the loss, and one sum
of the parameter gradients over the workers before the optimiser's step.

The loss of a batch is the mean over all B samples of the global batch. A worker holding n of
them computes the mean over its n, so its loss gradient is scaled by n / B (``TrainStep``); the
sum of the workers' scaled gradients is then the gradient of the whole batch's mean loss. BatchNorm's
statistics are summed inside the layer (``sum_over_workers``), so every worker's forward and
backward pass sees the global batch's statistics.
"""
from ..backend import get_array_module
from .comm import world


class GradientSum:
    """``GradientSum(parameters)()``: every parameter's ``.grad`` replaced by its sum over the
    workers, through one flat buffer (one Allreduce a step, not one per parameter). In one
    process it does nothing."""

    def __init__(self, parameters, comm=None):
        self.comm = comm or world()
        self.parameters = [p for p in parameters if p.requires_grad]
        self._flat = None

    def __call__(self):
        if self.comm.size == 1 or not self.parameters:
            return
        grads = [p.grad for p in self.parameters]
        xp = get_array_module(grads[0])
        if self._flat is None or self._flat.dtype != grads[0].dtype:
            self._flat = xp.empty(sum(g.size for g in grads), dtype=grads[0].dtype)
        xp.concatenate([g.reshape(-1) for g in grads], out=self._flat)
        self.comm.all_sum(self._flat)
        at = 0
        for g in grads:
            g[...] = self._flat[at:at + g.size].reshape(g.shape)
            at += g.size


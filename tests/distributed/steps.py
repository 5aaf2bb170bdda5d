"""A few SGD steps of a small SE-ResNet on one fixed batch, in this process alone or as one of the
workers of ``mpiexec -n W python tests/distributed/steps.py OUT DTYPE``: worker r takes its shard
of every batch. Each worker writes its final state (weights, BatchNorm's running statistics,
momentum buffers) and the summed losses to OUT/rank{r}.npz. tests/distributed compares them
across workers and with one process on the whole batch."""
import sys

import numpy as np

from minise import models, nn
from minise.distributed import shard, world
from minise.optim import SGD
from minise.step import TrainStep

BATCH, STEPS = 7, 3         # odd: 2, 3 and 4 workers get shards of unequal length


def run(out, dtype):
    comm = world()
    nn.manual_seed(0)
    model = models.cifar_resnet(8, reduction_ratio=4, min_hidden=2).to(dtype=dtype)
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    step = TrainStep(model, optimizer)
    rng = np.random.default_rng(1)
    lo, hi = shard(BATCH, comm.rank, comm.size)
    for _ in range(STEPS):
        x = rng.standard_normal((BATCH, 3, 8, 8)).astype(dtype)
        y = rng.integers(0, 10, BATCH)
        step(x[lo:hi], y[lo:hi], batch_size=BATCH)
    loss_sum, correct, seen = step.totals()
    state = model.state_dict()
    state.update({f"momentum.{i}": optimizer.state[p]["momentum_buffer"] for i, p in enumerate(model.parameters())})
    np.savez(f"{out}/rank{comm.rank}.npz", loss_sum=loss_sum, correct=correct, seen=seen, **state)


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2])

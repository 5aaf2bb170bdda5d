"""benchmarks.profile_cpu: each module's own time, charged to its row, adding up to the step."""
import numpy as np

from benchmarks.profile_cpu import profile_minise, table
from minise.models import se_resnet20
from minise.optim import SGD
from minise.step import TrainStep


def test_own_times_add_up_to_the_step_and_fall_in_the_named_rows():
    model = se_resnet20(min_hidden=4).double()
    step = TrainStep(model, SGD(model.parameters(), lr=0.01))
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 3, 8, 8)), rng.integers(0, 10, 4)
    times, total = profile_minise(model, lambda: step(x, y), 2)
    rows = {group for group, _ in times}
    assert {"conv 3x3 16->16", "conv 3x3 3->16", "conv 1x1 16->32", "BatchNorm", "ReLU", "residual add",
            "SE blocks, global pool, classifier", "loss, optimiser, rest"} <= rows
    assert all(ms >= 0 for key, ms in times.items() if key[0] != "loss, optimiser, rest")
    assert abs(sum(times.values()) - total) < 1e-6 * total
    lines = table(times, total, {("BatchNorm", "fwd"): 1.0}, (3.0, 2.0))
    assert lines[-1].startswith("| **step, unprofiled** (minise/torch 1.50x)") and any(line.startswith("| BatchNorm |") for line in lines)

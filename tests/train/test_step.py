"""TrainStep on NumPy: the same arithmetic as the hand-written loop, device-side sums, and its
errors. The CUDA graph replay is checked against the same loop in tests/gpu."""
import copy
import importlib.util

import numpy as np
import pytest

from minise import nn
from minise.models import se_resnet20
from minise.optim import SGD, Adam
from minise.optim.lr_scheduler import OneCycleLR
from minise.step import TrainStep


def _batches(steps, n=8, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((n, 3, 8, 8)).astype(np.float32), rng.integers(0, 10, n)) for _ in range(steps)]


def _setup(seed=0):
    nn.manual_seed(seed)
    model = se_resnet20(min_hidden=4)
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scheduler = OneCycleLR(optimizer, max_lr=0.1, total_steps=10, pct_start=0.3)   # cycles momentum too
    return model, optimizer, scheduler


def _loop_by_hand(model, optimizer, scheduler, batches):
    loss_fn, losses, correct = nn.CrossEntropyLoss(), [], 0
    for x, y in batches:
        optimizer.zero_grad()
        logits = model(x)
        losses.append(loss_fn(logits, y) * len(y))
        model.backward(loss_fn.backward())
        optimizer.step()
        scheduler.step()
        correct += int((logits.argmax(axis=1) == y).sum())
    return sum(losses), correct


@pytest.mark.parametrize("device_scalars", [False, True], ids=["float-hyperparameters", "device-scalars"])
def test_step_matches_the_hand_written_loop(device_scalars):
    """Bit for bit, also when lr and momentum come from 0-d arrays (what a CUDA graph reads)."""
    batches = _batches(5)
    model_a, opt_a, sched_a = _setup()
    loss_a, correct_a = _loop_by_hand(model_a, opt_a, sched_a, batches)

    model_b, opt_b, sched_b = _setup()
    start = dict(opt_b.param_groups[0])
    step = TrainStep(model_b, opt_b)
    if device_scalars:
        opt_b.keep_on_device(np, np.float32)
    for x, y in batches:
        if device_scalars:
            opt_b.sync_device_values()
        step(x, y)
        sched_b.step()
    loss_sum, correct, seen = step.totals()
    assert seen == 5 * 8 and correct == correct_a
    assert loss_sum == pytest.approx(loss_a, rel=1e-6)
    for (name, a), (_, b) in zip(model_a.state_dict().items(), model_b.state_dict().items()):
        assert np.array_equal(a, b), name
    # a schedule that did nothing would leave the two runs equal too: check it moved lr and momentum
    assert opt_b.param_groups[0]["lr"] != start["lr"] and opt_b.param_groups[0]["momentum"] != start["momentum"]


def test_reset_starts_new_sums():
    model, optimizer, _ = _setup()
    step = TrainStep(model, optimizer)
    (x, y), = _batches(1)
    step(x, y)
    assert step.totals()[2] == 8
    step.reset()
    assert step.totals() == (0.0, 0, 0)
    step(x, y)
    loss_sum, correct, seen = step.totals()
    assert seen == 8 and loss_sum > 0


def test_non_finite_loss_raises():
    model, optimizer, _ = _setup()
    step = TrainStep(model, optimizer)
    (x, y), = _batches(1)
    with np.errstate(invalid="ignore"):
        step(x * np.float32("nan"), y)
    with pytest.raises(FloatingPointError, match=r"\bnan\b.*\b8 images"):
        step.totals()


@pytest.mark.parametrize("change, expected", [
    (lambda x, y: (x[:4], y[:4]), r"\bx\b.*\(8, 3, 8, 8\).*\(4, 3, 8, 8\)"),
    (lambda x, y: (x.astype(np.float64), y), r"\bx\b.*float32.*float64"),
    (lambda x, y: (x, y.astype(np.int32)), r"\by\b.*int64.*int32"),
    (lambda x, y: (x.tolist(), y), r"\bx\b.*list"),
])
def test_every_batch_must_be_like_the_first(change, expected):
    model, optimizer, _ = _setup()
    step = TrainStep(model, optimizer)
    (x, y), = _batches(1)
    step(x, y)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=expected):
        step(*change(x, y))
    for k, v in model.state_dict().items():          # a refused batch changes nothing
        assert np.array_equal(v, before[k]), k


def test_graph_needs_a_capturable_optimizer():
    model = se_resnet20()
    with pytest.raises(ValueError, match=r"Adam\b.*CUDA graph"):
        TrainStep(model, Adam(model.parameters()), graph=True)
    with pytest.raises(ValueError, match=r"Adam\.step\(\).*host"):
        Adam(model.parameters()).keep_on_device(np, np.float32)


def test_graph_without_cupy_says_how_to_install():
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed: tests/gpu covers graph=True")
    model = se_resnet20()
    with pytest.raises(RuntimeError, match=r"CuPy.*GPU extra"):
        TrainStep(model, SGD(model.parameters(), lr=0.1), graph=True)

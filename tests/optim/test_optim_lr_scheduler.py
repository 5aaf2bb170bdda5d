"""Learning-rate schedules against torch.optim.lr_scheduler over the full schedule: the lr (and,
for OneCycleLR, the momentum or beta1) of every group after construction and after each step."""
import warnings

import numpy as np
import pytest
import torch

import minise.optim
from minise.nn import Parameter
from minise.optim import lr_scheduler as sched

GROUP_LRS = [0.1, 0.03]


def _optimizers(name, **kwargs):
    """A minise and a torch optimiser, each with two groups of one parameter (lrs GROUP_LRS)."""
    mine = getattr(minise.optim, name)(
        [{"params": [Parameter(np.zeros(2))], "lr": lr} for lr in GROUP_LRS], **kwargs)
    theirs = getattr(torch.optim, name)(
        [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr} for lr in GROUP_LRS], **kwargs)
    return mine, theirs


def _momenta(opt):
    return [g["betas"][0] if "betas" in g else g["momentum"] for g in opt.param_groups]


def _trajectories(mine_opt, their_opt, mine, theirs, steps):
    """(lrs, momenta, get_last_lr) of both, at construction and after each of ``steps`` steps."""
    out = {"mine": [], "theirs": []}
    for _ in range(steps + 1):
        for key, opt, s in (("mine", mine_opt, mine), ("theirs", their_opt, theirs)):
            lrs = [g["lr"] for g in opt.param_groups]
            assert s.get_last_lr() == lrs
            out[key].append((lrs, _momenta(opt)))
        if len(out["mine"]) == steps + 1:
            break
        for opt, s in ((mine_opt, mine), (their_opt, theirs)):
            opt.step()   # no gradients: nothing moves, but torch sees the documented call order
            s.step()
    return out["mine"], out["theirs"]


def _lr_array(traj):
    return np.array([lrs for lrs, _ in traj])


def _momentum_array(traj):
    return np.array([m for _, m in traj])


CASES = {
    "step": ("SGD", dict(momentum=0.9), "StepLR", dict(step_size=7, gamma=0.5), 40),
    "step-default-gamma": ("Adam", {}, "StepLR", dict(step_size=3), 12),
    "multistep": ("SGD", {}, "MultiStepLR", dict(milestones=[5, 12, 12, 20], gamma=0.3), 30),
    "multistep-unsorted": ("SGD", {}, "MultiStepLR", dict(milestones=[9, 2]), 15),
    "cosine": ("SGD", dict(momentum=0.9), "CosineAnnealingLR", dict(T_max=50), 50),
    "cosine-eta-min": ("AdamW", {}, "CosineAnnealingLR", dict(T_max=37, eta_min=1e-3), 37),
    "cosine-past-T_max": ("SGD", {}, "CosineAnnealingLR", dict(T_max=10, eta_min=1e-4), 35),
    "linear-warmup": ("SGD", {}, "LinearLR", dict(start_factor=0.1, total_iters=10), 20),
    "linear-default": ("SGD", {}, "LinearLR", {}, 9),
    "linear-decay": ("Adam", {}, "LinearLR", dict(start_factor=1.0, end_factor=0.25, total_iters=7), 12),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_schedule_matches_torch(case):
    opt_name, opt_kwargs, sched_name, sched_kwargs, steps = CASES[case]
    mine_opt, their_opt = _optimizers(opt_name, **opt_kwargs)
    mine = getattr(sched, sched_name)(mine_opt, **sched_kwargs)
    theirs = getattr(torch.optim.lr_scheduler, sched_name)(their_opt, **sched_kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch must see nothing amiss in the call order
        got, want = _trajectories(mine_opt, their_opt, mine, theirs, steps)
    # torch computes these recursively, minise in closed form: equal to rounding.
    np.testing.assert_allclose(_lr_array(got), _lr_array(want), rtol=1e-12, atol=1e-18)
    np.testing.assert_array_equal(_momentum_array(got), _momentum_array(want))  # untouched


ONE_CYCLE = {
    "recipe-linear-pct0.15": dict(max_lr=0.1, total_steps=100, pct_start=0.15, anneal_strategy="linear"),
    "recipe-cos-pct0.15": dict(max_lr=0.1, total_steps=100, pct_start=0.15, anneal_strategy="cos"),
    "defaults": dict(max_lr=0.4, total_steps=100),
    "per-group-max-lr": dict(max_lr=[0.2, 0.05], total_steps=60, pct_start=0.25, div_factor=10.0,
                             final_div_factor=100.0),
    "three-phase": dict(max_lr=0.1, total_steps=100, pct_start=0.15, anneal_strategy="linear", three_phase=True),
    "three-phase-cos": dict(max_lr=0.1, total_steps=77, three_phase=True),
    "epochs-steps-per-epoch": dict(max_lr=0.1, epochs=4, steps_per_epoch=13, pct_start=0.15,
                                   anneal_strategy="linear"),
    "custom-momenta": dict(max_lr=0.1, total_steps=50, base_momentum=[0.8, 0.7], max_momentum=0.99),
    "no-momentum-cycling": dict(max_lr=0.1, total_steps=50, pct_start=0.15, cycle_momentum=False),
}


@pytest.mark.parametrize("opt_name", ["SGD", "Adam", "AdamW"])
@pytest.mark.parametrize("case", list(ONE_CYCLE), ids=list(ONE_CYCLE))
def test_one_cycle_matches_torch_exactly(case, opt_name):
    """Same formulas as torch, so lr and momentum (SGD) / beta1 (Adam) agree bit for bit."""
    kwargs = ONE_CYCLE[case]
    mine_opt, their_opt = _optimizers(opt_name, **({"momentum": 0.9} if opt_name == "SGD" else {}))
    mine = sched.OneCycleLR(mine_opt, **kwargs)
    theirs = torch.optim.lr_scheduler.OneCycleLR(their_opt, **kwargs)
    total = kwargs.get("total_steps") or kwargs["epochs"] * kwargs["steps_per_epoch"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, want = _trajectories(mine_opt, their_opt, mine, theirs, total)
    np.testing.assert_array_equal(_lr_array(got), _lr_array(want))
    np.testing.assert_array_equal(_momentum_array(got), _momentum_array(want))
    if kwargs.get("cycle_momentum", True):
        assert len(set(_momentum_array(got)[:, 0])) > 10  # momentum really does cycle
    for key in ("initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum"):
        assert [g.get(key) for g in mine_opt.param_groups] == [g.get(key) for g in their_opt.param_groups]
    # Like torch, stepping past total_steps is an error.
    with pytest.raises(ValueError, match="total_steps"):
        mine.step()
    with pytest.raises(ValueError):
        theirs.step()


def test_one_cycle_recipe_cycles_sgd_momentum_by_default():
    """PyTorch's default cycle_momentum=True overrides SGD's momentum (even momentum=0)."""
    opt = minise.optim.SGD([Parameter(np.zeros(1))], lr=0.1)
    s = sched.OneCycleLR(opt, max_lr=0.1, total_steps=100, pct_start=0.15, anneal_strategy="linear")
    assert opt.param_groups[0]["momentum"] == 0.95
    for _ in range(14):  # the first phase ends at step pct_start * total_steps - 1 = 14
        opt.step()
        s.step()
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.85)
    assert s.get_last_lr()[0] == pytest.approx(0.1)
    opt = minise.optim.SGD([Parameter(np.zeros(1))], lr=0.1, momentum=0.9)
    sched.OneCycleLR(opt, max_lr=0.1, total_steps=100, cycle_momentum=False)
    assert opt.param_groups[0]["momentum"] == 0.9


def test_recipe_training_run_matches_torch(twins, grad_scales):
    """The project's recipe end to end: SGD (nesterov, weight decay) + OneCycleLR (linear,
    pct_start=0.15) over all 100 steps, parameters compared to torch after every step."""
    pair = twins(seed=7)
    kwargs = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    mine_opt, their_opt = pair.optimizers("SGD", **kwargs)
    cycle = dict(max_lr=0.1, total_steps=100, pct_start=0.15, anneal_strategy="linear")
    mine = sched.OneCycleLR(mine_opt, **cycle)
    theirs = torch.optim.lr_scheduler.OneCycleLR(their_opt, **cycle)
    for step in range(100):
        pair.feed_gradients(grad_scales[step % len(grad_scales)])
        mine_opt.step()
        their_opt.step()
        mine.step()
        theirs.step()
        pair.assert_match(1e-12, f"step {step + 1}")
    assert mine.get_last_lr() == theirs.get_last_lr()


def test_scheduler_errors():
    opt = minise.optim.SGD([Parameter(np.zeros(1))], lr=0.1, momentum=0.9)
    with pytest.raises(TypeError, match="Optimizer"):
        sched.StepLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), step_size=2)
    with pytest.raises(ValueError, match="step_size"):
        sched.StepLR(opt, step_size=0)
    with pytest.raises(ValueError, match="T_max"):
        sched.CosineAnnealingLR(opt, T_max=0)
    with pytest.raises(ValueError, match="start_factor"):
        sched.LinearLR(opt, start_factor=0.0)
    with pytest.raises(ValueError, match="end_factor"):
        sched.LinearLR(opt, end_factor=1.5)
    with pytest.raises(ValueError, match="milestones"):
        sched.MultiStepLR(opt, milestones=[1.5])
    with pytest.raises(ValueError, match="anneal_strategy"):
        sched.OneCycleLR(opt, max_lr=0.1, total_steps=10, anneal_strategy="cosine")
    with pytest.raises(ValueError, match="pct_start"):
        sched.OneCycleLR(opt, max_lr=0.1, total_steps=10, pct_start=1.5)
    with pytest.raises(ValueError, match="total_steps"):
        sched.OneCycleLR(opt, max_lr=0.1)
    with pytest.raises(ValueError, match="total_steps"):
        sched.OneCycleLR(opt, max_lr=0.1, total_steps=0)
    with pytest.raises(ValueError, match=r"max_lr.*\b2\b"):
        sched.OneCycleLR(opt, max_lr=[0.1, 0.2], total_steps=10)

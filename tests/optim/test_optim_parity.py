"""SGD, Adam and AdamW against torch.optim: same start, same gradients, same parameters after
every step (1e-12 relative in float64, 1e-6 in float32), and the same optimiser state."""
import zlib

import numpy as np
import pytest
import torch

STEPS = 8

CONFIGS = {
    "sgd-plain": ("SGD", None, dict(lr=0.1)),
    "sgd-weight-decay": ("SGD", None, dict(lr=0.1, weight_decay=0.05)),
    "sgd-momentum": ("SGD", None, dict(lr=0.1, momentum=0.9)),
    "sgd-dampening": ("SGD", None, dict(lr=0.1, momentum=0.9, dampening=0.3)),
    "sgd-nesterov": ("SGD", None, dict(lr=0.1, momentum=0.9, nesterov=True)),
    "sgd-momentum-dampening-decay": ("SGD", None, dict(lr=0.05, momentum=0.8, dampening=0.5, weight_decay=0.1)),
    "sgd-nesterov-decay": ("SGD", None, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.02)),
    "adam": ("Adam", None, dict(lr=0.01)),
    "adam-betas-eps": ("Adam", None, dict(lr=0.02, betas=(0.8, 0.99), eps=1e-3)),
    "adam-weight-decay": ("Adam", None, dict(lr=0.01, weight_decay=0.1)),
    "adam-amsgrad-weight-decay": ("Adam", None, dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    "adamw": ("AdamW", None, dict(lr=0.01, weight_decay=0.1)),
    "adamw-default-decay": ("AdamW", None, dict(lr=0.05)),
    "adamw-amsgrad": ("AdamW", None, dict(lr=0.01, weight_decay=0.2, amsgrad=True)),
    "sgd-groups": ("SGD", [([0, 2], {"lr": 0.2, "weight_decay": 0.0}), ([1], {"weight_decay": 0.1, "momentum": 0.5})],
                   dict(lr=0.05, momentum=0.9)),
    "adam-groups": ("Adam", [([0], {"lr": 0.03}), ([1, 2], {"weight_decay": 0.05, "amsgrad": True})],
                    dict(lr=0.01)),
    "adamw-groups": ("AdamW", [([1], {"weight_decay": 0.0}), ([0, 2], {"lr": 0.002, "betas": (0.5, 0.9)})],
                     dict(lr=0.01, weight_decay=0.3)),
}


def _assert_state_matches(mine, theirs, twins, rtol, assert_close, what):
    """Momentum buffers and moment estimates equal torch's; Adam's step count too."""
    for i, (m, t) in enumerate(zip(twins.mine, twins.theirs)):
        mine_state, their_state = mine.state.get(m, {}), theirs.state.get(t, {})
        assert set(mine_state) == set(their_state), f"{what}: state keys of param {i}"
        for key, value in mine_state.items():
            if key == "step":
                assert value == int(their_state[key].item())
            else:
                assert value.dtype == twins.dtype, f"{what}: {key} dtype {value.dtype}"
                assert_close(value, their_state[key].numpy(), rtol, f"{what}: state {key} of param {i}")


def _run(config, twins, grad_scales, assert_close, dtype, rtol):
    name, groups, kwargs = CONFIGS[config]
    pair = twins(dtype=dtype, seed=zlib.crc32(config.encode()))
    mine, theirs = pair.optimizers(name, groups, **kwargs)
    for step in range(STEPS):
        pair.feed_gradients(grad_scales[step % len(grad_scales)])
        mine.step()
        theirs.step()
        pair.assert_match(rtol, f"{name} {kwargs} step {step + 1}")
    _assert_state_matches(mine, theirs, pair, rtol, assert_close, f"{name} {kwargs}")


@pytest.mark.parametrize("config", list(CONFIGS), ids=list(CONFIGS))
def test_matches_torch_float64(config, twins, grad_scales, assert_close):
    _run(config, twins, grad_scales, assert_close, np.float64, 1e-12)


@pytest.mark.parametrize("config", ["sgd-nesterov-decay", "sgd-momentum-dampening-decay",
                                    "adam-amsgrad-weight-decay", "adamw-groups"])
def test_matches_torch_float32(config, twins, grad_scales, assert_close):
    _run(config, twins, grad_scales, assert_close, np.float32, 1e-6)


def test_the_comparison_can_fail(twins, grad_scales, assert_close):
    """The harness is sensitive: a slightly different momentum is caught within a few steps."""
    pair = twins()
    from minise.optim import SGD
    mine = SGD(pair.mine, lr=0.1, momentum=0.9)
    theirs = torch.optim.SGD(pair.theirs, lr=0.1, momentum=0.9 + 1e-9)
    with pytest.raises(AssertionError):
        for step in range(STEPS):
            pair.feed_gradients(grad_scales[step])
            mine.step()
            theirs.step()
            pair.assert_match(1e-12)


def test_zero_learning_rate_changes_nothing_but_state(twins):
    pair = twins()
    from minise.optim import Adam
    before = [p.data.copy() for p in pair.mine]
    opt = Adam(pair.mine, lr=0.0)
    pair.feed_gradients()
    opt.step()
    for p, b in zip(pair.mine, before):
        np.testing.assert_array_equal(p.data, b)
    assert all(opt.state[p]["step"] == 1 for p in pair.mine)

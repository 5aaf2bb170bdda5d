"""Checkpoints (state_dict round trips), in-place updates, dtypes, devices and argument errors."""
import copy
import io
import json
import pickle

import numpy as np
import pytest

from minise.nn import Parameter
from minise.optim import SGD, Adam, AdamW, Optimizer
from minise.optim import lr_scheduler as sched

SHAPES = [(3, 4), (5,), (2, 3, 2, 2)]
STEPS, SAVE_AT = 9, 3


def _params(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal(s).astype(dtype)) for s in SHAPES]


def _gradients(seed=1, dtype=np.float64):
    """The gradients of every step, fixed in advance: [step][param]."""
    rng = np.random.default_rng(seed)
    return [[(rng.standard_normal(s) * rng.uniform(0.01, 3)).astype(dtype) for s in SHAPES] for _ in range(STEPS)]


RECIPES = {
    "sgd-nesterov+onecycle-linear": (
        lambda ps: SGD([{"params": ps[:2]}, {"params": ps[2:], "weight_decay": 0.0}],
                       lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
        lambda opt: sched.OneCycleLR(opt, max_lr=0.1, total_steps=STEPS, pct_start=0.15, anneal_strategy="linear")),
    "sgd-dampening+step": (
        lambda ps: SGD(ps, lr=0.1, momentum=0.9, dampening=0.2, weight_decay=1e-2),
        lambda opt: sched.StepLR(opt, step_size=2, gamma=0.5)),
    "adam-amsgrad+cosine": (
        lambda ps: Adam(ps, lr=1e-2, weight_decay=0.1, amsgrad=True),
        lambda opt: sched.CosineAnnealingLR(opt, T_max=STEPS, eta_min=1e-4)),
    "adamw+onecycle-cos": (
        lambda ps: AdamW([{"params": ps[:1], "lr": 1e-3}, {"params": ps[1:]}], lr=1e-2),
        lambda opt: sched.OneCycleLR(opt, max_lr=[1e-2, 3e-2], total_steps=STEPS, pct_start=0.15)),
    "adam+linear-warmup": (
        lambda ps: Adam(ps, lr=1e-2),
        lambda opt: sched.LinearLR(opt, start_factor=0.2, total_iters=5)),
    "sgd+multistep": (
        lambda ps: SGD(ps, lr=0.1, momentum=0.5),
        lambda opt: sched.MultiStepLR(opt, milestones=[2, 4, 4])),
}


def _train(params, opt, scheduler, grads, steps):
    for step_grads in grads[:steps]:
        for p, g in zip(params, step_grads):
            p.grad[...] = g
        opt.step()
        scheduler.step()


def _snapshot(params, opt, scheduler):
    state = opt.state_dict()
    return ([p.data.copy() for p in params], state, scheduler.get_last_lr())


def _assert_identical(a, b):
    (params_a, opt_a, lr_a), (params_b, opt_b, lr_b) = a, b
    for x, y in zip(params_a, params_b):
        np.testing.assert_array_equal(x, y)  # bit for bit
    assert lr_a == lr_b
    assert opt_a["param_groups"] == opt_b["param_groups"]
    assert opt_a["state"].keys() == opt_b["state"].keys()
    for index in opt_a["state"]:
        sa, sb = opt_a["state"][index], opt_b["state"][index]
        assert sa.keys() == sb.keys()
        for key in sa:
            np.testing.assert_array_equal(sa[key], sb[key])


def _via_pickle(checkpoint):
    return pickle.loads(pickle.dumps(checkpoint))


def _via_json_and_npz(checkpoint):
    """Arrays into an .npz file, everything else into a JSON header (minise.checkpoint's way):
    tuples come back as lists, Adam's integer step as a 0-d array."""
    arrays = {f"model/{i}": a for i, a in enumerate(checkpoint["model"])}
    for index, state in checkpoint["optimizer"]["state"].items():
        for name, value in state.items():
            arrays[f"optim/{index}/{name}"] = np.asarray(value)
    meta = {"groups": checkpoint["optimizer"]["param_groups"], "scheduler": checkpoint["scheduler"]}
    buffer = io.BytesIO()
    np.savez(buffer, __meta__=np.array(json.dumps(meta)), **arrays)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays.pop("__meta__")))
    state = {}
    for key, value in arrays.items():
        if key.startswith("optim/"):
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = value
    return {
        "model": [arrays[f"model/{i}"] for i in range(len(checkpoint["model"]))],
        "optimizer": {"state": state, "param_groups": meta["groups"]},
        "scheduler": meta["scheduler"],
    }


@pytest.mark.parametrize("transport", [_via_pickle, _via_json_and_npz], ids=["pickle", "json+npz"])
@pytest.mark.parametrize("scheduler_first", [True, False], ids=["scheduler-then-load", "load-then-scheduler"])
@pytest.mark.parametrize("recipe", list(RECIPES), ids=list(RECIPES))
def test_resume_from_checkpoint_is_bit_identical(recipe, scheduler_first, transport):
    make_opt, make_sched = RECIPES[recipe]
    grads = _gradients()

    params = _params()
    opt = make_opt(params)
    scheduler = make_sched(opt)
    _train(params, opt, scheduler, grads, STEPS)
    uninterrupted = _snapshot(params, opt, scheduler)

    params = _params()
    opt = make_opt(params)
    scheduler = make_sched(opt)
    _train(params, opt, scheduler, grads, SAVE_AT)
    checkpoint = transport({  # to disk and back
        "model": [p.data.copy() for p in params],
        "optimizer": opt.state_dict(),
        "scheduler": scheduler.state_dict(),
    })

    params = _params(seed=99)  # a fresh model, then its weights restored
    for p, saved in zip(params, checkpoint["model"]):
        p.data[...] = saved
    opt = make_opt(params)
    if scheduler_first:  # PyTorch's documented order
        scheduler = make_sched(opt)
        opt.load_state_dict(checkpoint["optimizer"])
    else:
        opt.load_state_dict(checkpoint["optimizer"])
        scheduler = make_sched(opt)
    scheduler.load_state_dict(checkpoint["scheduler"])
    assert scheduler.last_epoch == SAVE_AT
    _train(params, opt, scheduler, grads[SAVE_AT:], STEPS - SAVE_AT)
    _assert_identical(_snapshot(params, opt, scheduler), uninterrupted)


def test_state_dict_layout_is_torchs_and_holds_host_copies():
    params = _params()
    opt = SGD([{"params": params[:2]}, {"params": params[2:], "lr": 0.5}], lr=0.1, momentum=0.9)
    assert opt.state_dict()["state"] == {}  # no state before the first step
    for p in params:
        p.grad[...] = 1.0
    opt.step()
    sd = opt.state_dict()
    assert sd["param_groups"] == [
        {"lr": 0.1, "momentum": 0.9, "dampening": 0, "weight_decay": 0, "nesterov": False, "params": [0, 1]},
        {"lr": 0.5, "momentum": 0.9, "dampening": 0, "weight_decay": 0, "nesterov": False, "params": [2]},
    ]
    assert sorted(sd["state"]) == [0, 1, 2]
    buf = sd["state"][0]["momentum_buffer"]
    assert type(buf) is np.ndarray
    assert buf is not opt.state[params[0]]["momentum_buffer"]
    buf[...] = 123.0  # editing the checkpoint leaves the optimiser alone
    assert not np.any(opt.state[params[0]]["momentum_buffer"] == 123.0)

    # Loading copies too: stepping afterwards leaves the state dict as it was.
    saved = copy.deepcopy(sd)
    opt.load_state_dict(sd)
    opt.step()
    for index in saved["state"]:
        np.testing.assert_array_equal(sd["state"][index]["momentum_buffer"], saved["state"][index]["momentum_buffer"])


def test_load_state_dict_casts_to_the_parameter_dtype():
    params64, params32 = _params(dtype=np.float64), _params(dtype=np.float32)
    opt64 = Adam(params64, lr=1e-2, amsgrad=True)
    for p in params64:
        p.grad[...] = 0.5
    opt64.step()
    opt32 = Adam(params32, lr=1e-2, amsgrad=True)
    opt32.load_state_dict(opt64.state_dict())
    for p in params32:
        state = opt32.state[p]
        assert state["step"] == 1
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            assert state[key].dtype == np.float32 and state[key].shape == p.shape


def test_load_state_dict_restores_hyper_parameters():
    params = _params()
    saved = SGD(params, lr=0.3, momentum=0.7, weight_decay=1e-3).state_dict()
    opt = SGD(params, lr=0.1)
    opt.load_state_dict(saved)
    assert opt.param_groups[0]["lr"] == 0.3 and opt.param_groups[0]["momentum"] == 0.7
    assert opt.param_groups[0]["params"] == params


def test_load_state_dict_mismatches_raise_and_change_nothing():
    params = _params()
    opt = SGD(params, lr=0.1, momentum=0.9)
    for p in params:
        p.grad[...] = 1.0
    opt.step()
    sd = opt.state_dict()

    fewer = SGD(params[:2], lr=0.2, momentum=0.9)
    with pytest.raises(ValueError, match=r"group 0\b.*\b3\b"):
        fewer.load_state_dict(sd)
    assert fewer.state == {} and fewer.param_groups[0]["lr"] == 0.2

    two_groups = SGD([{"params": params[:1]}, {"params": params[1:]}], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="parameter group"):
        two_groups.load_state_dict(sd)

    other_shapes = [Parameter(np.zeros(s)) for s in [(4, 3), (5,), (2, 3, 2, 2)]]
    with pytest.raises(ValueError, match="shape"):
        SGD(other_shapes, lr=0.1, momentum=0.9).load_state_dict(sd)

    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        opt.load_state_dict({"param_groups": sd["param_groups"]})


def test_scheduler_state_dict_mismatch_raises():
    opt = SGD(_params(), lr=0.1)
    sd = sched.StepLR(opt, step_size=2).state_dict()
    two = SGD([{"params": _params()[:1]}, {"params": _params()[1:]}], lr=0.1)
    with pytest.raises(ValueError, match="parameter group"):
        sched.StepLR(two, step_size=2).load_state_dict(sd)


@pytest.mark.parametrize("make", [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
    lambda ps: SGD(ps, lr=0.1),
    lambda ps: Adam(ps, amsgrad=True, weight_decay=0.1),
    lambda ps: AdamW(ps),
], ids=["sgd-nesterov", "sgd-plain", "adam-amsgrad", "adamw"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_step_updates_in_place_and_keeps_dtype(make, dtype):
    params = _params(dtype=dtype)
    arrays = [p.data for p in params]
    grads_before = [p.grad for p in params]
    opt = make(params)
    # A NumPy float64 scalar lr (as a schedule might leave) must not promote float32 weights.
    opt.param_groups[0]["lr"] = np.float64(opt.param_groups[0]["lr"])
    before = [a.copy() for a in arrays]
    for _ in range(3):
        for p in params:
            p.grad[...] = np.ones(p.shape, dtype=dtype)
        grad_values = [p.grad.copy() for p in params]
        opt.step()
        for p, g in zip(params, grad_values):
            np.testing.assert_array_equal(p.grad, g)  # the gradient is only read
    for p, a, b, g in zip(params, arrays, before, grads_before):
        assert p.data is a and p.grad is g
        assert p.data.dtype == dtype
        assert not np.array_equal(p.data, b)
    for state in opt.state.values():
        for value in state.values():
            if isinstance(value, np.ndarray):
                assert value.dtype == dtype


def test_zero_grad_zeroes_in_place():
    params = _params()
    opt = SGD(params, lr=0.1)
    grads = [p.grad for p in params]
    for p in params:
        p.grad[...] = 3.0
    opt.zero_grad()
    for p, g in zip(params, grads):
        assert p.grad is g and not np.any(g)


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9), lambda ps: Adam(ps)])
def test_frozen_parameters_are_skipped(make):
    params = _params()
    params[1].requires_grad = False
    frozen = params[1].data.copy()
    opt = make(params)
    for p in params:
        p.grad[...] = 1.0
    opt.step()
    np.testing.assert_array_equal(params[1].data, frozen)
    assert params[1] not in opt.state and params[0] in opt.state


def test_closure_is_called_and_its_loss_returned():
    p = Parameter(np.ones(2))
    opt = SGD([p], lr=0.5)

    def closure():
        p.grad[...] = 1.0
        return 42.0

    assert opt.step(closure) == 42.0
    np.testing.assert_array_equal(p.data, [0.5, 0.5])


def test_add_param_group():
    params = _params()
    opt = SGD(params[:2], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": params[2], "lr": 0.01})
    assert opt.param_groups[1]["params"] == [params[2]]
    assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[1]["momentum"] == 0.9
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [params[0]]})


@pytest.mark.parametrize("make, match", [
    (lambda ps: SGD(ps, lr=-0.1), "learning rate"),
    (lambda ps: SGD(ps, momentum=-0.5), "momentum"),
    (lambda ps: SGD(ps, weight_decay=-1e-4), "weight_decay"),
    (lambda ps: SGD(ps, nesterov=True), "Nesterov"),
    (lambda ps: SGD(ps, momentum=0.9, dampening=0.1, nesterov=True), "Nesterov"),
    (lambda ps: SGD([{"params": ps, "lr": -1.0}], lr=0.1), "learning rate"),
    (lambda ps: Adam(ps, lr=-1e-3), "learning rate"),
    (lambda ps: Adam(ps, betas=(1.0, 0.999)), "beta parameter at index 0"),
    (lambda ps: Adam(ps, betas=(0.9, -0.1)), "beta parameter at index 1"),
    (lambda ps: Adam(ps, betas=(0.9,)), "pair"),
    (lambda ps: Adam(ps, eps=-1e-8), "epsilon"),
    (lambda ps: Adam(ps, weight_decay=-1.0), "weight_decay"),
    (lambda ps: AdamW(ps, betas=(0.9, 1.5)), "beta parameter at index 1"),
    (lambda ps: AdamW([{"params": ps, "betas": (2.0, 0.9)}]), "beta parameter at index 0"),
    (lambda ps: SGD([], lr=0.1), "empty parameter list"),
    (lambda ps: SGD([ps[0], ps[0]], lr=0.1), "more than once"),
    (lambda ps: SGD([{"params": ps[:2]}, {"params": ps[1:]}], lr=0.1), "more than one parameter group"),
])
def test_bad_arguments_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make(_params())


@pytest.mark.parametrize("make, match", [
    (lambda ps: SGD(ps[0], lr=0.1), "iterable"),
    (lambda ps: SGD([ps[0].data], lr=0.1), r"Parameters.*ndarray"),
    (lambda ps: SGD(set(ps), lr=0.1), "ordered"),
    (lambda ps: SGD(ps, lr="0.1"), "real number"),
    (lambda ps: Adam(ps, lr=None), "real number"),
])
def test_bad_argument_types_raise_type_error(make, match):
    with pytest.raises(TypeError, match=match):
        make(_params())


def test_to_cpu_keeps_state_and_is_chainable():
    params = _params()
    opt = Adam(params)
    for p in params:
        p.grad[...] = 1.0
    opt.step()
    exp_avg = opt.state[params[0]]["exp_avg"].copy()
    assert opt.to("cpu") is opt
    np.testing.assert_array_equal(opt.state[params[0]]["exp_avg"], exp_avg)
    opt.to(dtype="float32")
    assert opt.state[params[0]]["exp_avg"].dtype == np.float32 and opt.state[params[0]]["step"] == 1
    with pytest.raises(ValueError, match="device"):
        opt.to("tpu")


def test_optimizer_base_class_step_is_abstract():
    with pytest.raises(NotImplementedError):
        Optimizer(_params(), {"lr": 0.1}).step()


@pytest.mark.gpu
@pytest.mark.parametrize("make", [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
    lambda ps: Adam(ps, lr=1e-2, amsgrad=True, weight_decay=0.1),
    lambda ps: AdamW(ps, lr=1e-2),
], ids=["sgd", "adam-amsgrad", "adamw"])
def test_gpu_matches_cpu_and_checkpoints_cross_devices(make):
    import cupy

    grads = _gradients()
    cpu = _params()
    gpu = [Parameter(cupy.asarray(p.data)) for p in cpu]
    gpu_arrays = [p.data for p in gpu]
    opt_cpu, opt_gpu = make(cpu), make(gpu)
    for step_grads in grads[:SAVE_AT]:
        for pc, pg, g in zip(cpu, gpu, step_grads):
            pc.grad[...] = g
            pg.grad[...] = cupy.asarray(g)
        opt_cpu.step()
        opt_gpu.step()
    for pc, pg, a in zip(cpu, gpu, gpu_arrays):
        assert pg.data is a and isinstance(pg.data, cupy.ndarray)
        np.testing.assert_allclose(cupy.asnumpy(pg.data), pc.data, rtol=1e-12, atol=1e-12)
    sd = opt_gpu.state_dict()
    for state in sd["state"].values():
        for value in state.values():
            assert not isinstance(value, cupy.ndarray)
    back_on_cpu = make(_params())
    back_on_cpu.load_state_dict(sd)
    for state in back_on_cpu.state.values():
        for value in state.values():
            assert not isinstance(value, cupy.ndarray)
    opt_gpu.to("cpu")
    for state in opt_gpu.state.values():
        for value in state.values():
            assert not isinstance(value, cupy.ndarray)


@pytest.mark.gpu
@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9), lambda ps: Adam(ps)], ids=["sgd", "adam"])
def test_gpu_state_must_follow_the_parameters(make):
    """After the model moves, step() names the fix (optimizer.to) instead of mixing devices."""
    import cupy

    params = _params()
    opt = make(params)
    for p in params:
        p.grad[...] = 1.0
    opt.step()
    for p in params:  # what model.to("cuda") does to each Parameter
        p.data, p.grad = cupy.asarray(p.data), cupy.asarray(p.grad)
    with pytest.raises(RuntimeError, match=r"optimizer\.to\('cuda'\)"):
        opt.step()
    opt.to("cuda")
    opt.step()
    for state in opt.state.values():
        for value in state.values():
            assert not isinstance(value, np.ndarray)

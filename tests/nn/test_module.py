"""The Module contract: registration, names, state_dict, dtype/device moves, and what every
layer promises about its inputs, dout and dtypes."""
import importlib.util

import re

import numpy as np
import pytest
import torch

import layer_cases
from minise import nn
from minise.models import BasicBlock, SEBottleneck


def _x(shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def conv_bn():
    nn.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


# ---- registration and names ---------------------------------------------------------------
def test_named_parameters_dotted_names_and_order():
    model = conv_bn()
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert [p.shape for p in model.parameters()] == [(4, 3, 3, 3), (4,), (4,), (4,)]
    assert model[0].weight is dict(model.named_parameters())["0.weight"]


def test_nested_names():
    nn.manual_seed(0)
    model = nn.Sequential(nn.Sequential(nn.Linear(2, 3, bias=False), nn.ReLU()), nn.SEBlock(4, 2))
    assert [n for n, _ in model.named_parameters()] == [
        "0.0.weight", "1.sequence.2.weight", "1.sequence.4.weight", "1.sequence.4.bias"]
    assert [n for n, _ in model.named_modules()][:4] == ["", "0", "0.0", "0.1"]


def test_sequential_indexing_slicing_len():
    layers = [nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2)]
    model = nn.Sequential(*layers)
    assert len(model) == 4
    assert model[0] is layers[0] and model[2] is layers[2] and model[-1] is layers[3]
    assert list(model) == layers
    part = model[1:3]
    assert isinstance(part, nn.Sequential) and len(part) == 2
    assert part[0] is layers[1] and part[1] is layers[2]
    assert len(model[::2]) == 2 and model[::2][1] is layers[2]
    with pytest.raises(IndexError):
        model[4]
    # a slice runs its (shared) children
    x = _x((1, 3, 6, 6), np.float32)
    np.testing.assert_array_equal(model[2:](model[:2](x)), model(x))


def test_sequential_rejects_non_modules():
    with pytest.raises(TypeError, match=r"Sequential: item 1 is a function, not a Module"):
        nn.Sequential(nn.ReLU(), lambda x: x)


def test_sequential_backward_is_the_chain_rule():
    nn.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x, dout = _x((5, 3)), _x((5, 2), seed=1)
    model(x)
    dx = model.backward(dout)
    d = model[2].backward(dout)
    d = model[1].backward(d)
    np.testing.assert_allclose(dx, model[0].backward(d), rtol=1e-12)


class Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(np.ones(3, dtype=np.float32))
        self.inner = nn.Linear(3, 2)
        self.not_a_parameter = np.zeros(3, dtype=np.float32)
        self.register_buffer("steps", np.zeros((), dtype=np.int64))
        self.offset = nn.Parameter(np.zeros(2, dtype=np.float32))


def test_attribute_assignment_registers_parameters_and_modules():
    m = Custom()
    assert [n for n, _ in m.named_parameters()] == ["scale", "offset", "inner.weight", "inner.bias"]
    assert [n for n, _ in m.named_children()] == ["inner"]
    # PyTorch's order: the module's own parameters, then its own buffers, then each child
    assert list(m.state_dict()) == ["scale", "offset", "steps", "inner.weight", "inner.bias"]
    m.offset = None                       # rebinding to a non-Parameter unregisters it
    assert "offset" not in dict(m.named_parameters())
    m.inner = nn.Linear(3, 5)             # rebinding to a new Module replaces it
    assert dict(m.named_parameters())["inner.weight"].shape == (5, 3)


def test_missing_super_init_is_reported():
    class Forgetful(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.ones(2, dtype=np.float32))

    with pytest.raises(RuntimeError, match=r"Forgetful.__init__ must call super\(\).__init__\(\) first"):
        Forgetful()


def test_parameter_rejects_non_float():
    with pytest.raises(TypeError, match="floating point, got dtype int64"):
        nn.Parameter(np.zeros(2, dtype=np.int64))
    with pytest.raises(TypeError, match="NumPy or CuPy array, got list"):
        nn.Parameter([1.0])


# ---- gradients ------------------------------------------------------------------------------
def _forward_backward(model, x, dout):
    model(x)
    return model.backward(dout)


def test_zero_grad():
    model = conv_bn()
    _forward_backward(model, _x((2, 3, 5, 5), np.float32), _x((2, 4, 3, 3), np.float32))
    assert all(np.abs(p.grad).sum() > 0 for p in model.parameters())
    model.zero_grad()
    assert all(np.all(p.grad == 0) for p in model.parameters())
    assert all(p.grad.shape == p.data.shape and p.grad.dtype == p.data.dtype for p in model.parameters())


@pytest.mark.parametrize("factory, shape", [
    (lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4).eval()), (2, 3, 5, 5)),
    (lambda: nn.Linear(3, 2), (4, 3)),
    (lambda: nn.SEBlock(6, 2), (2, 6, 3, 3)),
    (lambda: BasicBlock(3, 4, stride=2).eval(), (2, 3, 4, 4)),
], ids=["conv-bn", "linear", "se", "basic-block"])
def test_gradients_accumulate(factory, shape):
    nn.manual_seed(0)
    model = factory().double()
    x = _x(shape)
    dout = _x(model(x).shape, seed=1)
    _forward_backward(model, x, dout)
    once = {n: p.grad.copy() for n, p in model.named_parameters()}
    _forward_backward(model, x, dout)
    for n, p in model.named_parameters():
        assert np.abs(once[n]).max() > 0, n
        np.testing.assert_allclose(p.grad, 2 * once[n], rtol=1e-12, atol=1e-14, err_msg=n)


def test_train_eval_recurse():
    block = SEBottleneck(8, 2, 4)
    assert all(m.training for m in block.modules())
    assert block.eval() is block
    assert not any(m.training for m in block.modules())
    block.train()
    assert all(m.training for m in block.modules())
    block.train(False)
    assert not block.block[1].training and not block.se_block.sequence[2].training


# ---- state_dict -----------------------------------------------------------------------------
BN_KEYS = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]


def test_batchnorm_state_dict_keys_and_dtypes():
    sd = nn.BatchNorm2d(3).state_dict()
    assert list(sd) == BN_KEYS
    assert sd["num_batches_tracked"].dtype == np.int64 and sd["num_batches_tracked"].shape == ()
    assert sd["running_var"].dtype == np.float32
    np.testing.assert_array_equal(sd["running_var"], np.ones(3))


def _torch_twin():
    tnn = torch.nn
    return tnn.Sequential(tnn.Conv2d(3, 4, 3, bias=False), tnn.BatchNorm2d(4), tnn.ReLU(),
                          tnn.Conv2d(4, 4, 3), tnn.BatchNorm2d(4))


def _minise_twin():
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4))


def test_state_dict_has_torch_keys():
    assert set(_minise_twin().state_dict()) == set(_torch_twin().state_dict())


def test_state_dict_key_order_is_torch_order():
    """PyTorch lists each module's parameters, then its buffers, module by module."""
    assert list(_minise_twin().state_dict()) == list(_torch_twin().state_dict())


def test_state_dict_values_are_copies():
    model = conv_bn()
    sd = model.state_dict()
    before = {k: v.copy() for k, v in sd.items()}
    for v in sd.values():
        v[...] = 7
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    assert not np.shares_memory(sd["0.weight"], model[0].weight.data)


def _trained(seed):
    nn.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    model(_x((2, 3, 5, 5), np.float32, seed=seed))           # moves the running statistics
    return model


def test_load_state_dict_round_trip():
    source, target = _trained(1), _trained(2)
    x = _x((2, 3, 5, 5), np.float32, seed=3)
    source.eval(), target.eval()
    assert not np.allclose(source(x), target(x))
    weight_array = target[0].weight.data
    assert target.load_state_dict(source.state_dict()) == ([], [])
    np.testing.assert_array_equal(target(x), source(x))
    for k, v in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[k], v, err_msg=k)
    assert target[0].weight.data is weight_array             # loaded in place


def test_load_state_dict_from_torch():
    torch.manual_seed(0)
    tconv = torch.nn.Conv2d(3, 4, 3)
    conv = nn.Conv2d(3, 4, 3)
    conv.load_state_dict(tconv.state_dict())
    x = _x((1, 3, 5, 5), np.float32)
    np.testing.assert_allclose(conv(x), tconv(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


def _all_state(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def test_strict_load_names_missing_keys_and_changes_nothing():
    source, target = _trained(1), _trained(2)
    before = _all_state(target)
    sd = source.state_dict()
    del sd["1.running_var"], sd["0.bias"]
    with pytest.raises(ValueError, match=r"^Sequential.load_state_dict: missing keys: \['0.bias', '1.running_var'\]"):
        target.load_state_dict(sd)
    for k, v in target.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_strict_load_names_unexpected_keys_and_changes_nothing():
    source, target = _trained(1), _trained(2)
    before = _all_state(target)
    sd = source.state_dict()
    sd["2.weight"] = np.zeros(3, dtype=np.float32)
    with pytest.raises(ValueError, match=r"unexpected keys: \['2.weight'\]"):
        target.load_state_dict(sd)
    for k, v in target.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


@pytest.mark.parametrize("strict", [True, False])
def test_load_names_mis_shaped_keys_and_changes_nothing(strict):
    source, target = _trained(1), _trained(2)
    before = _all_state(target)
    sd = source.state_dict()
    sd["1.running_mean"] = np.zeros(5, dtype=np.float32)
    # every other entry is valid and different, and listed before the bad one
    with pytest.raises(ValueError, match=r"wrong shapes: \['1.running_mean: expected \(4,\), got \(5,\)'\]"):
        target.load_state_dict(sd, strict=strict)
    for k, v in target.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


@pytest.mark.parametrize("key, value, parts", [
    ("1.num_batches_tracked", np.array("many"), ["1.num_batches_tracked", "expected numbers", "<U4"]),
    ("1.num_batches_tracked", np.array(2.5), ["1.num_batches_tracked", "integer dtype int64"]),
    ("1.running_var", np.array([1, "x", 2, 3], dtype=object), ["1.running_var", "dtype object"]),
    ("1.running_var", np.full(4, 1e300), ["1.running_var", "overflow float32"]),
], ids=["string", "fraction-into-int", "object", "overflow"])
def test_a_value_that_cannot_be_converted_is_refused_and_nothing_changes(key, value, parts):
    """The bad entry comes last in the dict (after every valid, different one): a load that wrote
    as it went would already have changed the model when it refused."""
    source, target = _trained(1), _trained(2)
    before = _all_state(target)
    sd = source.state_dict()
    del sd[key]
    sd[key] = value
    with pytest.raises(ValueError, match=".*".join(re.escape(p) for p in parts) + r".*nothing was changed"):
        target.load_state_dict(sd)
    for k, v in target.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_an_integer_value_fits_an_integer_buffer():
    target = _trained(2)
    sd = target.state_dict()
    sd["1.num_batches_tracked"] = np.array(7.0)
    target.load_state_dict(sd)
    assert int(target[1].num_batches_tracked) == 7


def test_non_strict_load_returns_missing_and_unexpected():
    source, target = _trained(1), _trained(2)
    sd = source.state_dict()
    del sd["0.weight"]
    sd["extra"] = np.ones(2)
    old_weight = target[0].weight.data.copy()
    missing, unexpected = target.load_state_dict(sd, strict=False)
    assert missing == ["0.weight"] and unexpected == ["extra"]
    np.testing.assert_array_equal(target[0].weight.data, old_weight)
    np.testing.assert_array_equal(target[0].bias.data, source[0].bias.data)
    np.testing.assert_array_equal(target[1].running_var, source[1].running_var)


def test_loading_float64_values_keeps_float32():
    model = conv_bn()
    sd = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in model.state_dict().items()}
    sd["0.weight"] = sd["0.weight"] + 1.0
    model.load_state_dict(sd)
    assert model[0].weight.data.dtype == np.float32 and model[1].running_mean.dtype == np.float32
    np.testing.assert_allclose(model[0].weight.data, sd["0.weight"], rtol=1e-6)


# ---- dtype and device -----------------------------------------------------------------------
def test_double_and_float_convert_params_grads_buffers():
    model = SEBottleneck(8, 2, 4)
    assert model.double() is model
    for name, p in model.named_parameters():
        assert p.data.dtype == np.float64 and p.grad.dtype == np.float64, name
    buffers = dict(model.named_buffers())
    assert buffers["block.1.running_mean"].dtype == np.float64
    assert buffers["block.1.running_var"].dtype == np.float64
    assert all(v.dtype == np.int64 for k, v in buffers.items() if k.endswith("num_batches_tracked"))
    out = model(_x((2, 8, 4, 4)))
    assert out.dtype == np.float64
    model.float()
    assert all(p.data.dtype == np.float32 and p.grad.dtype == np.float32 for p in model.parameters())
    assert all(v.dtype == (np.int64 if k.endswith("tracked") else np.float32)
               for k, v in model.named_buffers())
    assert int(dict(model.named_buffers())["block.1.num_batches_tracked"]) == 1


def test_double_preserves_values():
    model = conv_bn()
    w = model[0].weight.data.copy()
    model.double()
    np.testing.assert_array_equal(model[0].weight.data, w.astype(np.float64))


def test_to_cpu_and_bad_device():
    model = conv_bn()
    w = model[0].weight.data.copy()
    assert model.to("cpu") is model and model.device == "cpu"
    np.testing.assert_array_equal(model[0].weight.data, w)
    assert model[0].weight.data.dtype == np.float32
    with pytest.raises(ValueError, match=r"device must be one of \('cpu', 'cuda'\), got 'tpu'"):
        model.to("tpu")
    with pytest.raises(ValueError, match="tpu"):
        model.to(device="tpu", dtype="float64")
    assert model[0].weight.data.dtype == np.float32          # a refused move changes nothing


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed")
def test_to_cuda_without_cupy_points_at_gpu_extra():
    with pytest.raises(RuntimeError, match=r"(?i)cupy.*gpu extra.*\.\[gpu\]"):
        conv_bn().to("cuda")


# ---- every layer: dout and x untouched, dtypes kept -------------------------------------------
LAYERS = {
    **layer_cases.LAYERS,
    "Conv2d-stride2": (lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 5, 5)),
    "Conv2d-1x1": (lambda: nn.Conv2d(3, 2, 1), (1, 3, 4, 4)),
    "BatchNorm1d-3d": (lambda: nn.BatchNorm1d(3), (4, 3, 2)),
    "BatchNorm2d-eval": (lambda: nn.BatchNorm2d(3).eval(), (2, 3, 4, 4)),
    "MaxPool2d-padded": (lambda: nn.MaxPool2d(3, 2, 1), (2, 3, 5, 5)),
    "AvgPool2d-padded": (lambda: nn.AvgPool2d(3, 2, 1), (2, 3, 5, 5)),
    "AdaptiveAvgPool2d-global": (lambda: nn.AdaptiveAvgPool2d(1), (2, 3, 4, 4)),
    "BasicBlock-projection": (lambda: BasicBlock(3, 4, stride=2, reduction_ratio=2), (2, 3, 4, 4)),
    "SEBottleneck": (lambda: SEBottleneck(4, 2, 4, stride=2), (2, 4, 4, 4)),
}


def _setup(name, dtype):
    nn.manual_seed(0)
    factory, shape = LAYERS[name]
    module = factory()
    if np.dtype(dtype) == np.float64:
        module.double()
    x = _x(shape, dtype)
    return module, x


@pytest.mark.parametrize("name", list(LAYERS))
def test_backward_does_not_write_into_dout_or_x(name):
    module, x = _setup(name, np.float64)
    x_copy = x.copy()
    out = module(x)
    dout = _x(out.shape, seed=1)
    dout_copy = dout.copy()
    dx = module.backward(dout)
    np.testing.assert_array_equal(dout, dout_copy)
    np.testing.assert_array_equal(x, x_copy)
    assert dx.shape == x.shape


@pytest.mark.parametrize("name", list(LAYERS))
def test_backward_accepts_read_only_dout(name):
    module, x = _setup(name, np.float32)
    x.flags.writeable = False
    out = module(x)
    dout = _x(out.shape, np.float32, seed=1)
    dout.flags.writeable = False
    dx = module.backward(dout)
    assert dx.shape == x.shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(LAYERS))
def test_dtype_kept_end_to_end(name, dtype):
    module, x = _setup(name, dtype)
    out = module(x)
    assert out.dtype == dtype
    dx = module.backward(_x(out.shape, dtype, seed=1))
    assert dx.dtype == dtype
    for pname, p in module.named_parameters():
        assert p.data.dtype == dtype and p.grad.dtype == dtype, pname
    for bname, b in module.named_buffers():
        assert b.dtype == (np.int64 if bname.endswith("num_batches_tracked") else dtype), bname


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_dtype(dtype):
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)
    value = loss(_x((4, 5), dtype), np.array([0, 1, 2, 4]))
    assert isinstance(value, float)
    assert loss.backward().dtype == dtype


# ---- initialisation -------------------------------------------------------------------------
def test_manual_seed_makes_init_reproducible():
    nn.manual_seed(0)
    a, la = nn.Conv2d(3, 8, 3), nn.Linear(5, 4)
    nn.manual_seed(0)
    b, lb = nn.Conv2d(3, 8, 3), nn.Linear(5, 4)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    np.testing.assert_array_equal(a.bias.data, b.bias.data)
    np.testing.assert_array_equal(la.weight.data, lb.weight.data)
    c = nn.Conv2d(3, 8, 3)                               # the generator moves on
    assert not np.array_equal(a.weight.data, c.weight.data)
    nn.manual_seed(1)
    assert not np.array_equal(a.weight.data, nn.Conv2d(3, 8, 3).weight.data)


@pytest.mark.parametrize("factory, fan_in", [
    (lambda: nn.Conv2d(16, 64, 3), 16 * 9),
    (lambda: nn.Conv2d(3, 600, (1, 5)), 15),
    (lambda: nn.Linear(256, 300), 256),
], ids=["conv3x3", "conv1x5", "linear"])
def test_init_is_uniform_within_fan_in_bound(factory, fan_in):
    nn.manual_seed(0)
    layer = factory()
    bound = 1 / np.sqrt(fan_in)
    for p in (layer.weight.data, layer.bias.data):
        assert p.dtype == np.float32
        assert np.abs(p).max() <= bound
    w = layer.weight.data.astype(np.float64)
    assert w.size > 5000
    assert abs(w.std() - bound / np.sqrt(3)) < 0.03 * bound
    assert abs(w.mean()) < 0.03 * bound
    assert np.abs(w).max() > 0.98 * bound                 # reaches the bound: not a narrower law
    hist, _ = np.histogram(w, bins=10, range=(-bound, bound))
    assert hist.min() > 0.8 * w.size / 10                  # flat, not bell-shaped


def test_batchnorm_init():
    bn = nn.BatchNorm2d(5)
    np.testing.assert_array_equal(bn.weight.data, np.ones(5))
    np.testing.assert_array_equal(bn.bias.data, np.zeros(5))
    np.testing.assert_array_equal(bn.running_mean, np.zeros(5))
    np.testing.assert_array_equal(bn.running_var, np.ones(5))
    assert int(bn.num_batches_tracked) == 0


def test_adaptive_pool_backward_returns_a_writable_fresh_array():
    pool = nn.AdaptiveAvgPool2d(1)
    x = np.random.default_rng(3).standard_normal((2, 3, 4, 4))
    dout = np.ones((2, 3, 1, 1))
    pool(x)
    dx = pool.backward(dout)
    dx += 1.0                                   # a caller may update it in place
    np.testing.assert_array_equal(dout, np.ones((2, 3, 1, 1)))

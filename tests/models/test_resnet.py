"""CIFAR (SE-)ResNets: parameter counts, depth rules, the bottleneck variant, attribute names, and a
PyTorch model written here from scratch (torchvision-style names, the seed post's SE block) that
loads minise's state_dict key for key and computes the same logits and gradients."""

import numpy as np
import pytest
import torch
from torch import nn as tnn

from minise import nn
from minise.models import BasicBlock, Bottleneck, CifarResNet, cifar_resnet, resnet20, resnet32, resnet56, se_resnet20
from minise.training import TrainConfig, build_model
from minise.twins import torch_twin

torch.set_num_threads(1)

# Option-B CIFAR ResNets (a 1x1 conv + BN projection at the two stage changes). The option-A
# counts of He et al. (0.27M, 0.46M, 0.85M: 269,722 / 464,154 / 853,018) plus the two
# projections: 16*32 + 2*32 + 32*64 + 2*64 = 2,752.
RESNET_PARAMS = {20: 272_474, 32: 466_906, 56: 855_770}
SE_RESNET20_MIN4_PARAMS = 275_498       # the PyTorch recipe's published count: hidden max(C // 16, 4)
TOP_LEVEL = ["conv1", "bn1", "relu", "layer1", "layer2", "layer3", "avgpool", "flatten", "fc"]


def count(model):
    return sum(p.data.size for p in model.parameters())


def se_params(channels, hidden):
    """Linear(C, h, bias=False) + Linear(h, C)."""
    return channels * hidden + hidden * channels + channels


# ---- sizes and structure -----------------------------------------------------------------------

@pytest.mark.parametrize("depth", sorted(RESNET_PARAMS))
def test_resnet_parameter_counts(depth):
    model = {20: resnet20, 32: resnet32, 56: resnet56}[depth]()
    assert count(model) == RESNET_PARAMS[depth]
    assert len(model.layer1) == len(model.layer2) == len(model.layer3) == (depth - 2) // 6


def test_se_resnet20_recipe_parameter_count():
    model = se_resnet20(min_hidden=4)
    assert count(model) == SE_RESNET20_MIN4_PARAMS
    hidden = [block.se_block.hidden for stage in (model.layer1, model.layer2, model.layer3) for block in stage]
    assert hidden == [4] * 9
    # `minise train`'s default model is this one
    assert count(build_model(TrainConfig())) == SE_RESNET20_MIN4_PARAMS


def test_se_resnet20_paper_rule_hidden_widths():
    model = se_resnet20()          # hidden = C // 16: 1, 2 and 4 units in the three stages
    hidden = [[block.se_block.hidden for block in stage] for stage in (model.layer1, model.layer2, model.layer3)]
    assert hidden == [[1] * 3, [2] * 3, [4] * 3]
    assert model.layer1[0].se_block.sequence[2].weight.shape == (1, 16)
    assert model.layer3[2].se_block.sequence[4].weight.shape == (64, 4)
    extra = sum(3 * se_params(c, h) for c, h in ((16, 1), (32, 2), (64, 4)))
    assert count(model) == RESNET_PARAMS[20] + extra == 274_826
    # min_hidden=0 in `minise train` means the paper's rule
    assert count(build_model(TrainConfig(min_hidden=0))) == count(model)


@pytest.mark.parametrize("depth, block, pattern", [
    (21, "basic", r"6n \+ 2"),
    (29, "basic", r"6n \+ 2"),
    (2, "basic", r"6n \+ 2"),
    (-4, "basic", r"6n \+ 2"),
    (20.0, "basic", r"6n \+ 2"),
    ("20", "basic", r"6n \+ 2"),
    (20 + 1, "bottleneck", r"9n \+ 2"),
    (2, "bottleneck", r"9n \+ 2"),
])
def test_bad_depth(depth, block, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        cifar_resnet(depth, block=block)
    assert repr(depth) in str(info.value)


@pytest.mark.parametrize("block", ["wide", "Basic", None])
def test_bad_block_type(block):
    with pytest.raises(ValueError, match="block must be one of") as info:
        cifar_resnet(20, block=block)
    assert "basic" in str(info.value) and "bottleneck" in str(info.value) and repr(block) in str(info.value)


def test_top_level_attribute_names_and_keys():
    model = se_resnet20()
    assert [name for name, _ in model.named_children()] == TOP_LEVEL
    assert isinstance(model, CifarResNet)
    assert {key.split(".")[0] for key in model.state_dict()} == {"conv1", "bn1", "layer1", "layer2", "layer3", "fc"}
    assert model.conv1.weight.shape == (16, 3, 3, 3) and model.conv1.bias is None
    assert model.fc.weight.shape == (10, 64) and model.fc.bias.shape == (10,)
    assert all(type(b) is BasicBlock for stage in (model.layer1, model.layer2, model.layer3) for b in stage)
    # the stage changes project their shortcut; the other blocks add x itself
    assert [len(b.shortcut) for stage in (model.layer1, model.layer2, model.layer3) for b in stage] == \
        [0, 0, 0, 2, 0, 0, 2, 0, 0]


def test_bottleneck_depth_29_shapes():
    nn.manual_seed(0)
    model = cifar_resnet(29, block="bottleneck")
    assert [len(stage) for stage in (model.layer1, model.layer2, model.layer3)] == [3, 3, 3]
    assert all(type(b) is Bottleneck for stage in (model.layer1, model.layer2, model.layer3) for b in stage)
    assert model.fc.weight.shape == (10, 256)
    assert model.layer1[0].block[0].weight.shape == (16, 16, 1, 1)
    assert model.layer1[0].shortcut[0].weight.shape == (64, 16, 1, 1)       # 16 -> 4 * 16 channels
    assert model.layer2[0].block[3].stride == (2, 2) and model.layer2[0].shortcut[0].stride == (2, 2)
    assert model.layer3[2].block[6].weight.shape == (256, 64, 1, 1)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    shapes = []
    h = model.relu(model.bn1(model.conv1(x)))
    for stage in (model.layer1, model.layer2, model.layer3):
        h = stage(h)
        shapes.append(h.shape)
    assert shapes == [(2, 64, 32, 32), (2, 128, 16, 16), (2, 256, 8, 8)]
    out = model(x)
    assert out.shape == (2, 10) and out.dtype == np.float32 and np.all(np.isfinite(out))
    dx = model.backward(np.ones_like(out))
    assert dx.shape == x.shape and np.all(np.isfinite(dx))


@pytest.mark.parametrize("factory", [resnet20, se_resnet20])
def test_num_classes_100(factory):
    nn.manual_seed(0)
    model = factory(num_classes=100)
    assert model.fc.weight.shape == (100, 64) and model.fc.bias.shape == (100,)
    out = model(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    assert out.shape == (2, 100)
    assert build_model(TrainConfig(model=factory.__name__, dataset="cifar100")).fc.weight.shape == (100, 64)


# ---- a PyTorch model written from scratch ------------------------------------------------------

class TorchSEBlock(tnn.Module):
    """The seed post's SE block."""

    def __init__(self, channels, hidden):
        super().__init__()
        self.sequence = tnn.Sequential(
            tnn.AdaptiveAvgPool2d((1, 1)),
            tnn.Flatten(),
            tnn.Linear(channels, hidden, bias=False),
            tnn.ReLU(),
            tnn.Linear(hidden, channels),
            tnn.Sigmoid(),
            tnn.Unflatten(1, (channels, 1, 1)),
        )

    def forward(self, x):
        return x * self.sequence(x)


class TorchBasicBlock(tnn.Module):
    def __init__(self, in_channels, out_channels, stride, hidden):
        super().__init__()
        self.block = tnn.Sequential(
            tnn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            tnn.BatchNorm2d(out_channels),
            tnn.ReLU(),
            tnn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            tnn.BatchNorm2d(out_channels),
        )
        self.se_block = TorchSEBlock(out_channels, hidden) if hidden else None
        if stride == 1 and in_channels == out_channels:
            self.shortcut = tnn.Sequential()
        else:
            self.shortcut = tnn.Sequential(tnn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                           tnn.BatchNorm2d(out_channels))
        self.relu = tnn.ReLU()

    def forward(self, x):
        branch = self.block(x)
        if self.se_block is not None:
            branch = self.se_block(branch)
        return self.relu(branch + self.shortcut(x))


class TorchCifarResNet(tnn.Module):
    """torchvision's attribute names; ``hidden(C)`` gives the SE width (None: no SE blocks)."""

    def __init__(self, blocks_per_stage=3, num_classes=10, hidden=None):
        super().__init__()
        self.conv1 = tnn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = tnn.BatchNorm2d(16)
        self.relu = tnn.ReLU()
        channels = 16
        for stage, width in enumerate((16, 32, 64), start=1):
            blocks = []
            for i in range(blocks_per_stage):
                stride = 2 if stage > 1 and i == 0 else 1
                blocks.append(TorchBasicBlock(channels, width, stride, hidden(width) if hidden else None))
                channels = width
            setattr(self, f"layer{stage}", tnn.Sequential(*blocks))
        self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
        self.fc = tnn.Linear(channels, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def randomised_se_resnet20(min_hidden, dtype, seed=0):
    """se_resnet20 with every BN weight, bias and running statistic moved off its initial value
    (a fresh BN is the identity in eval mode, which would hide mixed-up statistics)."""
    nn.manual_seed(seed)
    model = se_resnet20(min_hidden=min_hidden)
    rng = np.random.default_rng(seed + 1)
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith(("bn1.weight", "block.1.weight", "block.4.weight", "shortcut.1.weight")):
            state[key] = rng.uniform(0.5, 1.5, value.shape)
        elif key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 2.0, value.shape)
        elif key.endswith(("running_mean", ".bias")) and "fc" not in key:
            state[key] = 0.2 * rng.standard_normal(value.shape)
        elif key.endswith("num_batches_tracked"):
            state[key] = np.array(7)
    model.load_state_dict(state)
    return model.to(dtype=dtype)


def torch_from_scratch(model, min_hidden):
    hidden = (lambda c: c // 16) if min_hidden is None else (lambda c: max(c // 16, min_hidden))
    twin = TorchCifarResNet(hidden=hidden)
    dtype = getattr(torch, str(next(iter(model.parameters())).dtype))
    twin = twin.to(dtype)
    minise_state = model.state_dict()
    assert list(minise_state) == list(twin.state_dict()), "state_dict keys (or their order) differ from PyTorch's"
    for key, value in twin.state_dict().items():
        assert minise_state[key].shape == tuple(value.shape), key
        assert minise_state[key].dtype == value.numpy().dtype, key
    result = twin.load_state_dict({k: torch.from_numpy(v) for k, v in minise_state.items()}, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return twin


def assert_close(got, want, tol, what, nonzero=True):
    """|got - want| <= tol * (|want| + max|want|), same shape; ``nonzero``: want is not all zeros."""
    got = got.detach().numpy() if isinstance(got, torch.Tensor) else np.asarray(got)
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else np.asarray(want)
    assert got.shape == want.shape, what
    assert np.all(np.isfinite(got)), what
    scale = float(np.abs(want).max())
    assert scale > 0 or not nonzero, what
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=what)


TOL = {"float64": 1e-10, "float32": 1e-4}


@pytest.mark.parametrize("min_hidden", [None, 4])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_model_loads_state_dict_and_agrees(dtype, min_hidden):
    model = randomised_se_resnet20(min_hidden, dtype)
    twin = torch_from_scratch(model, min_hidden)
    packaged = torch_twin(model)
    x = np.random.default_rng(2).standard_normal((4, 3, 32, 32)).astype(dtype)

    for mode in ("eval", "train"):
        for m in (model, twin, packaged):
            m.train(mode == "train")
        with torch.no_grad():
            want = twin(torch.from_numpy(x))
            got_packaged = packaged(torch.from_numpy(x))
        got = model(x)
        assert got.dtype == np.dtype(dtype)
        assert_close(got, want, TOL[dtype], f"{mode}-mode logits")
        assert_close(got_packaged, want, TOL[dtype], f"minise.twins.torch_twin {mode}-mode logits")
        # not a trivial agreement: the images get different logits
        assert np.abs(got[0] - got[1]).max() > 1e-3
    # the BN running statistics moved the same way
    after, twin_after = model.state_dict(), twin.state_dict()
    for key in ("bn1.running_mean", "layer2.0.shortcut.1.running_var", "layer3.2.block.4.running_mean"):
        assert_close(after[key], twin_after[key], TOL[dtype], key)
    assert after["bn1.num_batches_tracked"] == twin_after["bn1.num_batches_tracked"].item() == 8


@pytest.mark.parametrize("min_hidden", [None, 4])
def test_gradients_agree_with_torch_float64(min_hidden):
    model = randomised_se_resnet20(min_hidden, "float64", seed=3)
    twin = torch_from_scratch(model, min_hidden)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 32, 32))
    g = rng.standard_normal((2, 10))
    model.train()
    twin.train()
    model.zero_grad()
    out = model(x)
    dx = model.backward(g)

    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tout = twin(tx)
    (tout * torch.from_numpy(g)).sum().backward()
    assert_close(out, tout, 1e-10, "logits")
    assert_close(dx, tx.grad, 1e-10, "dx")
    minise_params = dict(model.named_parameters())
    torch_params = dict(twin.named_parameters())
    assert list(minise_params) == list(torch_params)
    assert len(torch_params) == 3 + 9 * 6 + 2 * 3 + 9 * 3 + 2   # stem, blocks, projections, SE blocks, fc
    # With the paper's rule a stage-1 SE block has one hidden unit, which a batch can leave dead
    # (ReLU off for both images): its gradient is then exactly zero, in both libraries.
    zero = []
    for name, p in torch_params.items():
        assert_close(minise_params[name].grad, p.grad, 1e-10, f"grad of {name}", nonzero=False)
        if not p.grad.abs().max() > 0:
            zero.append(name)
    assert all(".se_block.sequence." in name for name in zero), f"all-zero gradients outside SE blocks: {zero}"
    assert len(zero) < 2 * 9 // 2, f"most SE blocks have all-zero gradients: {zero}"


def test_packaged_twin_has_the_same_structure_as_the_scratch_model():
    model = randomised_se_resnet20(4, "float32")
    packaged = torch_twin(model)
    scratch = torch_from_scratch(model, 4)
    assert list(packaged.state_dict()) == list(scratch.state_dict())
    assert [name for name, _ in packaged.named_children()] == TOP_LEVEL
    assert sum(p.numel() for p in packaged.parameters()) == SE_RESNET20_MIN4_PARAMS


def test_se_in_selected_stages_and_placements():
    model = cifar_resnet(20, reduction_ratio=16, min_hidden=4, se_stages=(3,))
    with_se = [name for name, m in model.named_modules() if type(m).__name__ == "SEBlock"]
    assert with_se and all(name.startswith("layer3.") for name in with_se)
    assert len(with_se) == 3
    for placement in ("pre", "post", "identity"):
        nn_model = cifar_resnet(20, reduction_ratio=4, placement=placement, se_options={"squeeze": "max"}).double()
        x = np.random.default_rng(1).standard_normal((2, 3, 32, 32))
        twin = torch_twin(nn_model.eval())
        np.testing.assert_allclose(nn_model(x), twin(torch.from_numpy(x)).detach().numpy(), rtol=1e-9, atol=1e-10)
    with pytest.raises(ValueError, match=r"se_stages must be drawn from \(1, 2, 3\)"):
        cifar_resnet(20, reduction_ratio=16, se_stages=(4,))

"""Residual blocks against PyTorch: the seed post's SEBlock and SEBottleneck (written out exactly
as in the post), a Bottleneck twin (the same without se_block) and a BasicBlock twin.

float64, 1e-10: forward, dx and every parameter gradient, train mode over several steps (with the
running statistics compared after each), then eval mode; state_dicts both ways; and the fan-out
of x into the residual branch and the shortcut (tinygrad PR #119: a gradient that is overwritten
instead of accumulated when a tensor is used twice).
"""
import numpy as np
import pytest
import torch
from torch import nn

import minise.nn as mnn
from seed_post import SEBlock, SEBottleneck
from minise import models as mm


# ---- twins for the blocks the post does not spell out ------------------------------------
class TorchBottleneck(SEBottleneck):
    """The seed's SEBottleneck with its SE block taken out: the plain Bottleneck, with the same
    layers, names and state_dict keys."""

    def __init__(self, input_channels, in_channels, stride=1):
        super().__init__(input_channels, in_channels, reduction_ratio=1, stride=stride)
        del self.se_block

    def forward(self, x):
        return self.relu(self.block(x) + self.shortcut(x))


class TorchBasicBlock(nn.Module):
    """conv3x3(stride)-BN-ReLU-conv3x3-BN, optional SE block, projection shortcut on a shape change."""
    expansion = 1

    def __init__(self, in_channels, out_channels, stride=1, reduction_ratio=None):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels))
        self.se_block = SEBlock(out_channels, reduction_ratio) if reduction_ratio is not None else None
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels))
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.block(x)
        if self.se_block is not None:
            out = self.se_block(out)
        return self.relu(out + self.shortcut(x))


# ---- the cases ------------------------------------------------------------------------------
# (id, minise factory, torch factory, x shape, identity shortcut?)
CASES = [
    ("SEBottleneck(64,16,16,s1)-identity", lambda: mm.SEBottleneck(64, 16, 16, 1), lambda: SEBottleneck(64, 16, 16, 1), (2, 64, 4, 4), True),
    ("SEBottleneck(32,16,16,s2)-proj", lambda: mm.SEBottleneck(32, 16, 16, 2), lambda: SEBottleneck(32, 16, 16, 2), (2, 32, 4, 4), False),
    ("SEBottleneck(16,8,4,s1)-proj-channels", lambda: mm.SEBottleneck(16, 8, 4, 1), lambda: SEBottleneck(16, 8, 4, 1), (2, 16, 4, 3), False),
    ("SEBottleneck(28,7,3,s2)-proj-stride", lambda: mm.SEBottleneck(28, 7, 3, 2), lambda: SEBottleneck(28, 7, 3, 2), (2, 28, 5, 4), False),
    ("Bottleneck(64,16,s1)-identity", lambda: mm.Bottleneck(64, 16, 1), lambda: TorchBottleneck(64, 16, 1), (2, 64, 4, 4), True),
    ("Bottleneck(32,16,s2)-proj", lambda: mm.Bottleneck(32, 16, 2), lambda: TorchBottleneck(32, 16, 2), (2, 32, 4, 4), False),
    ("Bottleneck(16,8,s1)-proj-channels", lambda: mm.Bottleneck(16, 8), lambda: TorchBottleneck(16, 8), (3, 16, 3, 4), False),
    ("BasicBlock(8,8,s1)-identity", lambda: mm.BasicBlock(8, 8, 1), lambda: TorchBasicBlock(8, 8, 1), (2, 8, 4, 4), True),
    ("BasicBlock(8,8,s1,se4)-identity", lambda: mm.BasicBlock(8, 8, 1, 4), lambda: TorchBasicBlock(8, 8, 1, 4), (2, 8, 4, 4), True),
    ("BasicBlock(4,8,s2)-proj", lambda: mm.BasicBlock(4, 8, 2), lambda: TorchBasicBlock(4, 8, 2), (2, 4, 4, 4), False),
    ("BasicBlock(4,8,s2,se4)-proj", lambda: mm.BasicBlock(4, 8, 2, 4), lambda: TorchBasicBlock(4, 8, 2, 4), (2, 4, 5, 4), False),
    ("BasicBlock(6,6,s2,se3)-proj-stride", lambda: mm.BasicBlock(6, 6, 2, 3), lambda: TorchBasicBlock(6, 6, 2, 3), (2, 6, 4, 4), False),
    ("BasicBlock(4,6,s1,se4)-proj-channels", lambda: mm.BasicBlock(4, 6, 1, 4), lambda: TorchBasicBlock(4, 6, 1, 4), (2, 4, 3, 3), False),
]
IDS = [c[0] for c in CASES]


def _pair(make_m, make_t, parity, gen, randomize=True):
    m, t = make_m().double(), make_t().double()
    if randomize:
        parity.randomize_torch_(t, gen)
        with torch.no_grad():  # spread the SE gates away from 0.5
            for mod in t.modules():
                if isinstance(mod, SEBlock):
                    mod.sequence[4].bias.copy_(torch.from_numpy(gen.normal(0, 1.0, mod.sequence[4].bias.shape)))
    parity.load_t2m(m, t)
    return m, t


def _batch(gen, shape, step):
    return (0.3 * step + gen.uniform(0.5, 2.0) * gen.standard_normal(shape)).astype(np.float64)


@pytest.mark.parametrize("_id,make_m,make_t,shape,identity", CASES, ids=IDS)
def test_block_structure_and_state_dict_layout(parity, _id, make_m, make_t, shape, identity):
    """Same state_dict keys, shapes, dtypes and order as torch; the identity shortcut is an empty
    Sequential exactly when torch's is."""
    m, t = make_m(), make_t()
    assert (len(m.shortcut) == 0) == identity == (len(t.shortcut) == 0)
    assert (m.se_block is None) == (getattr(t, "se_block", None) is None)
    assert sum(p.size for p in m.parameters()) == sum(p.numel() for p in t.parameters())
    parity.check_layout(m, t, order=True)


@pytest.mark.parametrize("_id,make_m,make_t,shape,identity", CASES, ids=IDS)
def test_block_train_steps_then_eval(parity, gen, _id, make_m, make_t, shape, identity):
    m, t = _pair(make_m, make_t, parity, gen)
    m.train()
    t.train()
    for step in range(3):
        out, _, _ = parity.forward_backward(m, t, _batch(gen, shape, step), np.float64, gen, what=f"{_id} train {step}")
        parity.compare_state(m, t)
    assert np.any(out == 0) and np.any(out > 0)  # the final ReLU is active and clipping
    nbt = {k: int(v) for k, v in m.state_dict().items() if k.endswith("num_batches_tracked")}
    assert nbt and nbt == {k: int(v) for k, v in t.state_dict().items() if k.endswith("num_batches_tracked")}
    m.eval()
    t.eval()
    for step in range(2):
        parity.forward_backward(m, t, _batch(gen, shape, 5 + step), np.float64, gen, what=f"{_id} eval {step}")
    parity.compare_state(m, t)


@pytest.mark.parametrize("_id,make_m,make_t,shape,identity", [CASES[i] for i in (0, 1, 5, 10)],
                         ids=[IDS[i] for i in (0, 1, 5, 10)])
def test_block_minise_to_torch_state_dict(parity, gen, _id, make_m, make_t, shape, identity):
    """minise -> torch: after minise trained (running stats moved), torch loads its NumPy
    state_dict and both agree in train and eval mode."""
    mnn.manual_seed(21)
    m = make_m().double()
    for step in range(2):
        m(_batch(gen, shape, step))
    t = make_t().double()
    parity.load_m2t(t, m)
    parity.forward_backward(m, t, _batch(gen, shape, 3), np.float64, gen, what="train")
    parity.compare_state(m, t)
    m.eval()
    t.eval()
    parity.forward_backward(m, t, _batch(gen, shape, 4), np.float64, gen, what="eval")


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("_id,make_m,make_t,shape,identity", CASES, ids=IDS)
def test_block_fan_out(parity, gen, _id, make_m, make_t, shape, identity, mode):
    """x feeds the residual branch and the shortcut. dx equals torch's; it equals the sum of the
    branch-only and shortcut-only gradients (computed with minise's submodules, and each equal to
    torch's gradient with x detached on the other path); and it differs from either alone."""
    m, t = _pair(make_m, make_t, parity, gen)
    m.train(mode == "train")
    t.train(mode == "train")
    x = _batch(gen, shape, 1)
    _, dx, dout = parity.forward_backward(m, t, x, np.float64, gen, what=f"{_id} {mode}")

    m.zero_grad()
    d = m.relu.backward(dout)
    d_branch = m.se_block.backward(d) if m.se_block is not None else d
    dx_branch = m.block.backward(d_branch)
    dx_short = m.shortcut.backward(d)
    if identity:
        np.testing.assert_array_equal(dx_short, d)
    np.testing.assert_allclose(dx, dx_branch + dx_short, rtol=1e-12, atol=1e-12 * np.abs(dx).max())
    for part, name in ((dx_branch, "branch"), (dx_short, "shortcut")):
        assert np.abs(dx - part).max() > 1e-3 * np.abs(dx).max(), f"dx equals the {name} path alone"

    def torch_path(keep):
        xt = torch.tensor(x, requires_grad=True)
        xb, xs = (xt, xt.detach()) if keep == "branch" else (xt.detach(), xt)
        branch = t.block(xb)
        if getattr(t, "se_block", None) is not None:
            branch = t.se_block(branch)
        t.relu(branch + t.shortcut(xs)).backward(torch.from_numpy(dout))
        return xt.grad

    # (in train mode these extra torch forwards move torch's running stats; no state is compared
    # after them, and train-mode gradients use the batch statistics only)
    parity.assert_close(dx_branch, torch_path("branch"), dtype=np.float64, what="branch path")
    parity.assert_close(dx_short, torch_path("shortcut"), dtype=np.float64, what="shortcut path")


@pytest.mark.parametrize("_id,make_m,make_t,shape,identity", [CASES[i] for i in (0, 1, 4, 10)],
                         ids=[IDS[i] for i in (0, 1, 4, 10)])
def test_block_float32(parity, gen, _id, make_m, make_t, shape, identity):
    """The default float32 blocks, train then eval, against the float64 truth (no worse than
    torch's own float32), with weights copied from a float32 torch twin."""
    m32, t32 = make_m(), make_t()
    parity.randomize_torch_(t32, gen)
    t64 = make_t().double()
    t64.load_state_dict(t32.state_dict())
    parity.load_t2m(m32, t32)
    for mode in (True, True, False):
        for mod in (m32, t32, t64):
            mod.train(mode)
        parity.float32_parity(m32, t32, t64, _batch(gen, shape, 1).astype(np.float32),
                              _dout_like(t32, shape, gen), what=f"{_id} float32 train={mode}")
    parity.compare_state(m32, t32)


def _dout_like(t, shape, gen):
    with torch.no_grad():
        was = t.training
        t.eval()
        out_shape = tuple(t(torch.zeros(shape)).shape)
        t.train(was)
    return gen.standard_normal(out_shape).astype(np.float32)

"""SE placements in the residual blocks (the SE-Net paper's Fig. 5) against PyTorch twins."""
import numpy as np
import pytest

from minise import nn
from minise.models import BasicBlock, Bottleneck, SEBottleneck
from minise.twins import torch_twin

PLACEMENTS = ["standard", "pre", "post", "identity"]
BLOCKS = {
    "basic-s1": lambda p: BasicBlock(8, 8, reduction_ratio=4, placement=p),
    "basic-s2": lambda p: BasicBlock(4, 8, stride=2, reduction_ratio=2, placement=p),
    "bottleneck-s2": lambda p: Bottleneck(8, 4, stride=2, reduction_ratio=4, placement=p),
    "se-bottleneck-s1": lambda p: SEBottleneck(16, 4, 4, placement=p),
}


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("kind", list(BLOCKS))
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_placement_matches_pytorch(kind, placement, train, parity, gen):
    nn.manual_seed(7)
    block = BLOCKS[kind](placement).double().train(train)
    x = gen.standard_normal((3, block.block[0].in_channels, 6, 6))
    parity.forward_backward(block, torch_twin(block), x, np.float64, gen, what=f"{kind} {placement}")


def test_pre_placement_squeezes_the_block_input_and_others_its_output():
    assert BasicBlock(4, 8, stride=2, reduction_ratio=2, placement="pre").se_block.input_channels == 4
    for placement in ("standard", "post", "identity"):
        assert BasicBlock(4, 8, stride=2, reduction_ratio=2, placement=placement).se_block.input_channels == 8


def test_placements_differ_and_bad_placement_is_named():
    nn.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((2, 8, 4, 4)).astype(np.float32)
    outs = []
    for placement in PLACEMENTS:
        nn.manual_seed(0)
        outs.append(BasicBlock(8, 8, reduction_ratio=4, placement=placement)(x))
    assert all(not np.allclose(a, b) for i, a in enumerate(outs) for b in outs[i + 1:])
    with pytest.raises(ValueError, match=r"BasicBlock.*placement.*'middle'"):
        BasicBlock(8, 8, reduction_ratio=4, placement="middle")

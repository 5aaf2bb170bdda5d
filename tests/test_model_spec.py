"""The --model text of ``minise summary``, parsed into a model (the command itself: test_summary.py)."""
import pytest

from minise import models, nn
from minise.model_spec import ModelSpecError, build_model, fitting_input_size


def test_layer_call_with_keywords_and_tuples():
    block = build_model("SEBlock(32, 8, min_hidden=None, squeeze='max', bias=(True, False))")
    assert isinstance(block, nn.SEBlock) and block.squeeze_op == "max" and block.bias == (True, False)
    assert build_model("Flatten(start_dim=1, end_dim=-1)").end_dim == -1
    assert build_model(" cifar_resnet(29, block='bottleneck', reduction_ratio=4) ").depth == 29


@pytest.mark.parametrize("text, fragment", [
    ("Module()", "known names"),
    ("manual_seed(0)", "known names"),
    ("nn.SEBlock(64, 16)", "known names"),
    ("SEBlock(64, reduction_ratio=16, **{})", "keyword unpacking"),
    ("SEBlock(*[64, 16])", "not a literal"),
    ("Linear(4, b'2')", "not a literal"),
    ("Linear(4, 2j)", "not a literal"),
    ("Linear(4, -True)", "not a literal"),
    ("Unflatten(1, ((((4,),),),))", "not a literal"),
    ("Linear(" + "-" * 480 + "1, 2)", "not a literal"),           # deeper than ast.unparse can recurse
    ("Linear(4, 2) if True else None", "known names"),
    ("SEBlock(64)", "SEBlock: TypeError"),
    ("SEBlock(64, 0)", "reduction_ratio"),
    ("Linear(" + "9" * 5000 + ", 2)", "at most 500 characters"),
])
def test_refused(text, fragment):
    with pytest.raises(ModelSpecError, match=fragment):
        build_model(text)


@pytest.mark.parametrize("model, size", [
    (models.resnet20(), (1, 3, 32, 32)),
    (nn.SEBlock(48, 16), (1, 48, 32, 32)),
    (models.SEBottleneck(64, 16, 16), (1, 64, 32, 32)),     # its input, not its width 16
    (models.BasicBlock(16, 32), (1, 16, 32, 32)),
    (nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()), (1, 3, 32, 32)),
    (nn.Linear(7, 2), (1, 7)),
    (nn.BatchNorm1d(5), (1, 5)),
    (nn.ReLU(), (1, 64, 32, 32)),
])
def test_fitting_input_size(model, size):
    assert fitting_input_size(model) == size

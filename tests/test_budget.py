"""The memory budget of ``minise summary``: parameter counts estimated from a call's arguments,
before anything is built, agree with the models those calls build."""
import inspect

import pytest

from minise.budget import BudgetError, check_activations, check_parameters, parameter_count
from minise.model_spec import build_model, constructors


@pytest.mark.parametrize("text, name, args, kwargs", [
    ("Conv2d(3, 8, 3)", "Conv2d", (3, 8, 3), {}),
    ("Linear(7, 5)", "Linear", (7, 5), {}),
    ("BatchNorm2d(12)", "BatchNorm2d", (12,), {}),
    ("SEBlock(64, 16, min_hidden=8)", "SEBlock", (64, 16), {"min_hidden": 8}),
    ("BasicBlock(16, 32, stride=2, reduction_ratio=4)", "BasicBlock", (16, 32), {"stride": 2, "reduction_ratio": 4}),
    ("SEBottleneck(64, 16, 16)", "SEBottleneck", (64, 16, 16), {}),
    ("se_resnet20", "se_resnet20", (), {}),
    ("resnet56(num_classes=100)", "resnet56", (), {"num_classes": 100}),
    ("cifar_resnet(29, block='bottleneck', reduction_ratio=4)", "cifar_resnet", (29,),
     {"block": "bottleneck", "reduction_ratio": 4}),
])
def test_estimate_bounds_the_built_model_closely(text, name, args, kwargs):
    bound = inspect.signature(constructors()[name]).bind(*args, **kwargs)
    bound.apply_defaults()
    estimate = parameter_count(name, bound.arguments)
    built = sum(v.size for v in build_model(text).state_dict().values())
    assert built <= estimate <= 1.1 * built + 16, (estimate, built)


def test_over_budget_is_refused_before_building():
    with pytest.raises(BudgetError, match="Linear would hold 4,000,100,000 parameters"):
        check_parameters("Linear", constructors()["Linear"], (40000, 100000), {}, max_bytes=2e9)
    check_parameters("Linear", constructors()["Linear"], (400, 1000), {}, max_bytes=2e9)   # within: no error


def test_activations_count_input_and_padding():
    conv = build_model("Conv2d(3, 8, 3, padding=1000)")
    with pytest.raises(BudgetError, match="input of 1,3,32,32"):
        check_activations(conv, (1, 3, 32, 32), max_bytes=1e8)     # 2,032 x 2,032 x 8 floats, twice
    check_activations(conv, (1, 3, 32, 32), max_bytes=1e9)
    with pytest.raises(BudgetError, match="2 to 4 positive integers"):
        check_activations(conv, (1, 0, 32, 32), max_bytes=1e9)

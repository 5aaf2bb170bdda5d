"""no_grad: a forward pass that keeps nothing for backward gives the same output."""
import numpy as np
import pytest

from minise import nn
from minise.execution import no_grad
from minise.models import se_resnet20


def test_no_grad_keeps_nothing_for_backward():
    nn.manual_seed(0)
    model = se_resnet20(min_hidden=4).double().eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8))
    expected = model(x)
    for module in model.modules():
        module._forget()
    with no_grad():
        out = model(x)
    np.testing.assert_array_equal(out, expected)
    kept = [(name, field) for name, module in model.named_modules()
            for field in ("_x", "_out") + tuple(module.keeps) if getattr(module, field) is not None]
    assert kept == []
    with pytest.raises(RuntimeError, match="before forward"):
        model.backward(np.ones_like(out))

"""The SE block's ablation options (squeeze, excitation, biases, min_hidden) against PyTorch twins."""
import numpy as np
import pytest

from minise import nn
from minise.twins import torch_twin

OPTIONS = [dict(), dict(squeeze="max"), dict(excitation="tanh"), dict(excitation="relu"),
           dict(bias=(True, True)), dict(bias=(False, False)), dict(min_hidden=5),
           dict(squeeze="max", excitation="tanh", bias=(True, False))]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_se_options_match_pytorch(options, parity, gen):
    nn.manual_seed(3)
    block = nn.SEBlock(12, 4, **options).double()
    parity.forward_backward(block, torch_twin(block), gen.standard_normal((3, 12, 5, 4)), np.float64, gen,
                            what=f"SEBlock {options}")


def test_se_option_errors_name_the_choices():
    with pytest.raises(ValueError, match=r"squeeze.*'avg'.*'min'"):
        nn.SEBlock(8, 2, squeeze="min")
    with pytest.raises(ValueError, match=r"excitation.*'sigmoid'.*'gelu'"):
        nn.SEBlock(8, 2, excitation="gelu")
    with pytest.raises(TypeError, match=r"bias.*bools.*True"):
        nn.SEBlock(8, 2, bias=True)
    with pytest.raises(ValueError, match=r"\(1, 1\).*got 2"):
        nn.AdaptiveMaxPool2d(2)


def test_max_squeeze_backward_reaches_only_the_maximum():
    pool = nn.AdaptiveMaxPool2d(1)
    x = np.random.default_rng(5).standard_normal((2, 3, 4, 4))
    pool(x)
    dx = pool.backward(np.ones((2, 3, 1, 1)))
    assert (np.count_nonzero(dx.reshape(2, 3, -1), axis=2) == 1).all()
    flat = x.reshape(2, 3, -1)
    np.testing.assert_array_equal(dx.reshape(2, 3, -1).argmax(axis=2), flat.argmax(axis=2))

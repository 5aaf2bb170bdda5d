"""The SE block's ablation options (squeeze, excitation, biases, min_hidden) against PyTorch twins."""
import numpy as np
import pytest
import torch

from minise import nn
from minise.twins import torch_twin

OPTIONS = [dict(), dict(squeeze="max"), dict(excitation="tanh"), dict(excitation="relu"),
           dict(bias=(True, True)), dict(bias=(False, False)), dict(min_hidden=5),
           dict(squeeze="max", excitation="tanh", bias=(True, False))]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_se_options_match_pytorch(options):
    nn.manual_seed(3)
    block = nn.SEBlock(12, 4, **options).double()
    twin = torch_twin(block)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 12, 5, 4))
    dout = rng.standard_normal(x.shape)
    out = block(x)
    dx = block.backward(dout)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    out_t = twin(xt)
    out_t.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    torch_grads = dict(twin.named_parameters())
    assert sorted(torch_grads) == sorted(name for name, _ in block.named_parameters())
    for name, p in block.named_parameters():
        np.testing.assert_allclose(p.grad, torch_grads[name].grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def test_se_option_errors_name_the_choices():
    with pytest.raises(ValueError, match=r"squeeze must be one of \['avg', 'max'\], got 'min'"):
        nn.SEBlock(8, 2, squeeze="min")
    with pytest.raises(ValueError, match=r"excitation must be one of \['sigmoid', 'tanh', 'relu'\], got 'gelu'"):
        nn.SEBlock(8, 2, excitation="gelu")
    with pytest.raises(TypeError, match=r"bias must be a pair of bools"):
        nn.SEBlock(8, 2, bias=True)
    with pytest.raises(ValueError, match=r"only the global output size"):
        nn.AdaptiveMaxPool2d(2)


def test_max_squeeze_backward_reaches_only_the_maximum():
    pool = nn.AdaptiveMaxPool2d(1)
    x = np.random.default_rng(5).standard_normal((2, 3, 4, 4))
    pool(x)
    dx = pool.backward(np.ones((2, 3, 1, 1)))
    assert (np.count_nonzero(dx.reshape(2, 3, -1), axis=2) == 1).all()
    flat = x.reshape(2, 3, -1)
    np.testing.assert_array_equal(dx.reshape(2, 3, -1).argmax(axis=2), flat.argmax(axis=2))

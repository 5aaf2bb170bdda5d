"""PyTorch twins of minise modules: the same structure, names and weights, built by PyTorch.

Used by the benchmarks and the tests (PyTorch is the oracle) and by anyone moving a model to
PyTorch. Needs torch (a test dependency, not a runtime one):

    >>> twin = torch_twin(minise_model)     # weights copied through state_dict
    >>> twin(torch.from_numpy(x))           # agrees with minise_model(x) to rounding
"""
from . import nn
from .models.blocks import _Residual
from .models.resnet import CifarResNet


def torch_twin(module):
    """A torch.nn.Module with ``module``'s structure and a copy of its weights and buffers."""
    import torch

    twin = _build(torch, module)
    dtype = next((p.dtype for p in module.parameters()), None)
    if dtype is not None:
        twin = twin.to(getattr(torch, str(dtype)))
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in module.state_dict().items()})
    return twin.train(module.training)


def _build(torch, m):
    tnn = torch.nn
    simple = {
        nn.Conv2d: lambda: tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                                      bias=m.bias is not None),
        nn.BatchNorm2d: lambda: tnn.BatchNorm2d(m.num_features, m.eps, m.momentum),
        nn.BatchNorm1d: lambda: tnn.BatchNorm1d(m.num_features, m.eps, m.momentum),
        nn.Linear: lambda: tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None),
        nn.MaxPool2d: lambda: tnn.MaxPool2d(m.kernel_size, m.stride, m.padding),
        nn.AvgPool2d: lambda: tnn.AvgPool2d(m.kernel_size, m.stride, m.padding),
        nn.AdaptiveAvgPool2d: lambda: tnn.AdaptiveAvgPool2d(m.output_size),
        nn.AdaptiveMaxPool2d: lambda: tnn.AdaptiveMaxPool2d(m.output_size),
        nn.ReLU: tnn.ReLU, nn.Sigmoid: tnn.Sigmoid, nn.Tanh: tnn.Tanh, nn.Identity: tnn.Identity,
        nn.Flatten: lambda: tnn.Flatten(m.start_dim, m.end_dim),
        nn.Unflatten: lambda: tnn.Unflatten(m.dim, m.unflattened_size),
        nn.Sequential: lambda: tnn.Sequential(*(_build(torch, c) for c in m)),
    }
    if type(m) in simple:
        return simple[type(m)]()
    children = {name: _build(torch, child) for name, child in m.named_children()}
    if isinstance(m, nn.SEBlock):
        return _twin_class(torch, "SEBlock", lambda self, x: x * self.sequence(x))(children)
    if isinstance(m, _Residual):
        twin = _twin_class(torch, type(m).__name__, _residual_forward)(children)
        twin.placement = m.placement
        return twin
    if isinstance(m, CifarResNet):
        return _twin_class(torch, "CifarResNet", _resnet_forward)(children)
    raise TypeError(f"torch_twin: no PyTorch twin for {type(m).__name__}")


def _twin_class(torch, name, forward):
    class Twin(torch.nn.Module):
        def __init__(self, children):
            super().__init__()
            for child_name, child in children.items():
                setattr(self, child_name, child)

    Twin.forward = forward
    Twin.__name__ = Twin.__qualname__ = name
    return Twin


def _residual_forward(self, x):
    def se(where, t):
        return self.se_block(t) if hasattr(self, "se_block") and self.placement == where else t

    branch = se("standard", self.block(se("pre", x)))
    return se("post", self.relu(branch + se("identity", self.shortcut(x))))


def _resnet_forward(self, x):
    x = self.relu(self.bn1(self.conv1(x)))
    x = self.layer3(self.layer2(self.layer1(x)))
    return self.fc(self.flatten(self.avgpool(x)))

"""One of every layer and block with a valid input shape: the table the bad-input tests and the
module-contract tests (tests/nn/test_module.py, which adds variants) both run over."""
from minise import nn
from minise.models import BasicBlock, Bottleneck

# class name -> (factory, a valid input shape)
LAYERS = {
    "Conv2d": (lambda: nn.Conv2d(3, 4, 3, padding=1), (2, 3, 5, 5)),
    "BatchNorm1d": (lambda: nn.BatchNorm1d(3), (4, 3)),
    "BatchNorm2d": (lambda: nn.BatchNorm2d(3), (2, 3, 4, 4)),
    "MaxPool2d": (lambda: nn.MaxPool2d(2), (2, 3, 4, 4)),
    "AvgPool2d": (lambda: nn.AvgPool2d(2), (2, 3, 4, 4)),
    "AdaptiveAvgPool2d": (lambda: nn.AdaptiveAvgPool2d(2), (2, 3, 4, 4)),
    "Linear": (lambda: nn.Linear(3, 2), (4, 3)),
    "ReLU": (nn.ReLU, (2, 3, 4)),
    "Sigmoid": (nn.Sigmoid, (2, 3, 4)),
    "Tanh": (nn.Tanh, (2, 3, 4)),
    "Flatten": (nn.Flatten, (2, 3, 2, 2)),
    "Unflatten": (lambda: nn.Unflatten(1, (3, 1, 1)), (2, 3)),
    "Identity": (nn.Identity, (2, 3)),
    "SEBlock": (lambda: nn.SEBlock(4, 2), (2, 4, 3, 3)),
    "BasicBlock": (lambda: BasicBlock(3, 3), (2, 3, 4, 4)),
    "Bottleneck": (lambda: Bottleneck(8, 2), (2, 8, 4, 4)),
}

"""minise.nn: layers with hand-written forward and backward passes, named as in torch.nn."""
from .activation import ReLU, Sigmoid, Tanh
from .batchnorm import BatchNorm1d, BatchNorm2d
from .conv import Conv2d
from .init import manual_seed
from .linear import Linear
from .loss import CrossEntropyLoss
from .module import Module, Sequential
from .parameter import Parameter
from .pooling import AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, MaxPool2d
from .se import SEBlock
from .shape import Flatten, Identity, Unflatten

__all__ = [
    "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv2d", "CrossEntropyLoss",
    "Flatten", "Identity", "Linear", "MaxPool2d", "Module", "Parameter", "ReLU", "SEBlock",
    "Sequential", "Sigmoid", "Tanh", "Unflatten", "manual_seed",
]

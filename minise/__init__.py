"""minise: Squeeze-and-Excitation networks with every forward and backward pass written by hand.

    minise.nn          layers, the SE block, the loss (PyTorch's names)
    minise.models      residual blocks and CIFAR ResNets
    minise.gradcheck   numeric gradient checks (``python -m minise.gradcheck``)
    minise.summary     a torchinfo-like table of a model
"""
from . import nn
from .summary import summary

__version__ = "0.1.0"

__all__ = ["nn", "summary", "__version__"]

"""minise.models: residual blocks and the CIFAR ResNets built from them."""
from .blocks import BasicBlock, Bottleneck, SEBottleneck
from .resnet import (CifarResNet, cifar_resnet, resnet20, resnet32, resnet56, se_resnet20, se_resnet32,
                     se_resnet56)

__all__ = ["BasicBlock", "Bottleneck", "SEBottleneck", "CifarResNet", "cifar_resnet", "resnet20", "resnet32",
           "resnet56", "se_resnet20", "se_resnet32", "se_resnet56"]

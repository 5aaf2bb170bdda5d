"""minise.models: residual blocks and the networks built from them."""
from .blocks import BasicBlock, Bottleneck, SEBottleneck

__all__ = ["BasicBlock", "Bottleneck", "SEBottleneck"]

"""CIFAR ResNets (He et al., 2016, section 4.2) and their SE variants (Hu et al., 2017).

A 3x3 conv with 16 channels, three stages of n residual blocks with widths 16/32/64 (stride 2
at the start of stages 2 and 3), global average pooling and a linear classifier. Depth is
6n + 2 with basic blocks and 9n + 2 with bottlenecks. Shortcuts are option B (a 1x1 conv and
BN where the shape changes). Attribute names follow torchvision's ResNet, so a PyTorch twin
loads key for key.
"""
from ..nn import AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, Module, ReLU, Sequential
from ..nn.validate import positive_int
from .blocks import BasicBlock, Bottleneck

WIDTHS = (16, 32, 64)
MAX_DEPTH = 1202         # the paper's deepest CIFAR ResNet (section 4.2); 19.7M parameters here, with SE blocks
MAX_CLASSES = 100_000
BLOCKS = {"basic": (BasicBlock, 6), "bottleneck": (Bottleneck, 9)}


class CifarResNet(Module):
    """x: (N, 3, 32, 32) -> logits (N, num_classes).

    With ``reduction_ratio`` every block of the stages in ``se_stages`` (1, 2, 3) gets an SE
    block at ``placement``, built with ``min_hidden`` and ``se_options`` (SEBlock's squeeze,
    excitation and bias).
    """

    def __init__(self, depth, block="basic", num_classes=10, reduction_ratio=None, min_hidden=None,
                 placement="standard", se_stages=(1, 2, 3), se_options=None):
        super().__init__()
        if not set(se_stages) <= {1, 2, 3}:
            raise ValueError(f"CifarResNet: se_stages must be drawn from (1, 2, 3), got {se_stages!r}")
        if block not in BLOCKS:
            raise ValueError(f"CifarResNet: block must be one of {list(BLOCKS)}, got {block!r}")
        block_class, per_block = BLOCKS[block]
        if not isinstance(depth, int) or depth < per_block + 2 or (depth - 2) % per_block or depth > MAX_DEPTH:
            raise ValueError(f"CifarResNet: a {block} ResNet needs depth = {per_block}n + 2 "
                             f"(e.g. {per_block + 2}, {2 * per_block + 2}) of at most {MAX_DEPTH}, got {depth!r:.60}")
        positive_int(num_classes, "num_classes", "CifarResNet", maximum=MAX_CLASSES)
        n = (depth - 2) // per_block
        self.depth, self.block_type, self.reduction_ratio = depth, block, reduction_ratio
        self.conv1 = Conv2d(3, WIDTHS[0], 3, padding=1, bias=False)
        self.bn1 = BatchNorm2d(WIDTHS[0])
        self.relu = ReLU()
        channels = WIDTHS[0]
        for stage, width in enumerate(WIDTHS, start=1):
            blocks = []
            for i in range(n):
                stride = 2 if stage > 1 and i == 0 else 1
                blocks.append(block_class(channels, width, stride=stride,
                                          reduction_ratio=reduction_ratio if stage in se_stages else None,
                                          min_hidden=min_hidden, placement=placement, se_options=se_options))
                channels = width * block_class.expansion
            setattr(self, f"layer{stage}", Sequential(*blocks))
        self.avgpool = AdaptiveAvgPool2d((1, 1))
        self.flatten = Flatten()
        self.fc = Linear(channels, num_classes)

    def stages(self):
        return [self.conv1, self.bn1, self.relu, self.layer1, self.layer2, self.layer3,
                self.avgpool, self.flatten, self.fc]

    def forward_math(self, x):
        for module in self.stages():
            x = module(x)
        return x

    def backward_math(self, dout):
        for module in reversed(self.stages()):
            dout = module.backward(dout)
        return dout

    def extra_repr(self):
        return f"depth={self.depth}, block={self.block_type!r}, reduction_ratio={self.reduction_ratio}"


def cifar_resnet(depth, block="basic", num_classes=10, reduction_ratio=None, min_hidden=None,
                 placement="standard", se_stages=(1, 2, 3), se_options=None):
    """A CIFAR ResNet of ``depth`` layers; an SE-ResNet when ``reduction_ratio`` is given."""
    return CifarResNet(depth, block, num_classes, reduction_ratio, min_hidden, placement, se_stages, se_options)


def resnet20(num_classes=10):
    return cifar_resnet(20, num_classes=num_classes)


def resnet32(num_classes=10):
    return cifar_resnet(32, num_classes=num_classes)


def resnet56(num_classes=10):
    return cifar_resnet(56, num_classes=num_classes)


def se_resnet20(num_classes=10, reduction_ratio=16, min_hidden=None):
    return cifar_resnet(20, num_classes=num_classes, reduction_ratio=reduction_ratio, min_hidden=min_hidden)


def se_resnet32(num_classes=10, reduction_ratio=16, min_hidden=None):
    return cifar_resnet(32, num_classes=num_classes, reduction_ratio=reduction_ratio, min_hidden=min_hidden)


def se_resnet56(num_classes=10, reduction_ratio=16, min_hidden=None):
    return cifar_resnet(56, num_classes=num_classes, reduction_ratio=reduction_ratio, min_hidden=min_hidden)

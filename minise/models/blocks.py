"""Residual blocks: BasicBlock and Bottleneck, with an optional SE block.

Attribute names follow the seed post's PyTorch code (``block``, ``se_block``, ``shortcut``,
``relu``), so its state_dicts load key for key.

Forward:   out = relu(se(block(x)) + shortcut(x))
Backward:  x feeds two paths, the residual branch and the shortcut, so
           dx = block.backward(se.backward(d)) + shortcut.backward(d),  d = relu.backward(dout)

``placement`` moves the SE block as the SE-Net paper's Fig. 5 does (the others' backward
passes follow the same chain rule, each SE backward where its forward was):
    "standard"  relu(se(block(x)) + shortcut(x))       (the paper's SE block; the default)
    "pre"       relu(block(se(x)) + shortcut(x))       (SE before the residual unit)
    "post"      se(relu(block(x) + shortcut(x)))       (SE after the summation, after ReLU)
    "identity"  relu(block(x) + se(shortcut(x)))       (SE on the identity path)
"""
from ..nn import BatchNorm2d, Conv2d, Module, ReLU, SEBlock, Sequential
from ..nn.validate import positive_int

PLACEMENTS = ("standard", "pre", "post", "identity")


def _projection(in_channels, out_channels, stride):
    """Option B shortcut: a strided 1x1 conv and BN where the shape changes, else identity."""
    if stride == 1 and in_channels == out_channels:
        return Sequential()
    return Sequential(Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                      BatchNorm2d(out_channels))


class _Residual(Module):
    """The residual unit with its SE block where ``placement`` says; subclasses build block,
    shortcut and relu, then call ``_add_se``."""

    input_ndim = 4

    def _add_se(self, reduction_ratio, placement, in_channels, out_channels, min_hidden, se_options):
        if placement not in PLACEMENTS:
            raise ValueError(f"{type(self).__name__}: placement must be one of {list(PLACEMENTS)}, "
                             f"got {placement!r}")
        self.placement = placement
        channels = in_channels if placement == "pre" else out_channels
        self.se_block = (SEBlock(channels, reduction_ratio, min_hidden, **(se_options or {}))
                         if reduction_ratio is not None else None)

    def _se(self, where, x):
        """se_block(x) if the SE block sits at ``where``, else x unchanged."""
        return self.se_block(x) if self.se_block is not None and self.placement == where else x

    def _se_backward(self, where, d):
        return self.se_block.backward(d) if self.se_block is not None and self.placement == where else d

    def forward_math(self, x):
        branch = self._se("standard", self.block(self._se("pre", x)))
        total = branch + self._se("identity", self.shortcut(x))
        return self._se("post", self.relu(total))

    def backward_math(self, dout):
        d = self.relu.backward(self._se_backward("post", dout))
        # the residual add copies d to both paths; x's gradient is the sum of both
        dx_branch = self._se_backward("pre", self.block.backward(self._se_backward("standard", d)))
        dx_shortcut = self.shortcut.backward(self._se_backward("identity", d))
        return dx_branch + dx_shortcut


class BasicBlock(_Residual):
    """BasicBlock(in_channels, out_channels, stride=1, reduction_ratio=None, min_hidden=None,
    placement="standard", se_options=None).

    x: (N, in, H, W) -> (N, out, H/stride, W/stride).
    block: conv3x3(stride) - BN - ReLU - conv3x3 - BN; an SE block when reduction_ratio is set.
    """

    expansion = 1
    input_channels_from = "in_channels"

    def __init__(self, in_channels, out_channels, stride=1, reduction_ratio=None, min_hidden=None,
                 placement="standard", se_options=None):
        super().__init__()
        positive_int(stride, "stride", "BasicBlock")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.block = Sequential(
            Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            BatchNorm2d(out_channels),
            ReLU(),
            Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            BatchNorm2d(out_channels),
        )
        self._add_se(reduction_ratio, placement, in_channels, out_channels, min_hidden, se_options)
        self.shortcut = _projection(in_channels, out_channels, stride)
        self.relu = ReLU()

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


class Bottleneck(_Residual):
    """Bottleneck(input_channels, in_channels, stride=1, reduction_ratio=None, min_hidden=None),
    expansion 4.

    x: (N, input_channels, H, W) -> (N, 4*in_channels, H/stride, W/stride).
    block: conv1x1 - BN - ReLU - conv3x3(stride) - BN - ReLU - conv1x1 (x4 channels) - BN.
    """

    expansion = 4
    input_channels_from = "input_channels"

    def __init__(self, input_channels, in_channels, stride=1, reduction_ratio=None, min_hidden=None,
                 placement="standard", se_options=None):
        super().__init__()
        positive_int(stride, "stride", type(self).__name__)
        out_channels = in_channels * self.expansion
        self.input_channels, self.in_channels, self.stride = input_channels, in_channels, stride
        self.block = Sequential(
            Conv2d(input_channels, in_channels, 1, bias=False),
            BatchNorm2d(in_channels),
            ReLU(),
            Conv2d(in_channels, in_channels, 3, stride=stride, padding=1, bias=False),
            BatchNorm2d(in_channels),
            ReLU(),
            Conv2d(in_channels, out_channels, 1, bias=False),
            BatchNorm2d(out_channels),
        )
        self._add_se(reduction_ratio, placement, input_channels, out_channels, min_hidden, se_options)
        self.shortcut = _projection(input_channels, out_channels, stride)
        self.relu = ReLU()

    def extra_repr(self):
        return f"{self.input_channels}, {self.in_channels}, stride={self.stride}"


class SEBottleneck(Bottleneck):
    """SEBottleneck(input_channels, in_channels, reduction_ratio, stride=1): the seed post's block,
    a Bottleneck with an SE block after its last BN, before the residual add."""

    def __init__(self, input_channels, in_channels, reduction_ratio, stride=1, min_hidden=None,
                 placement="standard", se_options=None):
        super().__init__(input_channels, in_channels, stride=stride, reduction_ratio=reduction_ratio,
                         min_hidden=min_hidden, placement=placement, se_options=se_options)

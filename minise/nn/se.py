"""The Squeeze-and-Excitation block (Hu et al., 2017): squeeze, excite, rescale."""
from ..execution import accelerated
from .activation import ReLU, Sigmoid, Tanh
from .linear import Linear
from .module import Module, Sequential
from .ops import multiply_sum
from .pooling import AdaptiveAvgPool2d, AdaptiveMaxPool2d
from .shape import Flatten, Unflatten
from .validate import positive_int

SQUEEZE = slice(0, 2)   # sequence[0:2]: global average pool, flatten   -> z: (N, C)
EXCITE = slice(2, 7)    # sequence[2:7]: FC, ReLU, FC, sigmoid, unflatten -> s: (N, C, 1, 1)
SQUEEZE_OPS = {"avg": AdaptiveAvgPool2d, "max": AdaptiveMaxPool2d}
EXCITATION_OPS = {"sigmoid": Sigmoid, "tanh": Tanh, "relu": ReLU}


class SEBlock(Module):
    """SEBlock(input_channels, reduction_ratio, min_hidden=None, squeeze="avg",
    excitation="sigmoid", bias=(False, True)): recalibrate channels.

    x: (N, C, H, W) -> (N, C, H, W), with C = input_channels and hidden width C // r, or
    max(C // r, min_hidden) when ``min_hidden`` is given (at C=16, r=16 the paper's rule
    leaves a single hidden unit). The defaults are the paper's and the seed post's; the
    options are the paper's ablations: ``squeeze`` "avg" or "max" (global max pooling),
    ``excitation`` "sigmoid", "tanh" or "relu" (the gate's non-linearity), ``bias`` whether
    each of the two FC layers has a bias.

    squeeze:  z = mean_{h,w} x                                   (N, C)
    excite:   s = sigmoid(W2 relu(W1 z) + b2)                    (N, C, 1, 1)
    rescale:  out = x * s                                        (broadcast over H, W)

    ``sequence`` is the seed post's nn.Sequential, so a PyTorch SE block loads key for key:
    sequence.2.weight (C//r, C), sequence.4.weight (C, C//r), sequence.4.bias (C,).

    Backward: x feeds two paths, the direct product and the excitation, so dx is their sum:
        ds = sum_{h,w} dout * x                  (the gradient reaching s)
        dx = dout * s  +  squeeze/excite backward of ds
    After forward, ``z`` and ``s`` stay readable for analysis.
    """

    input_ndim = 4
    input_channels_from = "input_channels"

    def __init__(self, input_channels, reduction_ratio, min_hidden=None, squeeze="avg", excitation="sigmoid",
                 bias=(False, True)):
        super().__init__()
        if squeeze not in SQUEEZE_OPS:
            raise ValueError(f"SEBlock: squeeze must be one of {list(SQUEEZE_OPS)}, got {squeeze!r}")
        if excitation not in EXCITATION_OPS:
            raise ValueError(f"SEBlock: excitation must be one of {list(EXCITATION_OPS)}, got {excitation!r}")
        if not (isinstance(bias, tuple) and len(bias) == 2 and all(isinstance(b, bool) for b in bias)):
            raise TypeError(f"SEBlock: bias must be a pair of bools (first FC, second FC), got {bias!r}")
        C = positive_int(input_channels, "input_channels", "SEBlock")
        r = positive_int(reduction_ratio, "reduction_ratio", "SEBlock")
        hidden = C // r if min_hidden is None else max(C // r, positive_int(min_hidden, "min_hidden", "SEBlock"))
        if hidden == 0:
            raise ValueError(f"SEBlock: input_channels // reduction_ratio = {C} // {r} = 0 hidden "
                             f"units; use reduction_ratio <= {C} or set min_hidden")
        self.input_channels, self.reduction_ratio, self.hidden = C, r, hidden
        self.squeeze_op, self.excitation_op, self.bias = squeeze, excitation, bias
        self.sequence = Sequential(
            SQUEEZE_OPS[squeeze]((1, 1)),
            Flatten(),
            Linear(C, hidden, bias=bias[0]),
            ReLU(),
            Linear(hidden, C, bias=bias[1]),
            EXCITATION_OPS[excitation](),
            Unflatten(1, (C, 1, 1)),
        )
        self.z = self.s = None

    # ---- the three stages, each with its backward, for teaching -------------------------
    def squeeze(self, x):
        """x: (N, C, H, W) -> z: (N, C), the per-channel mean."""
        return _forward(list(self.sequence)[SQUEEZE], x)

    def squeeze_backward(self, dz):
        """dz: (N, C) -> dx: (N, C, H, W), dz / (H*W) spread evenly over each channel."""
        return _backward(list(self.sequence)[SQUEEZE], dz)

    def excite(self, z):
        """z: (N, C) -> s: (N, C, 1, 1), the channel weights in (0, 1)."""
        return _forward(list(self.sequence)[EXCITE], z)

    def excite_backward(self, ds):
        """ds: (N, C, 1, 1) -> dz: (N, C); adds into the FC layers' gradients."""
        return _backward(list(self.sequence)[EXCITE], ds)

    @staticmethod
    def rescale(x, s):
        """x: (N, C, H, W), s: (N, C, 1, 1) -> x * s."""
        return x * s

    @staticmethod
    def rescale_backward(dout, x, s):
        """The product rule: returns (dx = dout * s, ds = sum_{h,w} dout * x)."""
        ds = multiply_sum("nchw,nchw->nc", dout, x)       # sum of dout * x over h, w
        return dout * s, ds[:, :, None, None]

    # ---- the block (on the GPU, by default: one kernel forward, two backward, minise.gpu.se) --
    @accelerated("forward_math")
    def forward_math(self, x):
        self.z = self.squeeze(x)
        self.s = self.excite(self.z)
        return self.rescale(x, self.s)

    @accelerated("backward_math")
    def backward_math(self, dout):
        # the direct path dout * s, and the gradient reaching s
        dx, ds = self.rescale_backward(dout, self._x, self.s)
        dz = self.excite_backward(ds)
        # x fans out to two paths, so their gradients add: the path through s comes back from
        # the squeeze as dz / (H*W) on every pixel of a channel. It is added by broadcasting, in
        # place: the same as dx + self.squeeze_backward(dz) without building that (N, C, H, W)
        # array or a second one for the sum (max pooling sends dz to one pixel per channel
        # instead: its own backward does that).
        if self.squeeze_op == "avg":
            H, W = self._x.shape[2:]
            dx += (dz / (H * W))[:, :, None, None]
            return dx
        return dx + self.squeeze_backward(dz)

    def extra_repr(self):
        options = "".join(f", {k}={v!r}" for k, v, default in (("squeeze", self.squeeze_op, "avg"),
                          ("excitation", self.excitation_op, "sigmoid"), ("bias", self.bias, (False, True)))
                          if v != default)
        return (f"input_channels={self.input_channels}, reduction_ratio={self.reduction_ratio}, "
                f"hidden={self.hidden}{options}")


def _forward(modules, x):
    for module in modules:
        x = module(x)
    return x


def _backward(modules, dout):
    for module in reversed(modules):
        dout = module.backward(dout)
    return dout

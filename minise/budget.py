"""Memory estimated before it is spent: the parameters a layer or model call will allocate, from
its arguments alone, and the input and activations a forward pass on an input size will hold.

``minise summary`` refuses, in one line, a model or an input over its budget; both estimates
err on the high side (every activation counted at the widest layer's width and the largest
padding), so what fits the budget fits the machine.
"""
import inspect
import math

from .models.resnet import BLOCKS, MAX_DEPTH, WIDTHS
from .nn.validate import MAX_WIDTH

FLOAT32_BYTES = 4
GB = 1e9


class BudgetError(ValueError):
    """A model or an input that would need more memory than the budget allows."""


def check_parameters(name, constructor, args, kwargs, max_bytes):
    """Raise BudgetError if calling ``constructor(*args, **kwargs)`` (``name`` in minise.nn or
    minise.models) would allocate more than ``max_bytes`` of float32 parameters. Arguments the
    constructor itself refuses (a wrong type, a negative width) are left to it."""
    try:
        bound = inspect.signature(constructor).bind(*args, **kwargs)
    except TypeError:
        return                                      # the call itself says what is wrong
    bound.apply_defaults()
    count = parameter_count(name, bound.arguments)
    if count is not None and count * FLOAT32_BYTES > max_bytes:
        raise BudgetError(f"{name} would hold {count:,} parameters, {count * FLOAT32_BYTES / GB:.1f} GB, over the "
                          f"budget of {max_bytes / GB:g} GB (--memory-budget raises it)")


def parameter_count(name, a):
    """The number of parameters and buffers ``name`` builds from its arguments ``a``; None when an
    argument is out of the constructors' range (they refuse it) or of an unexpected type."""
    values = [w for v in a.values() for w in (v if isinstance(v, (tuple, list)) else [v])]
    ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    if any(v > MAX_WIDTH for v in ints) or any(v > MAX_DEPTH for k, v in a.items() if k == "depth"):
        return None
    try:
        return _COUNTS.get(name, lambda a: 0)(a)
    except (TypeError, ValueError, KeyError, ZeroDivisionError):
        return None


def _area(kernel):
    return kernel * kernel if isinstance(kernel, int) else math.prod(kernel)


def _se(channels, r, min_hidden):
    if r is None:
        return 0
    hidden = max(channels // r, min_hidden or 0)
    return 2 * channels * hidden + channels + hidden      # two FC layers with their biases


def _projection(c_in, c_out, stride):
    """The 1x1 conv and BN of a shortcut that changes the shape (else none)."""
    return c_in * c_out + 5 * c_out if stride != 1 or c_in != c_out else 0


def _basic(c_in, c_out, stride=1, r=None, min_hidden=None):
    convs = 9 * c_in * c_out + 9 * c_out * c_out + _projection(c_in, c_out, stride)
    return convs + 2 * 5 * c_out + _se(max(c_in, c_out), r, min_hidden)   # BN: 4 tensors and a counter


def _bottleneck(c_in, width, stride=1, r=None, min_hidden=None):
    c_out = 4 * width
    convs = c_in * width + 9 * width * width + width * c_out + _projection(c_in, c_out, stride)
    return convs + 5 * (2 * width + c_out) + _se(max(c_in, c_out), r, min_hidden)


def _resnet(depth, block="basic", num_classes=10, reduction_ratio=None, min_hidden=None, **_):
    block_count, per_block = (_bottleneck, 9) if block == "bottleneck" else (_basic, 6)
    n, channels, total = (depth - 2) // per_block, WIDTHS[0], 27 * WIDTHS[0] + 5 * WIDTHS[0]
    expansion = BLOCKS[block][0].expansion
    for stage, width in enumerate(WIDTHS):
        for i in range(n):
            total += block_count(channels, width, 2 if stage and not i else 1, reduction_ratio, min_hidden)
            channels = width * expansion
    return total + channels * num_classes + num_classes


_COUNTS = {
    "Conv2d": lambda a: a["in_channels"] * a["out_channels"] * _area(a["kernel_size"]) + a["out_channels"],
    "Linear": lambda a: a["in_features"] * a["out_features"] + a["out_features"],
    "BatchNorm1d": lambda a: 5 * a["num_features"],
    "BatchNorm2d": lambda a: 5 * a["num_features"],
    "SEBlock": lambda a: _se(a["input_channels"], a["reduction_ratio"], a["min_hidden"]),
    "BasicBlock": lambda a: _basic(a["in_channels"], a["out_channels"], a["stride"], a["reduction_ratio"],
                                   a["min_hidden"]),
    "Bottleneck": lambda a: _bottleneck(a["input_channels"], a["in_channels"], a["stride"], a["reduction_ratio"],
                                        a["min_hidden"]),
    "SEBottleneck": lambda a: _bottleneck(a["input_channels"], a["in_channels"], a["stride"], a["reduction_ratio"],
                                          a["min_hidden"]),
    "CifarResNet": lambda a: _resnet(**a),
    "cifar_resnet": lambda a: _resnet(**a),
    **{f"{se}resnet{depth}": (lambda depth: lambda a: _resnet(depth, **a))(depth)
       for se in ("", "se_") for depth in (20, 32, 56)},
}


def check_activations(model, input_size, max_bytes):
    """Raise BudgetError if a float32 forward and backward pass of ``model`` on an input of
    ``input_size`` could hold more than ``max_bytes``: the input, and every module's output
    counted at the model's widest width over the input's area grown by the largest padding."""
    if not 2 <= len(input_size) <= 4 or any(not isinstance(d, int) or d < 1 for d in input_size):
        raise BudgetError(f"the input size must be 2 to 4 positive integers, batch first, got {tuple(input_size)}")
    modules = list(model.modules())
    widths = [getattr(m, k) for m in modules for k in _WIDTH_NAMES if isinstance(getattr(m, k, None), int)]
    padding = max([max(m.padding) for m in modules if isinstance(getattr(m, "padding", None), tuple)], default=0)
    batch, channels, *spatial = input_size
    area = math.prod(d + 2 * padding for d in spatial)
    elements = math.prod(input_size) + 2 * len(modules) * batch * max(widths + [channels]) * area
    if elements * FLOAT32_BYTES > max_bytes:
        size = ",".join(map(str, input_size))
        raise BudgetError(f"an input of {size} could need {elements * FLOAT32_BYTES / GB:,.1f} GB for the input and "
                          f"{len(modules)} modules' outputs, over the budget of {max_bytes / GB:g} GB "
                          "(--memory-budget raises it)")


_WIDTH_NAMES = ("in_channels", "out_channels", "in_features", "out_features", "num_features", "input_channels")

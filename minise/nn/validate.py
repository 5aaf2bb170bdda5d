"""Input checks shared by every layer: each error names the layer, what it expected and what it got."""
from typing import NamedTuple

from ..backend import device_of, is_array


class OutputSpec(NamedTuple):
    """The forward output's shape, dtype and device: what backward checks ``dout`` against.

    Layers keep this instead of the output array, so they do not hold it in memory after the
    next layer has used it.
    """

    shape: tuple
    dtype: object
    device: str


def output_spec(out):
    return OutputSpec(tuple(out.shape), out.dtype, device_of(out))


def describe(layer):
    """``Conv2d(3, 16, kernel_size=(3, 3), ...)``: how a layer is named in error messages."""
    return f"{type(layer).__name__}({layer.extra_repr()})"


class _Name:
    """Formats as the layer's description, built only when an error message needs it."""

    def __init__(self, layer):
        self.layer = layer

    def __format__(self, spec):
        return describe(self.layer)


def check_input(layer, x, ndim, channels=None, name="input"):
    """Check that ``x`` is a floating-point array with ``ndim`` dimensions (an int or a tuple of
    allowed ints), ``channels`` entries along dim 1, and the dtype and device of the layer's
    parameters. Raises ``TypeError`` or ``ValueError``."""
    who = _Name(layer)
    if not is_array(x):
        raise TypeError(f"{who}: expected the {name} to be a NumPy or CuPy array, got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise TypeError(f"{who}: expected a floating-point {name}, got dtype {x.dtype} "
                        f"(convert it, e.g. x.astype('float32'))")
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if x.ndim not in allowed:
        expected = " or ".join(f"{n}-D" for n in allowed)
        raise ValueError(f"{who}: expected a {expected} {name}, got shape {tuple(x.shape)} ({x.ndim}-D)")
    if x.shape[0] == 0:
        raise ValueError(f"{who}: the {name} is an empty batch, shape {tuple(x.shape)}; expected at least "
                         f"one sample along dim 0")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{who}: expected {channels} channels (dim 1) in the {name}, "
                         f"got shape {tuple(x.shape)} with {x.shape[1]}")
    first = next(layer.named_parameters(), None)        # a block is checked against its first weight
    if first is not None:
        pname, p = first
        if device_of(p.data) != device_of(x):
            raise TypeError(f"{who}: the {name} is on {device_of(x)} but {pname} is on "
                            f"{device_of(p.data)}; move one of them (model.to(...)), "
                            f"minise never copies silently")
        if p.data.dtype != x.dtype:
            raise TypeError(f"{who}: the {name} has dtype {x.dtype} but {pname} has dtype "
                            f"{p.data.dtype}; cast the input or the model (model.double() / .float())")


def check_dout(layer, dout, out):
    """Check ``dout`` against the forward output ``out``: an array or its ``OutputSpec``
    (``None`` when forward never ran)."""
    who = _Name(layer)
    if out is None:
        raise RuntimeError(f"{who}: backward called before forward (nothing is cached)")
    if not is_array(dout):
        raise TypeError(f"{who}: expected dout to be a NumPy or CuPy array, got {type(dout).__name__}")
    if tuple(dout.shape) != tuple(out.shape):
        raise ValueError(f"{who}: dout must have the output's shape {tuple(out.shape)}, "
                         f"got {tuple(dout.shape)}")
    out_device = out.device if isinstance(out, OutputSpec) else device_of(out)
    if dout.dtype != out.dtype or device_of(dout) != out_device:
        raise TypeError(f"{who}: dout must be a {out_device} array of dtype {out.dtype} like the "
                        f"output, got a {device_of(dout)} array of dtype {dout.dtype}")


# Bounds of the integers a layer is built from, so that a typo fails at once, in one line: a width
# (channels, features, a reduction ratio) of at most 2**20, a kernel, stride, padding or output
# size of at most 4,096 pixels a side. Memory for a whole model is budgeted where one is built from
# text (``minise.model_spec``); these bounds keep every count a machine integer.
MAX_WIDTH = 1 << 20
MAX_EXTENT = 4096


def pair(value, name, layer_name, minimum=1, maximum=MAX_EXTENT):
    """Turn an int or a 2-tuple of ints into a 2-tuple, checking each is in [minimum, maximum]."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, tuple) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise TypeError(f"{layer_name}: {name} must be an int or a tuple of two ints, got {value!r:.60}")
    if min(value) < minimum:
        raise ValueError(f"{layer_name}: {name} must be at least {minimum}, got {value!r:.60}")
    if max(value) > maximum:
        raise ValueError(f"{layer_name}: {name} must be at most {maximum:,}, got {value!r:.60}")
    return value


def positive_int(value, name, layer_name, maximum=MAX_WIDTH):
    """``value``, checked to be an int in [1, maximum]."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{layer_name}: {name} must be a positive int, got {value!r:.60}")
    if value > maximum:
        raise ValueError(f"{layer_name}: {name} must be at most {maximum:,}, got {value!r:.60}")
    return value

"""Element-wise non-linearities. Each backward multiplies dout by the local derivative."""
from ..backend import get_array_module
from .module import Module

ANY_NDIM = range(1, 33)


class _Activation(Module):
    """Keeps the output: each of these derivatives is a function of the output alone."""

    input_ndim = ANY_NDIM
    keeps_input = False
    keeps_output = True

    def forward_math(self, x):
        return self.function(get_array_module(x), x)

    def backward_math(self, dout):
        return self.derivative_times(get_array_module(dout), self._out, dout)


class ReLU(_Activation):
    """out = max(x, 0);  dx = dout where out > 0, else 0.  Any shape."""

    def function(self, xp, x):
        return xp.maximum(x, 0)

    def derivative_times(self, xp, out, dout):
        return dout * (out > 0)      # (faster than xp.where(out > 0, dout, 0), the same values)


class Sigmoid(_Activation):
    """out = 1 / (1 + exp(-x));  dx = dout * out * (1 - out).  Any shape.

    Computed from e = exp(-|x|), which never overflows: out = 1/(1+e) for x >= 0 and
    e/(1+e) for x < 0 (the same function, rewritten).
    """

    def function(self, xp, x):
        e = xp.exp(-xp.abs(x))
        return xp.where(x >= 0, 1, e) / (1 + e)

    def derivative_times(self, xp, out, dout):
        return dout * out * (1 - out)


class Tanh(_Activation):
    """out = tanh(x);  dx = dout * (1 - out^2).  Any shape."""

    def function(self, xp, x):
        return xp.tanh(x)

    def derivative_times(self, xp, out, dout):
        return dout * (1 - out * out)

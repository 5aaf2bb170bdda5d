"""The fully connected layer."""
from .init import uniform_fan_in
from .module import Module
from .ops import matmul
from .parameter import Parameter
from .validate import positive_int


class Linear(Module):
    """Linear(in_features, out_features, bias=True).  x: (N, in) -> out: (N, out).

    Forward:   out = x @ W.T + b          W: (out, in), b: (out,)
    Backward:  dW = dout.T @ x,  db = sum_n dout,  dx = dout @ W
    """

    input_ndim = 2
    input_channels_from = "in_features"

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        name = type(self).__name__
        self.in_features = positive_int(in_features, "in_features", name)
        self.out_features = positive_int(out_features, "out_features", name)
        self.weight = Parameter(uniform_fan_in((out_features, in_features), in_features))
        self.bias = Parameter(uniform_fan_in((out_features,), in_features)) if bias else None

    def forward_math(self, x):
        out = matmul(x, self.weight.data.T)
        if self.bias is not None:
            out += self.bias.data
        return out

    def backward_math(self, dout):
        self.weight.grad += matmul(dout.T, self._x)
        if self.bias is not None:
            self.bias.grad += dout.sum(axis=0)
        return matmul(dout, self.weight.data)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

"""The fully connected layer."""
from ..backend import matmul
from .validate import check_dout, check_input, output_spec, positive_int
from .init import uniform_fan_in
from .module import Module
from .parameter import Parameter


class Linear(Module):
    """Linear(in_features, out_features, bias=True).  x: (N, in) -> out: (N, out).

    Forward:   out = x @ W.T + b          W: (out, in), b: (out,)
    Backward:  dW = dout.T @ x,  db = sum_n dout,  dx = dout @ W
    """

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        name = type(self).__name__
        self.in_features = positive_int(in_features, "in_features", name)
        self.out_features = positive_int(out_features, "out_features", name)
        self.weight = Parameter(uniform_fan_in((out_features, in_features), in_features))
        self.bias = Parameter(uniform_fan_in((out_features,), in_features)) if bias else None
        self._x = self._out = None

    def forward(self, x):
        check_input(self, x, ndim=2, channels=self.in_features)
        out = matmul(x, self.weight.data.T)
        if self.bias is not None:
            out += self.bias.data
        self._x, self._out = x, output_spec(out)
        return out

    def backward(self, dout):
        check_dout(self, dout, self._out)
        self.weight.grad += matmul(dout.T, self._x)
        if self.bias is not None:
            self.bias.grad += dout.sum(axis=0)
        return matmul(dout, self.weight.data)

    def _reset_workspace(self):
        super()._reset_workspace()
        self._x = self._out = None

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

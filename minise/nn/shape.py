"""Layers that only move data around: their backward undoes the reshape."""
import math

from .activation import ANY_NDIM
from .validate import check_dout, check_input, describe
from .module import Module


class Flatten(Module):
    """Flatten(start_dim=1, end_dim=-1): merge dims start_dim..end_dim.  (N, C, H, W) -> (N, C*H*W)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim
        self._x_shape = self._out = None

    def forward(self, x):
        check_input(self, x, ndim=ANY_NDIM)
        start, end = (d % x.ndim if -x.ndim <= d < x.ndim else None for d in (self.start_dim, self.end_dim))
        if start is None or end is None or start > end:
            raise ValueError(f"{describe(self)}: dims {self.start_dim}..{self.end_dim} do not fit an "
                             f"input of shape {tuple(x.shape)}")
        self._x_shape = x.shape
        self._out = x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1:])
        return self._out

    def backward(self, dout):
        check_dout(self, dout, self._out)
        return dout.reshape(self._x_shape)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Unflatten(dim, unflattened_size): split one dim.  Unflatten(1, (C, 1, 1)): (N, C) -> (N, C, 1, 1)."""

    def __init__(self, dim, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)
        self._x_shape = self._out = None

    def forward(self, x):
        check_input(self, x, ndim=ANY_NDIM)
        dim = self.dim % x.ndim if -x.ndim <= self.dim < x.ndim else None
        sizes = self.unflattened_size
        known = math.prod(s for s in sizes if s != -1)
        if dim is not None and sizes.count(-1) == 1 and known and x.shape[dim] % known == 0:
            sizes = tuple(x.shape[dim] // known if s == -1 else s for s in sizes)   # infer the -1
        if dim is None or math.prod(sizes) != x.shape[dim]:
            raise ValueError(f"{describe(self)}: dim {self.dim} of the input shape {tuple(x.shape)} "
                             f"cannot be split into {self.unflattened_size}")
        self._x_shape = x.shape
        self._out = x.reshape(x.shape[:dim] + sizes + x.shape[dim + 1:])
        return self._out

    def backward(self, dout):
        check_dout(self, dout, self._out)
        return dout.reshape(self._x_shape)

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class Identity(Module):
    """out = x;  dx = dout."""

    def __init__(self):
        super().__init__()
        self._out = None

    def forward(self, x):
        check_input(self, x, ndim=ANY_NDIM)
        self._out = x
        return x

    def backward(self, dout):
        check_dout(self, dout, self._out)
        return dout

"""Layers that only move data around: their backward undoes the reshape."""
import math

from .activation import ANY_NDIM
from .module import Module
from .validate import describe


class Flatten(Module):
    """Flatten(start_dim=1, end_dim=-1): merge dims start_dim..end_dim.  (N, C, H, W) -> (N, C*H*W)."""

    input_ndim = ANY_NDIM

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward_math(self, x):
        start, end = (d % x.ndim if -x.ndim <= d < x.ndim else None for d in (self.start_dim, self.end_dim))
        if start is None or end is None or start > end:
            raise ValueError(f"{describe(self)}: dims {self.start_dim}..{self.end_dim} do not fit an "
                             f"input of shape {tuple(x.shape)}")
        return x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1:])

    def backward_math(self, dout):
        return dout.reshape(self._x.shape)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Unflatten(dim, unflattened_size): split one dim.  Unflatten(1, (C, 1, 1)): (N, C) -> (N, C, 1, 1)."""

    input_ndim = ANY_NDIM

    def __init__(self, dim, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward_math(self, x):
        dim = self.dim % x.ndim if -x.ndim <= self.dim < x.ndim else None
        sizes = self.unflattened_size
        known = math.prod(s for s in sizes if s != -1)
        if dim is not None and sizes.count(-1) == 1 and known and x.shape[dim] % known == 0:
            sizes = tuple(x.shape[dim] // known if s == -1 else s for s in sizes)   # infer the -1
        if dim is None or math.prod(sizes) != x.shape[dim]:
            raise ValueError(f"{describe(self)}: dim {self.dim} of the input shape {tuple(x.shape)} "
                             f"cannot be split into {self.unflattened_size}")
        return x.reshape(x.shape[:dim] + sizes + x.shape[dim + 1:])

    def backward_math(self, dout):
        return dout.reshape(self._x.shape)

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class Identity(Module):
    """out = x;  dx = dout."""

    input_ndim = ANY_NDIM

    def forward_math(self, x):
        return x

    def backward_math(self, dout):
        return dout

"""A trainable tensor and its gradient."""
from ..backend import get_array_module, is_array


class Parameter:
    """A trainable array ``data`` and the gradient ``grad`` that backward passes add into.

    ``grad`` always has the shape, dtype and device of ``data``. It starts at zero, and every
    backward pass *adds* to it (so gradients from several paths or several batches sum);
    ``Module.zero_grad()`` or ``Optimizer.zero_grad()`` clears it.

    Optimisers update ``data`` in place, so references to it stay valid.
    """

    def __init__(self, data, requires_grad=True):
        if not is_array(data):
            raise TypeError(f"Parameter data must be a NumPy or CuPy array, got {type(data).__name__}")
        if data.dtype.kind != "f":
            raise TypeError(f"Parameter data must be floating point, got dtype {data.dtype}")
        self.data = data
        self.grad = get_array_module(data).zeros_like(data)
        self.requires_grad = requires_grad

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def zero_grad(self):
        self.grad[...] = 0

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"

"""Max, average and adaptive-average pooling over the last two axes of (N, C, H, W).

Each pooling window has kh*kw entries; entry (i, j) of every window, across the whole batch,
is one strided slice of the (padded) input. So forward and backward loop over the kh*kw
window offsets, each step a vectorised operation on the whole batch, never over pixels.
"""
from ..backend import get_array_module
from .im2col import output_size, pad_input
from .module import Module
from .validate import describe, pair


def _window_slices(kernel_size, stride, out_hw):
    """For each window offset (i, j): the slice of the padded input that it reads."""
    (kh, kw), (sh, sw), (Ho, Wo) = kernel_size, stride, out_hw
    for i in range(kh):
        for j in range(kw):
            yield (Ellipsis, slice(i, i + sh * Ho, sh), slice(j, j + sw * Wo, sw))


class _Pool2d(Module):
    """Shared argument handling of MaxPool2d and AvgPool2d."""

    input_ndim = 4
    pad_value = 0.0

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = pair(kernel_size, "kernel_size", name)
        self.stride = pair(stride, "stride", name) if stride is not None else self.kernel_size
        self.padding = pair(padding, "padding", name, minimum=0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"{name}: padding {self.padding} must be at most half the kernel "
                             f"size {self.kernel_size}")

    def forward_math(self, x):
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        H, W = x.shape[2:]
        Ho, Wo = output_size(H, kh, sh, ph), output_size(W, kw, sw, pw)
        if Ho < 1 or Wo < 1:
            raise ValueError(f"{describe(self)}: input of spatial size {(H, W)} padded by {(ph, pw)} "
                             f"is smaller than the kernel {(kh, kw)}")
        return self.pool(pad_input(x, self.padding, value=self.pad_value), (Ho, Wo))

    def _add_back(self, dout, gradient_of_entry):
        """dx: for each window entry k, add ``gradient_of_entry(k)`` (shaped like dout) onto the
        input pixels that entry read; a pixel in several windows receives the sum."""
        xp = get_array_module(dout)
        N, (C, H, W), (ph, pw) = dout.shape[0], self._x.shape[1:], self.padding
        dx_padded = xp.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=dout.dtype)
        for k, window_entry in enumerate(_window_slices(self.kernel_size, self.stride, dout.shape[2:])):
            dx_padded[window_entry] += gradient_of_entry(k)
        return dx_padded[:, :, ph:ph + H, pw:pw + W]

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """MaxPool2d(kernel_size, stride=kernel_size, padding=0). x: (N, C, H, W) -> (N, C, Ho, Wo).

    Forward: out = max over each window, remembering which window entry k won (the first on
    ties, as in PyTorch). Padding counts as -inf, so it never wins. NaN propagates to out.
    Backward: the whole gradient of an output goes to the input that won its window.
    """

    pad_value = float("-inf")
    keeps = ("_winner",)

    def forward_math(self, x):
        out, self._winner = super().forward_math(x)
        return out

    def pool(self, xpad, out_hw):
        """(out, winner): the window maxima and the entry k that held each."""
        xp = get_array_module(xpad)
        entries = _window_slices(self.kernel_size, self.stride, out_hw)
        out = xpad[next(entries)].copy()                   # window entry k = 0
        winner = xp.zeros(out.shape, dtype=xp.min_scalar_type(self.kernel_size[0] * self.kernel_size[1] - 1))
        for k, window_entry in enumerate(entries, start=1):
            v = xpad[window_entry]
            xp.copyto(winner, k, where=v > out)            # strictly greater: the first max wins
            xp.maximum(out, v, out=out)
        return out, winner

    def backward_math(self, dout):
        # only the winner gets dout
        return self._add_back(dout, lambda k: dout * (self._winner == k))


class AvgPool2d(_Pool2d):
    """AvgPool2d(kernel_size, stride=kernel_size, padding=0). x: (N, C, H, W) -> (N, C, Ho, Wo).

    Forward: out = (1 / (kh*kw)) * sum over the window (zero padding counts, as PyTorch's
    default count_include_pad=True). Backward: each input in a window receives dout / (kh*kw).
    """

    def pool(self, xpad, out_hw):
        out = None
        for window_entry in _window_slices(self.kernel_size, self.stride, out_hw):
            out = xpad[window_entry].copy() if out is None else out + xpad[window_entry]
        return out / (self.kernel_size[0] * self.kernel_size[1])

    def backward_math(self, dout):
        area = self.kernel_size[0] * self.kernel_size[1]
        return self._add_back(dout, lambda k: dout / area)


class AdaptiveAvgPool2d(Module):
    """AdaptiveAvgPool2d(output_size): average each of oh x ow equal tiles of the input.

    x: (N, C, H, W) -> (N, C, oh, ow). With output_size 1 this is global average pooling, the
    SE block's *squeeze*: z[n, c] = (1 / (H*W)) * sum_{h,w} x[n, c, h, w].
    Backward: the gradient spreads evenly, dx[n, c, h, w] = dz[n, c, tile(h, w)] / (tile area).
    H and W must be multiples of oh and ow (tiles of equal size).
    """

    input_ndim = 4

    def __init__(self, output_size):
        super().__init__()
        self.output_size = pair(output_size, "output_size", type(self).__name__)

    def forward_math(self, x):
        H, W = x.shape[2:]
        oh, ow = self.output_size
        if H % oh or W % ow:
            raise ValueError(f"{describe(self)}: input spatial size {(H, W)} must be a multiple of the "
                             f"output size {(oh, ow)} (tiles of unequal size are not supported)")
        # split H into (oh, H/oh) and W into (ow, W/ow), then average within each tile
        return x.reshape(x.shape[0], x.shape[1], oh, H // oh, ow, W // ow).mean(axis=(3, 5))

    def backward_math(self, dout):
        return self._spread(dout)

    def _spread(self, dout):
        """dz (N, C, oh, ow) -> dx (N, C, H, W): each tile's gradient shared by its pixels."""
        xp = get_array_module(dout)
        N, (C, H, W), (oh, ow) = dout.shape[0], self._x.shape[1:], self.output_size
        tile = (H // oh) * (W // ow)
        dx = xp.empty_like(self._x, dtype=dout.dtype)            # x's shape and memory layout
        # the same share for each pixel of a tile (splitting H and W: a view of dx)
        dx.reshape(N, C, oh, H // oh, ow, W // ow)[...] = (dout / tile).reshape(N, C, oh, 1, ow, 1)
        return dx

    def extra_repr(self):
        return f"output_size={self.output_size}"


class AdaptiveMaxPool2d(Module):
    """AdaptiveMaxPool2d(output_size), global only: output size 1 or (1, 1).

    x: (N, C, H, W) -> (N, C, 1, 1): z[n, c] = max_{h,w} x[n, c, h, w] (the first maximum wins).
    Backward: each channel's gradient goes to the pixel that held its maximum.
    """

    input_ndim = 4
    keeps = ("_argmax",)

    def __init__(self, output_size):
        super().__init__()
        self.output_size = pair(output_size, "output_size", type(self).__name__)
        if self.output_size != (1, 1):
            raise ValueError(f"AdaptiveMaxPool2d: only the global output size (1, 1) is supported, "
                             f"got {output_size!r}")

    def forward_math(self, x):
        xp = get_array_module(x)
        flat = x.reshape(*x.shape[:2], -1)                       # (N, C, H*W)
        self._argmax = flat.argmax(axis=2)[:, :, None]           # where each channel's max sits
        return xp.take_along_axis(flat, self._argmax, axis=2)[..., None]

    def backward_math(self, dout):
        xp = get_array_module(dout)
        N, C, H, W = self._x.shape
        dx = xp.zeros((N, C, H * W), dtype=dout.dtype)
        xp.put_along_axis(dx, self._argmax, dout.reshape(N, C, 1), axis=2)
        return dx.reshape(N, C, H, W)

    def extra_repr(self):
        return f"output_size={self.output_size}"

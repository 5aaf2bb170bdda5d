"""2-D convolution, forward and backward, as im2col plus one matrix product per pass."""
from ..backend import get_array_module
from ..execution import numpy_version
from . import conv_channels_last
from .im2col import col2im, output_size, padded_im2col
from .init import uniform_fan_in
from .module import Module
from .ops import matmul
from .parameter import Parameter
from .validate import describe, pair, positive_int
from .workspace import scratch


class Conv2d(Module):
    """Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True).

    x: (N, C, H, W) -> out: (N, O, Ho, Wo), Ho = (H + 2*ph - kh) // sh + 1 (likewise Wo).
    weight: (O, C, kh, kw), bias: (O,).

    Forward:   out = W_mat @ cols + b, with W_mat = weight.reshape(O, C*kh*kw) and
               cols = im2col(x): (C*kh*kw, N*Ho*Wo).
    Backward:  dW   = dout_mat @ cols.T      (dout_mat: (O, N*Ho*Wo)), a sum over the batch
               db   = dout summed over n, ho, wo
               dx   = col2im(W_mat.T @ dout_mat): every patch gradient added back in place;
                      for stride 1 the same sum is a convolution of dout with the flipped
                      kernel (a "transposed convolution"), which is faster: one im2col + GEMM.
    On the CPU the same sums run channels-last, in cache-sized blocks of images
    (``conv_channels_last``); the output then has channels-last strides, its shape unchanged.
    """

    input_ndim = 4
    input_channels_from = "in_channels"

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        name = type(self).__name__
        self.in_channels = positive_int(in_channels, "in_channels", name)
        self.out_channels = positive_int(out_channels, "out_channels", name)
        self.kernel_size = pair(kernel_size, "kernel_size", name)
        self.stride = pair(stride, "stride", name)
        self.padding = pair(padding, "padding", name, minimum=0)
        fan_in = in_channels * self.kernel_size[0] * self.kernel_size[1]
        self.weight = Parameter(uniform_fan_in((out_channels, in_channels, *self.kernel_size), fan_in))
        self.bias = Parameter(uniform_fan_in((out_channels,), fan_in)) if bias else None

    def forward_math(self, x):
        if min(self._out_hw(x)) < 1:
            raise ValueError(f"{describe(self)}: input of spatial size {tuple(x.shape[2:])} padded by "
                             f"{self.padding} is smaller than the kernel {self.kernel_size}")
        return self._convolve(x)

    @numpy_version(conv_channels_last.forward)
    def _convolve(self, x):
        """out = W_mat @ im2col(x) + b, reshaped from (O, N*Ho*Wo) to (N, O, Ho, Wo), C-contiguous."""
        xp, N, O = get_array_module(x), x.shape[0], self.out_channels
        out = matmul(self.weight.data.reshape(O, -1), self._columns(x))     # (O, N*Ho*Wo)
        if self.bias is not None:
            out += self.bias.data[:, None]
        return xp.ascontiguousarray(out.reshape(O, N, *self._out_hw(x)).transpose(1, 0, 2, 3))

    def _columns(self, x):
        """cols = im2col(pad(x)): (C*kh*kw, N*Ho*Wo), in a scratch buffer shared by every layer.

        Backward builds it again from the cached input instead of keeping it: one more copy,
        but a network's memory then holds one column matrix, not one per conv layer.
        """
        N, C = x.shape[:2]
        Ho, Wo = self._out_hw(x)
        kh, kw = self.kernel_size
        cols = scratch("cols", (C * kh * kw, N * Ho * Wo), x.dtype, get_array_module(x))
        return padded_im2col(x, self.kernel_size, self.stride, self.padding, cols)

    def _out_hw(self, x):
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return output_size(x.shape[2], kh, sh, ph), output_size(x.shape[3], kw, sw, pw)

    @numpy_version(conv_channels_last.backward)
    def backward_math(self, dout):
        grads = self._parameter_grads(self._x, dout)
        self.weight.grad += grads[0]
        if self.bias is not None:
            self.bias.grad += grads[1]
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        if self.stride == (1, 1) and ph < kh and pw < kw:
            return self._dx_transposed_conv(dout)
        return self._dx_col2im(dout)

    def _parameter_grads(self, x, dout):
        """(dW, db): dW = dout_mat @ cols.T, db = dout summed over n, ho, wo."""
        dout_mat = dout.transpose(1, 0, 2, 3).reshape(self.out_channels, -1)      # (O, N*Ho*Wo)
        # dW computed as (cols @ dout_mat.T).T: the same numbers, but OpenBLAS runs this order
        # tens of times faster when N*Ho*Wo is long and O is small.
        dW = matmul(self._columns(x), dout_mat.T).T.reshape(self.weight.data.shape)
        return dW, (dout_mat.sum(axis=1) if self.bias is not None else None)

    def _dx_transposed_conv(self, dout):
        """Stride 1: dx is dout, padded by (k-1-p), convolved with the flipped, transposed kernel:
        dx[n, c, h, w] = sum_{o,i,j} dout_pad[n, o, h+i, w+j] * weight[o, c, kh-1-i, kw-1-j].
        One im2col and one matrix product, like the forward pass."""
        xp = get_array_module(dout)
        N, O, Ho, Wo = dout.shape
        C, (kh, kw), (ph, pw) = self.in_channels, self.kernel_size, self.padding
        H, W = Ho + kh - 1 - 2 * ph, Wo + kw - 1 - 2 * pw       # the input's size
        cols = padded_im2col(dout, self.kernel_size, (1, 1), (kh - 1 - ph, kw - 1 - pw),
                             scratch("dout_cols", (O * kh * kw, N * H * W), dout.dtype, xp))
        w_flipped = self.weight.data[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(C, -1)  # (C, O*kh*kw)
        return xp.ascontiguousarray(matmul(w_flipped, cols).reshape(C, N, H, W).transpose(1, 0, 2, 3))

    def _dx_col2im(self, dout):
        """Any stride: each patch's gradient W_mat.T @ dout_mat is added back where it came from."""
        N, O = dout.shape[:2]
        dout_mat = dout.transpose(1, 0, 2, 3).reshape(O, -1)                       # (O, N*Ho*Wo)
        dcols = matmul(self.weight.data.reshape(O, -1).T, dout_mat)                # (C*kh*kw, N*Ho*Wo)
        return col2im(dcols, (N,) + self._x.shape[1:], self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")

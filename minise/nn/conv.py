"""2-D convolution, forward and backward, as im2col plus one matrix product per pass."""
from ..backend import fused_col2im, get_array_module, matmul
from .validate import check_dout, check_input, describe, output_spec, pair, positive_int
from .im2col import col2im, output_size, padded_im2col
from .init import uniform_fan_in
from .module import Module
from .workspace import scratch
from .parameter import Parameter


class Conv2d(Module):
    """Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True).

    x: (N, C, H, W) -> out: (N, O, Ho, Wo), Ho = (H + 2*ph - kh) // sh + 1 (likewise Wo).
    weight: (O, C, kh, kw), bias: (O,).

    Forward:   out = W_mat @ cols + b, with W_mat = weight.reshape(O, C*kh*kw) and
               cols = im2col(x): (C*kh*kw, N*Ho*Wo).
    Backward:  dW   = dout_mat @ cols.T      (dout_mat: (O, N*Ho*Wo))
               db   = dout summed over n, ho, wo
               dx   = col2im(W_mat.T @ dout_mat): every patch gradient added back in place;
                      for stride 1 the same sum is a convolution of dout with the flipped
                      kernel (a "transposed convolution"), which is faster: one im2col + GEMM.
    """

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
        self._x = self._out = None

    def forward(self, x):
        check_input(self, x, ndim=4, channels=self.in_channels)
        xp = get_array_module(x)
        N, C, H, W = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        Ho, Wo = output_size(H, kh, sh, ph), output_size(W, kw, sw, pw)
        if Ho < 1 or Wo < 1:
            raise ValueError(f"{describe(self)}: input of spatial size {(H, W)} padded by {(ph, pw)} "
                             f"is smaller than the kernel {(kh, kw)}")
        out = matmul(self.weight.data.reshape(self.out_channels, -1), self._columns(x))   # (O, N*Ho*Wo)
        if self.bias is not None:
            out += self.bias.data[:, None]
        out = xp.ascontiguousarray(out.reshape(self.out_channels, N, Ho, Wo).transpose(1, 0, 2, 3))
        self._x, self._out = x, output_spec(out)
        return out

    def _columns(self, x):
        """cols = im2col(pad(x)): (C*kh*kw, N*Ho*Wo), in a buffer shared by every layer.

        Backward builds it again from the cached input instead of keeping it: one more copy,
        but a network's memory then holds one column matrix, not one per conv layer.
        """
        N, C, H, W = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        Ho, Wo = output_size(H, kh, sh, ph), output_size(W, kw, sw, pw)
        cols = scratch("cols", (C * kh * kw, N * Ho * Wo), x.dtype, get_array_module(x))
        return padded_im2col(x, self.kernel_size, self.stride, self.padding, cols, "x_padded")

    def backward(self, dout):
        check_dout(self, dout, self._out)
        O = self.out_channels
        dout_mat = dout.transpose(1, 0, 2, 3).reshape(O, -1)                   # (O, N*Ho*Wo)
        # dW = dout_mat @ cols.T, computed as (cols @ dout_mat.T).T: the same numbers, but
        # OpenBLAS runs this order tens of times faster when N*Ho*Wo is long and O is small.
        self.weight.grad += matmul(self._columns(self._x), dout_mat.T).T.reshape(self.weight.data.shape)
        if self.bias is not None:
            self.bias.grad += dout_mat.sum(axis=1)
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        if self.stride == (1, 1) and ph < kh and pw < kw:
            return self._dx_transposed_conv(dout)
        return self._dx_col2im(dout_mat)

    def _dx_transposed_conv(self, dout):
        """Stride 1: dx is dout, padded by (k-1-p), convolved with the flipped, transposed kernel:
        dx[n, c, h, w] = sum_{o,i,j} dout_pad[n, o, h+i, w+j] * weight[o, c, kh-1-i, kw-1-j].
        One im2col and one matrix product, like the forward pass."""
        xp = get_array_module(dout)
        N, C, H, W = self._x.shape
        (kh, kw), (ph, pw), O = self.kernel_size, self.padding, self.out_channels
        cols = padded_im2col(dout, self.kernel_size, (1, 1), (kh - 1 - ph, kw - 1 - pw),
                             scratch("dout_cols", (O * kh * kw, N * H * W), dout.dtype, xp), "dout_padded")
        w_flipped = self.weight.data[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(C, -1)  # (C, O*kh*kw)
        return xp.ascontiguousarray(matmul(w_flipped, cols).reshape(C, N, H, W).transpose(1, 0, 2, 3))

    def _dx_col2im(self, dout_mat):
        """Any stride: each patch's gradient W_mat.T @ dout_mat is added back where it came from."""
        xp = get_array_module(dout_mat)
        N, C, H, W = self._x.shape
        (kh, kw), (ph, pw), O = self.kernel_size, self.padding, self.out_channels
        dcols = scratch("dcols", (C * kh * kw, dout_mat.shape[1]), dout_mat.dtype, xp)
        matmul(self.weight.data.reshape(O, -1).T, dout_mat, out=dcols)         # (C*kh*kw, N*Ho*Wo)
        dx = fused_col2im(dcols, self._x.shape, self.kernel_size, self.stride, self.padding)
        if dx is not None:                                   # on the GPU: the lines below in one kernel
            return dx
        dx_padded = scratch("dx_padded", (N, C, H + 2 * ph, W + 2 * pw), dout_mat.dtype, xp)
        return col2im(dcols, self._x.shape, self.kernel_size, self.stride, self.padding, out=dx_padded).copy()

    def _reset_workspace(self):
        super()._reset_workspace()
        self._x = self._out = None

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")


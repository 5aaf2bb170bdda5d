"""Batch normalisation over the batch (and spatial) axes, with PyTorch's running statistics."""
from ..backend import fused_batch_norm_backward, fused_batch_norm_forward, get_array_module, multiply_sum
from .validate import check_dout, check_input, describe, output_spec, positive_int
from .init import ones, zeros
from .module import Module
from .workspace import scratch
from .parameter import Parameter


class _BatchNorm(Module):
    """Shared code of BatchNorm1d and BatchNorm2d; subclasses set the accepted input ndims.

    Statistics are per channel (dim 1), over the M = N*H*W (or N*L, or N) values of a channel.

    Train:  mu = mean(x), var = mean((x - mu)^2)            (biased, used to normalise)
            xhat = (x - mu) / sqrt(var + eps),   out = gamma * xhat + beta
            running_mean <- (1 - m) running_mean + m mu
            running_var  <- (1 - m) running_var  + m var * M / (M - 1)   (unbiased)
    Eval:   the same with mu, var := running_mean, running_var.
    Backward (train, the closed form of the chain rule through mu and var):
            dx = gamma / (M sqrt(var + eps)) * (M dout - sum(dout) - xhat * sum(dout * xhat))
    Backward (eval, mu and var are constants):  dx = gamma * dout / sqrt(var + eps)
    In both:  dgamma = sum(dout * xhat),  dbeta = sum(dout).
    ``momentum=None`` gives a cumulative average, as in PyTorch.
    """

    input_ndims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.num_features = positive_int(num_features, "num_features", type(self).__name__)
        if not eps > 0:
            raise ValueError(f"{type(self).__name__}: eps must be positive, got {eps!r}")
        if momentum is not None and not 0 <= momentum <= 1:
            raise ValueError(f"{type(self).__name__}: momentum must be in [0, 1] or None, got {momentum!r}")
        self.eps, self.momentum = eps, momentum
        self.weight = Parameter(ones(num_features))
        self.bias = Parameter(zeros(num_features))
        self.register_buffer("running_mean", zeros(num_features))
        self.register_buffer("running_var", ones(num_features))
        self.register_buffer("num_batches_tracked", zeros((), dtype="int64"))
        self._xc = self._inv_std = self._out = None

    def forward(self, x):
        check_input(self, x, ndim=self.input_ndims, channels=self.num_features)
        xp = get_array_module(x)
        x3 = x.reshape(x.shape[0], self.num_features, -1)   # (N, C, L): one channel per row of L
        M = x3.shape[0] * x3.shape[2]
        if self.training:
            if M < 2:
                raise ValueError(f"{describe(self)}: training needs more than one value per channel, "
                                 f"got input shape {tuple(x.shape)}")
            xc = self.workspace("x_centered", x3.shape, x.dtype, xp)
            m = self._next_momentum()
            fused = fused_batch_norm_forward(x3, xc, self.weight.data, self.bias.data,
                                             self.running_mean, self.running_var, m, self.eps)
            if fused is not None:     # on the GPU: the lines below in seven kernels (backend.fused_batch_norm_forward)
                out, inv_std = fused
                return self._keep(xc, inv_std, out.reshape(x.shape))
            mean = xp.einsum("ncl->c", x3) / M
            xp.subtract(x3, mean[:, None], out=xc)
            var = multiply_sum("ncl,ncl->c", xc, xc) / M    # biased variance
            self._update_running_stats(mean, var, M, m)
        else:
            xc = x3 - self.running_mean[:, None]
            var = self.running_var
        inv_std = 1 / xp.sqrt(var + self.eps)
        # out = gamma * xhat + beta with xhat = xc * inv_std, applied in one multiply and one add
        out = xc * (self.weight.data * inv_std)[:, None]
        out += self.bias.data[:, None]
        return self._keep(xc, inv_std, out.reshape(x.shape))

    def _keep(self, xc, inv_std, out):
        """Keep what backward needs; return ``out``."""
        self._xc, self._inv_std, self._out = xc, inv_std, output_spec(out)
        return out

    def _next_momentum(self):
        """Count this batch; the weight m of its statistics in the running averages."""
        self.num_batches_tracked += 1
        return self.momentum if self.momentum is not None else 1 / float(self.num_batches_tracked)

    def _update_running_stats(self, mean, var, M, m):
        self.running_mean *= 1 - m
        self.running_mean += m * mean
        self.running_var *= 1 - m
        self.running_var += (m * M / (M - 1)) * var

    def backward(self, dout):
        check_dout(self, dout, self._out)
        xp = get_array_module(dout)
        xc, inv_std = self._xc, self._inv_std                # xhat = xc * inv_std
        d3 = dout.reshape(xc.shape)
        if self.training:
            dx = fused_batch_norm_backward(d3, xc, inv_std, self.weight.data, self.weight.grad, self.bias.grad)
            if dx is not None:        # on the GPU: the lines below in four kernels (backend.fused_batch_norm_backward)
                return dx.reshape(dout.shape)
        dbeta = xp.einsum("ncl->c", d3)
        dgamma = multiply_sum("ncl,ncl->c", d3, xc) * inv_std   # sum(dout * xhat)
        self.weight.grad += dgamma
        self.bias.grad += dbeta
        scale = self.weight.data * inv_std                  # gamma / sqrt(var + eps)
        dx = d3 * scale[:, None]
        if self.training:
            # dx = scale * (dout - mean(dout) - xhat * mean(dout * xhat)), with M values per channel
            M = d3.shape[0] * d3.shape[2]
            dx -= xp.multiply(xc, (scale * inv_std * dgamma / M)[:, None],
                              out=scratch("dx_term", xc.shape, dout.dtype, xp))
            dx -= (scale * dbeta / M)[:, None]
        return dx.reshape(dout.shape)

    def _reset_workspace(self):
        super()._reset_workspace()
        self._xc = self._inv_std = self._out = None

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm2d(_BatchNorm):
    """BatchNorm2d(num_features, eps=1e-5, momentum=0.1). x: (N, C, H, W) -> (N, C, H, W)."""

    input_ndims = (4,)


class BatchNorm1d(_BatchNorm):
    """BatchNorm1d(num_features, eps=1e-5, momentum=0.1). x: (N, C) or (N, C, L), same shape out."""

    input_ndims = (2, 3)

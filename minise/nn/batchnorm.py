"""Batch normalisation over the batch (and spatial) axes, with PyTorch's running statistics."""
from ..backend import get_array_module
from .validate import check_dout, check_input, describe, positive_int
from .init import ones, zeros
from .module import Module
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
        self._xhat = self._inv_std = self._out = None

    def forward(self, x):
        check_input(self, x, ndim=self.input_ndims, channels=self.num_features)
        xp = get_array_module(x)
        axes = (0,) + tuple(range(2, x.ndim))             # every axis but the channel axis
        shape = (1, -1) + (1,) * (x.ndim - 2)               # broadcasts a (C,) vector over x
        M = x.size // self.num_features
        if self.training:
            if M < 2:
                raise ValueError(f"{describe(self)}: training needs more than one value per channel, "
                                 f"got input shape {tuple(x.shape)}")
            mean = x.mean(axis=axes)
            xc = x - mean.reshape(shape)
            var = xp.square(xc).mean(axis=axes)
            self._update_running_stats(mean, var, M)
        else:
            mean, var = self.running_mean, self.running_var
            xc = x - mean.reshape(shape)
        inv_std = 1 / xp.sqrt(var + self.eps)
        xhat = xc
        xhat *= inv_std.reshape(shape)                      # in place: xc is not needed again
        out = xhat * self.weight.data.reshape(shape) + self.bias.data.reshape(shape)
        self._xhat, self._inv_std, self._out = xhat, inv_std, out
        return out

    def _update_running_stats(self, mean, var, M):
        self.num_batches_tracked += 1
        m = self.momentum if self.momentum is not None else 1 / float(self.num_batches_tracked)
        self.running_mean *= 1 - m
        self.running_mean += m * mean
        self.running_var *= 1 - m
        self.running_var += (m * M / (M - 1)) * var

    def backward(self, dout):
        check_dout(self, dout, self._out)
        xhat = self._xhat
        axes = (0,) + tuple(range(2, dout.ndim))
        shape = (1, -1) + (1,) * (dout.ndim - 2)
        dbeta = dout.sum(axis=axes)
        dgamma = (dout * xhat).sum(axis=axes)
        self.weight.grad += dgamma
        self.bias.grad += dbeta
        scale = (self.weight.data * self._inv_std).reshape(shape)
        if not self.training:
            return dout * scale
        M = dout.size // self.num_features
        # dx = scale * (dout - mean(dout) - xhat * mean(dout * xhat))
        dx = xhat * (dgamma / M).reshape(shape)
        dx += (dbeta / M).reshape(shape)
        return (dout - dx) * scale

    def _reset_workspace(self):
        super()._reset_workspace()
        self._xhat = self._inv_std = self._out = None

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm2d(_BatchNorm):
    """BatchNorm2d(num_features, eps=1e-5, momentum=0.1). x: (N, C, H, W) -> (N, C, H, W)."""

    input_ndims = (4,)


class BatchNorm1d(_BatchNorm):
    """BatchNorm1d(num_features, eps=1e-5, momentum=0.1). x: (N, C) or (N, C, L), same shape out."""

    input_ndims = (2, 3)

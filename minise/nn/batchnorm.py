"""Batch normalisation over the batch (and spatial) axes, with PyTorch's running statistics."""
from ..backend import get_array_module
from ..distributed import sum_over_workers
from ..execution import accelerated
from .init import ones, zeros
from .module import Module
from .ops import multiply_sum
from .parameter import Parameter
from .validate import describe, positive_int


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

    input_channels_from = "num_features"
    keeps_input = False     # backward needs x - mean (training) or x as (N, C, L) (eval): kept below
    keeps = ("_xc", "_inv_std", "_x3")

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

    def forward_math(self, x):
        x3 = x.reshape(x.shape[0], self.num_features, -1)   # (N, C, L): one channel per row of L
        if self.training:
            if x3.shape[0] * x3.shape[2] < 2:
                raise ValueError(f"{describe(self)}: training needs more than one value per channel, "
                                 f"got input shape {tuple(x.shape)}")
            self._x3 = None
            out, self._xc, self._inv_std = batch_norm_train_forward(
                x3, self.weight.data, self.bias.data, self.running_mean, self.running_var,
                self._next_momentum(), self.eps)
        else:               # the running statistics are constants: keep x, form x - mean in backward
            self._inv_std = 1 / get_array_module(x).sqrt(self.running_var + self.eps)
            mean, scale, shift = self.running_mean[:, None], (self.weight.data * self._inv_std)[:, None], self.bias.data[:, None]
            self._x3, self._xc = x3, None
            out = x3 - mean
            out *= scale
            out += shift                                    # gamma * (x - mean) / sqrt(var + eps) + beta
        return out.reshape(x.shape)

    def _next_momentum(self):
        """Count this batch; the weight m of its statistics in the running averages."""
        self.num_batches_tracked += 1
        return self.momentum if self.momentum is not None else 1 / float(self.num_batches_tracked)

    def backward_math(self, dout):
        if self._xc is not None:                  # forward ran in training mode
            d3 = dout.reshape(self._xc.shape)
            dx, dgamma, dbeta = batch_norm_train_backward(d3, self._xc, self._inv_std, self.weight.data)
        else:
            d3, mean = dout.reshape(self._x3.shape), self.running_mean[:, None]
            dbeta, dgamma = _sums(d3, self._x3 - mean)
            dgamma = dgamma * self._inv_std                                  # sum(dout * xhat)
            scale = (self.weight.data * self._inv_std)[:, None]              # gamma / sqrt(var + eps)
            dx = d3 * scale
        self.weight.grad += dgamma
        self.bias.grad += dbeta
        return dx.reshape(dout.shape)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm2d(_BatchNorm):
    """BatchNorm2d(num_features, eps=1e-5, momentum=0.1). x: (N, C, H, W) -> (N, C, H, W)."""

    input_ndim = (4,)


class BatchNorm1d(_BatchNorm):
    """BatchNorm1d(num_features, eps=1e-5, momentum=0.1). x: (N, C) or (N, C, L), same shape out."""

    input_ndim = (2, 3)


def _sums(d3, xc):
    """(sum(dout), sum(dout * xc)) per channel, over n and l: (C,) each."""
    return get_array_module(d3).einsum("ncl->c", d3), multiply_sum("ncl,ncl->c", d3, xc)


@accelerated("batch_norm_train_forward")
def batch_norm_train_forward(x3, gamma, beta, running_mean, running_var, m, eps):
    """Training mode: normalise x3 (N, C, L) with its own statistics and update the running
    ones in place. Returns (out, xc, inv_std): xc = x - mu (N, C, L), inv_std = 1/sqrt(var + eps)."""
    xp = get_array_module(x3)
    # Statistics of the whole batch: where workers each hold a shard of it, their sums and
    # counts add up over the workers (synchronised BatchNorm); alone, they are this batch's.
    sum_x, M = sum_over_workers(xp.einsum("ncl->c", x3), x3.shape[0] * x3.shape[2])
    mean = sum_x / M
    xc = x3 - mean[:, None]
    (sum_sq,) = sum_over_workers(multiply_sum("ncl,ncl->c", xc, xc))
    var = sum_sq / M                                                        # biased variance
    running_mean *= 1 - m
    running_mean += m * mean
    running_var *= 1 - m
    running_var += (m * M / (M - 1)) * var                                  # unbiased
    inv_std = 1 / xp.sqrt(var + eps)
    out = xc * (gamma * inv_std)[:, None]
    out += beta[:, None]                                                    # gamma * xhat + beta
    return out, xc, inv_std


@accelerated("batch_norm_train_backward")
def batch_norm_train_backward(d3, xc, inv_std, gamma):
    """Training mode: returns (dx, dgamma, dbeta), with M values per channel:
    dx = scale * (dout - mean(dout) - xhat * mean(dout * xhat)),  scale = gamma * inv_std.
    The means are over the whole batch (summed over workers where each holds a shard); dgamma
    and dbeta are this shard's sums, which the optimiser's gradient sum adds up."""
    dbeta, sum_dout_xc = _sums(d3, xc)
    dgamma = sum_dout_xc * inv_std                                          # sum(dout * xhat)
    dbeta_all, dgamma_all, M = sum_over_workers(dbeta, dgamma, d3.shape[0] * d3.shape[2])
    scale = gamma * inv_std
    k, v = (scale * inv_std * dgamma_all / M)[:, None], (scale * dbeta_all / M)[:, None]
    dx = d3 * scale[:, None]
    dx -= xc * k
    dx -= v
    return dx, dgamma, dbeta

"""BatchNorm's training forward and backward on the GPU, in a few fused kernels."""
import functools

from ..execution.dispatch import gpu_version
from .common import EXACT, cupy
from .reductions import channel_sums


@gpu_version("batch_norm_train_forward")
def batch_norm_train_forward(x3, gamma, beta, running_mean, running_var, momentum, eps):
    """``nn.batchnorm.batch_norm_train_forward`` as seven kernels (its plain lines launch about
    twenty).

    x3: (N, C, L) the input; gamma, beta, running_mean, running_var: (C,), the running
    statistics updated in place with ``momentum``.
    Returns (out, xc, inv_std): out (N, C, L) = gamma * xc * inv_std + beta, xc = x - mean,
    inv_std (C,).
    """
    M = x3.shape[0] * x3.shape[2]
    mean = channel_sums(x3, scale=1 / M)
    xc = cupy.subtract(x3, mean[:, None])
    sum_sq = channel_sums(xc, xc)[1]
    inv_std, scale = cupy.empty_like(mean), cupy.empty_like(mean)
    _bn_statistics_kernel()(sum_sq, mean, gamma, M, 1 - momentum, momentum, momentum * M / (M - 1), eps,
                            running_mean, running_var, inv_std, scale)
    return _channel_affine_kernel()(xc, scale[:, None], beta[:, None]), xc, inv_std


@gpu_version("batch_norm_train_backward")
def batch_norm_train_backward(d3, xc, inv_std, gamma):
    """``nn.batchnorm.batch_norm_train_backward`` as four kernels (the plain lines: about
    sixteen).

    d3, xc: (N, C, L); inv_std, gamma: (C,).
    Returns (dx, dgamma, dbeta): dx (N, C, L) = scale * (dout - mean(dout) - xhat * mean(dout * xhat)).
    """
    M = d3.shape[0] * d3.shape[2]
    dbeta, sum_dout_xc = channel_sums(d3, xc)
    dgamma, scale, k, v = (cupy.empty_like(dbeta) for _ in range(4))
    _bn_backward_kernel()(sum_dout_xc, dbeta, inv_std, gamma, M, dgamma, scale, k, v)
    return _bn_dx_kernel()(d3, xc, scale[:, None], k[:, None], v[:, None]), dgamma, dbeta


@functools.cache
def _bn_statistics_kernel():
    """Per channel: the biased variance, 1 / sqrt(var + eps), gamma / sqrt(var + eps), and the
    running statistics' update (the unbiased variance: var * M / (M - 1))."""
    return cupy.ElementwiseKernel(
        "T sum_sq, T mean, T gamma, T count, T keep, T m, T m_unbiased, T eps",
        "T rmean, T rvar, T inv_std, T scale",
        """
        T var = sum_sq / count;
        rmean = rmean * keep + m * mean;
        rvar = rvar * keep + m_unbiased * var;
        inv_std = 1 / sqrt(var + eps);
        scale = gamma * inv_std;
        """, "minise_bn_statistics", options=EXACT)


@functools.cache
def _channel_affine_kernel():
    """x * scale + shift, scale and shift one value per channel: (C, 1) against (N, C, L)."""
    return cupy.ElementwiseKernel("T x, T scale, T shift", "T y", "y = x * scale + shift",
                                  "minise_channel_affine", options=EXACT)


@functools.cache
def _bn_backward_kernel():
    """Per channel: dgamma = sum(dout * xhat), and the coefficients of dx = scale * dout - k * xc - v."""
    return cupy.ElementwiseKernel(
        "T sum_dout_xc, T dbeta, T inv_std, T gamma, T count", "T dgamma, T scale, T k, T v",
        """
        dgamma = sum_dout_xc * inv_std;
        scale = gamma * inv_std;
        k = scale * inv_std * dgamma / count;
        v = scale * dbeta / count;
        """, "minise_bn_backward", options=EXACT)


@functools.cache
def _bn_dx_kernel():
    """dx = dout * scale - xc * k - v, per channel coefficients (C, 1) against (N, C, L)."""
    return cupy.ElementwiseKernel("T dout, T xc, T scale, T k, T v", "T dx", "dx = dout * scale - xc * k - v",
                                  "minise_bn_dx", options=EXACT)

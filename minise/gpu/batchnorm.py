"""BatchNorm's training forward and backward on the GPU: three kernels forward, two backward.

Each per-channel sum runs in blocks that each add up one channel of a few images (as many
blocks as keep the GPU busy); the last block of a channel to finish (a counter per channel)
adds the blocks' sums in a fixed order and computes that channel's numbers at once, so a sum
and what follows from it are one launch:

forward:   1. mean = sum(x) / M
           2. xc = x - mean, written while summing xc^2;  var = sum(xc^2) / M,
              inv_std = 1 / sqrt(var + eps), scale = gamma * inv_std, the running statistics
           3. out = xc * scale + beta
backward:  1. dbeta = sum(dout), dgamma = sum(dout * xc) * inv_std, and the coefficients k, v
           2. dx = dout * scale - xc * k - v

With several data-parallel workers the statistics are the whole batch's (the plain lines sum
them over the workers): these return NotImplemented there, and the plain lines run.
"""
import functools

import numpy

from ..distributed import world
from ..execution.dispatch import gpu_version
from ..nn import batchnorm as plain
from .common import C_TYPES, EXACT, cupy

THREADS = 256


@gpu_version(plain.batch_norm_train_forward)
def batch_norm_train_forward(x3, gamma, beta, running_mean, running_var, momentum, eps):
    """``nn.batchnorm.batch_norm_train_forward`` as three kernels (its plain lines launch about
    twenty).

    x3: (N, C, L) the input; gamma, beta, running_mean, running_var: (C,), the running
    statistics updated in place with ``momentum``.
    Returns (out, xc, inv_std): out (N, C, L) = gamma * xc * inv_std + beta, xc = x - mean,
    inv_std (C,).
    """
    if not _applies(x3):
        return NotImplemented
    N, C, L = x3.shape
    M, t = N * L, x3.dtype.type
    x3 = cupy.ascontiguousarray(x3)
    parts, partial, done = _blocks(x3)
    mean, inv_std, scale = (cupy.empty(C, dtype=x3.dtype) for _ in range(3))
    xc = cupy.empty_like(x3)
    sizes = (numpy.int32(N), numpy.int32(C), numpy.int32(L), numpy.int32(parts), t(M))
    module = _module(x3.dtype.name)
    module.get_function("minise_bn_mean")((parts, C), (THREADS,), (x3, partial, done, mean, *sizes))
    module.get_function("minise_bn_centre")(
        (parts, C), (THREADS,), (x3, mean, xc, partial, done, gamma, running_mean, running_var, inv_std, scale,
                                 *sizes, t(1 - momentum), t(momentum), t(momentum * M / (M - 1)), t(eps)))
    return _channel_affine_kernel()(xc, scale[:, None], beta[:, None]), xc, inv_std


@gpu_version(plain.batch_norm_train_backward)
def batch_norm_train_backward(d3, xc, inv_std, gamma):
    """``nn.batchnorm.batch_norm_train_backward`` as two kernels (the plain lines: about
    sixteen).

    d3, xc: (N, C, L); inv_std, gamma: (C,).
    Returns (dx, dgamma, dbeta): dx (N, C, L) = scale * (dout - mean(dout) - xhat * mean(dout * xhat)).
    """
    if not _applies(d3):
        return NotImplemented
    N, C, L = d3.shape
    d3 = cupy.ascontiguousarray(d3)
    parts, partial, done = _blocks(d3)
    dgamma, dbeta, scale, k, v = (cupy.empty(C, dtype=d3.dtype) for _ in range(5))
    _module(d3.dtype.name).get_function("minise_bn_backward_sums")(
        (parts, C), (THREADS,), (d3, xc, partial, done, inv_std, gamma, dgamma, dbeta, scale, k, v, numpy.int32(N),
                                 numpy.int32(C), numpy.int32(L), numpy.int32(parts), d3.dtype.type(N * L)))
    return _bn_dx_kernel()(d3, xc, scale[:, None], k[:, None], v[:, None]), dgamma, dbeta


def _applies(a):
    """float32/64, 32-bit indices, one worker (several sum their statistics in the plain lines)."""
    return a.dtype.name in C_TYPES and a.size < 2 ** 31 and world().size == 1


def _blocks(a):
    """(blocks per channel, their partial sums (2, C, parts), the channels' counters)."""
    N, C, _ = a.shape
    parts = max(1, min(N, 1024 // C))
    return parts, cupy.empty((2, C, parts), dtype=a.dtype), _counters(C)


_counter_arrays = []       # every one made is kept: a recorded graph may use it


def _counters(channels):
    """Zeroed counters, one per channel; each kernel leaves them at zero again."""
    if not _counter_arrays or _counter_arrays[-1].size < channels:
        _counter_arrays.append(cupy.zeros(max(channels, 4096), dtype=numpy.uint32))
    return _counter_arrays[-1]


_KERNELS = r"""
// Block (s, c) sums channel c of the images n0 <= n < n0 + per: count values, the i-th of them
// at value_at(n0, i); its threads stride over them.
__device__ int values_of_block(int N, int L, int parts, int& n0) {
    int per = (N + parts - 1) / parts;
    n0 = blockIdx.x * per;
    return max(0, min(N, n0 + per) - n0) * L;
}

__device__ size_t value_at(int n0, int i, int C, int L) {
    return ((size_t)(n0 + i / L) * C + blockIdx.y) * L + i % L;
}

// The block's sums of a and b (in every thread); then thread 0 writes them to partial[0 or 1][c][s]
// and counts the block; true in the last block of channel c to finish, whose partial sums
// then hold every block's.
__device__ bool block_sums_last(T& a, T& b, T* partial, unsigned int* done, int C, int parts) {
    __shared__ T shared_a[THREADS], shared_b[THREADS];
    __shared__ bool last;
    int c = blockIdx.y, s = blockIdx.x;
    shared_a[threadIdx.x] = a, shared_b[threadIdx.x] = b;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {          // tree sum within the block
        if (threadIdx.x < half) {
            shared_a[threadIdx.x] += shared_a[threadIdx.x + half];
            shared_b[threadIdx.x] += shared_b[threadIdx.x + half];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        partial[(size_t)c * parts + s] = shared_a[0];
        partial[((size_t)C + c) * parts + s] = shared_b[0];
        __threadfence();                                          // the sums are seen before the count
        last = atomicAdd(&done[c], 1u) == (unsigned int)parts - 1;
        if (last) done[c] = 0;                                    // ready for the next launch
    }
    __syncthreads();
    return last;
}

// The blocks' sums of channel c in order s = 0, 1, ...: the same result whichever block is last.
__device__ T channel_total(const T* partial, int which, int C, int parts) {
    const volatile T* sums = partial + ((size_t)which * C + blockIdx.y) * parts;
    T total = 0;
    for (int s = 0; s < parts; ++s) total += sums[s];
    return total;
}

extern "C" __global__ void minise_bn_mean(const T* x, T* partial, unsigned int* done, T* mean,
                                          int N, int C, int L, int parts, T M) {
    T sum = 0, unused = 0;
    int n0, count = values_of_block(N, L, parts, n0);
    for (int i = threadIdx.x; i < count; i += blockDim.x) sum += x[value_at(n0, i, C, L)];
    if (block_sums_last(sum, unused, partial, done, C, parts) && threadIdx.x == 0)
        mean[blockIdx.y] = channel_total(partial, 0, C, parts) / M;                 // mu = sum(x) / M
}

extern "C" __global__ void minise_bn_centre(const T* x, const T* mean, T* xc, T* partial, unsigned int* done,
                                            const T* gamma, T* running_mean, T* running_var, T* inv_std, T* scale,
                                            int N, int C, int L, int parts, T M, T keep, T m, T m_unbiased, T eps) {
    T sum_sq = 0, unused = 0, mu = mean[blockIdx.y];
    int n0, count = values_of_block(N, L, parts, n0);
    for (int i = threadIdx.x; i < count; i += blockDim.x) {
        size_t at = value_at(n0, i, C, L);
        T v = x[at] - mu;                                                           // xc = x - mu
        xc[at] = v;
        sum_sq += v * v;
    }
    if (block_sums_last(sum_sq, unused, partial, done, C, parts) && threadIdx.x == 0) {
        int c = blockIdx.y;
        T var = channel_total(partial, 0, C, parts) / M;                           // biased variance
        running_mean[c] = running_mean[c] * keep + m * mu;
        running_var[c] = running_var[c] * keep + m_unbiased * var;                 // unbiased
        inv_std[c] = 1 / sqrt(var + eps);
        scale[c] = gamma[c] * inv_std[c];
    }
}

extern "C" __global__ void minise_bn_backward_sums(const T* d, const T* xc, T* partial, unsigned int* done,
                                                   const T* inv_std, const T* gamma, T* dgamma, T* dbeta, T* scale,
                                                   T* k, T* v, int N, int C, int L, int parts, T M) {
    T sum_d = 0, sum_dxc = 0;
    int n0, count = values_of_block(N, L, parts, n0);
    for (int i = threadIdx.x; i < count; i += blockDim.x) {
        size_t at = value_at(n0, i, C, L);
        sum_d += d[at];
        sum_dxc += d[at] * xc[at];
    }
    if (block_sums_last(sum_d, sum_dxc, partial, done, C, parts) && threadIdx.x == 0) {
        int c = blockIdx.y;
        dbeta[c] = channel_total(partial, 0, C, parts);                            // sum(dout)
        dgamma[c] = channel_total(partial, 1, C, parts) * inv_std[c];              // sum(dout * xhat)
        scale[c] = gamma[c] * inv_std[c];
        k[c] = scale[c] * inv_std[c] * dgamma[c] / M;
        v[c] = scale[c] * dbeta[c] / M;
    }
}
"""


@functools.cache
def _module(dtype_name):
    """``_KERNELS`` for float32 or float64, without fused multiply-adds (the per-channel
    numbers then round as the plain lines' do)."""
    return cupy.RawModule(code=f"typedef {C_TYPES[dtype_name]} T;\n#define THREADS {THREADS}\n" + _KERNELS,
                          options=EXACT)


@functools.cache
def _channel_affine_kernel():
    """x * scale + shift, scale and shift one value per channel: (C, 1) against (N, C, L)."""
    return cupy.ElementwiseKernel("T x, T scale, T shift", "T y", "y = x * scale + shift",
                                  "minise_channel_affine", options=EXACT)


@functools.cache
def _bn_dx_kernel():
    """dx = dout * scale - xc * k - v, per channel coefficients (C, 1) against (N, C, L)."""
    return cupy.ElementwiseKernel("T dout, T xc, T scale, T k, T v", "T dx", "dx = dout * scale - xc * k - v",
                                  "minise_bn_dx", options=EXACT)

"""Softmax cross-entropy on the GPU: the loss and its gradient in one kernel."""
import functools

import numpy

from ..execution.dispatch import gpu_version
from ..nn import loss as plain
from .common import C_TYPES, cupy

BLOCK = 256


@gpu_version(plain.softmax_cross_entropy)
def softmax_cross_entropy(logits, target, label_smoothing):
    """``nn.loss.softmax_cross_entropy`` as one kernel of one block (the plain lines launch
    about twenty): each thread takes rows n of logits (N, K) and computes, as there,
    log p = (x - max) - log(sum(exp(x - max))),  q = onehot * (1 - e) + e / K,
    its rows of dlogits = (p - q) / N and its share of -sum(q * log p); the shares are then
    added in a fixed order and divided by N. NotImplemented for other dtypes than float32/64
    logits and int64 targets."""
    if logits.dtype.name not in C_TYPES or target.dtype != numpy.int64 or logits.size >= 2 ** 31:
        return NotImplemented
    N, K = logits.shape
    t = logits.dtype.type
    loss, dlogits = cupy.empty((), dtype=logits.dtype), cupy.empty((N, K), dtype=logits.dtype)
    _module(logits.dtype.name).get_function("minise_cross_entropy")(
        (1,), (BLOCK,), (cupy.ascontiguousarray(logits), cupy.ascontiguousarray(target), loss, dlogits,
                         numpy.int32(N), numpy.int32(K), t(1 - label_smoothing), t(label_smoothing / K)))
    return loss, dlogits


_KERNEL = r"""
extern "C" __global__ void minise_cross_entropy(const T* logits, const long long* target, T* loss, T* dlogits,
                                                int N, int K, T keep, T spread) {
    __shared__ T partial[BLOCK];
    T sum = 0;
    for (int n = threadIdx.x; n < N; n += blockDim.x) {
        const T* x = logits + (size_t)n * K;
        T m = x[0];
        for (int k = 1; k < K; ++k) m = x[k] > m ? x[k] : m;
        T s = 0;
        for (int k = 0; k < K; ++k) s += exp(x[k] - m);
        T lse = log(s);
        for (int k = 0; k < K; ++k) {
            T log_p = (x[k] - m) - lse;                              // log softmax, never overflowing
            T q = (k == target[n] ? (T)1 : (T)0) * keep + spread;    // onehot * (1 - e) + e / K
            if (q > 0) sum += q * log_p;                             // a masked class adds 0
            dlogits[(size_t)n * K + k] = (exp(log_p) - q) / (T)N;    // (p - q) / N
        }
    }
    partial[threadIdx.x] = sum;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) *loss = -partial[0] / (T)N;
}
"""


@functools.cache
def _module(dtype_name):
    return cupy.RawModule(code=f"typedef {C_TYPES[dtype_name]} T;\n#define BLOCK {BLOCK}\n" + _KERNEL)

"""The Squeeze-and-Excitation block on the GPU: forward in one kernel, backward in two.

The plain block (``nn.se.SEBlock``) runs seven layers and a rescale, about thirty-five kernels
for a forward and backward pass. Here one thread block per sample does what that sample needs:

forward (one kernel):      z = mean_{h,w} x,   h = relu(W1 z + b1),   s = sigmoid(W2 h + b2),
                           out = x * s
backward (two kernels):    ds = sum_{h,w} dout * x,   da = ds * s * (1 - s),
                           dh = (W2^T da) * (h > 0),  dz = W1^T dh,
                           dx = dout * s + dz / (H*W)                           (per sample)
                           dW2 += da^T h,  db2 += sum_n da,  dW1 += dh^T z,  db1 += sum_n dh
                                                                                (over the batch)

h is formed again in backward from the kept z. For the default options (average squeeze,
sigmoid excitation); NotImplemented, so the plain layers run, for the others.
"""
import functools

import numpy

from ..execution.dispatch import gpu_version
from ..nn.se import SEBlock
from .common import C_TYPES, cupy

THREADS = 256
SHARED_BYTES = 48 << 10       # a block's shared memory without asking for more


@gpu_version(SEBlock.forward_math)
def forward_math(block, x):
    """``SEBlock.forward_math``: x (N, C, H, W) -> x * s; sets ``block.z`` (N, C) and ``block.s``
    (N, C, 1, 1) as the plain layers do."""
    fc = _fully_connected(block, x)
    if fc is None:
        return NotImplemented
    (w1, b1, w2, b2), flags = fc
    N, C, H, W = x.shape
    z, s, out = cupy.empty((N, C), dtype=x.dtype), cupy.empty((N, C, 1, 1), dtype=x.dtype), cupy.empty_like(x)
    _launch("minise_se_forward", block, x, (cupy.ascontiguousarray(x), w1, b1, w2, b2, z, s, out,
                                            *_sizes(block, x), *flags))
    block.z, block.s = z, s
    return out


@gpu_version(SEBlock.backward_math)
def backward_math(block, dout):
    """``SEBlock.backward_math``: dout (N, C, H, W) -> dx; adds the FC layers' gradients."""
    x = block._x
    fc = _fully_connected(block, x)
    if fc is None:
        return NotImplemented
    (w1, b1, w2, _), flags = fc
    N, C, hidden = x.shape[0], block.input_channels, block.hidden
    dx, da = cupy.empty_like(x), cupy.empty((N, C), dtype=x.dtype)
    h, dh = cupy.empty((N, hidden), dtype=x.dtype), cupy.empty((N, hidden), dtype=x.dtype)
    _launch("minise_se_backward", block, x, (cupy.ascontiguousarray(dout), cupy.ascontiguousarray(x), block.z,
                                             block.s, w1, b1, w2, dx, da, h, dh, *_sizes(block, x), *flags))
    fc1, fc2 = block.sequence[2], block.sequence[4]
    grads = [fc1.weight.grad, (fc1.bias or fc1.weight).grad, fc2.weight.grad, (fc2.bias or fc2.weight).grad]
    entries = 2 * C * hidden + C + hidden
    _module(x.dtype.name).get_function("minise_se_parameter_grads")(
        (-(-entries // THREADS),), (THREADS,), (da, h, dh, block.z, *grads, numpy.int32(N), numpy.int32(C),
                                                numpy.int32(hidden), *flags))
    return dx


def _fully_connected(block, x):
    """((W1, b1, W2, b2), (has b1, has b2)) as the kernels take them (a missing bias: the
    weight, never read), or None where the fused kernels don't apply."""
    C, hidden = block.input_channels, block.hidden
    shared = (3 * C + 2 * hidden) * x.dtype.itemsize
    if (block.squeeze_op != "avg" or block.excitation_op != "sigmoid" or x.dtype.name not in C_TYPES
            or x.size >= 2 ** 31 or shared > SHARED_BYTES):
        return None
    fc1, fc2 = block.sequence[2], block.sequence[4]
    arrays = [cupy.ascontiguousarray(p.data) for p in (fc1.weight, fc1.bias or fc1.weight, fc2.weight,
                                                        fc2.bias or fc2.weight)]
    return arrays, (numpy.int32(fc1.bias is not None), numpy.int32(fc2.bias is not None))


def _sizes(block, x):
    return numpy.int32(block.input_channels), numpy.int32(x.shape[2] * x.shape[3]), numpy.int32(block.hidden)


def _launch(name, block, x, args):
    shared = (3 * block.input_channels + 2 * block.hidden) * x.dtype.itemsize
    _module(x.dtype.name).get_function(name)((x.shape[0],), (THREADS,), args, shared_mem=shared)


# One block per sample n; warp w sums channels w, w + 8, ... with its lanes striding over the
# H*W pixels (a shuffle adds the lanes' sums); the FC layers are a loop per thread over the
# other layer's units. The shared arrays: z or ds (C), s (C), dz (C), h (hidden), dh (hidden).
_KERNELS = r"""
__device__ T warp_sum(T v) {
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;                                              // the sum, in lane 0
}

__device__ void hidden_units(const T* z, const T* w1, const T* b1, int C, int hidden, int has_b1, T* h) {
    for (int j = threadIdx.x; j < hidden; j += blockDim.x) {
        T a = 0;
        for (int c = 0; c < C; ++c) a += z[c] * w1[j * C + c];           // W1 z
        if (has_b1) a += b1[j];
        h[j] = a > 0 ? a : 0;                                            // relu
    }
}

extern "C" __global__ void minise_se_forward(const T* x, const T* w1, const T* b1, const T* w2, const T* b2,
                                             T* z, T* s, T* out, int C, int L, int hidden, int has_b1, int has_b2) {
    extern __shared__ double shared_memory[];
    T* zs = (T*)shared_memory; T* ss = zs + C; T* hs = ss + 2 * C;
    int n = blockIdx.x, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    const T* xn = x + (size_t)n * C * L;
    for (int c = threadIdx.x / 32; c < C; c += warps) {                  // squeeze: z = mean over h, w
        T sum = 0;
        for (int l = lane; l < L; l += 32) sum += xn[(size_t)c * L + l];
        sum = warp_sum(sum);
        if (lane == 0) zs[c] = z[(size_t)n * C + c] = sum / (T)L;
    }
    __syncthreads();
    hidden_units(zs, w1, b1, C, hidden, has_b1, hs);
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += blockDim.x) {                  // excite: s = sigmoid(W2 h + b2)
        T a = 0;
        for (int j = 0; j < hidden; ++j) a += hs[j] * w2[c * hidden + j];
        if (has_b2) a += b2[c];
        T e = exp(-fabs(a));                                             // never overflows
        ss[c] = s[(size_t)n * C + c] = (a >= 0 ? (T)1 : e) / (1 + e);
    }
    __syncthreads();
    T* on = out + (size_t)n * C * L;
    for (int i = threadIdx.x; i < C * L; i += blockDim.x) on[i] = xn[i] * ss[i / L];     // rescale
}

extern "C" __global__ void minise_se_backward(const T* dout, const T* x, const T* z, const T* s, const T* w1,
                                              const T* b1, const T* w2, T* dx, T* da, T* h, T* dh,
                                              int C, int L, int hidden, int has_b1, int has_b2) {
    extern __shared__ double shared_memory[];
    T* das = (T*)shared_memory; T* ss = das + C; T* dzs = ss + C; T* hs = dzs + C; T* dhs = hs + hidden;
    int n = blockIdx.x, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    size_t at = (size_t)n * C * L;
    for (int c = threadIdx.x; c < C; c += blockDim.x) ss[c] = s[(size_t)n * C + c];
    for (int c = threadIdx.x / 32; c < C; c += warps) {                  // ds = sum over h, w of dout * x
        T sum = 0;
        for (int l = lane; l < L; l += 32) sum += dout[at + (size_t)c * L + l] * x[at + (size_t)c * L + l];
        sum = warp_sum(sum);
        if (lane == 0) {
            T sc = s[(size_t)n * C + c];
            das[c] = da[(size_t)n * C + c] = sum * sc * (1 - sc);        // through the sigmoid
        }
    }
    hidden_units(z + (size_t)n * C, w1, b1, C, hidden, has_b1, hs);
    __syncthreads();
    for (int j = threadIdx.x; j < hidden; j += blockDim.x) {             // dh = (W2^T da) * (h > 0)
        T sum = 0;
        for (int c = 0; c < C; ++c) sum += das[c] * w2[c * hidden + j];
        dhs[j] = dh[(size_t)n * hidden + j] = sum * (hs[j] > 0);
        h[(size_t)n * hidden + j] = hs[j];
    }
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += blockDim.x) {                  // dz = W1^T dh
        T sum = 0;
        for (int j = 0; j < hidden; ++j) sum += dhs[j] * w1[j * C + c];
        dzs[c] = sum;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < C * L; i += blockDim.x)                // both paths into x
        dx[at + i] = dout[at + i] * ss[i / L] + dzs[i / L] / (T)L;
}

// One thread per entry of dW2 (C, hidden), dW1 (hidden, C), db2 (C), db1 (hidden): a sum over
// the batch, added into the gradient.
extern "C" __global__ void minise_se_parameter_grads(const T* da, const T* h, const T* dh, const T* z, T* gw1,
                                                     T* gb1, T* gw2, T* gb2, int N, int C, int hidden,
                                                     int has_b1, int has_b2) {
    int i = blockIdx.x * blockDim.x + threadIdx.x, weights = C * hidden;
    T sum = 0;
    if (i < weights) {                                                   // dW2[c, j] = sum_n da[n, c] h[n, j]
        int c = i / hidden, j = i % hidden;
        for (int n = 0; n < N; ++n) sum += da[(size_t)n * C + c] * h[(size_t)n * hidden + j];
        gw2[i] += sum;
    } else if (i < 2 * weights) {                                        // dW1[j, c] = sum_n dh[n, j] z[n, c]
        int j = (i - weights) / C, c = (i - weights) % C;
        for (int n = 0; n < N; ++n) sum += dh[(size_t)n * hidden + j] * z[(size_t)n * C + c];
        gw1[i - weights] += sum;
    } else if (i < 2 * weights + C) {                                    // db2[c] = sum_n da[n, c]
        int c = i - 2 * weights;
        for (int n = 0; n < N; ++n) sum += da[(size_t)n * C + c];
        if (has_b2) gb2[c] += sum;
    } else if (i < 2 * weights + C + hidden) {                           // db1[j] = sum_n dh[n, j]
        int j = i - 2 * weights - C;
        for (int n = 0; n < N; ++n) sum += dh[(size_t)n * hidden + j];
        if (has_b1) gb1[j] += sum;
    }
}
"""


@functools.cache
def _module(dtype_name):
    """``_KERNELS`` compiled for float32 or float64."""
    return cupy.RawModule(code=f"typedef {C_TYPES[dtype_name]} T;\n" + _KERNELS)

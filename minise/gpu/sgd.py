"""The optimiser on the GPU: SGD's update and zero_grad, each one kernel for all the parameters.

A kernel over a list of arrays reads their addresses from a table on the device (made once per
set of arrays, so a CUDA graph records no copy to the device) and runs one thread per element of
all of them: element i lies in array t, the last with starts[t] <= i, at i - starts[t].
"""
import functools

import numpy

from ..execution.dispatch import gpu_version
from ..optim import optimizer, sgd
from .common import C_TYPES, EXACT, cupy


@gpu_version(sgd.momentum_update)
def momentum_update(param, grad, buf, lr, momentum, weight_decay, dampening, nesterov):
    """``optim.sgd.momentum_update`` (a step of SGD once a momentum buffer exists) as a single
    kernel: ``param`` and ``buf`` are updated in place.

    Per element, in the plain lines' order:  d = g + wd*p;  b = mu*b + (1 - tau)*d;
    p = p - lr*(d + mu*b if nesterov else b). Nine kernels per parameter become one; with
    fused multiply-adds switched off every operation rounds as the plain lines do, so the two
    agree bit for bit (tests/gpu). ``lr`` and ``momentum``: numbers or 0-d device arrays.
    """
    _sgd_kernel()(grad, lr, momentum, weight_decay, 1 - dampening, bool(nesterov), param, buf)


@gpu_version(sgd.momentum_update_all)
def momentum_update_all(params, grads, bufs, lr, momentum, weight_decay, dampening, nesterov):
    """``optim.sgd.momentum_update_all``: ``momentum_update`` of every parameter in one kernel,
    with the same arithmetic per element (bit for bit the plain lines'). NotImplemented for
    mixed dtypes, strided arrays, or a new set of arrays while a graph is being recorded."""
    dtype = params[0].dtype
    scalars = [(numpy.uint64(0), v) if isinstance(v, (int, float)) else (v, 0) for v in (lr, momentum)]
    if any(not isinstance(on_device, numpy.uint64) and on_device.dtype != dtype for on_device, _ in scalars):
        return NotImplemented
    table = _address_table(dtype, params, grads, bufs)
    if table is None:
        return NotImplemented
    (p, g, b), starts, total = table
    t = dtype.type
    (lr_device, lr_value), (mu_device, mu_value) = scalars
    _launch("minise_sgd_all", dtype, total, (p, g, b, starts, numpy.int32(len(params)), numpy.int64(total),
                                             t(lr_value), lr_device, t(mu_value), mu_device, t(weight_decay),
                                             t(1 - dampening), numpy.int32(bool(nesterov))))


@gpu_version(optimizer.zero_arrays)
def zero_arrays(arrays):
    """``optim.optimizer.zero_arrays``: every array of the list set to zero by one kernel."""
    table = _address_table(arrays[0].dtype, arrays)
    if table is None:
        return NotImplemented
    (a,), starts, total = table
    _launch("minise_zero_all", arrays[0].dtype, total, (a, starts, numpy.int32(len(arrays)), numpy.int64(total)))


@functools.cache
def _sgd_kernel():
    """The kernel of ``momentum_update`` (CuPy compiles it at its first call)."""
    return cupy.ElementwiseKernel(
        "T g, T lr, T mu, T wd, T keep, bool nesterov", "T p, T b",
        """
        T d = wd != 0 ? g + wd * p : g;       // g <- g + lambda*theta
        b = mu * b + keep * d;                 // b <- mu*b + (1 - tau)*g
        p = p - lr * (nesterov ? d + mu * b : b);
        """, "minise_sgd_update", options=EXACT)


_tables = {}     # (dtype, (address, size) of every array) -> the device tables; kept, since graphs read them


def _address_table(dtype, *lists):
    """([one device array of addresses per list], starts, total) for lists of C-contiguous
    arrays of ``dtype`` whose i-th entries have one size; None where that does not hold, or
    where the table would be new while a graph is being recorded (its copy to the device can't
    be recorded)."""
    sizes = [a.size for a in lists[0]]
    if dtype.name not in C_TYPES or any(len(arrays) != len(sizes) for arrays in lists):
        return None
    for arrays in lists:
        for a, size in zip(arrays, sizes):
            if a.dtype != dtype or a.size != size or not a.flags.c_contiguous:
                return None
    key = (dtype.name,) + tuple((a.data.ptr, a.size) for arrays in lists for a in arrays)
    table = _tables.get(key)
    if table is None:
        if cupy.cuda.get_current_stream().is_capturing():
            return None
        starts = numpy.concatenate([[0], numpy.cumsum(sizes)]).astype(numpy.int64)
        addresses = [cupy.asarray(numpy.array([a.data.ptr for a in arrays], dtype=numpy.uint64)) for arrays in lists]
        table = _tables[key] = (addresses, cupy.asarray(starts), int(starts[-1]))
    return table


_LIST_KERNELS = r"""
__device__ int array_of(const long long* starts, int count, long long i) {
    int lo = 0, hi = count - 1;                  // the last t with starts[t] <= i: a binary search
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (starts[mid] <= i) lo = mid; else hi = mid - 1;
    }
    return lo;
}

extern "C" __global__ void minise_zero_all(T* const* arrays, const long long* starts, int count, long long total) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        int t = array_of(starts, count, i);
        arrays[t][i - starts[t]] = 0;
    }
}

// SGD with momentum, the plain lines' operations in their order (optim.sgd.momentum_update);
// lr and mu are read from the device where their pointers are given (a scheduler's values).
extern "C" __global__ void minise_sgd_all(T* const* params, T* const* grads, T* const* bufs, const long long* starts,
                                          int count, long long total, T lr_value, const T* lr_device, T mu_value,
                                          const T* mu_device, T wd, T keep, int nesterov) {
    T lr = lr_device ? *lr_device : lr_value, mu = mu_device ? *mu_device : mu_value;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        int t = array_of(starts, count, i);
        long long j = i - starts[t];
        T p = params[t][j], g = grads[t][j];
        T d = wd != 0 ? g + wd * p : g;             // g <- g + lambda*theta
        T b = mu * bufs[t][j] + keep * d;           // b <- mu*b + (1 - tau)*g
        bufs[t][j] = b;
        params[t][j] = p - lr * (nesterov ? d + mu * b : b);    // theta <- theta - gamma*g
    }
}
"""


def _launch(name, dtype, total, args):
    if total == 0:
        return
    block = 256
    kernel = _list_module(dtype.name).get_function(name)
    kernel((min(-(-total // block), 4096),), (block,), args)


@functools.cache
def _list_module(dtype_name):
    """``_LIST_KERNELS`` compiled for float32 or float64, without fused multiply-adds."""
    return cupy.RawModule(code=f"typedef {C_TYPES[dtype_name]} T;\n" + _LIST_KERNELS, options=EXACT)

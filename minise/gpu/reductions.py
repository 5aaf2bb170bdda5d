"""Sums over axes on the GPU: ``multiply_sum``."""
import functools

from ..execution.dispatch import gpu_version
from ..nn import ops
from .common import cupy


@gpu_version(ops.multiply_sum)
def multiply_sum(subscripts, a, b):
    """sum(a * b) over the axes that ``subscripts`` drops, one reduction kernel without the
    product as a temporary (CuPy's einsum calls cuBLAS, which a CUDA graph can't record)."""
    return _multiply_sum_kernel()(a, b, axis=ops.summed_axes(subscripts))


@functools.cache
def _multiply_sum_kernel():
    """sum(a * b) over the given axes in one CuPy kernel, without the product as a temporary."""
    return cupy.ReductionKernel("T u, T v", "T y", "u * v", "a + b", "y = a", "0", "minise_multiply_sum")

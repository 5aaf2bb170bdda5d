"""GPU versions of the plain functions marked ``@accelerated`` in minise, for CuPy arrays.

Each module here holds the kernels of one plain function or layer:

    cublas.py      matmul            cuBLAS called directly, so that CUDA graphs can record it
    reductions.py  multiply_sum      sum(a * b) over some axes, and BatchNorm's per-channel sums
    conv.py        im2col, col2im    a convolution's column matrix in one kernel each
    batchnorm.py   BatchNorm's training forward and backward in a few fused kernels
    sgd.py         SGD's update      one kernel per parameter
    graph.py       CudaGraph         a whole training step recorded and replayed (``minise.step``)

One calling convention (``minise.execution.dispatch``): a GPU version takes its plain
function's arguments and returns its result, or ``NotImplemented`` where it does not apply,
and the plain lines run instead. Importing this package registers them all; minise does that
at the first call with a CuPy array. tests/gpu compares every one with its plain function.
"""
from . import batchnorm, conv, cublas, reductions, sgd  # noqa: F401  (registers the GPU versions)
from .graph import CudaGraph

__all__ = ["CudaGraph"]

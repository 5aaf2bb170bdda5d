"""GPU versions of the plain functions marked ``@accelerated`` in minise, for CuPy arrays.

Each module here holds the kernels that stand in for one plain function or layer, and says
which formula each kernel computes:

    cublas.py      matmul                 cuBLAS called directly, so that CUDA graphs can record it
    reductions.py  multiply_sum           sum(a * b) over some axes, without the product
    conv.py        padded_im2col, col2im  a convolution's column matrix in one kernel each
    batchnorm.py   batch_norm_train_forward / _backward: three kernels forward, two backward
    se.py          SEBlock.forward_math / backward_math: one kernel forward, two backward
    loss.py        softmax_cross_entropy  the loss and its gradient in one kernel
    sgd.py         momentum_update(_all), zero_arrays: SGD's update and zero_grad, one kernel
                   for all the parameters
    graph.py       CudaGraph              a whole training step recorded and replayed (``minise.step``)

One calling convention (``minise.execution.dispatch``): a GPU version has its plain function's
name, takes its arguments and returns its result, or ``NotImplemented`` where it does not
apply, and the plain lines run instead. ``minise/__init__.py`` imports this package where CuPy
is installed, which registers them all. tests/gpu compares every one with its plain function.
"""
from . import batchnorm, conv, cublas, loss, reductions, se, sgd  # noqa: F401  (registers the GPU versions)
from .graph import CudaGraph

__all__ = ["CudaGraph"]

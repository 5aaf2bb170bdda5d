"""How the layers' math runs, kept apart from the math itself.

A layer writes its forward and backward once, as plain array code on a batch (``minise.nn``).
This package decides how that code runs:

- ``per_sample(fn, *batch)`` and ``batch_sum(fn, *batch)`` (``batch.py``): ``fn`` on the whole
  batch (on the GPU, or in ``with whole_batch():``), or, on the CPU, on cache-sized chunks of
  it run on a pool of threads, the chunks' results written into one output (per-sample work)
  or added in a fixed order (sums over the batch: weight gradients, BatchNorm's statistics);
- ``accelerated(name)`` (``dispatch.py``): a plain function that the GPU package
  (``minise.gpu``) may replace by a fused kernel for CuPy arrays;
- ``no_grad()`` (``grad_mode.py``): forward passes that keep nothing for a backward pass;
- ``set_num_threads`` / ``get_num_threads`` (``threads.py``): how many CPU threads.
"""
from .batch import batch_sum, per_sample, whole_batch
from .dispatch import accelerated
from .grad_mode import grad_enabled, no_grad
from .threads import get_num_threads, set_num_threads

__all__ = ["accelerated", "batch_sum", "get_num_threads", "grad_enabled", "no_grad", "per_sample",
           "set_num_threads", "whole_batch"]

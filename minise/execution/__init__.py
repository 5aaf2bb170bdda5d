"""How the layers' math runs, kept apart from the math itself.

A layer writes its forward and backward once, as plain array code on a batch (``minise.nn``).
This package decides how that code runs:

- ``accelerated(name)`` (``dispatch.py``): a plain function that the GPU package
  (``minise.gpu``) may replace by a fused kernel for CuPy arrays; ``numpy_version(fast)``: a
  layer method that ``fast`` runs in another order for NumPy arrays (``plain_on_cpu()``: not);
- ``no_grad()`` (``grad_mode.py``): forward passes that keep nothing for a backward pass;
- ``set_num_threads`` / ``get_num_threads`` (``threads.py``): how many threads NumPy's BLAS
  library uses in this process (more cores: more worker processes, ``minise.distributed``).
"""
from .dispatch import accelerated, numpy_version, plain_on_cpu
from .grad_mode import grad_enabled, no_grad
from .threads import get_num_threads, set_num_threads

__all__ = ["accelerated", "get_num_threads", "grad_enabled", "no_grad", "numpy_version", "plain_on_cpu",
           "set_num_threads"]

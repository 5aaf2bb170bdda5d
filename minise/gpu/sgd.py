"""SGD's update on the GPU: one kernel per parameter."""
import functools

from ..execution.dispatch import gpu_version
from .common import EXACT, cupy


@gpu_version("sgd_momentum_update")
def momentum_update(param, grad, buf, lr, momentum, weight_decay, dampening, nesterov):
    """``optim.sgd.momentum_update`` (a step of SGD once a momentum buffer exists) as a single
    kernel: ``param`` and ``buf`` are updated in place.

    Per element, in the plain lines' order:  d = g + wd*p;  b = mu*b + (1 - tau)*d;
    p = p - lr*(d + mu*b if nesterov else b). Nine kernels per parameter become one; with
    fused multiply-adds switched off every operation rounds as the plain lines do, so the two
    agree bit for bit (tests/gpu). ``lr`` and ``momentum``: numbers or 0-d device arrays.
    """
    _sgd_kernel()(grad, lr, momentum, weight_decay, 1 - dampening, bool(nesterov), param, buf)


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

"""minise: Squeeze-and-Excitation networks with every forward and backward pass written by hand.

    minise.nn          layers, the SE block, the loss (PyTorch's names)
    minise.models      residual blocks and CIFAR ResNets
    minise.gradcheck   numeric gradient checks (``python -m minise.gradcheck``)
    minise.summary     a torchinfo-like table of a model
    minise.training    the train, evaluate and ablate commands; load_model(path) rebuilds a trained model
    minise.execution   how the math runs: GPU kernels' and NumPy versions' dispatch, BLAS threads, no_grad
    minise.distributed data parallelism over worker processes (MPI)
"""
__version__ = "0.1.0"

from . import nn  # noqa: E402
from .execution import get_num_threads, no_grad, set_num_threads  # noqa: E402
from .summary import summary  # noqa: E402
from .backend import cupy as _cupy  # noqa: E402

if _cupy is not None:    # last: the GPU package registers its versions of the plain functions above
    from . import gpu  # noqa: E402,F401


def __getattr__(name):
    """``minise.load_model``, imported on first use: the training package brings the data
    loaders (Pillow, tqdm), which the layers and the summary do not need."""
    if name == "load_model":
        from .training import load_model
        return load_model
    raise AttributeError(f"module 'minise' has no attribute {name!r}")

__all__ = ["nn", "summary", "load_model", "get_num_threads", "no_grad", "set_num_threads", "__version__"]

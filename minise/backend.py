"""The one place that decides NumPy or CuPy.

Every layer asks ``xp = get_array_module(x)`` of its input and does its math with ``xp``, so
the same code runs on the CPU (NumPy arrays) and on the GPU (CuPy arrays). Only this module
and the GPU kernels (``minise.gpu``) import CuPy.
"""
import numpy

try:  # CuPy is an optional extra: ``pip install -e .[gpu]``
    import cupy
except ImportError:  # pragma: no cover - depends on the machine
    cupy = None

DEVICES = ("cpu", "cuda")

GPU_INSTALL_HINT = (
    "install the GPU extra with `pip install -e .[gpu]` (CuPy for CUDA 12; "
    "use `pip install cupy-cuda13x` by hand for CUDA 13)"
)


def get_array_module(x):
    """Return ``numpy`` or ``cupy``, whichever owns ``x``."""
    if cupy is not None:
        return cupy.get_array_module(x)
    return numpy


def is_array(x):
    """True for a NumPy or CuPy ndarray."""
    return isinstance(x, numpy.ndarray) or (cupy is not None and isinstance(x, cupy.ndarray))


def device_of(x):
    """``"cuda"`` for a CuPy array, ``"cpu"`` for anything else."""
    return "cuda" if cupy is not None and isinstance(x, cupy.ndarray) else "cpu"


def check_device(device):
    """Validate a device name; for ``"cuda"`` also check that CuPy and a GPU are there."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cuda":
        if cupy is None:
            raise RuntimeError(f"device 'cuda' needs CuPy, which is not installed: {GPU_INSTALL_HINT}")
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except cupy.cuda.runtime.CUDARuntimeError as err:
            raise RuntimeError(f"device 'cuda' needs an NVIDIA GPU, and CUDA reports none: {err}") from err
        if count == 0:
            raise RuntimeError("device 'cuda' needs an NVIDIA GPU, and CUDA reports none")
    return device


def to_device(x, device):
    """Return ``x`` as an array on ``device`` (no copy when it is already there)."""
    check_device(device)
    if device == "cuda":
        return cupy.asarray(x)
    return to_numpy(x)


def to_numpy(x):
    """Return ``x`` as a NumPy array, copying it off the GPU if needed."""
    if cupy is not None and isinstance(x, cupy.ndarray):
        return cupy.asnumpy(x)
    return numpy.asarray(x)

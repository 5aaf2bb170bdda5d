"""What the kernel modules share."""
from ..backend import GPU_INSTALL_HINT, cupy

if cupy is None:
    raise ImportError(f"minise.gpu needs CuPy, which is not installed: {GPU_INSTALL_HINT}")

C_TYPES = {"float32": "float", "float64": "double"}    # the dtypes our raw CUDA kernels are compiled for

# The elementwise kernels compute what the plain lines compute, operation for operation and in
# their order; with fused multiply-adds switched off (``--fmad=false``) each operation rounds as
# the plain line does. (Reductions may sum in another order than NumPy's: those agree to
# rounding, the rest bit for bit.)
EXACT = ("--fmad=false",)

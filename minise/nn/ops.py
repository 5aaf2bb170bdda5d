"""Array operations the layers share, whose GPU versions (``minise.gpu``) differ from NumPy's."""
from ..backend import get_array_module
from ..execution import accelerated


@accelerated("matmul")
def matmul(a, b, out=None):
    """``a @ b`` (``out``: a C-contiguous buffer for the result). On the GPU: cuBLAS called
    directly, so that a CUDA graph can record it (``minise.gpu.cublas``)."""
    return get_array_module(a).matmul(a, b, out=out)


@accelerated("multiply_sum")
def multiply_sum(subscripts, a, b):
    """``einsum(subscripts, a, b)`` where both operands have the same axes and the output keeps
    some of them, e.g. ``"ncl,ncl->c"``: sum(a * b) over the other axes, with no temporary for
    the product (NumPy's einsum; on the GPU, a reduction kernel of minise's own)."""
    summed_axes(subscripts)
    return get_array_module(a).einsum(subscripts, a, b)


def summed_axes(subscripts):
    """The axes ``multiply_sum(subscripts, ...)`` sums over: "ncl,ncl->c" -> (0, 2)."""
    inputs, _, output = subscripts.partition("->")
    axes, _, other = inputs.partition(",")
    if axes != other or "".join(c for c in axes if c in output) != output:
        raise ValueError(f"multiply_sum: expected subscripts like 'ncl,ncl->c' (the same axes twice, "
                         f"the output's in input order), got {subscripts!r}")
    return tuple(i for i, c in enumerate(axes) if c not in output)

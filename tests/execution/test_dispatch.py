"""The dispatch of plain functions to GPU versions (names, registration, the CPU path), and of
layer methods to their NumPy versions (numpy_version: the fast method for NumPy arrays)."""
import ast
import pathlib

import numpy as np
import pytest

import minise
from minise.backend import cupy
from minise.execution import numpy_version, plain_on_cpu
from minise.execution.dispatch import accelerated, gpu_version
from minise.nn import SEBlock, batchnorm, im2col, loss, ops
from minise.optim import optimizer, sgd

ACCELERATED = [ops.matmul, ops.multiply_sum, im2col.padded_im2col, im2col.col2im,
               batchnorm.batch_norm_train_forward, batchnorm.batch_norm_train_backward,
               sgd.momentum_update, sgd.momentum_update_all, optimizer.zero_arrays, loss.softmax_cross_entropy,
               SEBlock.forward_math, SEBlock.backward_math]


@pytest.mark.parametrize("fn", ACCELERATED, ids=[f.__qualname__ for f in ACCELERATED])
def test_plain_is_always_there_and_named_like_its_function(fn):
    """With CuPy or without: ``.plain`` is the plain function, ``.gpu`` None or its namesake."""
    assert fn.plain.__name__ == fn.__name__ and not hasattr(fn.plain, "plain")
    if cupy is None:
        assert fn.gpu is None
    else:
        assert fn.gpu.__name__ == fn.__name__ and fn.gpu.__module__.startswith("minise.gpu.")


def test_a_registration_under_another_name_is_refused():
    with pytest.raises(ValueError, match=r"accelerated\('im2col'\).*'padded_im2col'"):
        accelerated("im2col")(im2col.padded_im2col.plain)

    def fused(cols, x_shape, kernel_size, stride, padding):
        return NotImplemented
    with pytest.raises(ValueError, match=r"GPU version of 'col2im'.*got 'fused'"):
        gpu_version(im2col.col2im)(fused)
    with pytest.raises(TypeError, match=r"im2col.*not marked @accelerated"):
        gpu_version(im2col.im2col)


def test_numpy_arrays_never_reach_a_gpu_version():
    calls = []

    @accelerated("double")
    def double(x):
        calls.append("plain")
        return x * 2

    def gpu_double(x):
        calls.append("gpu")
        return x + x
    gpu_double.__name__ = "double"
    gpu_version(double)(gpu_double)
    assert double(np.ones(2)).tolist() == [2, 2] and len(double([np.ones(1)])) == 2      # a list: [a, a]
    assert calls == ["plain", "plain"]


def test_the_dispatch_does_not_import_the_gpu_package():
    """No import circle: execution/dispatch.py imports nothing of minise.gpu; minise itself
    imports it, last."""
    root = pathlib.Path(minise.__file__).parent
    tree = ast.parse((root / "execution" / "dispatch.py").read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not any("gpu" in name for name in imported), imported
    assert "gpu" not in {node.module for node in ast.walk(ast.parse((root / "nn" / "ops.py").read_text()))
                         if isinstance(node, ast.ImportFrom)}


class Layer:
    def __init__(self, answer):
        self.answer, self.calls = answer, []

    def fast(self, x):
        self.calls.append("fast")
        return self.answer

    @numpy_version(fast)
    def method(self, x):
        self.calls.append("plain")
        return "plain"


def test_numpy_arrays_run_the_fast_method():
    layer = Layer("fast")
    assert layer.method(np.ones(2)) == "fast" and layer.calls == ["fast"]


def test_not_implemented_and_other_arrays_run_the_plain_method():
    declining = Layer(NotImplemented)
    assert declining.method(np.ones(2)) == "plain" and declining.calls == ["fast", "plain"]
    layer = Layer("fast")
    assert layer.method([1.0, 2.0]) == "plain" and layer.calls == ["plain"]      # not an ndarray (as CuPy's)


def test_plain_on_cpu_runs_the_formula_and_is_undone_after():
    layer = Layer("fast")
    with plain_on_cpu():
        assert layer.method(np.ones(2)) == "plain"
    assert layer.method(np.ones(2)) == "fast"
    assert Layer.method.plain(layer, np.ones(2)) == "plain"

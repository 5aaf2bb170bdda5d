"""numpy_version: the fast method runs for NumPy arrays, the plain one otherwise."""
import numpy as np

from minise.execution import numpy_version, plain_on_cpu


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

"""Every layer and block, and a whole training step, run in chunks on 1, 2, 3 and 8 threads
against the plain path (``whole_batch()``: the whole batch in one call): the same numbers to
rounding."""
import copy

import numpy as np
import pytest

from minise import nn
from minise.execution import no_grad, whole_batch
from minise.gradcheck_cases import standard_cases
from minise.models import se_resnet20
from minise.optim import SGD
from minise.step import TrainStep

CASES = [c for c in standard_cases() if c[0] != "CrossEntropyLoss"]
IDS = [f"{layer}-{config}" for layer, config, *_ in CASES]


def _run(module, x, dout_seed=1):
    """forward, backward with a random dout: (out, dx, {name: grad}, {name: buffer})."""
    out = module(x)
    dx = module.backward(np.random.default_rng(dout_seed).standard_normal(out.shape))
    return (out, dx, {n: p.grad.copy() for n, p in module.named_parameters()},
            {n: np.array(b) for n, b in module.named_buffers()})


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_layer_in_chunks_matches_the_plain_path(num_threads, case, threads):
    _, _, module, x, _ = case
    with whole_batch():
        plain = _run(copy.deepcopy(module).double(), x)
    num_threads(threads)
    chunked = _run(copy.deepcopy(module).double(), x)
    for what, a, b in (("out", plain[0], chunked[0]), ("dx", plain[1], chunked[1])):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12, err_msg=what)
    for kind in (2, 3):
        assert plain[kind].keys() == chunked[kind].keys()
        for name in plain[kind]:
            np.testing.assert_allclose(chunked[kind][name], plain[kind][name], rtol=1e-12, atol=1e-12, err_msg=name)


def _train(threads, num_threads, batches, dtype="float64"):
    """``threads`` None: the plain path."""
    if threads is None:
        with whole_batch():
            return _train(1, num_threads, batches, dtype)
    num_threads(threads)
    nn.manual_seed(0)
    model = se_resnet20(min_hidden=4).to(dtype=dtype)
    step = TrainStep(model, SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4))
    for x, y in batches:
        step(x.astype(dtype), y)
    return model.state_dict(), step.totals()


def _batches(n, count, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((n, 3, 8, 8)), rng.integers(0, 10, n)) for _ in range(count)]


@pytest.mark.parametrize("n", [3, 7], ids=["batch3", "batch7"])
def test_training_steps_in_chunks_match_the_plain_path(num_threads, n):
    """SE-ResNet-20, two SGD steps on 8x8 images: a batch smaller than the thread count, and one
    that leaves a last partial chunk."""
    batches = _batches(n, 2)
    reference, ref_totals = _train(None, num_threads, batches)
    for threads in (1, 2, 3, 8):
        state, totals = _train(threads, num_threads, batches)
        assert totals[1:] == ref_totals[1:]
        assert totals[0] == pytest.approx(ref_totals[0], rel=1e-12)
        for name, a in reference.items():
            np.testing.assert_allclose(state[name], a, rtol=1e-9, atol=1e-12, err_msg=f"{threads} threads {name}")


def test_a_batch_of_one_in_eval_mode_matches_the_plain_path(num_threads):
    """Batch 1 (BatchNorm trains on two values per channel or more, so the model is in eval mode)."""
    x = np.random.default_rng(3).standard_normal((1, 3, 8, 8))
    nn.manual_seed(0)
    model = se_resnet20(min_hidden=4).double().eval()
    with whole_batch():
        plain = _run(copy.deepcopy(model), x)
    for threads in (1, 2, 3, 8):
        num_threads(threads)
        chunked = _run(copy.deepcopy(model), x)
        np.testing.assert_allclose(chunked[0], plain[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(chunked[1], plain[1], rtol=1e-12, atol=1e-12)
        for name in plain[2]:
            np.testing.assert_allclose(chunked[2][name], plain[2][name], rtol=1e-12, atol=1e-13, err_msg=name)


def test_two_runs_with_the_same_thread_count_give_bit_identical_weights(num_threads):
    batches = _batches(6, 3, seed=5)
    first, _ = _train(3, num_threads, batches, dtype="float32")
    second, _ = _train(3, num_threads, batches, dtype="float32")
    for name, a in first.items():
        np.testing.assert_array_equal(second[name], a, err_msg=name)


def test_whole_batch_runs_each_function_once_on_the_whole_batch(num_threads):
    from minise.execution import per_sample
    num_threads(3)
    seen = []
    x = np.zeros((6, 2))
    per_sample(lambda a: seen.append(a.shape[0]) or a, x)
    with whole_batch():
        per_sample(lambda a: seen.append(a.shape[0]) or a, x)
    assert sorted(seen[:-1]) == [1] * 6 and seen[-1] == 6


def test_no_grad_keeps_nothing_for_backward():
    nn.manual_seed(0)
    model = se_resnet20(min_hidden=4).double().eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8))
    expected = model(x)
    for module in model.modules():
        module._forget()
    with no_grad():
        out = model(x)
    np.testing.assert_array_equal(out, expected)
    kept = [(name, field) for name, module in model.named_modules()
            for field in ("_x", "_out") + tuple(module.keeps) if getattr(module, field) is not None]
    assert kept == []
    with pytest.raises(RuntimeError, match="before forward"):
        model.backward(np.ones_like(out))

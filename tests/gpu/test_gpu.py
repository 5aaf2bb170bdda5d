"""The same layers on CuPy: every layer against the NumPy path, GPU gradient checks, device moves.

Run on a GPU machine with ``python -m pytest -m gpu``; skipped with the reason elsewhere.
"""
import copy

import numpy as np
import pytest

from minise import nn
from minise.backend import to_numpy
from minise.gradcheck import gradcheck
from minise.gradcheck_cases import standard_cases
from minise.models import BasicBlock, Bottleneck, SEBottleneck, se_resnet20

pytestmark = pytest.mark.gpu

CASES = list(standard_cases())
IDS = [f"{layer}-{config}" for layer, config, *_ in CASES]


def _on_gpu(module):
    return copy.deepcopy(module).to("cuda")


# float32 sums in a different order on the GPU; through a whole block the rounding reaches ~2e-5
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 1e-4)], ids=["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_layer_on_cupy_matches_numpy(case, dtype, tol):
    import cupy

    layer, _, module, x, args = case
    cpu = copy.deepcopy(module).to(dtype=dtype)
    gpu = _on_gpu(cpu)
    x = x.astype(dtype)
    out_cpu = cpu(x, *args)
    out_gpu = gpu(cupy.asarray(x), *(cupy.asarray(a) for a in args))
    if isinstance(out_cpu, float):                      # the loss
        assert out_gpu == pytest.approx(out_cpu, rel=tol)
        dx_cpu, dx_gpu = cpu.backward(), gpu.backward()
    else:
        assert isinstance(out_gpu, cupy.ndarray) and out_gpu.dtype == out_cpu.dtype
        np.testing.assert_allclose(to_numpy(out_gpu), out_cpu, rtol=tol, atol=tol * np.abs(out_cpu).max())
        dout = np.random.default_rng(1).standard_normal(out_cpu.shape).astype(dtype)
        dx_cpu, dx_gpu = cpu.backward(dout), gpu.backward(cupy.asarray(dout))
    assert isinstance(dx_gpu, cupy.ndarray) and dx_gpu.dtype == dx_cpu.dtype
    scale = max(np.abs(dx_cpu).max(), 1e-30)
    np.testing.assert_allclose(to_numpy(dx_gpu), dx_cpu, rtol=tol, atol=tol * scale, err_msg=f"{layer} dx")
    for (name, p_cpu), (_, p_gpu) in zip(cpu.named_parameters(), gpu.named_parameters()):
        assert isinstance(p_gpu.grad, cupy.ndarray)
        scale = max(np.abs(p_cpu.grad).max(), 1e-30)
        np.testing.assert_allclose(to_numpy(p_gpu.grad), p_cpu.grad, rtol=tol, atol=tol * scale,
                                   err_msg=f"{layer} {name}")
    for (name, b_cpu), (_, b_gpu) in zip(cpu.named_buffers(), gpu.named_buffers()):
        np.testing.assert_allclose(to_numpy(b_gpu), b_cpu, rtol=tol, err_msg=f"{layer} buffer {name}")


@pytest.mark.parametrize("make", [
    lambda: nn.SEBlock(8, 2),
    lambda: BasicBlock(4, 8, stride=2, reduction_ratio=2),
    lambda: BasicBlock(4, 4),
    lambda: Bottleneck(4, 2, stride=2),
    lambda: SEBottleneck(8, 2, 2),
], ids=["SEBlock", "BasicBlock-SE-s2", "BasicBlock", "Bottleneck-s2", "SEBottleneck"])
def test_gradient_check_on_gpu(make):
    import cupy

    nn.manual_seed(0)
    module = make().to("cuda")
    x = cupy.asarray(np.random.default_rng(2).standard_normal((2, _channels(module), 4, 4)))
    result = gradcheck(module, x)
    assert result.passed, str(result)


def _channels(module):
    return module.input_channels if isinstance(module, nn.SEBlock) else module.block[0].in_channels


def test_numpy_input_into_cupy_model_names_the_layer():
    conv = nn.Conv2d(3, 4, 3).to("cuda")
    with pytest.raises(TypeError, match=r"^Conv2d\(.*the input is on cpu but weight is on cuda"):
        conv(np.zeros((1, 3, 5, 5), dtype=np.float32))


def test_cupy_input_into_numpy_model_names_the_layer():
    import cupy

    block = nn.SEBlock(8, 2)
    with pytest.raises(TypeError, match=r"^SEBlock\(.*the input is on cuda"):
        block(cupy.zeros((1, 8, 3, 3), dtype=cupy.float32))


def test_checkpoint_round_trip_cpu_gpu_cpu(tmp_path):
    from minise.checkpoint import load_checkpoint, save_checkpoint
    from minise.optim import SGD

    nn.manual_seed(0)
    model = se_resnet20(min_hidden=4)
    before = model.state_dict()
    model.to("cuda")
    assert model.device == "cuda"
    state = model.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())    # host arrays, portable
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    import cupy
    x = cupy.asarray(np.random.default_rng(0).standard_normal((4, 3, 32, 32), dtype=np.float32))
    loss_fn = nn.CrossEntropyLoss()
    loss_fn(model(x), cupy.arange(4) % 10)
    model.backward(loss_fn.backward())
    opt.step()
    save_checkpoint(tmp_path / "gpu.npz", model.state_dict(), opt.state_dict(), epoch=1)
    model_state, opt_state, meta = load_checkpoint(tmp_path / "gpu.npz")
    cpu_model = se_resnet20(min_hidden=4)
    cpu_model.load_state_dict(model_state)
    for key, value in cpu_model.state_dict().items():
        np.testing.assert_array_equal(value, to_numpy(dict(model._state_arrays())[key]))
    assert any(not np.array_equal(before[k], v) for k, v in cpu_model.state_dict().items())
    model.to("cpu")
    assert model.device == "cpu" and all(isinstance(p.grad, np.ndarray) for p in model.parameters())


def test_training_smoke_on_gpu(tmp_path, cifar_archive):
    from minise.training import TrainConfig, train

    source = str(cifar_archive)
    rows = train(TrainConfig(train_subset=500, test_subset=500, epochs=2, batch_size=50, device="cuda",
                             data=source, data_dir=str(tmp_path / "cache"), out=str(tmp_path / "run")),
                 progress=False)
    assert len(rows) == 2 and rows[1]["train_loss"] < rows[0]["train_loss"]
    assert (tmp_path / "run" / "last.npz").exists()


def test_cuda_graph_replays_the_recorded_work():
    import cupy
    from minise.gpu import CudaGraph

    x, total = cupy.arange(5, dtype=cupy.float32), cupy.zeros(5, dtype=cupy.float32)

    def add():
        total[...] += x * 2            # a temporary (x * 2) from the graph's pool, then an in-place add

    graph = CudaGraph()
    graph.run(add)
    graph.record(add)                  # records, runs nothing
    assert to_numpy(total).tolist() == [0, 2, 4, 6, 8]
    for _ in range(3):
        graph.replay()
    junk = [cupy.ones(1 << 20, dtype=cupy.float32) for _ in range(4)]   # other allocations in between
    graph.replay()
    del junk
    assert to_numpy(total).tolist() == [0, 10, 20, 30, 40]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("device_values", [False, True], ids=["float-hyper", "device-hyper"])
@pytest.mark.parametrize("options", [dict(momentum=0.9, nesterov=True, weight_decay=5e-4),
                                     dict(momentum=0.9, dampening=0.1, weight_decay=1e-3),
                                     dict(momentum=0.5)], ids=["nesterov-wd", "dampening-wd", "plain-momentum"])
def test_fused_sgd_update_matches_the_plain_lines_bit_for_bit(options, device_values, dtype):
    """SGD on CuPy (gpu.sgd.momentum_update after the first step) against SGD on NumPy (the
    plain lines), five steps with the lr and momentum changing: every rounding is the same."""
    import cupy
    from minise.optim import SGD
    from minise.optim.lr_scheduler import OneCycleLR

    rng = np.random.default_rng(1)
    shapes = [(16, 8, 3, 3), (16,), (10, 64)]
    start = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(5)]
    results = []
    for xp in (np, cupy):
        params = [nn.Parameter(xp.asarray(a.copy())) for a in start]
        optimizer = SGD(params, lr=0.1, **options)
        scheduler = OneCycleLR(optimizer, max_lr=0.1, total_steps=6, pct_start=0.3)
        if device_values:
            optimizer.keep_on_device(xp, np.dtype(dtype))
        for step_grads in grads:
            for p, g in zip(params, step_grads):
                p.grad[...] = xp.asarray(g)
            if device_values:
                optimizer.sync_device_values()
            optimizer.step()
            scheduler.step()
        results.append([to_numpy(p.data) for p in params] +
                       [to_numpy(optimizer.state[p]["momentum_buffer"]) for p in params])
    for cpu, gpu in zip(*results):
        assert cpu.dtype == gpu.dtype and np.array_equal(cpu, gpu)


def _train_steps(graph, batches):
    from minise.optim import SGD
    from minise.optim.lr_scheduler import OneCycleLR
    from minise.step import TrainStep

    nn.manual_seed(0)
    model = se_resnet20(min_hidden=4).to("cuda")
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scheduler = OneCycleLR(optimizer, max_lr=0.1, total_steps=len(batches), pct_start=0.3)
    step = TrainStep(model, optimizer, graph=graph)
    rng = np.random.default_rng(5)
    for i, (x, y) in enumerate(batches):
        step(x, y)
        scheduler.step()
        if i == 3:      # an evaluation in between, at another batch size, as at the end of an epoch
            model.eval()
            model(cupy_array(rng.standard_normal((7, 3, 32, 32)).astype(np.float32)))
            model.train()
    return model, step.totals()


def cupy_array(a):
    import cupy
    return cupy.asarray(a)


def test_graph_step_matches_eager_step_bit_for_bit():
    """Eight steps (two eager, one recorded, five replays) with lr and momentum changing every step."""
    rng = np.random.default_rng(0)
    batches = [(cupy_array(rng.standard_normal((32, 3, 32, 32)).astype(np.float32)),
                cupy_array(rng.integers(0, 10, 32))) for _ in range(8)]
    eager, eager_totals = _train_steps(False, batches)
    graphed, graph_totals = _train_steps(True, batches)
    assert graph_totals == eager_totals
    for (name, a), (_, b) in zip(eager.state_dict().items(), graphed.state_dict().items()):
        assert np.array_equal(a, b), name


def test_training_with_and_without_graph_agree(tmp_path, cifar_archive):
    from minise.training import TrainConfig, train

    source = str(cifar_archive)
    runs = [train(TrainConfig(train_subset=500, test_subset=500, epochs=2, batch_size=50, device="cuda",
                              cuda_graph=graph, data=source, data_dir=str(tmp_path / "cache"),
                              out=str(tmp_path / f"run-{graph}")), progress=False)
            for graph in (False, True)]
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert [r[key] for r in runs[0]] == [r[key] for r in runs[1]], key


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("a_transposed, b_transposed", [(False, False), (True, False), (False, True), (True, True)])
def test_matmul_through_our_cublas_handle(dtype, a_transposed, b_transposed):
    """Inside a CudaGraph, matmul calls cuBLAS itself: C- and F-ordered operands, eager and replayed."""
    import cupy
    from minise.gpu import CudaGraph
    from minise.nn.ops import matmul

    rng = np.random.default_rng(0)
    draw = lambda shape, t: cupy.asarray(rng.standard_normal(shape[::-1] if t else shape).astype(dtype))
    a, b = draw((5, 7), a_transposed), draw((7, 3), b_transposed)
    a, b = (a.T if a_transposed else a), (b.T if b_transposed else b)
    graph = CudaGraph()
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(to_numpy(graph.run(lambda: matmul(a, b))), to_numpy(a) @ to_numpy(b), rtol=tol)
    out = cupy.full((5, 3), np.nan, dtype=dtype)
    graph.record(lambda: matmul(a, b, out=out))
    a[...] = draw(a.shape, False)                      # the replay must read the new values
    graph.replay()
    np.testing.assert_allclose(to_numpy(out), to_numpy(a) @ to_numpy(b), rtol=tol)


@pytest.mark.parametrize("subscripts, shape", [("ncl,ncl->c", (4, 3, 5)), ("nchw,nchw->nc", (2, 3, 4, 5))])
def test_multiply_sum_on_cupy_matches_einsum(subscripts, shape):
    import cupy
    from minise.nn.ops import multiply_sum

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    np.testing.assert_allclose(to_numpy(multiply_sum(subscripts, cupy.asarray(a), cupy.asarray(b))),
                               np.einsum(subscripts, a, b), rtol=1e-12)


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 1e-5)], ids=["float64", "float32"])
@pytest.mark.parametrize("make, shape", [(lambda: nn.BatchNorm2d(6), (5, 6, 4, 3)),
                                         (lambda: nn.BatchNorm2d(6, momentum=None), (5, 6, 4, 3)),
                                         (lambda: nn.BatchNorm1d(6, momentum=0.3), (7, 6))],
                         ids=["2d", "2d-cumulative", "1d"])
def test_fused_batch_norm_matches_the_plain_lines(make, shape, dtype, tol):
    """BatchNorm training on CuPy (gpu.batchnorm) against NumPy (the plain lines):
    three steps, so the running statistics and the gradients accumulate, then one eval pass."""
    import cupy

    rng = np.random.default_rng(2)
    cpu = make().to(dtype=dtype)
    cpu.weight.data[...] = rng.uniform(0.5, 1.5, cpu.num_features)
    cpu.bias.data[...] = rng.standard_normal(cpu.num_features)
    gpu = _on_gpu(cpu)
    for step in range(3):
        x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
        dout = rng.standard_normal(shape).astype(dtype)
        out_cpu, out_gpu = cpu(x), gpu(cupy.asarray(x))
        np.testing.assert_allclose(to_numpy(out_gpu), out_cpu, rtol=tol, atol=tol, err_msg=f"out, step {step}")
        dx_cpu, dx_gpu = cpu.backward(dout), gpu.backward(cupy.asarray(dout))
        np.testing.assert_allclose(to_numpy(dx_gpu), dx_cpu, rtol=tol, atol=tol, err_msg=f"dx, step {step}")
    state_gpu = gpu.state_dict()                        # parameters and running statistics
    for name, a in cpu.state_dict().items():
        np.testing.assert_allclose(state_gpu[name], a, rtol=tol, err_msg=name)
    for (name, a), (_, b) in zip(cpu.named_parameters(), gpu.named_parameters()):
        np.testing.assert_allclose(to_numpy(b.grad), a.grad, rtol=tol, atol=tol, err_msg=f"{name}.grad")
    cpu.eval(), gpu.eval()
    np.testing.assert_allclose(to_numpy(gpu(cupy.asarray(x))), cpu(x), rtol=tol, atol=tol, err_msg="eval")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape, kernel_size, stride, padding", [
    ((2, 3, 5, 7), (3, 3), (1, 1), (1, 1)), ((2, 3, 8, 8), (3, 3), (2, 2), (1, 1)),
    ((3, 2, 6, 5), (1, 1), (2, 2), (0, 0)), ((1, 4, 7, 6), (2, 3), (1, 2), (2, 1)),
    ((2, 16, 32, 32), (3, 3), (1, 1), (2, 2))])
def test_fused_im2col_and_col2im_match_the_plain_functions_bit_for_bit(shape, kernel_size, stride, padding, dtype):
    """gpu.conv's im2col / col2im against nn.im2col's pad_input + im2col and plain col2im,
    all on CuPy: the same copies and the same sums in the same order."""
    import cupy
    from minise.gpu.conv import col2im as fused_col2im, padded_im2col as fused_im2col
    from minise.nn.im2col import col2im, im2col, pad_input

    rng = np.random.default_rng(3)
    x = cupy.asarray(rng.standard_normal(shape).astype(dtype))
    plain = im2col(pad_input(x, padding), kernel_size, stride)
    fused = cupy.full_like(plain, np.nan)
    assert fused_im2col(x, kernel_size, stride, padding, fused) is fused
    assert cupy.array_equal(fused, plain)
    cols = cupy.asarray(rng.standard_normal(plain.shape).astype(dtype))
    dx = fused_col2im(cols, shape, kernel_size, stride, padding)
    assert dx.shape == shape and dx.dtype == cols.dtype
    assert cupy.array_equal(dx, col2im.plain(cols, shape, kernel_size, stride, padding))


def test_fused_im2col_and_col2im_refuse_a_column_matrix_of_another_shape():
    """The kernels index by the geometry alone; a wrong buffer must be an error, not a write past its end."""
    import cupy
    from minise.gpu.conv import col2im as fused_col2im, padded_im2col as fused_im2col

    x = cupy.zeros((2, 3, 5, 5), dtype=cupy.float32)
    with pytest.raises(ValueError, match=r"out must be a C-contiguous float32 column matrix of shape \(27, 50\), "
                                         r"got float32 \(27, 49\)"):
        fused_im2col(x, (3, 3), (1, 1), (1, 1), cupy.empty((27, 49), dtype=cupy.float32))
    with pytest.raises(ValueError, match=r"got float64 \(27, 50\)"):
        fused_im2col(x, (3, 3), (1, 1), (1, 1), cupy.empty((27, 50), dtype=cupy.float64))
    with pytest.raises(ValueError, match=r"not C-contiguous"):
        fused_col2im(cupy.empty((50, 27), dtype=cupy.float32).T, x.shape, (3, 3), (1, 1), (1, 1))


def test_a_gpu_version_that_does_not_apply_falls_back_to_the_plain_lines():
    """The one calling convention: NotImplemented from a GPU version runs the plain function."""
    import cupy
    from minise.execution.dispatch import accelerated, gpu_version

    calls = []

    @accelerated("twice")
    def twice(x):
        calls.append("plain")
        return x * 2

    def gpu_twice(x):
        calls.append("gpu")
        return NotImplemented if x.dtype == cupy.float16 else x + x
    gpu_twice.__name__ = "twice"
    gpu_version(twice)(gpu_twice)

    assert twice(cupy.ones(3, dtype=cupy.float32)).tolist() == [2, 2, 2] and calls == ["gpu"]
    assert twice(cupy.ones(3, dtype=cupy.float16)).tolist() == [2, 2, 2] and calls[1:] == ["gpu", "plain"]
    assert twice(np.ones(3)).tolist() == [2, 2, 2] and calls[3:] == ["plain"]


def test_no_module_outside_the_switch_and_the_gpu_package_imports_cupy():
    import pathlib
    import re
    import minise

    root = pathlib.Path(minise.__file__).parent
    direct = re.compile(r"^\s*(import cupy|from cupy\b)", re.MULTILINE)
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if direct.search(p.read_text()) and p.parts[-2] != "gpu" and p.name != "backend.py"]
    assert offenders == []

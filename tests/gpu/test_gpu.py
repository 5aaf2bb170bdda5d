"""The same layers on CuPy: every layer against the NumPy path, GPU gradient checks, device moves.

Run on a GPU machine with ``python -m pytest -m gpu``; skipped with the reason elsewhere.
"""
import copy
import os

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


def test_training_smoke_on_gpu(tmp_path):
    from minise.train import TrainConfig, train

    source = os.environ.get("MINISE_DATA")
    if not source or not os.path.exists(source):
        pytest.skip("MINISE_DATA does not name the CIFAR-10 archive")
    rows = train(TrainConfig(train_subset=500, test_subset=500, epochs=2, batch_size=50, device="cuda",
                             data=source, data_dir=str(tmp_path / "cache"), out=str(tmp_path / "run")),
                 progress=False)
    assert len(rows) == 2 and rows[1]["train_loss"] < rows[0]["train_loss"]
    assert (tmp_path / "run" / "last.npz").exists()

"""Checkpoints: the round trip, atomic writes, and clear errors for files that are not checkpoints."""
import io
import json
import os
import zipfile

import numpy as np
import pytest

from minise import nn
from minise.checkpoint import FORMAT, CheckpointError, load_checkpoint, save_checkpoint
from minise.optim import SGD
from minise.training.train_command import main


def small_model(seed=0):
    nn.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))


def trained(steps=2, seed=0):
    """A small model and a nesterov SGD after ``steps`` steps: momentum buffers and BN statistics set."""
    model = small_model(seed)
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        step(model, optimizer, rng)
    return model, optimizer


def step(model, optimizer, rng):
    x = rng.standard_normal((8, 5)).astype(np.float32)
    optimizer.zero_grad()
    out = model(x)
    model.backward(rng.standard_normal(out.shape).astype(np.float32))
    optimizer.step()


META = dict(epoch=3, best_acc=0.625, config={"model": "se_resnet20", "lr": 0.1, "data": None},
            metrics=[{"epoch": 1, "lr": 0.004, "train_loss": 2.25}], scheduler={"last_epoch": 7, "base_lrs": [0.1]})


def assert_same_state(a, b):
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and np.array_equal(a[k], b[k]), k


def test_round_trip(tmp_path):
    model, optimizer = trained()
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, model.state_dict(), optimizer.state_dict(), **META)
    model_state, optim_state, meta = load_checkpoint(path)

    assert_same_state(model_state, model.state_dict())
    assert model_state["1.num_batches_tracked"] == 2 and model_state["1.num_batches_tracked"].dtype == np.int64
    want = optimizer.state_dict()
    assert sorted(optim_state["state"]) == sorted(want["state"]) == [0, 1, 2, 3, 4, 5]
    for i, state in want["state"].items():
        assert set(optim_state["state"][i]) == {"momentum_buffer"}
        assert_same_state(optim_state["state"][i], state)
        assert np.any(state["momentum_buffer"] != 0)
    assert optim_state["param_groups"] == want["param_groups"]
    assert meta == {"format": FORMAT, **META}

    # a fresh model and optimiser loaded from the file continue exactly like the originals
    model2, optimizer2 = trained(steps=0, seed=1)
    model2.load_state_dict(model_state)
    optimizer2.load_state_dict(optim_state)
    step(model, optimizer, np.random.default_rng(5))
    step(model2, optimizer2, np.random.default_rng(5))
    assert_same_state(model2.state_dict(), model.state_dict())


def test_without_optimizer(tmp_path):
    model = small_model()
    save_checkpoint(str(tmp_path / "weights.npz"), model.state_dict(), epoch=0)
    model_state, optim_state, meta = load_checkpoint(str(tmp_path / "weights.npz"))
    assert optim_state is None and meta == {"format": FORMAT, "epoch": 0}
    assert_same_state(model_state, model.state_dict())


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path):
    folder = tmp_path / "new" / "folder"                       # created on demand
    path = folder / "last.npz"
    first, _ = trained(steps=1)
    second, _ = trained(steps=3)
    save_checkpoint(path, first.state_dict(), epoch=1)
    save_checkpoint(path, second.state_dict(), epoch=2)         # replaces the first
    assert os.listdir(folder) == ["last.npz"]
    assert os.stat(path).st_mode & 0o777 == 0o644, "a checkpoint must be readable by others, as a plain file is"
    model_state, _, meta = load_checkpoint(path)
    assert meta["epoch"] == 2
    assert_same_state(model_state, second.state_dict())


@pytest.mark.parametrize("error", [OSError("No space left on device"), KeyboardInterrupt()])
def test_failure_mid_write_keeps_the_old_file(tmp_path, monkeypatch, error):
    path = tmp_path / "last.npz"
    old, _ = trained(steps=1)
    save_checkpoint(path, old.state_dict(), epoch=1)
    before = path.read_bytes()

    def failing_savez(file, *args, **kwargs):
        file.write(before[: len(before) // 3])       # part of a file, then the failure
        raise error

    monkeypatch.setattr(np, "savez", failing_savez)
    new, _ = trained(steps=3)
    with pytest.raises(type(error)):
        save_checkpoint(path, new.state_dict(), epoch=2)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["last.npz"], "a temporary file was left behind"
    model_state, _, meta = load_checkpoint(path)
    assert meta["epoch"] == 1
    assert_same_state(model_state, old.state_dict())


@pytest.fixture
def good_checkpoint(tmp_path):
    model, optimizer = trained()
    path = tmp_path / "good.npz"
    save_checkpoint(path, model.state_dict(), optimizer.state_dict(), **META)
    return path


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.02])
def test_truncated_file(good_checkpoint, tmp_path, fraction):
    data = good_checkpoint.read_bytes()
    path = tmp_path / "truncated.npz"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match="truncated") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="truncated or not an .npz file"):
        load_checkpoint(path)


def test_another_kind_of_file(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,lr,train_loss\n1,0.1,2.3\n")
    with pytest.raises(CheckpointError, match="truncated or not an .npz file") as info:
        load_checkpoint(path)
    assert "pickle" not in str(info.value)       # not numpy's advice to load it as a pickle


def test_corrupted_bytes_inside(good_checkpoint, tmp_path):
    """The zip directory is intact but an array's bytes are not: the CRC check catches it."""
    data = bytearray(good_checkpoint.read_bytes())
    marker = data.find(b"model/0.weight.npy")
    assert marker > 0
    start = marker + 200                      # inside the stored array, past its local header
    data[start:start + 16] = bytes(255 - b for b in data[start:start + 16])
    path = tmp_path / "corrupt.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_foreign_npz(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, weight=np.zeros(3), bias=np.ones(2))
    with pytest.raises(CheckpointError, match="not a minise checkpoint"):
        load_checkpoint(path)


def test_wrong_format_and_unreadable_header(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, __meta__=np.array(json.dumps({"format": "someone-else-2"})))
    with pytest.raises(CheckpointError, match="someone-else-2"):
        load_checkpoint(path)
    np.savez(path, __meta__=np.array("{not json"))
    with pytest.raises(CheckpointError, match="unreadable header"):
        load_checkpoint(path)


def test_pickled_npz_is_refused(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, __meta__=np.array(json.dumps({"format": FORMAT})), evil=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.npz"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match="not an .npz file"):
        load_checkpoint(path)


def test_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere.npz")
    assert issubclass(CheckpointError, ValueError)


def test_resume_from_a_corrupt_checkpoint(good_checkpoint, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    data = good_checkpoint.read_bytes()
    (run / "last.npz").write_bytes(data[: len(data) // 2])
    assert main(["--resume", str(run), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("minise train: error: checkpoint")
    assert str(run / "last.npz") in captured.err and "truncated" in captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    assert os.listdir(run) == ["last.npz"]       # nothing else written


def test_resume_without_a_checkpoint(tmp_path, capsys):
    assert main(["--resume", str(tmp_path / "never-ran"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "minise train: error:" in err and "does not exist" in err and "last.npz" in err
    assert "--overwrite" in err and "first epoch" in err          # and how to start over


def test_headers_are_checked_before_any_array_is_read(good_checkpoint):
    """An entry the expected shapes lack, or of another shape, is refused naming it; those that
    match load."""
    model_state, _, _ = load_checkpoint(good_checkpoint)
    shapes = {f"model/{k}": v.shape for k, v in model_state.items()}
    with pytest.raises(CheckpointError, match=r"holds \d+ entries that its model does not have \(optim/"):
        load_checkpoint(good_checkpoint, lambda meta: shapes)
    wrong = {**shapes, "model/0.weight": (6, 4)}
    optim = {f"optim/{i}/momentum_buffer": model_state[k].shape for i, k in
             enumerate(["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"])}
    with pytest.raises(CheckpointError, match=r"model/0.weight is float32\(6, 5\), but its model needs shape \(6, 4\)"):
        load_checkpoint(good_checkpoint, lambda meta: {**wrong, **optim})
    assert load_checkpoint(good_checkpoint, lambda meta: {**shapes, **optim})[0].keys() == model_state.keys()


def test_an_entry_declaring_more_than_it_stores_is_refused(tmp_path):
    """A header that claims a larger array than the zip member holds is refused from the header."""
    path = tmp_path / "lying.npz"
    save_checkpoint(path, {"w": np.zeros(4, np.float32)}, **META)
    with zipfile.ZipFile(path, "a") as zf:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (1 << 28,)})
        zf.writestr("model/big.npy", header.getvalue() + bytes(16))
    with pytest.raises(CheckpointError, match=r"model/big.npy declares float32\(268435456,\), 1,073,741,824 bytes"):
        load_checkpoint(path)

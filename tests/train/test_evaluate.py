"""``minise evaluate``: accuracy per class, the confusion matrix, and the PyTorch export of a
checkpoint from the smoke run."""
import json
import os
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from minise.checkpoint import load_checkpoint
from minise.data import CIFAR10_CLASSES
from minise.models import cifar_resnet
from minise.training import build_model, prepare_data
from minise.training.evaluate_command import confusion_matrix, main
from minise.twins import torch_twin

torch.set_num_threads(1)

SUMMARY = re.compile(r"^last\.npz \(epoch (\d+), (\w+)\): test accuracy ([\d.]+)%  loss ([\d.]+)  on (\d+) images$")


@pytest.fixture
def checkpoint(smoke_run, tmp_path):
    """A copy of the smoke run's last.npz in a folder of its own (evaluate writes next to it)."""
    path = tmp_path / "ckpt" / "last.npz"
    path.parent.mkdir()
    shutil.copy(smoke_run.out / "last.npz", path)
    return path


def test_evaluate_reports_and_exports_pt(smoke_run, checkpoint, tmp_path, capsys, monkeypatch):
    export = tmp_path / "w.pt"
    monkeypatch.chdir(tmp_path)             # a checkpoint outside a run folder: the plot goes here
    assert main([str(checkpoint), "--export", str(export), "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()

    m = SUMMARY.match(lines[0])
    assert m, lines[0]
    last = smoke_run.rows[-1]
    assert (int(m.group(1)), m.group(2), int(m.group(5))) == (2, "se_resnet20", 200)
    # the same 200 test images as the run's last evaluation: the same accuracy and loss
    assert m.group(3) == f"{100 * last['test_acc']:.2f}"
    assert float(m.group(4)) == pytest.approx(last["test_loss"], abs=1e-4)

    per_class = lines[1:11]
    assert [line.split()[0] for line in per_class] == list(CIFAR10_CLASSES)
    rates = [float(line.split()[1].rstrip("%")) for line in per_class]
    assert all(0 <= r <= 100 for r in rates)
    # 20 test images per class: every rate is a multiple of 5%, and their mean is the accuracy
    assert all(r % 5 == 0 for r in rates)
    assert np.mean(rates) == pytest.approx(100 * last["test_acc"])

    confusion = tmp_path / "confusion.png"
    assert lines[11] == "confusion matrix: ./confusion.png" and not (checkpoint.parent / "confusion.png").exists()
    assert confusion.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(confusion) as image:
        image.verify()
    assert lines[12] == f"PyTorch state_dict: {export}" and len(lines) == 13

    # the export loads, strictly, into a PyTorch twin built from its own description, which computes
    # minise's logits on images normalised with its own mean and std
    saved = torch.load(export, weights_only=True)
    exported = saved["state_dict"]
    model_state, _, meta = load_checkpoint(checkpoint)
    assert saved["normalization"] == meta["normalization"] and len(saved["normalization"]["mean"]) == 3
    assert saved["classes"] == list(CIFAR10_CLASSES)
    assert torch_twin(cifar_resnet(**saved["architecture"])).load_state_dict(exported, strict=True)
    assert list(exported) == list(model_state)
    model = build_model(smoke_run.config)
    model.load_state_dict(model_state)
    twin = torch_twin(build_model(smoke_run.config))
    result = twin.load_state_dict(exported, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for key, value in twin.state_dict().items():
        assert np.array_equal(value.numpy(), model_state[key]), key

    x_test = prepare_data(smoke_run.config, progress=False).x_test
    x = x_test[::10]
    model.eval()
    twin.eval()
    with torch.no_grad():
        want = twin(torch.from_numpy(x)).numpy()
    got = model(x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95


def test_evaluate_exports_npz(smoke_run, checkpoint, tmp_path, capsys):
    export, plot = tmp_path / "weights" / "w.npz", tmp_path / "plots" / "confusion-matrix.png"   # folders made
    assert main([str(checkpoint), "--export", str(export), "--confusion", str(plot)]) == 0
    out = capsys.readouterr().out
    assert f"confusion matrix: {plot}" in out and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (checkpoint.parent / "confusion.png").exists()
    model_state, _, _ = load_checkpoint(checkpoint)
    with np.load(export, allow_pickle=False) as npz:
        assert list(npz.files) == list(model_state)
        for key in model_state:
            assert npz[key].dtype == model_state[key].dtype and np.array_equal(npz[key], model_state[key]), key
    assert list(model_state) == list(build_model(smoke_run.config).state_dict())


def test_an_unwritable_plot_path_is_a_clear_error(checkpoint, tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    plot = tmp_path / "a-file" / "confusion.png"                  # its "folder" is a file
    assert main([str(checkpoint), "--confusion", str(plot)]) == 1
    captured = capsys.readouterr()
    assert f"minise evaluate: error: cannot write the confusion matrix to {plot}" in captured.err
    assert captured.out == "" and "Traceback" not in captured.err       # refused before the evaluation


def test_bad_export_suffix_is_a_clear_error(checkpoint, tmp_path, capsys):
    """A typo in --export gives an error message and exit status, not a traceback after the
    whole evaluation has run."""
    try:
        rc = main([str(checkpoint), "--export", str(tmp_path / "w.pth")])
    except SystemExit as exc:          # parser.error is a fine way to refuse it
        rc = exc.code
    assert rc in (1, 2)
    assert ".pt or .npz" in capsys.readouterr().err
    assert not (tmp_path / "w.pth").exists()


def test_confusion_matrix_known_example():
    y_true = [0, 0, 1, 2, 2, 2, 1]
    y_pred = [0, 1, 1, 2, 0, 2, 1]
    counts = confusion_matrix(y_true, y_pred, 4)
    assert counts.tolist() == [[1, 1, 0, 0],
                               [0, 2, 0, 0],
                               [1, 0, 2, 0],
                               [0, 0, 0, 0]]
    assert confusion_matrix(np.array(y_pred), np.array(y_true), 4).tolist() == counts.T.tolist()


def test_confusion_matrix_against_a_loop():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 10, 500), rng.integers(0, 10, 500)
    want = np.zeros((10, 10), int)
    for t, p in zip(y_true, y_pred):
        want[t, p] += 1
    got = confusion_matrix(y_true, y_pred, 10)
    assert got.shape == (10, 10) and np.array_equal(got, want) and got.sum() == 500


def test_corrupt_checkpoint(checkpoint, tmp_path, capsys):
    data = checkpoint.read_bytes()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(data[: len(data) // 2])
    assert main([str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("minise evaluate: error: checkpoint") and "truncated" in captured.err
    assert captured.out == "" and not (tmp_path / "confusion.png").exists()


def test_missing_checkpoint(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere.npz")]) == 1
    assert "does not exist" in capsys.readouterr().err


# ---- checkpoints that cannot be evaluated: one line, before the evaluation ------------------------

def run_cli(*args, cwd, prelude=""):
    """``minise`` in a real subprocess; ``prelude``: Python run first (e.g. hiding torch)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root), MINISE_NUM_THREADS="1", OMP_NUM_THREADS="1")
    code = f"import sys\n{prelude}\nfrom minise.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def rewritten(checkpoint, path, model=None, **meta_changes):
    """A copy of ``checkpoint`` with its meta changed (None deletes a key) or other weights."""
    from minise.checkpoint import save_checkpoint

    model_state, optim_state, meta = load_checkpoint(checkpoint)
    meta = {**meta, **meta_changes}
    meta = {k: v for k, v in meta.items() if v is not None}
    save_checkpoint(path, model or model_state, optim_state, **meta)
    return path


@pytest.mark.parametrize("change, message", [
    (lambda meta: {"config": {**meta["config"], "warmup_epochs": 5}}, "settings ['warmup_epochs'] that minise"),
    (lambda meta: {"config": json.dumps(meta["config"])}, "its 'config' is str"),
    (lambda meta: {"epoch": None}, "no 'epoch'"),
    (lambda meta: {"config": {**meta["config"], "model": "resnet21"}}, "unknown model 'resnet21'"),
])
def test_bad_settings_in_a_checkpoint(checkpoint, tmp_path, change, message):
    bad = rewritten(checkpoint, tmp_path / "bad.npz", **change(load_checkpoint(checkpoint)[2]))
    proc = run_cli("evaluate", bad, cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout == "", proc.stdout
    assert proc.stderr.startswith(f"minise evaluate: error: checkpoint '{bad}' ") and message in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "confusion.png").exists()


def test_non_finite_weights(checkpoint, tmp_path):
    model_state = load_checkpoint(checkpoint)[0]
    model_state["layer2.0.block.0.weight"] = model_state["layer2.0.block.0.weight"] * np.float32("nan")
    bad = rewritten(checkpoint, tmp_path / "nan.npz", model=model_state)
    proc = run_cli("evaluate", bad, cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "non-finite" in proc.stderr and "layer2.0.block.0.weight" in proc.stderr and proc.stderr.count("\n") == 1


def test_export_pt_without_torch_is_refused_before_evaluating(checkpoint, tmp_path):
    proc = run_cli("evaluate", checkpoint, "--export", tmp_path / "w.pt", cwd=tmp_path,
                   prelude="sys.modules['torch'] = None   # import torch raises ImportError")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("minise evaluate: error: --export to .pt needs torch") and ".npz" in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "w.pt").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_read_only_folder_is_refused_before_evaluating(checkpoint, tmp_path, capsys):
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    assert main([str(checkpoint), "--confusion", str(folder / "c.png"), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "cannot write the confusion matrix" in captured.err and "Permission denied" in captured.err
    assert captured.out == ""


def test_a_gpu_checkpoint_is_evaluated_on_the_cpu_where_no_gpu_is(smoke_run, checkpoint, tmp_path):
    """A run trained with --device cuda: without CuPy or a GPU the CPU evaluates it, and says so;
    the plot goes to the working folder, not beside the shipped weights."""
    from minise.backend import check_device

    try:
        check_device("cuda")
    except RuntimeError:                       # this test is about a machine that cannot use 'cuda'
        pass
    else:
        pytest.skip("this machine can use cuda")
    shipped = tmp_path / "results"
    shipped.mkdir()
    meta = load_checkpoint(checkpoint)[2]
    gpu = rewritten(checkpoint, shipped / "gpu.npz", config={**meta["config"], "device": "cuda"})
    work = tmp_path / "work"
    work.mkdir()
    proc = run_cli("evaluate", gpu, "--no-progress", cwd=work)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("device: cpu (the checkpoint was trained on cuda") and "CuPy" in lines[0]
    assert f"test accuracy {100 * smoke_run.rows[-1]['test_acc']:.2f}%" in lines[1]
    assert (work / "confusion.png").exists() and list(shipped.iterdir()) == [gpu]


def test_evaluate_shows_progress(checkpoint, tmp_path):
    proc = run_cli("evaluate", checkpoint, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"evaluating: +\d+%.*\| ?\d+/\d+ ", proc.stderr.replace("\r", "\n")), proc.stderr


def test_a_run_folder_keeps_its_plot(smoke_run, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(smoke_run.out, run)
    monkeypatch.chdir(tmp_path)
    assert main([str(run / "best.npz"), "--no-progress"]) == 0
    assert f"confusion matrix: {run / 'confusion.png'}" in capsys.readouterr().out


# ---- minise.load_model ---------------------------------------------------------------------------

def test_load_model_rebuilds_the_trained_model(smoke_run):
    import minise
    from minise.models import se_resnet20

    model = minise.load_model(smoke_run.out / "last.npz")
    assert not model.training and model.layer1[0].se_block.hidden == 4        # the run's floor: max(16 // 16, 4)
    with pytest.raises(ValueError, match="shape"):
        se_resnet20().load_state_dict(load_checkpoint(smoke_run.out / "last.npz")[0])   # the paper's C // r: 1
    data = prepare_data(smoke_run.config, progress=False)
    logits = model(data.x_test)
    assert float((logits.argmax(1) == data.y_test).mean()) == smoke_run.rows[-1]["test_acc"]


def test_evaluation_keeps_no_activations_for_a_backward_pass():
    """loop.evaluate runs under no_grad: afterwards no layer holds an input, output or BatchNorm
    statistics, and the model is back in training mode with the same numbers as a plain pass."""
    from minise.models import se_resnet20
    from minise.training.loop import evaluate

    model = se_resnet20(min_hidden=4).double()
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 3, 8, 8)), rng.integers(0, 10, 6)
    loss, accuracy, predictions = evaluate(model, x, y, batch_size=4)
    kept = [name for name, module in model.named_modules()
            for field in ("_x", "_out") + tuple(module.keeps) if getattr(module, field) is not None]
    assert kept == [] and model.training
    model.eval()
    np.testing.assert_array_equal(predictions, model(x).argmax(axis=1))

"""``minise train`` on real CIFAR-10 images: a short run and its files, the command line, resuming
bit for bit after a Ctrl-C, stopping on a non-finite loss, and bad settings."""
import csv
import dataclasses
import json
import math
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from minise.checkpoint import load_checkpoint
from minise.distributed.launch import threads_per_worker
from minise.training import TrainConfig, TrainingError, build_model, evaluate, prepare_data, train
from minise.training.run_folder import METRICS
from minise.training.train_command import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EPOCH_LINE = re.compile(r"^epoch\s+(\d+)/(\d+)\s+lr ([\d.]+)\s+train loss ([\d.]+) acc\s*([\d.]+)%\s+"
                        r"test loss ([\d.]+) acc\s*([\d.]+)%\s+[\d.]+s$")


def points_to_missing_checkpoint(message):
    """Whether ``message`` sends the user to last.npz without saying that there is none."""
    says_none = re.search(r"\bno (checkpoint|last\.npz)|not (been )?(written|saved)|does not exist|nothing (was )?"
                          r"(saved|written)", message, re.I)
    return "last.npz" in message and not says_none


def read_metrics(folder):
    with open(folder / "metrics.csv", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, [dict(zip(header, row)) for row in reader]


def recorded(config):
    """``config`` as config.json and the checkpoints record it: one worker, its thread count made explicit."""
    return dataclasses.replace(config, workers=1, threads=threads_per_worker(1))


def epoch_lines(stdout):
    return [line for line in stdout.splitlines() if line.startswith("epoch")]


def without_seconds(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def as_numbers(rows):
    return [{k: float(v) for k, v in row.items()} for row in rows]


# ---- a short run ---------------------------------------------------------------------------------

def test_smoke_run_learns(smoke_run):
    rows = smoke_run.rows
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(math.isfinite(r[k]) for r in rows for k in METRICS)
    # epoch 1 starts near chance (ln 10 = 2.303); a fixed seed makes the run reproducible
    assert abs(rows[0]["train_loss"] - math.log(10)) < 0.4
    assert rows[1]["train_loss"] < rows[0]["train_loss"] - 0.05
    assert rows[1]["train_acc"] > 0.1
    # the one-cycle schedule starts at max_lr / 25 and never exceeds max_lr
    assert rows[0]["lr"] == pytest.approx(smoke_run.config.lr / 25)
    assert all(0 < r["lr"] <= smoke_run.config.lr for r in rows)
    seen = 300 // 32 * 32          # the last partial batch is dropped
    for r in rows:                 # accuracies are counts over the images seen
        assert r["train_acc"] * seen == pytest.approx(round(r["train_acc"] * seen))
        assert r["test_acc"] * 200 == pytest.approx(round(r["test_acc"] * 200))


def test_smoke_run_files(smoke_run):
    out = smoke_run.out
    assert sorted(p.name for p in out.iterdir()) == ["best.npz", "config.json", "curves.png", "last.npz",
                                                      "metrics.csv"]
    header, rows = read_metrics(out)
    assert header == ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds"]
    assert as_numbers(rows) == [{k: float(v) for k, v in r.items()} for r in smoke_run.rows]

    data = (out / "curves.png").read_bytes()
    assert data[:8] == PNG_MAGIC
    with Image.open(out / "curves.png") as image:
        image.verify()
    with Image.open(out / "curves.png") as image:
        assert image.format == "PNG" and image.size[0] > 200 and image.size[1] > 100

    with open(out / "config.json") as f:
        assert TrainConfig(**json.load(f)) == recorded(smoke_run.config)


def test_smoke_run_prints_one_line_per_epoch(smoke_run):
    first, *lines, last = smoke_run.stdout.splitlines()
    assert len(lines) == 2
    assert first.startswith(f"training se_resnet20 into {smoke_run.out}: 2 epochs, 300 training and 200 test images")
    assert first.endswith(f"workers: 1, threads per worker: {threads_per_worker(1)}")
    best = max(smoke_run.rows, key=lambda r: r["test_acc"])
    assert last.startswith(f"done: best test accuracy {100 * best['test_acc']:.2f}% at epoch {best['epoch']} of 2")
    assert f"files in {smoke_run.out} (config.json, metrics.csv, curves.png, last.npz, best.npz)" in last
    for line, row in zip(lines, smoke_run.rows):
        m = EPOCH_LINE.match(line)
        assert m, line
        assert int(m.group(1)) == row["epoch"] and int(m.group(2)) == 2
        assert m.group(7) == f"{100 * row['test_acc']:.2f}"
    assert "epoch 1/2" not in smoke_run.stderr    # progress=False: no progress bars


def test_smoke_run_checkpoints(smoke_run, state_equal):
    rows, config = smoke_run.rows, smoke_run.config
    model_state, optim_state, meta = load_checkpoint(smoke_run.out / "last.npz")
    assert meta["epoch"] == 2 and meta["metrics"] == rows and meta["config"] == dataclasses.asdict(recorded(config))
    assert meta["best_acc"] == max(r["test_acc"] for r in rows)
    # a momentum buffer for every parameter, and the lr the schedule had reached
    model = build_model(config)
    assert sorted(optim_state["state"]) == list(range(len(list(model.parameters()))))
    for i, p in enumerate(model.parameters()):
        assert optim_state["state"][i]["momentum_buffer"].shape == p.shape
        assert np.any(optim_state["state"][i]["momentum_buffer"] != 0)
    assert optim_state["param_groups"][0]["lr"] == pytest.approx(meta["scheduler"]["_last_lr"][0])
    assert meta["scheduler"]["last_epoch"] == 2 * (300 // 32)      # one schedule step per batch

    # last.npz holds the final weights: they score exactly the last epoch's test accuracy
    model.load_state_dict(model_state)
    data = prepare_data(config, progress=False)
    x_test, y_test = data.x_test, data.y_test
    loss, acc, predictions = evaluate(model, x_test, y_test, config.batch_size)
    assert acc == rows[-1]["test_acc"]
    assert loss == pytest.approx(rows[-1]["test_loss"], rel=1e-6)
    assert predictions.shape == (200,)

    best_state, _, best_meta = load_checkpoint(smoke_run.out / "best.npz")
    first_best = 1 + [r["test_acc"] for r in rows].index(meta["best_acc"])
    assert best_meta["epoch"] == first_best and best_meta["best_acc"] == meta["best_acc"]
    if first_best == 2:
        state_equal(best_state, model_state, "best.npz vs last.npz")
    else:
        assert any(not np.array_equal(best_state[k], model_state[k]) for k in model_state)


# ---- the command line ----------------------------------------------------------------------------

def test_cli_run(cli_run, make_config):
    assert cli_run.rc == 0, cli_run.stderr
    _, rows = read_metrics(cli_run.out)
    lines = epoch_lines(cli_run.stdout)
    assert len(lines) == len(rows) == 2 and len(cli_run.stdout.splitlines()) == 4
    for epoch, (line, row) in enumerate(zip(lines, rows), start=1):
        m = EPOCH_LINE.match(line)
        assert m, line
        assert (int(m.group(1)), int(m.group(2))) == (epoch, 2)
        assert m.group(7) == f"{100 * float(row['test_acc']):.2f}"      # the test accuracy
        assert m.group(4) == f"{float(row['train_loss']):.4f}"
    assert "img_s" not in cli_run.stderr and "epoch 1/2" not in cli_run.stderr   # --no-progress
    with open(cli_run.out / "config.json") as f:
        assert TrainConfig(**json.load(f)) == recorded(make_config(cli_run.out))


# ---- Ctrl-C and resuming -------------------------------------------------------------------------

def test_resume_of_a_finished_run_changes_nothing(cli_run, tmp_path, capsys):
    """--resume on a run whose epochs are all done returns its metrics and leaves its files as they
    were (the one-cycle schedule has stepped past its end there, so its lr could not be loaded);
    config.json, rebuilt, names the folder the run is in now."""
    assert cli_run.rc == 0
    out = tmp_path / "run"
    shutil.copytree(cli_run.out, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "config.json"}
    assert main(["--resume", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "has finished all 2 epochs: nothing to resume" in captured.err and captured.out == ""
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != "config.json"} == before
    assert json.loads((out / "config.json").read_text())["out"] == str(out)


def test_resume_after_ctrl_c_equals_uninterrupted_run(cli_run, make_config, poison_batch, tmp_path, capsys,
                                                      state_equal):
    """Interrupt a copy of cli_run's run in the 2nd batch of epoch 2, resume it with
    ``minise train --resume``: every weight, buffer, momentum buffer, schedule step and metric
    (but the timings) equals the uninterrupted run's."""
    assert cli_run.rc == 0
    config = make_config(tmp_path / "run")
    steps = config.train_subset // config.batch_size

    def ctrl_c(batch):
        raise KeyboardInterrupt

    calls = poison_batch(at=steps + 2, action=ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        train(config, progress=False)
    assert calls["n"] == steps + 2
    err = capsys.readouterr().err
    assert "interrupted in epoch 2" in err and "interrupted.npz" in err

    out = tmp_path / "run"
    last_state, _, last_meta = load_checkpoint(out / "last.npz")
    interrupted_state, _, interrupted_meta = load_checkpoint(out / "interrupted.npz")
    assert last_meta["epoch"] == 1 and len(last_meta["metrics"]) == 1       # the last completed epoch
    assert interrupted_meta["epoch"] == 1
    # interrupted.npz holds the weights of the moment: one step into epoch 2
    assert any(not np.array_equal(interrupted_state[k], last_state[k]) for k in last_state)
    _, rows = read_metrics(out)
    assert len(rows) == 1

    assert main(["--resume", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"resuming {out} after epoch 1 of 2\n")
    assert len(epoch_lines(printed)) == 1 and epoch_lines(printed)[0].startswith("epoch   2/2"), printed

    want_model, want_optim, want_meta = load_checkpoint(cli_run.out / "last.npz")
    got_model, got_optim, got_meta = load_checkpoint(out / "last.npz")
    state_equal(got_model, want_model, "model state")
    assert sorted(got_optim["state"]) == sorted(want_optim["state"])
    for i in want_optim["state"]:
        state_equal(got_optim["state"][i], want_optim["state"][i], f"optimizer state {i}")
    assert got_optim["param_groups"] == want_optim["param_groups"]
    assert got_meta["scheduler"] == want_meta["scheduler"]
    assert (got_meta["epoch"], got_meta["best_acc"]) == (want_meta["epoch"], want_meta["best_acc"]) == \
        (2, want_meta["best_acc"])
    assert without_seconds(got_meta["metrics"]) == without_seconds(want_meta["metrics"])
    assert without_seconds(read_metrics(out)[1]) == without_seconds(read_metrics(cli_run.out)[1])
    state_equal(load_checkpoint(out / "best.npz")[0], load_checkpoint(cli_run.out / "best.npz")[0], "best.npz")


def test_ctrl_c_in_first_epoch_main_returns_130(data_args, poison_batch, tmp_path, capsys):
    out = tmp_path / "run"

    def ctrl_c(batch):
        raise KeyboardInterrupt

    calls = poison_batch(at=2, action=ctrl_c)
    rc = main([*data_args, "--out", str(out), "--no-progress", "--train-subset", "100", "--test-subset", "100",
               "--batch-size", "25", "--epochs", "2"])
    assert rc == 130 and calls["n"] == 2
    err = capsys.readouterr().err
    assert "interrupted in epoch 1" in err
    _, _, meta = load_checkpoint(out / "interrupted.npz")
    assert meta["epoch"] == 0 and meta["metrics"] == []
    assert not (out / "last.npz").exists() and not (out / "metrics.csv").exists()
    # The message must not send the user to a checkpoint that was never written: here it
    # suggests `--resume` "from the end of epoch 0 (last.npz)", which fails for lack of last.npz.
    assert not points_to_missing_checkpoint(err), f"the message points to a last.npz that does not exist: {err!r}"


# ---- a non-finite loss ---------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_loss_in_first_epoch(make_config, tmp_path):
    config = make_config(tmp_path / "run", lr=1e6, schedule="constant", batch_size=50)
    with pytest.raises(TrainingError) as info:
        train(config, progress=False)
    message = str(info.value)
    assert isinstance(info.value.__cause__, FloatingPointError)
    assert "epoch 1" in message and "non-finite" in message and re.search(r"\b(nan|inf)\b", message)
    assert not (tmp_path / "run" / "last.npz").exists() and not (tmp_path / "run" / "best.npz").exists()
    # No epoch finished, so no checkpoint exists; the message says one "is kept" in last.npz.
    assert not points_to_missing_checkpoint(message), \
        f"the message points to a last.npz that does not exist: {message!r}"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_loss_later_keeps_last_checkpoint(make_config, cli_run, poison_batch, tmp_path, state_equal):
    """Epoch 1 goes well; a batch of NaN images in epoch 2 stops the run. last.npz from epoch 1
    is intact: finite, loadable, and a resume from it trains epoch 2 as if nothing happened."""
    config = make_config(tmp_path / "run")
    steps = config.train_subset // config.batch_size
    calls = poison_batch(at=steps + 3, action=lambda batch: batch * np.float32("nan"))
    with pytest.raises(TrainingError) as info:
        train(config, progress=False)
    assert calls["n"] == steps + 3
    message = str(info.value)
    last = tmp_path / "run" / "last.npz"
    assert "epoch 2" in message and "non-finite" in message and str(last) in message

    model_state, optim_state, meta = load_checkpoint(last)
    assert meta["epoch"] == 1 and len(meta["metrics"]) == 1
    assert all(np.all(np.isfinite(v)) for v in model_state.values())
    assert all(np.all(np.isfinite(v)) for s in optim_state["state"].values() for v in s.values())
    build_model(config).load_state_dict(model_state)
    assert len(read_metrics(tmp_path / "run")[1]) == 1
    assert not (tmp_path / "run" / "interrupted.npz").exists()

    rows = train(config, resume=True, progress=False)      # the NaN batch is not drawn again
    assert [r["epoch"] for r in rows] == [1, 2]
    # cli_run is the same run without the NaN batch
    assert cli_run.rc == 0 and make_config(cli_run.out) == dataclasses.replace(config, out=str(cli_run.out))
    state_equal(load_checkpoint(last)[0], load_checkpoint(cli_run.out / "last.npz")[0], "model state")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_main_non_finite_loss_returns_1(data_args, tmp_path, capsys):
    rc = main([*data_args, "--out", str(tmp_path / "run"), "--no-progress", "--lr", "1e6", "--schedule",
               "constant", "--train-subset", "100", "--test-subset", "100", "--batch-size", "50", "--epochs", "2"])
    captured = capsys.readouterr()
    assert rc == 1
    assert captured.err.startswith("minise train: error: training stopped in epoch 1")
    assert "non-finite" in captured.err and "Traceback" not in captured.err
    assert not epoch_lines(captured.out) and "done" not in captured.out


# ---- bad settings --------------------------------------------------------------------------------

def test_unknown_model(make_config, tmp_path, capsys):
    with pytest.raises(ValueError, match="'resnet21'") as info:
        train(make_config(tmp_path / "run", model="resnet21"), progress=False)
    assert "se_resnet20" in str(info.value)
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", "resnet21", "--out", str(tmp_path / "cli")])
    assert exit_info.value.code == 2
    assert "invalid choice: 'resnet21'" in capsys.readouterr().err


@pytest.mark.parametrize("setting, message", [
    ({"epochs": 0}, "--epochs must be an integer >= 1, got 0"),
    ({"batch_size": -5}, "--batch-size must be an integer >= 1, got -5"),
    ({"batch_size": 2.5}, "--batch-size must be an integer >= 1, got 2.5"),
    ({"seed": -1}, "--seed must be an integer >= 0, got -1"),
    ({"lr": float("nan")}, "--lr must be a finite number >= 0, got nan"),
    ({"weight_decay": float("inf")}, "--weight-decay must be a finite number >= 0, got inf"),
    ({"momentum": -0.5}, "--momentum must be a finite number >= 0, got -0.5"),
    ({"train_subset": 105}, "--train-subset must be a multiple of the 10 classes"),
    ({"dataset": "cifar100", "test_subset": 50}, "--test-subset must be a multiple of the 100 classes"),
])
def test_bad_numbers_are_refused_before_anything_is_written(make_config, tmp_path, setting, message):
    out = tmp_path / "run"
    with pytest.raises(ValueError) as info:
        train(make_config(out, **setting), progress=False)
    assert message in str(info.value)
    assert not out.exists()


def test_bad_numbers_on_the_command_line(data_args, tmp_path, capsys):
    rc = main([*data_args, "--out", str(tmp_path / "cli"), "--batch-size", "0", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "minise train: error: --batch-size must be an integer >= 1, got 0" in err
    assert "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:
        main(["--se-stages", "1,x", "--out", str(tmp_path / "cli")])
    assert exit_info.value.code == 2
    assert "expected integers separated by commas, such as 1,2,3; got '1,x'" in capsys.readouterr().err


def test_batch_larger_than_training_subset(make_config, data_args, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"batch size\b.*\b200\b.*\b100\b"):
        train(make_config(tmp_path / "run", batch_size=200), progress=False)
    rc = main([*data_args, "--out", str(tmp_path / "cli"), "--train-subset", "100", "--batch-size", "200",
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "minise train: error: batch size 200 is larger than the 100 training images" in err


def test_subset_not_a_multiple_of_the_classes(data_args, tmp_path, capsys):
    rc = main([*data_args, "--out", str(tmp_path / "cli"), "--train-subset", "105", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "minise train: error: --train-subset must be a multiple of the 10 classes" in err


@pytest.mark.parametrize("field, value", [("schedule", "bogus"), ("dataset", "cifar1000"), ("device", "gpu")])
def test_unknown_setting_is_a_clear_error(make_config, tmp_path, field, value):
    """``train`` (the API, without argparse's choices) names the bad value and the choices."""
    with pytest.raises(ValueError) as info:
        train(make_config(tmp_path / "run", **{field: value}), progress=False)
    assert repr(value) in str(info.value) and len(str(info.value)) > len(repr(value)) + 10


def test_se_options_reach_the_model():
    config = TrainConfig(model="se_resnet20", placement="identity", se_stages=(2, 3), squeeze="max",
                         excitation="tanh", min_hidden=0)
    model = build_model(config)
    blocks = list(model.layer1) + list(model.layer2) + list(model.layer3)
    assert [b.se_block is None for b in blocks] == [True] * 3 + [False] * 6
    se = model.layer3[0].se_block
    assert (model.layer3[0].placement, se.squeeze_op, se.excitation_op, se.hidden) == ("identity", "max", "tanh", 4)
    assert build_model(TrainConfig(model="resnet56")).depth == 56
    with pytest.raises(ValueError, match=r"placement.*'inside'"):
        build_model(TrainConfig(placement="inside"))
    with pytest.raises(ValueError, match=r"se_stages.*1, 2, 3"):
        build_model(TrainConfig(se_stages=(0,)))


def test_every_option_reaches_the_config():
    """Each TrainConfig field has its option, and the parsed value lands in the field."""
    from minise.training.train_command import build_parser

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    args = vars(build_parser().parse_args(["--no-cuda-graph", "--se-stages", "3", "--no-nesterov", "--threads", "3"]))
    assert fields <= set(args), fields - set(args)
    assert args["cuda_graph"] is False and args["se_stages"] == (3,) and args["nesterov"] is False
    assert args["threads"] == 3
    assert vars(build_parser().parse_args([]))["cuda_graph"] is True


# ---- what a run says -----------------------------------------------------------------------------

def test_progress_bars_of_training_and_testing(data_args, tmp_path):
    """With progress on (a real subprocess, as a user runs it): the training bar shows loss, acc and
    img/s in that order, and the per-epoch test pass has a bar of its own."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), MINISE_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "minise.cli", "train", *data_args, "--model", "resnet20",
                           "--train-subset", "50", "--test-subset", "50", "--batch-size", "25", "--epochs", "1",
                           "--out", str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    updates = proc.stderr.replace("\r", "\n")
    assert re.search(r"epoch 1/1: .*loss=[\d.]+, acc=[\d.]+, img/s=\d+\]", updates), updates
    assert re.search(r"epoch 1/1 test: +\d+%.*\| ?\d/2 ", updates), updates


def test_resume_says_which_options_it_ignores(cli_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(cli_run.out, out)
    assert main(["--resume", str(out), "--epochs", "5", "--lr=0.5", "--threads", "1", "--no-progress"]) == 0
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "ignoring --epochs, --lr:" in warning[0] and str(out / "last.npz") in warning[0]
    assert "--threads" not in warning[0]          # how a run computes, not what it is: honoured


def test_config_json_records_the_data_source(make_config, cifar_slice, tmp_path, monkeypatch):
    monkeypatch.setenv("MINISE_DATA", str(cifar_slice))
    config = make_config(tmp_path / "run", data=None, model="resnet20", epochs=1, train_subset=50, test_subset=50)
    train(config, progress=False)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"] == str(cifar_slice)
    assert load_checkpoint(tmp_path / "run" / "last.npz")[2]["config"]["data"] == str(cifar_slice)

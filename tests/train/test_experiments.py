"""``minise ablate``: grid expansion, run identity and names, ``--set``, bad grids, and tiny real grids on
CIFAR-10 JPEGs (runs.csv and the summary, resuming, an interrupted run, a mismatched result, a failing
run); shards and Ctrl-C with a stand-in for ``train``."""
import contextlib
import csv
import io
import json
import math
import re
import shutil
import statistics
import types

import pytest

import minise.training.ablate as ex
from minise.checkpoint import load_checkpoint
from minise.training.ablate import main
from minise.training.ablate_grid import GRIDS, parse_set, plan, set_grid
from minise.training.ablate_results import load_runs
from minise.training.ablate_tables import format_markdown, summarize
from minise.summary import summary
from minise.training import TrainConfig, build_model

TINY = ["--train-subset", "100", "--test-subset", "100", "--epochs", "1", "--batch-size", "25", "--no-progress"]
GRID = ["--set", "model=resnet20,se_resnet20", "--seeds", "0", "1"]
SE = "se_resnet20-r16-h4-avg-sigmoid-standard-s123"       # the recipe's SE-ResNet-20
RUNS_COLUMNS = ["name", "setting", "model", "reduction_ratio", "min_hidden", "squeeze", "excitation", "placement",
                "se_stages", "seed", "train_subset", "test_subset", "epochs", "status", "final_acc", "best_acc",
                "final_test_loss", "params", "mult_adds", "seconds", "device", "error"]
DONE = re.compile(r"^\[(\d+)/(\d+)\] (\S+): final (\d+\.\d\d)%, best (\d+\.\d\d)%, (\d+) s$")


def ablate(argv):
    """(exit code, stdout, stderr) of ``minise ablate``; argparse's exit becomes its code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exit_:
            rc = exit_.code
    return rc, out.getvalue(), err.getvalue()


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def settings(grid, **base):
    return [run.setting for run in plan(GRIDS[grid], TrainConfig(out="unused", **base), [0])]


@pytest.fixture
def count_train(monkeypatch):
    """Wrap the runner's ``train``: returns the list of (run folder name, resume) of every call."""
    real, calls = ex.train, []

    def wrapped(config, resume=False, progress=True, overwrite=False):
        calls.append((config.out.rsplit("/", 1)[-1], resume))
        return real(config, resume=resume, progress=progress, overwrite=overwrite)
    monkeypatch.setattr(ex, "train", wrapped)
    return calls


@pytest.fixture
def fake_train(monkeypatch):
    """Replace ``train`` by a stand-in that trains nothing: test accuracy 0.5 + seed / 100, 2 s."""
    calls = []

    def fake(config, resume=False, progress=True, overwrite=False):
        calls.append(config.out.rsplit("/", 1)[-1])
        return [dict(epoch=1, lr=config.lr, train_loss=1.0, train_acc=0.4, test_loss=1.5,
                     test_acc=0.5 + config.seed / 100, seconds=2.0)]
    monkeypatch.setattr(ex, "train", fake)
    return calls


# ---- the grid, without training ------------------------------------------------------------------

def test_builtin_grids_expand_and_dedupe():
    assert settings("reduction") == [      # r=4: C // r >= 4 in every block, so h1 and h4 are one run
        "resnet20", "se_resnet20-r4-avg-sigmoid-standard-s123", "se_resnet20-r8-avg-sigmoid-standard-s123",
        "se_resnet20-r8-h4-avg-sigmoid-standard-s123", "se_resnet20-r16-avg-sigmoid-standard-s123", SE]
    assert settings("squeeze") == [SE, "se_resnet20-r16-h4-max-sigmoid-standard-s123"]
    assert settings("excitation") == [SE] + [f"se_resnet20-r16-h4-avg-{e}-standard-s123" for e in ("tanh", "relu")]
    assert settings("placement") == [SE] + [f"se_resnet20-r16-h4-avg-sigmoid-{p}-s123" for p in ("pre", "post",
                                                                                               "identity")]
    assert settings("stage") == ["resnet20", "se_resnet20-r16-h4-avg-sigmoid-standard-s1",
                                 "se_resnet20-r16-h4-avg-sigmoid-standard-s2",
                                 "se_resnet20-r16-avg-sigmoid-standard-s3", SE]   # 64 // 16 = 4: no floor at s3
    paper = settings("paper")
    assert paper == list(dict.fromkeys(s for g in ("reduction", "squeeze", "excitation", "placement")
                                       for s in settings(g)))
    assert len(paper) == 12 and paper.count(SE) == 1

    runs = plan(GRIDS["paper"], TrainConfig(out="grid"), [0, 1, 2])
    assert [r.name for r in runs] == [f"{s}-seed{seed}" for seed in (0, 1, 2) for s in paper]   # seed by seed
    assert all(re.fullmatch(r"[A-Za-z0-9._+-]+", r.name) for r in runs)
    assert [r.config.out for r in runs[:2]] == [f"grid/runs/{n}" for n in ("resnet20-seed0", paper[1] + "-seed0")]
    assert [r.config.seed for r in runs] == [0] * 12 + [1] * 12 + [2] * 12


def test_merged_settings_build_the_same_model():
    """What dedupe merges really is one model: r4-h1 and r4-h4 (and a ResNet's SE fields)."""
    shapes = lambda **kw: [p.shape for p in build_model(TrainConfig(**kw)).parameters()]
    assert shapes(reduction_ratio=4, min_hidden=1) == shapes(reduction_ratio=4, min_hidden=4)
    assert shapes(reduction_ratio=16, min_hidden=1) != shapes(reduction_ratio=16, min_hidden=4)
    runs = plan([{"model": "resnet20"}, {"model": "resnet20", "reduction_ratio": 4, "squeeze": "max"},
                 {"se_stages": [3, 1, 2]}, {"se_stages": (1, 2, 3)}], TrainConfig(out="o"), [0])
    assert [r.name for r in runs] == ["resnet20-seed0", f"{SE}-seed0"]
    stats = summary(build_model(runs[1].config), (1, 3, 32, 32), col_names=("num_params", "mult_adds"), verbose=False)
    assert (runs[1].params, runs[1].mult_adds) == (stats.total_params, stats.total_mult_adds)


def test_run_names():
    base = TrainConfig(out="o", lr=0.05)
    name = lambda setting: plan([setting], base, [3])[0].name
    assert name({}) == f"{SE}-seed3"
    assert name({"model": "resnet32", "squeeze": "max"}) == "resnet32-seed3"
    assert name({"lr": 0.05}) == f"{SE}-seed3"                              # the run-wide value: not in the name
    assert name({"lr": 0.1, "nesterov": False}) == f"{SE}-lr0.1-nesterovFalse-seed3"
    assert name({"reduction_ratio": 8, "min_hidden": 0, "se_stages": [2, 3], "weight_decay": 1e-5}) == \
        "se_resnet20-r8-avg-sigmoid-standard-s23-weight_decay1e-05-seed3"
    assert name({"dataset": "cifar100", "excitation": "relu"}) == \
        "se_resnet20-r16-h4-avg-relu-standard-s123-datasetcifar100-seed3"


def test_parse_set_converts_to_the_field_types():
    assert parse_set("reduction_ratio=4,8") == ("reduction_ratio", [4, 8])
    assert parse_set("se-stages=3,1+2+3") == ("se_stages", [[3], [1, 2, 3]])
    assert parse_set("lr=0.1, 5e-2") == ("lr", [0.1, 0.05])
    assert parse_set("nesterov=true,Off") == ("nesterov", [True, False])
    assert parse_set("squeeze=avg,max") == ("squeeze", ["avg", "max"])
    assert set_grid(["model=resnet20,se_resnet20", "lr=0.1,0.05"]) == [
        {"model": "resnet20", "lr": 0.1}, {"model": "resnet20", "lr": 0.05},
        {"model": "se_resnet20", "lr": 0.1}, {"model": "se_resnet20", "lr": 0.05}]
    assert set_grid([]) == []


@pytest.mark.parametrize("text, message", [
    ("colour=red", "unknown key 'colour'"), ("reduction_ratio=four", "reduction_ratio takes an integer, got 'four'"),
    ("lr=fast", "lr takes a number"), ("nesterov=maybe", "nesterov takes true or false"),
    ("se_stages=1,2+x", "stage numbers joined by +"), ("seed=1,2", "run-wide option (--seeds)"),
    ("device=cuda", "(--device)"), ("lr", "expected KEY=V1,V2"), ("lr=0.1,,0.2", "empty value"), ("lr=", "empty value"),
])
def test_parse_set_errors(text, message):
    with pytest.raises(ValueError) as info:
        parse_set(text)
    assert message in str(info.value) and repr(text) in str(info.value)


def test_set_key_twice():
    with pytest.raises(ValueError, match=r"--set lr\b.*twice"):
        set_grid(["lr=0.1", "lr=0.2"])


@pytest.mark.parametrize("argv, message", [
    (["--grid", "paper", "--set", "excitation=sigmoid,softmax"], "unknown excitation 'softmax'"),
    (["--set", "reduction_ratio=0"], "reduction_ratio"),
    (["--set", "se_stages=4"], "se_stages must be drawn from 1, 2, 3"),
    (["--grid", "nope"], "invalid choice: 'nope'"),
    (["--grid", "squeeze", "--schedule", "linear"], "--schedule: invalid choice: 'linear'"),
    (["--grid", "squeeze", "--device", "gpu"], "--device: invalid choice: 'gpu'"),
    (["--set", "colour=red"], "unknown key 'colour'"),
    ([], "nothing to run"),
    (["--grid", "squeeze", "--train-subset", "100", "--batch-size", "200"], "batch size 200 is larger than the 100"),
    (["--grid", "squeeze", "--epochs", "0"], "--epochs must be an integer >= 1, got 0"),
    (["--grid", "squeeze", "--seeds", "-1"], "seeds >= 0"),
    (["--grid", "squeeze", "--shard", "2/2"], "--shard '2/2': expected I/K"),
])
def test_bad_grid_fails_before_any_training(argv, message, fake_train, tmp_path):
    rc, _, err = ablate([*argv, "--out", str(tmp_path / "out")])
    assert rc == 2 and message in err, err
    assert fake_train == [] and not (tmp_path / "out").exists()


# ---- summaries from given rows -------------------------------------------------------------------

def _row(setting, model, seed, final, best, status="finished", epochs=10, seconds=100.0):
    return dict(name=f"{setting}-seed{seed}", setting=setting, model=model, seed=seed, train_subset=10000,
                test_subset=0, epochs=epochs, status=status, final_acc=final, best_acc=best, final_test_loss=1.0,
                params=1000, mult_adds=2_000_000, seconds=seconds, device="cpu", error=None)


def test_summarize_mean_std_and_delta():
    rows = [_row("resnet20", "resnet20", 0, 0.78, 0.79), _row("resnet20", "resnet20", 1, 0.80, 0.80),
            _row("se", "se_resnet20", 0, 0.81, 0.82, seconds=90.0), _row("se", "se_resnet20", 1, 0.79, 0.80),
            _row("se", "se_resnet20", 2, 0.83, 0.84, seconds=110.0), _row("se", "se_resnet20", 3, 0.1, 0.1, "failed"),
            _row("one", "se_resnet20", 0, 0.805, 0.81), _row("long", "se_resnet20", 0, 0.9, 0.9, epochs=30)]
    table = {e["setting"]: e for e in summarize(rows)}
    assert list(table) == ["resnet20", "se", "one", "long"]
    se, r20 = table["se"], table["resnet20"]
    assert se["n"] == 3 and se["final_acc_mean"] == pytest.approx(0.81)       # the failed run is left out
    assert se["final_acc_std"] == pytest.approx(0.02) and se["best_acc_std"] == pytest.approx(0.02)
    assert se["seconds_mean"] == pytest.approx(100.0) and se["epochs"] == 10
    assert r20["delta_vs_resnet"] is None
    assert se["delta_vs_resnet"] == pytest.approx(0.81 - 0.79)
    assert se["delta_se"] == pytest.approx(math.sqrt(0.02 ** 2 / 3 + statistics.stdev([0.78, 0.80]) ** 2 / 2))
    one = table["one"]                     # one seed: no std, a delta without a standard error
    assert one["final_acc_std"] is None and one["delta_vs_resnet"] == pytest.approx(0.015) and one["delta_se"] is None
    assert table["long"]["delta_vs_resnet"] is None     # no resnet20 with 30 epochs to compare with

    md = format_markdown(list(table.values()), ["se-seed3"])
    assert "| setting | epochs | seeds |" in md                  # epochs differ between the rows: a column
    assert "| se | 10 | 3 | 81.00 ± 2.00 | 82.00 ± 2.00 | +2.00 ± 1.53 | 1,000 | 2.00 | 100 |" in md
    assert "| one | 10 | 1 | 80.50 | 81.00 | +1.50 | 1,000 | 2.00 | 100 |" in md
    assert "| long | 30 | 1 | 90.00 | 90.00 |  |" in md
    assert "Options: train_subset=10000, test_subset=0" in md and "Failed runs (not in the table): se-seed3." in md


# ---- tiny real grids -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_grid(data_args, tmp_path_factory):
    """resnet20 and SE-ResNet-20 x seeds 0, 1: four 1-epoch runs on 100 training and 100 test images."""
    out = tmp_path_factory.mktemp("ablate") / "out"
    argv = [*GRID, *TINY, *data_args, "--out", str(out)]
    rc, stdout, stderr = ablate(argv)
    return types.SimpleNamespace(argv=argv, out=out, rc=rc, stdout=stdout, stderr=stderr)


def copy_of(grid, folder):
    shutil.copytree(grid.out, folder)
    argv = list(grid.argv)
    argv[argv.index("--out") + 1] = str(folder)
    return argv


def test_tiny_grid_runs_csv(tiny_grid):
    assert tiny_grid.rc == 0, tiny_grid.stderr
    names = ["resnet20-seed0", f"{SE}-seed0", "resnet20-seed1", f"{SE}-seed1"]      # trained seed by seed
    printed = [DONE.match(line) for line in tiny_grid.stdout.splitlines() if DONE.match(line)]
    assert [(m.group(1), m.group(2), m.group(3)) for m in printed] == [(str(k), "4", n) for k, n in enumerate(names, 1)]
    rows = read_csv(tiny_grid.out / "runs.csv")                                    # listed setting by setting
    assert list(rows[0]) == RUNS_COLUMNS
    assert [r["name"] for r in rows] == [names[i] for i in (0, 2, 1, 3)]
    assert [r["setting"] for r in rows] == ["resnet20", "resnet20", SE, SE]
    assert [r["seed"] for r in rows] == ["0", "1", "0", "1"]
    lines = {m.group(3): m for m in printed}
    for row in rows:
        line = lines[row["name"]]
        metrics = read_csv(tiny_grid.out / "runs" / row["name"] / "metrics.csv")    # train's own record
        assert float(row["final_acc"]) == float(metrics[-1]["test_acc"])
        assert float(row["best_acc"]) == max(float(m["test_acc"]) for m in metrics)
        assert float(row["final_test_loss"]) == float(metrics[-1]["test_loss"])
        assert float(row["seconds"]) == pytest.approx(sum(float(m["seconds"]) for m in metrics))
        assert line.group(4) == f"{100 * float(row['final_acc']):.2f}"
        assert line.group(6) == f"{float(row['seconds']):.0f}"
        config = TrainConfig(model=row["model"])
        stats = summary(build_model(config), (1, 3, 32, 32), col_names=("num_params", "mult_adds"), verbose=False)
        assert (int(row["params"]), int(row["mult_adds"])) == (stats.total_params, stats.total_mult_adds)
        assert (row["status"], row["device"], row["error"]) == ("finished", "cpu", "")
        assert (row["train_subset"], row["test_subset"], row["epochs"]) == ("100", "100", "1")
    assert [rows[0][f] for f in RUNS_COLUMNS[3:9]] == [""] * 6               # a ResNet has no SE fields
    assert [rows[2][f] for f in RUNS_COLUMNS[3:9]] == ["16", "4", "avg", "sigmoid", "standard", "1+2+3"]
    with open(tiny_grid.out / "runs" / names[1] / "result.json") as f:
        result = json.load(f)
    assert result["status"] == "finished" and len(result["metrics"]) == 1 and result["config"]["seed"] == 0
    assert sorted(p.name for p in (tiny_grid.out / "runs" / names[1]).iterdir()) == [
        "best.npz", "config.json", "curves.png", "last.npz", "metrics.csv", "result.json"]


def test_tiny_grid_summary(tiny_grid):
    assert tiny_grid.rc == 0, tiny_grid.stderr
    rows, table = read_csv(tiny_grid.out / "runs.csv"), read_csv(tiny_grid.out / "summary.csv")
    assert [e["setting"] for e in table] == ["resnet20", SE]
    acc = {s: {m: [float(r[m]) for r in rows if r["setting"] == s] for m in ("final_acc", "best_acc")}
           for s in ("resnet20", SE)}
    md = (tiny_grid.out / "summary.md").read_text()
    assert md in tiny_grid.stdout and str(tiny_grid.out / "summary.md") in tiny_grid.stdout
    for e in table:
        assert e["n"] == "2"
        for m in ("final_acc", "best_acc"):
            values = acc[e["setting"]][m]
            assert float(e[f"{m}_mean"]) == pytest.approx(statistics.mean(values))
            assert float(e[f"{m}_std"]) == pytest.approx(statistics.stdev(values))
        cell = f"{100 * statistics.mean(acc[e['setting']]['final_acc']):.2f} ± " \
               f"{100 * statistics.stdev(acc[e['setting']]['final_acc']):.2f}"
        assert f"| {e['setting']} | 2 | {cell} |" in md
    delta = statistics.mean(acc[SE]["final_acc"]) - statistics.mean(acc["resnet20"]["final_acc"])
    se = math.sqrt(sum(statistics.stdev(acc[s]["final_acc"]) ** 2 / 2 for s in acc))
    assert float(table[1]["delta_vs_resnet"]) == pytest.approx(delta) and table[0]["delta_vs_resnet"] == ""
    assert float(table[1]["delta_se"]) == pytest.approx(se)
    assert f"{100 * delta:+.2f} ± {100 * se:.2f}" in md
    assert [r["final_acc"] for r in load_runs(tiny_grid.out)] == [float(r["final_acc"]) for r in rows]  # notebook


def test_resume_trains_only_the_missing_run(tiny_grid, tmp_path, count_train):
    """A lost run trains again, alone; the finished runs are skipped and the tables come back whole
    (the same numbers: a run on the CPU is reproducible, all but its timing)."""
    assert tiny_grid.rc == 0, tiny_grid.stderr
    argv = copy_of(tiny_grid, tmp_path / "out")
    lost = f"{SE}-seed1"
    shutil.rmtree(tmp_path / "out" / "runs" / lost)
    with open(tmp_path / "out" / "runs.csv", newline="") as f:
        kept = [line for line in f if not line.startswith(lost)]
    (tmp_path / "out" / "runs.csv").write_text("".join(kept))
    rc, stdout, stderr = ablate(argv)
    assert rc == 0, stderr
    assert count_train == [(lost, False)]
    assert "4 runs, 3 finished before; training 1" in stdout and f"[1/1] {lost}: training (new)" in stdout
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("seconds")} for r in rows]
    for table in ("runs.csv", "summary.csv"):
        assert strip(read_csv(tmp_path / "out" / table)) == strip(read_csv(tiny_grid.out / table)), table

    rc, stdout, _ = ablate(argv)                   # everything finished: nothing trains
    assert rc == 0 and len(count_train) == 1 and "4 runs, 4 finished before; training 0" in stdout


def test_result_lost_after_the_last_epoch_comes_from_last_npz(tiny_grid, tmp_path, count_train):
    """A crash between the last epoch and result.json: last.npz holds every epoch, so train(resume=True)
    returns its metrics without training, and the result is the one the lost file held."""
    assert tiny_grid.rc == 0, tiny_grid.stderr
    argv = copy_of(tiny_grid, tmp_path / "out")
    lost = f"{SE}-seed0"
    (tmp_path / "out" / "runs" / lost / "result.json").unlink()
    rc, stdout, stderr = ablate(argv)
    assert rc == 0, stderr
    assert count_train == [(lost, True)] and f"[1/1] {lost}: training (every epoch in last.npz, no result yet)" in stdout
    for name in ("runs.csv", "summary.csv", "summary.md", f"runs/{lost}/result.json"):
        assert (tmp_path / "out" / name).read_text().replace(str(tmp_path / "out"), "OUT") == \
            (tiny_grid.out / name).read_text().replace(str(tiny_grid.out), "OUT"), name


def test_summarize_rebuilds_the_tables(tiny_grid, tmp_path, fake_train):
    assert tiny_grid.rc == 0, tiny_grid.stderr
    copy_of(tiny_grid, tmp_path / "out")
    for table in ("runs.csv", "summary.csv", "summary.md"):
        (tmp_path / "out" / table).unlink()
    rc, stdout, stderr = ablate(["--summarize", "--out", str(tmp_path / "out")])
    assert rc == 0, stderr
    for table in ("runs.csv", "summary.csv", "summary.md"):
        assert (tmp_path / "out" / table).read_text() == (tiny_grid.out / table).read_text(), table
    assert fake_train == [] and (tiny_grid.out / "summary.md").read_text() in stdout
    rc, _, stderr = ablate(["--summarize", "--out", str(tmp_path / "empty")])
    assert rc == 1 and "no result.json under" in stderr


@pytest.mark.parametrize("change, message", [(["--epochs", "2"], "epochs=1 (now 2)"),
                                             (["--lr", "0.05"], "lr=0.1 (now 0.05)")])
def test_results_made_with_other_settings_are_an_error(tiny_grid, tmp_path, fake_train, change, message):
    assert tiny_grid.rc == 0, tiny_grid.stderr
    argv = copy_of(tiny_grid, tmp_path / "out")
    rc, _, stderr = ablate([*argv, *change])
    assert rc == 1 and fake_train == []
    assert f"{tmp_path / 'out' / 'runs' / 'resnet20-seed0' / 'result.json'} was made with other settings" in stderr
    assert message in stderr
    # without a result.json, last.npz is checked: a half-done run is never resumed with other settings
    (tmp_path / "out" / "runs" / "resnet20-seed1" / "result.json").unlink()
    only = ["--set", "model=resnet20", "--seeds", "1"]
    rc, _, stderr = ablate([*only, *argv[len(GRID):], *change])
    assert rc == 1 and fake_train == []
    assert f"{tmp_path / 'out' / 'runs' / 'resnet20-seed1' / 'last.npz'} was made with other" in stderr


def test_interrupted_run_resumes_from_last_npz(data_args, poison_batch, count_train, tmp_path):
    """Ctrl-C in epoch 2 of a 2-epoch run: exit 130, no result; the same command resumes after epoch 1,
    and the run's seconds add up both parts."""
    argv = ["--set", "model=resnet20", "--seeds", "0", *TINY, "--epochs", "2", *data_args, "--out", str(tmp_path)]

    def ctrl_c(batch):
        raise KeyboardInterrupt
    calls = poison_batch(at=100 // 25 + 1, action=ctrl_c)
    rc, _, stderr = ablate(argv)
    assert rc == 130 and calls["n"] == 5 and "run the same command again" in stderr
    folder = tmp_path / "runs" / "resnet20-seed0"
    assert not (folder / "result.json").exists() and (folder / "interrupted.npz").exists()
    first = load_checkpoint(folder / "last.npz")[2]["metrics"]
    assert [m["epoch"] for m in first] == [1]

    rc, stdout, stderr = ablate(argv)
    assert rc == 0, stderr
    assert count_train == [("resnet20-seed0", False), ("resnet20-seed0", True)]
    assert "training (resumes after epoch 1)" in stdout
    with open(folder / "result.json") as f:
        result = json.load(f)
    assert result["status"] == "finished" and [m["epoch"] for m in result["metrics"]] == [1, 2]
    assert result["metrics"][0] == first[0]
    assert result["seconds"] == pytest.approx(first[0]["seconds"] + result["metrics"][1]["seconds"])
    assert result["final_acc"] == result["metrics"][1]["test_acc"]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_failing_run_is_recorded_and_the_grid_goes_on(data_args, tmp_path, count_train):
    argv = ["--set", "model=resnet20", "--set", "lr=1e6,0.1", "--schedule", "constant", "--seeds", "0", *TINY,
            *data_args, "--out", str(tmp_path)]
    bad = "resnet20-lr1000000.0-seed0"
    rc, stdout, stderr = ablate(argv)
    assert rc == 1 and f"1 run(s) failed: {bad}" in stderr
    assert f"[1/2] {bad}: FAILED: TrainingError: training stopped in epoch 1" in stdout
    assert any(DONE.match(line) and "resnet20-seed0" in line for line in stdout.splitlines())
    with open(tmp_path / "runs" / bad / "result.json") as f:
        result = json.load(f)
    assert result["status"] == "failed" and "non-finite" in result["error"] and "Traceback" in result["traceback"]
    rows = read_csv(tmp_path / "runs.csv")
    assert [(r["name"], r["status"]) for r in rows] == [(bad, "failed"), ("resnet20-seed0", "finished")]
    assert "non-finite" in rows[0]["error"] and rows[0]["final_acc"] == ""
    assert [e["setting"] for e in read_csv(tmp_path / "summary.csv")] == ["resnet20"]
    assert f"Failed runs (not in the table): {bad}." in (tmp_path / "summary.md").read_text()

    rc, stdout, _ = ablate(argv)                 # the same command retries the failed run only
    assert rc == 1 and [name for name, _ in count_train] == [bad, "resnet20-seed0", bad]
    assert f"[1/1] {bad}: training (failed before)" in stdout


# ---- shards and Ctrl-C, with a stand-in for train -------------------------------------------------

def test_shards_split_the_runs_and_share_the_tables(tmp_path, fake_train):
    base = ["--grid", "squeeze", "--seeds", "0", "1", "2", "--out", str(tmp_path)]
    everything = [r.name for r in plan(GRIDS["squeeze"], TrainConfig(out=str(tmp_path)), [0, 1, 2])]
    assert len(everything) == 6
    for i in range(3):
        rc, stdout, stderr = ablate([*base, "--shard", f"{i}/3"])
        assert rc == 0, stderr
        assert fake_train[-2:] == everything[i::3]
        assert len(read_csv(tmp_path / "runs.csv")) == 2 * (i + 1)       # every shard's rows so far
    assert sorted(fake_train) == sorted(everything)
    table = read_csv(tmp_path / "summary.csv")
    assert [(e["n"], float(e["final_acc_mean"])) for e in table] == [("3", pytest.approx(0.51))] * 2
    assert [r["name"] for r in read_csv(tmp_path / "runs.csv")] == everything[0::2] + everything[1::2]  # by setting

    rc, stdout, _ = ablate([*base, "--shard", "1/3", "--dry-run"])
    listed = [line.split()[1] for line in stdout.splitlines()[1:]]
    assert rc == 0 and listed == everything[1::3] and all(line.endswith("finished") for line in stdout.splitlines()[1:])


def test_ctrl_c_keeps_the_finished_runs(tmp_path, monkeypatch, fake_train):
    real = ex.train

    def second_interrupts(config, resume=False, progress=True, overwrite=False):
        if len(fake_train) == 1:
            fake_train.append(config.out)
            raise KeyboardInterrupt
        return real(config, resume, progress, overwrite)
    monkeypatch.setattr(ex, "train", second_interrupts)
    rc, stdout, stderr = ablate(["--grid", "squeeze", "--seeds", "0", "--out", str(tmp_path)])
    assert rc == 130 and "interrupted" in stderr
    assert [r["name"] for r in read_csv(tmp_path / "runs.csv")] == [f"{SE}-seed0"]
    assert not (tmp_path / "runs" / "se_resnet20-r16-h4-max-sigmoid-standard-s123-seed0").exists()


# ---- processes sharing --out, and result.json that lacks what the tables need --------------------

def test_two_processes_sharing_out_train_each_run_once(data_args, tmp_path):
    """The same grid started twice at once, as real processes: each run is trained by one of them
    (its lock), the other skips it; the tables hold both runs."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root), MINISE_NUM_THREADS="1", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", XDG_CACHE_HOME=str(tmp_path / "xdg"))
    argv = [sys.executable, "-m", "minise.cli", "ablate", "--set", "model=resnet20,se_resnet20", "--seeds", "0",
            *TINY, *data_args, "--train-subset", "50", "--test-subset", "50", "--out", str(tmp_path / "out")]
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    trained = [line.split("]")[1].split(":")[0].strip() for out, _ in outputs for line in out.splitlines()
               if DONE.match(line)]
    assert sorted(trained) == sorted(["resnet20-seed0", f"{SE}-seed0"]), outputs
    assert sorted(r["name"] for r in read_csv(tmp_path / "out" / "runs.csv")) == sorted(trained)


@pytest.mark.parametrize("change, message", [
    (lambda r: r.pop("status"), "lacks ['status']"),
    (lambda r: r.pop("final_acc"), "lacks ['final_acc']"),
    (lambda r: r.update(config="se_resnet20"), "config (str, expected dict)"),
    (lambda r: r.update(status="done"), "status 'done'"),
])
def test_result_json_without_what_the_tables_need(tiny_grid, tmp_path, fake_train, change, message):
    assert tiny_grid.rc == 0, tiny_grid.stderr
    argv = copy_of(tiny_grid, tmp_path / "out")
    path = tmp_path / "out" / "runs" / "resnet20-seed0" / "result.json"
    result = json.loads(path.read_text())
    change(result)
    path.write_text(json.dumps(result))
    for command in (argv, ["--summarize", "--out", str(tmp_path / "out")]):
        rc, _, stderr = ablate(command)
        assert rc == 1 and stderr.startswith(f"minise ablate: error: {path} ") and message in stderr, stderr
        assert stderr.count("\n") == 1 and "delete it" in stderr
    assert fake_train == []

"""A run folder loses nothing: a second run does not replace a first, a kill -9 in the middle of
writing an epoch's files leaves complete files that --resume rebuilds, a killed writer's temporary
files are cleaned up, and a full disk is named and leaves a resumable run. Every case runs
``minise train`` in a real subprocess; the kills are real SIGKILLs, sent by the process to itself
at a chosen point of its writes (a hook installed before ``minise.cli.main`` runs)."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from minise.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--model", "resnet20", "--train-subset", "50", "--test-subset", "50", "--batch-size", "25", "--epochs", "2",
        "--no-progress"]

# Installed in the subprocess: at the AT-th call of a write (WHAT), write part of it and SIGKILL the
# process; or, for WHAT == "disk-full-after", make every file larger than 10 kB fail to write after
# the AT-th curves plot, as a full disk does (RLIMIT_FSIZE: the kernel refuses the write).
HOOK = r"""
import contextlib, csv, io, os, resource, signal, sys
import matplotlib.figure
import minise.checkpoint, minise.files

what, at, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
calls = {"n": 0}

def hit():
    calls["n"] += 1
    return calls["n"] == at

def die(f, data):
    f.write(data)
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)

real_savefig = matplotlib.figure.Figure.savefig
def savefig(self, target, *args, **kwargs):
    if what == "curves" and hit():
        buffer = io.BytesIO()
        real_savefig(self, buffer, format="png")
        die(target if hasattr(target, "write") else open(target, "wb"), buffer.getvalue()[:2000])
    real_savefig(self, target, *args, **kwargs)
    if what == "disk-full-after" and hit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, resource.RLIM_INFINITY))
matplotlib.figure.Figure.savefig = savefig

real_init, real_writerows = csv.DictWriter.__init__, csv.DictWriter.writerows
def init(self, f, *args, **kwargs):
    real_init(self, f, *args, **kwargs)
    self.file = f
def writerows(self, rows):
    rows = list(rows)
    if what == "metrics" and hit():
        real_writerows(self, rows[:1])
        die(self.file, "")
    return real_writerows(self, rows)
csv.DictWriter.__init__, csv.DictWriter.writerows = init, writerows

real_atomic_open = minise.files.atomic_open
@contextlib.contextmanager
def atomic_open(path, *args, **kwargs):
    with real_atomic_open(path, *args, **kwargs) as f:
        if what == "checkpoint" and str(path).endswith(".npz") and hit():
            die(f, b"PK\x03\x04 part of a checkpoint")
        yield f
minise.checkpoint.atomic_open = atomic_open
with contextlib.suppress(ImportError):
    import minise.training.run_folder
    minise.training.run_folder.atomic_open = atomic_open

from minise.cli import main
sys.exit(main(argv))
"""


@pytest.fixture
def minise_train(data_args, tmp_path):
    """minise_train(*args, hook=(what, at)) -> CompletedProcess of ``minise train`` on the slice."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), MINISE_NUM_THREADS="1", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", XDG_CACHE_HOME=str(tmp_path / "xdg"))

    def run(*args, hook=("none", 0)):
        source = [] if "--resume" in args else data_args         # a resumed run reads its own settings
        command = [sys.executable, "-c", HOOK, hook[0], str(hook[1]), "train", *source, *args]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    return run


def temporaries(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def assert_png(path):
    with Image.open(path) as image:
        image.verify()


def metrics_rows(folder):
    return (folder / "metrics.csv").read_text().splitlines()[1:]


def test_a_second_run_does_not_replace_the_first(minise_train, tmp_path):
    out = tmp_path / "run"
    first = minise_train(*TINY, "--epochs", "1", "--out", str(out))
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    second = minise_train(*TINY, "--epochs", "1", "--out", str(out))
    assert second.returncode == 1
    assert second.stderr.count("\n") == 1 and second.stderr.startswith(f"minise train: error: --out {out} already")
    assert f"--resume {out}" in second.stderr and "--overwrite" in second.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    # on purpose: the old run's files go, its interrupted.npz too
    (out / "interrupted.npz").write_bytes((out / "last.npz").read_bytes())
    third = minise_train(*TINY, "--epochs", "1", "--out", str(out), "--overwrite")
    assert third.returncode == 0, third.stderr
    assert sorted(p.name for p in out.iterdir()) == ["best.npz", "config.json", "curves.png", "last.npz",
                                                      "metrics.csv"]
    assert json.loads((out / "config.json").read_text())["epochs"] == 1 and len(metrics_rows(out)) == 1


@pytest.mark.parametrize("what", ["metrics", "curves"])
def test_kill_while_writing_the_last_epochs_files(minise_train, tmp_path, what):
    """kill -9 in the middle of writing epoch 2's metrics.csv or curves.png (last.npz holds epoch 2
    by then): the files are epoch 1's, whole; --resume rebuilds them from last.npz."""
    out = tmp_path / "run"
    killed = minise_train(*TINY, "--out", str(out), hook=(what, 2))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert load_checkpoint(out / "last.npz")[2]["epoch"] == 2
    assert len(metrics_rows(out)) == (1 if what == "metrics" else 2)
    assert_png(out / "curves.png")
    assert len(temporaries(out)) == 1                 # the killed writer's

    resumed = minise_train("--resume", str(out), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert "nothing to resume" in resumed.stderr and "rebuilt" in resumed.stderr
    assert [row.split(",")[0] for row in metrics_rows(out)] == ["1", "2"]
    assert_png(out / "curves.png")
    assert temporaries(out) == []


def test_kill_between_last_and_best_checkpoint_leaves_a_resumable_run(minise_train, tmp_path, state_equal):
    """kill -9 during the second checkpoint write of epoch 1: last.npz is written first, so epoch 1
    can be resumed, and best.npz (epoch 1 was the best so far) is rebuilt from it."""
    out = tmp_path / "run"
    killed = minise_train(*TINY, "--out", str(out), hook=("checkpoint", 2))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert load_checkpoint(out / "last.npz")[2]["epoch"] == 1

    resumed = minise_train("--resume", str(out), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith(f"resuming {out} after epoch 1 of 2")
    last, best = load_checkpoint(out / "last.npz"), load_checkpoint(out / "best.npz")
    assert last[2]["epoch"] == 2 and best[2]["epoch"] == best[2]["best_epoch"] == last[2]["best_epoch"]
    assert temporaries(out) == []


def test_full_disk_names_the_file_and_keeps_a_resumable_run(minise_train, tmp_path):
    out = tmp_path / "run"
    full = minise_train(*TINY, "--out", str(out), hook=("disk-full-after", 1))
    assert full.returncode == 1
    assert full.stderr.count("\n") == 1 and "Traceback" not in full.stderr, full.stderr
    assert full.stderr.startswith("minise train: error: training stopped in epoch 2: ")
    assert f"could not write {out / 'last.npz'}" in full.stderr and "end of epoch 1" in full.stderr
    assert load_checkpoint(out / "last.npz")[2]["epoch"] == 1 and temporaries(out) == []

    resumed = minise_train("--resume", str(out), "--no-progress")     # space again
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(out / "last.npz")[2]["epoch"] == 2 and len(metrics_rows(out)) == 2


def test_only_the_temporaries_of_dead_writers_are_removed(tmp_path):
    from minise.files import atomic_open

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".last.npz.{int(dead.stdout)}.abcd1234.tmp"      # its writer has exited
    live = tmp_path / f".last.npz.{os.getpid()}.efgh5678.tmp"          # this process is writing it
    other = tmp_path / f".best.npz.{int(dead.stdout)}.ijkl9012.tmp"     # another file's: left to its writer
    for path in (stale, live, other):
        path.write_bytes(b"part")
    with atomic_open(tmp_path / "last.npz") as f:
        f.write(b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "last.npz"])

"""``minise train`` with several worker processes, as a user runs it: real processes started by
the command itself, real kills and real signals."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from minise.checkpoint import load_checkpoint
from minise.distributed.launch import mpiexec

SMALL = dict(train_subset=100, test_subset=100, epochs=2, batch_size=25)     # the CLI test's run (conftest)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def command(data_args, out, workers, **settings):
    options = [f"--{k.replace('_', '-')}={v}" for k, v in {**SMALL, **settings}.items()]
    return [sys.executable, "-m", "minise", "train", *data_args, "--out", str(out), "--no-progress",
            f"--workers={workers}", *options]


def environment():
    env = {k: v for k, v in os.environ.items() if k != "MINISE_WORKERS"}
    return dict(env, PYTHONPATH=REPO, PYTHONUNBUFFERED="1")


def workers_of(out):
    """{rank: pid} of the live worker processes training into ``out``."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().split(b"\0")
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
        except OSError:
            continue
        if str(out).encode() in cmdline and b"PMI_RANK" in env:
            found[int(env[b"PMI_RANK"])] = int(pid)
    return found


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"waited {timeout} s for {what}")


def trained(command_line, out, workers):
    """Run ``command_line`` to the end; check what a user sees; return last.npz."""
    done = subprocess.run(command_line, env=environment(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert [line.split()[1] for line in done.stdout.splitlines() if line.startswith("epoch")] == ["1/2", "2/2"]
    assert f"workers: {workers}," in done.stdout.splitlines()[0]
    with open(out / "config.json") as f:
        assert json.load(f)["workers"] == workers
    return load_checkpoint(out / "last.npz")


@pytest.fixture(scope="module")
def one_worker(data_args, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "run"
    return trained(command(data_args, out, 1, lr=0.002), out, 1)


def assert_same_run(got, expected):
    """Losses and weights equal to float32 rounding: the batch's sums are added in another order.
    (A small lr keeps float32 rounding from growing over the steps; the float64 tests in
    tests/distributed hold the two to 1e-10.)"""
    for row, row1 in zip(got[2]["metrics"], expected[2]["metrics"]):
        assert row["train_loss"] == pytest.approx(row1["train_loss"], rel=1e-4)
        assert row["test_loss"] == pytest.approx(row1["test_loss"], rel=1e-4)
    for key, value in expected[0].items():
        assert np.allclose(got[0][key], value, rtol=1e-3, atol=2e-4), key


def test_two_workers_train_as_one_process_does(data_args, one_worker, tmp_path):
    """``minise train --workers 2`` starts its workers itself; worker 0 alone prints (one line per
    epoch) and config.json records the count."""
    out = tmp_path / "run"
    assert_same_run(trained(command(data_args, out, 2, lr=0.002), out, 2), one_worker)


def test_mpiexec_across_two_hosts_on_loopback(data_args, one_worker, tmp_path):
    """What a user types for several machines, on two host names of this one (each its own MPI
    proxy, the workers meeting through the network layer): 4 workers on 2 cores."""
    out = tmp_path / "run"
    options = command(data_args, out, 4, lr=0.002)[3:]          # the command line after `python -m minise`
    options.remove("--workers=4")
    line = [mpiexec(), "-n", "4", "-hosts", "localhost,127.0.0.1", sys.executable, "-m", "minise", *options]
    assert_same_run(trained(line, out, 4), one_worker)


def test_a_killed_worker_stops_the_run_and_another_count_resumes_it(data_args, tmp_path):
    """kill -9 of worker 1 after the first epoch: every worker stops within seconds, one line names
    the worker and the signal, no process is left, and last.npz resumes on one worker."""
    out = tmp_path / "run"
    run = subprocess.Popen(command(data_args, out, 2, epochs=4), env=environment(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (out / "last.npz").exists(), 300, "the first epoch's last.npz")
        pid = workers_of(out)[1]
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        stdout, stderr = run.communicate(timeout=30)
    finally:
        run.kill()
    assert time.monotonic() - killed < 15
    assert run.returncode != 0
    reports = [line for line in stderr.splitlines() if "error" in line]
    assert reports == [f"minise train: error: worker 1 of 2 (pid {pid}) was killed by signal 9 (SIGKILL); "
                       "every worker was stopped"], stderr
    assert "BAD TERMINATION" not in stderr
    assert workers_of(out) == {}
    epochs_done = load_checkpoint(out / "last.npz")[2]["epoch"]
    assert epochs_done >= 1
    resumed = subprocess.run([sys.executable, "-m", "minise", "train", "--resume", str(out), "--workers=1",
                              "--no-progress"], env=environment(), capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {out} after epoch {epochs_done}" in resumed.stdout


def test_ctrl_c_stops_every_worker_and_leaves_no_process(data_args, tmp_path):
    out = tmp_path / "run"
    run = subprocess.Popen(command(data_args, out, 2, epochs=30), env=environment(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(workers_of(out)) == 2 and (out / "config.json").exists(), 300, "two workers")
        time.sleep(1)
        run.send_signal(signal.SIGINT)
        sent = time.monotonic()
        stdout, stderr = run.communicate(timeout=30)
    finally:
        run.kill()
    assert time.monotonic() - sent < 15
    assert run.returncode == 130, stderr
    assert workers_of(out) == {}
    assert "Traceback" not in stderr
    assert (out / "interrupted.npz").exists(), stderr         # worker 0 saved the weights first


def test_a_worker_that_raises_ends_every_worker_in_one_line(tmp_path):
    """An error on one worker only (a bad image in its shard, say) must not leave the others
    waiting in a sum: they all end within seconds, and the error is told once, by worker."""
    script = tmp_path / "fail.py"
    script.write_text(
        "import time\n"
        "from minise.distributed import world\n"
        "from minise.distributed.launch import stop_all_on_error\n"
        "comm = world()\n"
        "with stop_all_on_error('minise train'):\n"
        "    if comm.rank == 1:\n"
        "        raise ValueError('cannot decode train/cat/0001.jpg')\n"
        "    comm.barrier()\n")
    start = time.monotonic()
    done = subprocess.run([mpiexec(), "-n", "3", sys.executable, str(script)], env=environment(),
                          capture_output=True, text=True, timeout=60)
    assert time.monotonic() - start < 20
    assert done.returncode != 0
    told = [line for line in done.stderr.splitlines() if "cannot decode" in line]
    assert told == ["minise train: error: worker 1 of 3: ValueError: cannot decode train/cat/0001.jpg"]


def test_evaluate_on_two_workers_scores_as_one(smoke_run, tmp_path):
    """``minise evaluate`` shards the test images over its workers and gathers the predictions:
    the same accuracy, per-class table and loss as one process."""
    printed = {}
    for workers in (1, 2):
        done = subprocess.run([sys.executable, "-m", "minise", "evaluate", str(smoke_run.out / "best.npz"),
                               f"--workers={workers}", "--no-progress", "--confusion", str(tmp_path / f"c{workers}.png")],
                              env=environment(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        printed[workers] = done.stdout.replace(str(tmp_path / f"c{workers}.png"), "PLOT")
        assert (tmp_path / f"c{workers}.png").exists()
    assert printed[2] == printed[1]
    assert "test accuracy" in printed[1]


def test_ablate_on_two_workers(data_args, tmp_path):
    """Every run of a grid is trained by both workers; worker 0 alone prints and writes."""
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "minise", "ablate", "--set", "reduction_ratio=16", "--seeds", "0",
                           "--epochs", "1", "--train-subset", "100", "--test-subset", "100", "--batch-size", "25",
                           *data_args, "--out", str(out), "--workers=2", "--no-progress"],
                          env=environment(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sum("training (" in line for line in done.stdout.splitlines()) == 1
    result = json.loads(next((out / "runs").glob("*/result.json")).read_text())
    assert result["status"] == "finished" and result["config"]["workers"] == 2
    assert (out / "runs.csv").exists()

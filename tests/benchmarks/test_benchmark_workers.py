"""benchmarks.workers: the step timed in real worker processes, and the table's rows."""
import os
import subprocess
import sys

from benchmarks.workers import minise_step

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_two_workers_time_their_step_and_add_up_their_memory(monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("PYTHONPATH", REPO)
    result = minise_step(2, repeats=1)
    assert set(result) == {"ms", "rss_mb", "pss_mb"}
    assert result["ms"] > 0
    # two processes each hold at least Python, NumPy and the model: well over one's 40 MB
    assert 80 < result["pss_mb"] <= result["rss_mb"] * 1.05


def test_benchmarks_cpu_hands_workers_on():
    done = subprocess.run([sys.executable, "-m", "benchmarks.cpu", "--workers", "1,2", "--help"], cwd=REPO,
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO))
    assert done.returncode == 0 and "--worker" in done.stdout and "python -m benchmarks.workers" in done.stdout

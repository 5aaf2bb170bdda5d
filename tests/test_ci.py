""".ci/run cannot be quietly green: without the data it points the tests at, it fails at once."""
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_fails_naming_the_missing_data(tmp_path):
    missing = tmp_path / "no-such" / "cifar10-jpeg.tar.gz"
    proc = subprocess.run(["bash", str(ROOT / ".ci" / "run")], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, MINISE_DATA=str(missing)))
    assert proc.returncode == 1 and str(missing) in proc.stderr, proc.stdout + proc.stderr
    assert proc.stdout == ""        # stopped before making a virtual environment or installing anything

"""Every hostile input of issue 25, as a real file (FIFOs, /dev/zero, crafted zips, tars and
checkpoints), run in a subprocess under an address-space limit: each is refused (or, for a
non-UTF-8 name and a dead writer's temporary, handled) with a message that names it, within a
bound on peak memory and on time, and with no traceback."""
import os
import re
import sys

import pytest

from bounded import CASES, GIB, run_bounded

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak memory from /proc")

MAX_MB = 400        # python, numpy and Pillow take about 100 MB; reading any of these inputs, far more
MAX_SECONDS = 30    # each takes a few seconds on a loaded 2-core machine, but for
SLOWER = {"tar: 1,000,000 empty members": 60}   # tarfile's 121,000 headers up to the cap (not 1,000,000)

# case -> (exit code, a fragment of what it must say)
EXPECTED = {
    "summary Conv2d(3, 100000, 100)": (2, "3,000,100,000 parameters, 12.0 GB, over the budget"),
    "summary cifar_resnet(depth=200000)": (2, "depth .* at most 1202, got 200000"),
    "summary BatchNorm2d(1000000000)": (2, "num_features must be at most 1,048,576"),
    "summary SEBlock(<400 digits>, 16)": (2, "input_channels must be at most 1,048,576"),
    "summary Conv2d stride=<30 digits>": (2, "stride must be at most 4,096"),
    "summary Conv2d padding=100000": (2, "padding must be at most 4,096"),
    "summary --input-size 100000000000,3,32,32": (1, "--input-size 100000000000,3,32,32: .*over the budget"),
    "folder: *.jpg symlink to /dev/zero": (1, "zero.jpg is a character device, not a regular file"),
    "folder: FIFO x.jpg": (1, "x.jpg is a FIFO .*not a regular file"),
    "--data a FIFO": (1, "data.tar.gz is a FIFO .*not a regular file or a folder"),
    "--data /dev/zero": (1, "/dev/zero is a character device"),
    "--data ''": (1, "empty path"),
    "zip: header 1,000 bytes, inflates to 512 MiB": (1, "bomb.zip: .*(CRC|more than the 1,000 bytes)"),
    "tar: 1,000,000 empty members": (1, "more than 121,000 files and folders"),
    "tar: 4,000 zero-filled JPEGs": (1, "train/cat/00000.jpg: cannot decode the image"),
    "folder: non-UTF-8 file name": (0, "loaded 10 \\+ 10 images"),
    "cache: a killed writer's 50 MB temporary": (0, "loaded 10 \\+ 10 images"),
    "checkpoint: 512 MiB of zeros under an unused key": (1, "holds 1 entry that its model does not have \\(unused\\)"),
    "checkpoint: batch_size 10**30": (1, "--batch-size must be at most 1,024"),
    "checkpoint: normalization std [0, 0, 0]": (1, "normalization std \\[0, 0, 0\\].* each > 0"),
    "checkpoint: normalization mean 'abc'": (1, "normalization mean 'abc'"),
    "train --resume without last.npz": (1, "last.npz' does not exist: .*--overwrite"),
}


def test_every_case_has_an_expectation():
    assert set(EXPECTED) == set(CASES)


@pytest.mark.parametrize("case", list(CASES))
def test_bounded(case, tmp_path):
    code, fragment = EXPECTED[case]
    argv = CASES[case](tmp_path, tmp_path / "no-data.tar.gz")
    seconds = SLOWER.get(case, MAX_SECONDS)
    outcome = run_bounded(argv, cwd=tmp_path, max_address_bytes=2 * GIB, timeout=2 * seconds)
    assert outcome.returncode == code, outcome.output
    assert "Traceback" not in outcome.output, outcome.output
    assert re.search(fragment, outcome.output), outcome.output
    assert outcome.peak_mb < MAX_MB and outcome.seconds < seconds, (outcome.peak_mb, outcome.seconds)
    if case.startswith("cache:"):
        assert not [n for n in os.listdir(tmp_path / "cache") if n.endswith(".tmp")]

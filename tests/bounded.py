"""Hostile inputs made as real files, and a runner that measures what minise spends on them.

Each CASE builds its input in a folder and returns the command to run on it: ``minise ARGS``, or
``load SOURCE CACHE`` (``load_cifar10``). ``run_bounded`` runs it in a subprocess under an
address-space limit (RLIMIT_AS) and a timeout, and returns its exit code, output, peak resident
memory (VmHWM, read at exit, so a child that runs out of memory or of its limit still reports it)
and seconds. tests/test_bounded.py holds the cases to their bounds; the same runner measured
them on the code before these bounds existed.
"""
import gzip
import io
import json
import os
import re
import resource
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
GIB = 1 << 30
DRIVER = r"""
import atexit, re, sys
def peak():
    with open("/proc/self/status") as f:
        sys.stderr.write("\nPEAK_KB %s\n" % re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))
atexit.register(peak)
if sys.argv[1] == "load":
    from minise.data import DataError, load_cifar10
    try:
        data = load_cifar10(sys.argv[2], data_dir=sys.argv[3], progress=False)
        print(f"loaded {len(data.x_train)} + {len(data.x_test)} images")
    except (DataError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
else:
    from minise.cli import main
    sys.exit(main(sys.argv[1:]))
"""


class Outcome(NamedTuple):
    returncode: int        # None: killed at the timeout
    output: str            # stdout and stderr
    peak_mb: float         # None where the child never reached its exit
    seconds: float


def run_bounded(argv, cwd, root=ROOT, max_address_bytes=2 * GIB, timeout=60, env=None):
    """Run ``argv`` (see the module docstring) with ``root``'s minise, under the limits."""
    env = dict(os.environ, **(env or {}), PYTHONPATH=str(root), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MINISE_NUM_THREADS="1", MPLBACKEND="Agg", XDG_CACHE_HOME=str(Path(cwd) / "xdg-cache"))
    env.pop("MINISE_DATA", None)

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (max_address_bytes, max_address_bytes))

    start = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-c", DRIVER, *map(str, argv)], cwd=cwd, env=env, timeout=timeout,
                              capture_output=True, text=True, errors="replace", preexec_fn=limit)
    except subprocess.TimeoutExpired as err:
        output = (err.stdout or b"").decode(errors="replace") + (err.stderr or b"").decode(errors="replace")
        return Outcome(None, output, None, time.monotonic() - start)
    seconds = time.monotonic() - start
    peak = re.search(r"PEAK_KB (\d+)", proc.stderr)
    output = proc.stdout + re.sub(r"\nPEAK_KB \d+\n", "", proc.stderr)
    return Outcome(proc.returncode, output, int(peak.group(1)) / 1024 if peak else None, seconds)


# ---- inputs --------------------------------------------------------------------------------------

def png(seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def image_folders(root, per_class=1):
    """A small, valid CIFAR-10 image-folder tree: ``per_class`` PNGs per class and split."""
    from minise.data import CIFAR10_CLASSES

    for split in ("train", "test"):
        for c, name in enumerate(CIFAR10_CLASSES):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                (root / split / name / f"{i}.png").write_bytes(png(100 * c + i))
    return root


def _gzip_stream(path, blocks):
    """Write the byte blocks to a gzip file (fast, level 1)."""
    with gzip.open(path, "wb", compresslevel=1) as f:
        for block in blocks:
            f.write(block)
    return path


def tar_of_many_members(path, count):
    """A .tar.gz of ``count`` empty members, written as raw headers: a few MB for a million."""
    header = tarfile.TarInfo("x").tobuf(format=tarfile.USTAR_FORMAT)
    per_block = 2048
    blocks = (header * min(per_block, count - done) for done in range(0, count, per_block))
    return _gzip_stream(path, [*blocks, bytes(1024)])


def tar_of_zero_jpegs(path, count, size=120 * 1024):
    """A .tar.gz of ``count`` "JPEGs" of ``size`` zero bytes each under train/cat/."""
    def blocks():
        for i in range(count):
            info = tarfile.TarInfo(f"train/cat/{i:05d}.jpg")
            info.size = size
            yield info.tobuf(format=tarfile.USTAR_FORMAT) + bytes(size)   # 120 KiB is a multiple of 512
        yield bytes(1024)
    return _gzip_stream(path, blocks())


def zip_that_inflates_past_its_header(path, stated=1000, real=GIB // 2):
    """A zip whose member's headers say ``stated`` bytes, while its data inflates to ``real``."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("train/cat/0.png", "w") as f:
            zeros = bytes(1 << 20)
            for _ in range(real >> 20):
                f.write(zeros)
    data = bytearray(path.read_bytes())
    local, central = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")
    data[local + 22:local + 26] = stated.to_bytes(4, "little")       # uncompressed size, local header
    data[central + 24:central + 28] = stated.to_bytes(4, "little")   # and in the central directory
    path.write_bytes(bytes(data))
    return path


def checkpoint(path, **changes):
    """A minise train checkpoint of a ResNet-20 (initial weights), with ``changes`` to its meta;
    ``config`` changes go into the stored settings."""
    import dataclasses

    from minise.checkpoint import save_checkpoint
    from minise.training import TrainConfig, build_model

    config = TrainConfig(model="resnet20", epochs=1, train_subset=100, test_subset=100)
    meta = dict(epoch=1, best_acc=0.1, metrics=[], normalization={"mean": [0.5] * 3, "std": [0.25] * 3},
                config={**dataclasses.asdict(config), **changes.pop("config", {})})
    meta.update(changes)
    save_checkpoint(path, build_model(config).state_dict(), **meta)
    return path


def with_unused_entry(path, size):
    """Add an entry the model lacks to a checkpoint: ``size`` bytes of float32 zeros, deflated."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (size // 4,)})
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("unused.npy", "w", force_zip64=True) as f:
            f.write(header.getvalue())
            zeros = bytes(1 << 20)
            for _ in range(size >> 20):
                f.write(zeros)
    return path


def dead_pid():
    """The id of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---- the cases: name -> builder(folder, data) returning the command ----------------------------
# ``data``: a CIFAR-10 source for the commands that read one after the checkpoint (evaluate); the
# bounded code refuses those checkpoints before it reads any data.

def _summary(model, *extra):
    return lambda folder, data: ["summary", "--model", model, *extra]


def _fifo(folder, name):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def _symlink_to_dev_zero(folder, data):
    tree = image_folders(folder / "src")
    (tree / "train" / "cat" / "zero.jpg").symlink_to("/dev/zero")
    return ["load", tree, folder / "cache"]


def _fifo_in_folder(folder, data):
    tree = image_folders(folder / "src")
    _fifo(tree, "train/cat/x.jpg")
    return ["load", tree, folder / "cache"]


def _non_utf8_name(folder, data):
    tree = image_folders(folder / "src")
    os.rename(tree / "train" / "cat" / "0.png", os.fsencode(tree / "train" / "cat") + b"/caf\xe9.png")
    return ["load", tree, folder / "cache"]


def _stale_cache_temporary(folder, data):
    cache = folder / "cache"
    cache.mkdir()
    with open(cache / f".cifar10-0000-0000.npz.{dead_pid()}.abc.tmp", "wb") as f:
        f.truncate(50 * 10 ** 6)                                 # what a killed 50 MB cache write leaves
    return ["load", image_folders(folder / "src"), cache]


def _evaluate(**changes):
    return lambda folder, data: ["evaluate", checkpoint(folder / "run" / "best.npz", **changes), "--data", data,
                                 "--no-progress", "--confusion", folder / "c.png"]


def _unused_entry(folder, data):
    path = with_unused_entry(checkpoint(folder / "run" / "best.npz"), GIB // 2)
    return ["evaluate", path, "--data", data, "--no-progress", "--confusion", folder / "c.png"]


def _resume_without_last(folder, data):
    (folder / "run").mkdir()
    (folder / "run" / "config.json").write_text(json.dumps({}))   # a run killed in its first epoch
    return ["train", "--resume", folder / "run", "--no-progress"]


CASES = {
    "summary Conv2d(3, 100000, 100)": _summary("Conv2d(3, 100000, 100)"),
    "summary cifar_resnet(depth=200000)": _summary("cifar_resnet(depth=200000)"),
    "summary BatchNorm2d(1000000000)": _summary("BatchNorm2d(1000000000)"),
    "summary SEBlock(<400 digits>, 16)": _summary(f"SEBlock({'9' * 400}, 16)"),
    "summary Conv2d stride=<30 digits>": _summary(f"Conv2d(3, 8, 3, stride={'9' * 30})"),
    "summary Conv2d padding=100000": _summary("Conv2d(3, 8, 3, padding=100000)"),
    "summary --input-size 100000000000,3,32,32": _summary("se_resnet20", "--input-size", "100000000000,3,32,32"),
    "folder: *.jpg symlink to /dev/zero": _symlink_to_dev_zero,
    "folder: FIFO x.jpg": _fifo_in_folder,
    "--data a FIFO": lambda folder, data: ["load", _fifo(folder, "data.tar.gz"), folder / "cache"],
    "--data /dev/zero": lambda folder, data: ["load", "/dev/zero", folder / "cache"],
    "--data ''": lambda folder, data: ["load", "", folder / "cache"],
    "zip: header 1,000 bytes, inflates to 512 MiB": lambda folder, data: [
        "load", zip_that_inflates_past_its_header(folder / "bomb.zip"), folder / "cache"],
    "tar: 1,000,000 empty members": lambda folder, data: [
        "load", tar_of_many_members(folder / "many.tar.gz", 1_000_000), folder / "cache"],
    "tar: 4,000 zero-filled JPEGs": lambda folder, data: [
        "load", tar_of_zero_jpegs(folder / "zeros.tar.gz", 4000), folder / "cache"],
    "folder: non-UTF-8 file name": _non_utf8_name,
    "cache: a killed writer's 50 MB temporary": _stale_cache_temporary,
    "checkpoint: 512 MiB of zeros under an unused key": _unused_entry,
    "checkpoint: batch_size 10**30": _evaluate(config={"batch_size": 10 ** 30}),
    "checkpoint: normalization std [0, 0, 0]": _evaluate(normalization={"mean": [0.5] * 3, "std": [0, 0, 0]}),
    "checkpoint: normalization mean 'abc'": _evaluate(normalization={"mean": "abc", "std": [0.25] * 3}),
    "train --resume without last.npz": _resume_without_last,
}

"""Sources that hold more than CIFAR can are refused from their headers, before anything is read."""
import io
import os
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from minise.data import DataError, load_cifar10
from minise.data.reading import MAX_IMAGE_BYTES, MAX_SOURCE_BYTES

ROOT = Path(__file__).resolve().parents[2]
GIB = 1 << 30


class Zeros(io.RawIOBase):
    """A readable stream of ``size`` zero bytes that never holds them all in memory."""

    def __init__(self, size):
        self.left = size

    def readable(self):
        return True

    def readinto(self, buffer):
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def tar_bomb(path, member):
    """A ~5 MB .tar.gz holding ``member``: 1 GiB of zeros."""
    with tarfile.open(path, "w:gz", compresslevel=1, copybufsize=1 << 20) as tar:
        info = tarfile.TarInfo(member)
        info.size = GIB
        tar.addfile(info, Zeros(GIB))
    return path


def zip_bomb(path, member):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open(member, "w", force_zip64=True) as f:
            zeros = bytes(1 << 20)
            for _ in range(GIB >> 20):
                f.write(zeros)
    return path


def sparse_tree(root, member):
    """A folder whose ``member`` is a sparse 1 GiB file: no disk space used."""
    (root / member).parent.mkdir(parents=True)
    with open(root / member, "wb") as f:
        f.truncate(GIB)
    return root


# Peak RSS from VmHWM, which starts afresh at exec; getrusage's ru_maxrss would carry over the
# peak of the forking pytest process.
LOAD_AND_MEASURE = textwrap.dedent(r"""
    import re, sys
    from minise.data import DataError, load_cifar10
    try:
        load_cifar10(sys.argv[1], data_dir=sys.argv[2], progress=False)
        print("loaded")
    except DataError as err:
        print(err)
    with open("/proc/self/status") as f:
        print(int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) // 1024)   # MiB
""")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak RSS from Linux's /proc")
@pytest.mark.parametrize("make, member", [
    (tar_bomb, "train/cat/0001.png"),
    (zip_bomb, "cifar-10-batches-py/data_batch_1"),
    (sparse_tree, "train/cat/0001.png"),
], ids=["tar.gz image", "zip pickle", "folder image"])
def test_a_gigabyte_member_is_refused_before_it_is_read(make, member, tmp_path):
    name = {tar_bomb: "bomb.tar.gz", zip_bomb: "bomb.zip", sparse_tree: "bomb"}[make]
    source = make(tmp_path / name, member)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", LOAD_AND_MEASURE, str(source), str(tmp_path / "cache")],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    message, peak_mib = proc.stdout.strip().rsplit("\n", 1)
    assert int(peak_mib) < 300, (message, peak_mib)
    assert member in message and "1,073,741,824 bytes" in message
    assert not list((tmp_path / "cache").glob("*.npz"))


def test_many_files_together_may_not_exceed_what_cifar_holds(tmp_path):
    """Each file within its limit, but together more than all of CIFAR: refused before reading."""
    folder = tmp_path / "src" / "train" / "cat"
    folder.mkdir(parents=True)
    for i in range(MAX_SOURCE_BYTES // MAX_IMAGE_BYTES + 1):
        with open(folder / f"{i:04d}.png", "wb") as f:
            f.truncate(MAX_IMAGE_BYTES)   # sparse: no disk space; reading them all would take 0.5 GB
    with pytest.raises(DataError, match=f"more than {MAX_SOURCE_BYTES:,} bytes"):
        load_cifar10(tmp_path / "src", data_dir=tmp_path / "cache", progress=False)


def test_sources_within_the_limits_still_load(png_folder, tmp_path, write):
    """An image of 200 KB (its metadata, mostly) is within the limits."""
    members = png_folder(n=1)
    text = PngImagePlugin.PngInfo()
    text.add_text("comment", "x" * 200_000)
    big = io.BytesIO()
    Image.frombytes("RGB", (32, 32), bytes(range(256)) * 12).save(big, format="PNG", pnginfo=text)
    members["train/cat/big.png"] = big.getvalue()
    data = load_cifar10(write.tar(tmp_path / "src.tar.gz", members), data_dir=tmp_path / "c", progress=False)
    assert len(data.x_train) == len(data.x_test) + 1

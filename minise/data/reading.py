"""The files of a data source, read within bounds: only regular files, never more than a file's
limit plus one byte, at most MAX_MEMBERS entries, and a running total checked as files are read.

A source can be a folder, a .zip or a (compressed) tar. Each is walked in order, and every wanted
file comes out as ``(name, bytes)``: names are relative POSIX paths (``train/cat/0001.jpg``);
a name that is not valid UTF-8 keeps its bytes as surrogate escapes (``os.fsdecode``) and is
shown with them escaped (``shown``). Nothing is extracted to disk, so member names like ``../x``
are harmless.
"""
import os
import stat
import tarfile
import zipfile
from pathlib import PurePosixPath

from ..files import zip_entry_count
from .download import DataError

# What a CIFAR source can hold, with room to spare, checked against each file's size as its
# archive header or the file system states it, before the file is read; a file that turns out
# longer than its header said is refused at the first byte past it. A 32x32 RGB image is 3,072
# bytes raw and its PNG or JPEG a few KB; the largest official file, CIFAR-100's train pickle of
# 50,000 images, is 155 MB; either data set has 60,000 images in all.
MAX_IMAGE_BYTES = 256 * 1024
MAX_PICKLE_BYTES = 50_000 * 4096
MAX_SOURCE_BYTES = 60_000 * 8192
# Files and folders one source may hold: 60,000 images, each with a macOS resource fork
# (__MACOSX/._x.jpg) at worst, and the folders.
MAX_MEMBERS = 121_000
# An archive file: its members, plus a tar's 512-byte header and padding for each entry.
MAX_ARCHIVE_BYTES = MAX_SOURCE_BYTES + MAX_MEMBERS * 1024
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_CHUNK = 1 << 16


def shown(name):
    """``name`` printable: bytes that are not UTF-8 (surrogate escapes) shown as ``\\xe9``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def file_kind(mode):
    """What a non-regular file is, in words, from its ``st_mode``."""
    for test, kind in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return kind
    return "not a regular file"


class Budget:
    """The bounds of one source: each file's size against its limit, the running total against
    MAX_SOURCE_BYTES, the number of entries against MAX_MEMBERS."""

    def __init__(self, fmt, source):
        self.fmt, self.source, self.total, self.members = fmt, source, 0, 0

    def count(self, name):
        """Count one entry (file, folder, link) of the source, wanted or not."""
        self.members += 1
        if self.members > MAX_MEMBERS:
            raise DataError(f"{self.source}: holds more than {MAX_MEMBERS:,} files and folders (reached at "
                            f"{shown(name)}), more than any {self.fmt.name} source; refusing to read on")

    def admit(self, name, size):
        """Admit a file of ``size`` bytes (as its header or stat says); return its limit."""
        image = PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES
        limit = MAX_IMAGE_BYTES if image else MAX_PICKLE_BYTES
        if size > limit:
            raise DataError(f"{self.source}: {shown(name)} holds {size:,} bytes, more than any {self.fmt.name} "
                            f"{'image' if image else 'file'} ({limit:,} bytes at most); refusing to read it")
        self.total += size
        if self.total > MAX_SOURCE_BYTES:
            raise DataError(f"{self.source}: its images and data files hold more than {MAX_SOURCE_BYTES:,} "
                            f"bytes (reached at {shown(name)}), more than all of {self.fmt.name}; refusing to read on")
        return size


def read_at_most(stream, size, where):
    """The ``size`` bytes of ``stream``, read in chunks; a stream that holds more is refused at the
    first byte past ``size``, so no more than ``size + 1`` bytes are ever taken from it."""
    chunks, total = [], 0
    while total <= size:
        chunk = stream.read(min(_CHUNK, size + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > size:
        raise DataError(f"{where}: holds more than the {size:,} bytes its header or size says; refusing to read on")
    return b"".join(chunks)


def walk_folder(root, wanted, budget):
    """(name, bytes) of the wanted files under ``root``, in sorted order. Every file is stat-ed,
    must be a regular file (a symlink to one is fine) and is admitted before any is opened."""
    sizes = {}
    for name in folder_files(root, wanted, budget):
        st = os.stat(os.path.join(root, name))
        if not stat.S_ISREG(st.st_mode):
            raise DataError(f"{shown(os.path.join(root, name))} is {file_kind(st.st_mode)}, not a regular "
                            "file; an image folder holds image files only: remove it or move it away")
        sizes[name] = budget.admit(name, st.st_size)
    for name, size in sizes.items():
        path = os.path.join(root, name)
        # O_NONBLOCK: a file swapped for a FIFO after the stat cannot block the open.
        with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise DataError(f"{shown(path)} is no longer a regular file; refusing to read it")
            yield name, read_at_most(f, size, shown(path))


def folder_files(root, wanted, budget):
    """Sorted relative POSIX paths of the wanted files under ``root`` (every entry counted)."""
    names = []
    for folder, subfolders, files in os.walk(root):
        rel = PurePosixPath(*os.path.relpath(folder, root).split(os.sep))
        for entry in subfolders + files:
            budget.count(str(rel / entry))
        names += [str(rel / f) for f in files]
    return sorted(n for n in names if wanted(n))


def walk_archive(f, path, wanted, budget):
    """(name, bytes) of the wanted regular files of the .zip or (compressed) tar open as ``f``,
    in archive order."""
    if zipfile.is_zipfile(f):
        entries = zip_entry_count(f)
        if entries > MAX_MEMBERS:
            raise DataError(f"{path}: its zip directory lists {entries:,} entries, more than any "
                            f"{budget.fmt.name} source ({MAX_MEMBERS:,}); refusing to read it")
        with zipfile.ZipFile(f) as archive:
            members = []          # every member admitted from the directory before any is inflated
            for info in archive.infolist():
                budget.count(info.filename)
                if not info.is_dir() and wanted(info.filename):
                    members.append((info, budget.admit(info.filename, info.file_size)))
            for info, size in members:
                with archive.open(info) as member:     # inflated in chunks, never all at once
                    yield info.filename, read_at_most(member, size, f"{path}: {shown(info.filename)}")
        return
    f.seek(0)
    # One forward pass over the (gzip) stream: members are read in archive order.
    with tarfile.open(fileobj=f, mode="r:*") as archive:
        for member in archive:
            budget.count(member.name)
            if member.isfile() and wanted(member.name):
                size = budget.admit(member.name, member.size)
                yield member.name, read_at_most(archive.extractfile(member), size, f"{path}: {shown(member.name)}")

"""Files written atomically: a checkpoint, a cache, a download or a table is either the old file
or the complete new one, never half of either. And the size of a zip's directory, read before
zipfile parses it."""
import contextlib
import glob
import os
import struct
import tempfile


@contextlib.contextmanager
def atomic_open(path, mode="wb", **kwargs):
    """Open a temporary file in ``path``'s folder for writing; when the block ends without an
    error it is renamed to ``path`` (an atomic replace on one file system), otherwise deleted.

        with atomic_open("runs/x/last.npz") as f:
            numpy.savez(f, **arrays)

    The folder is created if needed. The file ends up readable by others (0644), as an ordinary
    new file would be, not private as ``mkstemp`` makes it. Temporary names are unique and carry
    the writer's process id (``.last.npz.<pid>.<random>.tmp``), so processes sharing a folder never
    share one, and the temporaries of ``path`` left by a killed process are removed here first.
    An error while writing (a full disk) names ``path``.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    remove_stale_temporaries(folder, os.path.basename(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as err:
        _remove(tmp)
        if err.errno is not None and err.filename in (None, tmp):   # the OS's, writing tmp; not the caller's
            raise OSError(err.errno, f"could not write {os.fspath(path)}: {err.strerror}") from err
        raise
    except BaseException:           # KeyboardInterrupt too: never leave the temporary file behind
        _remove(tmp)
        raise


def remove_stale_temporaries(folder, name="*"):
    """Delete the temporaries of ``folder``/``name`` (every file's, by default) whose writer is no
    longer running (killed mid-write); returns their paths. A temporary of a live process stays."""
    removed = []
    pattern = "*" if name == "*" else glob.escape(name)
    for tmp in glob.glob(os.path.join(glob.escape(folder), f".{pattern}.*.tmp")):
        pid = os.path.basename(tmp)[:-len(".tmp")].rsplit(".", 2)[-2]
        if pid.isdigit() and not _running(int(pid)):
            _remove(tmp)
            removed.append(tmp)
    return removed


def _running(pid):
    if os.name == "nt":             # os.kill would end the process there: keep its temporaries
        return True
    try:
        os.kill(pid, 0)             # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:         # it exists, under another user
        return True
    return True


def _remove(path):
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


_EOCD = struct.Struct("<4s4H2LH")            # zip's end of central directory record
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")


def zip_entry_count(f):
    """The number of entries a zip's end record declares, read before zipfile parses the directory
    (which would hold every entry in memory); 0 if no end record is found (zipfile then says why)."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(max(0, size - _EOCD.size - 0xFFFF))       # the record, then a comment of up to 64 KiB
    tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        return 0
    entries = _EOCD.unpack_from(tail, at)[4]
    if entries != 0xFFFF or at < _ZIP64_LOCATOR.size:
        return entries
    signature, _, offset, _ = _ZIP64_LOCATOR.unpack_from(tail, at - _ZIP64_LOCATOR.size)
    if signature != b"PK\x06\x07":
        return entries
    f.seek(offset)
    record = f.read(_ZIP64_EOCD.size)
    return _ZIP64_EOCD.unpack(record)[7] if len(record) == _ZIP64_EOCD.size else entries

"""Files written atomically: a checkpoint, a cache, a download or a table is either the old file
or the complete new one, never half of either."""
import contextlib
import glob
import os
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

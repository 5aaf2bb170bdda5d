"""Files written atomically: a checkpoint, a cache, a download or a table is either the old file
or the complete new one, never half of either."""
import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_open(path, mode="wb", **kwargs):
    """Open a temporary file in ``path``'s folder for writing; when the block ends without an
    error it is renamed to ``path`` (an atomic replace on one file system), otherwise deleted.

        with atomic_open("runs/x/last.npz") as f:
            numpy.savez(f, **arrays)

    The folder is created if needed. The file ends up readable by others (0644), as an ordinary
    new file would be, not private as ``mkstemp`` makes it. Temporary names are unique, so
    processes sharing a folder never share one.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:           # KeyboardInterrupt too: never leave the temporary file behind
        if os.path.exists(tmp):
            os.remove(tmp)
        raise

"""atomic_open: the new file appears whole or not at all, readable by others, no temporary left."""
import os
import stat

import pytest

from minise.files import atomic_open


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_writes_the_file_readable_by_others(tmp_path):
    path = tmp_path / "sub" / "out.txt"                  # the folder is made too
    with atomic_open(path, "w") as f:
        f.write("new")
        assert not path.exists()                          # only the temporary exists while writing
    assert path.read_text() == "new"
    assert _mode(path) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.txt"]


class SourceError(OSError):
    """An error of the writer's own, such as a download that stopped: not one of writing the file."""


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt, SourceError])
def test_an_error_keeps_the_old_file_and_no_temporary(tmp_path, error):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(error, match="stop"):       # the writer's error comes through as it was
        with atomic_open(path) as f:
            f.write(b"half of the new")
            raise error("stop")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]

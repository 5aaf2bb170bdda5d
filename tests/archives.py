"""Archive helpers shared by the data and training tests (imported by name: the tests folder is on
sys.path, as pytest puts it there for tests/conftest.py)."""
import io
import tarfile
from collections import Counter


def write_tar(path, members, mode="w:gz"):
    """Write {name: bytes} as a tar archive (gzip by default)."""
    with tarfile.open(path, mode) as tar:
        for name, data in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def first_of_each_class(archive, per_split):
    """{member name: JPEG bytes}: the first ``per_split[split]`` images of every class of each
    split of an image-folder archive (``SPLIT/CLASS/file``), checked to all be there."""
    members, counts = {}, Counter()
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            split, cls, _ = member.name.split("/")
            if counts[split, cls] < per_split[split]:
                counts[split, cls] += 1
                members[member.name] = tar.extractfile(member).read()
    assert len(counts) == 10 * len(per_split) and all(n == per_split[s] for (s, _), n in counts.items()), counts
    return members

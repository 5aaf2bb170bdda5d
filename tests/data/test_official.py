"""The official python archives: reading them, downloading them from a real local HTTP server."""
import hashlib
import pickle
import socket
import tarfile
import time

import numpy as np
import pytest

from minise.data import (
    CIFAR10_CLASSES, CIFAR100_CLASSES, ChecksumError, DataError, DownloadError, load_cifar10,
    load_cifar100,
)


def assert_dataset(data, expected):
    for field in ("x_train", "y_train", "x_test", "y_test"):
        got = getattr(data, field)
        assert got.dtype == expected[field].dtype, field
        np.testing.assert_array_equal(got, expected[field], err_msg=field)
    assert data.classes == tuple(expected["classes"])


def closed_port():
    """A loopback port with nothing listening: connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def files_in(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_verify_load_and_cache(official_archive, http_server, tmp_path):
    path, md5, expected = official_archive()
    url = http_server.serve("/kriz/cifar-10-python.tar.gz", path.read_bytes())
    cache = tmp_path / "cache"
    data = load_cifar10("download", data_dir=cache, url=url, md5=md5, progress=False)
    assert_dataset(data, expected)
    assert data.x_train.shape == (15, 3, 32, 32)  # five batches of three
    assert "cifar-10-python.tar.gz" in files_in(cache)
    assert http_server.hits["/kriz/cifar-10-python.tar.gz"] == 1

    start = time.perf_counter()
    again = load_cifar10("download", data_dir=cache, url=url, md5=md5, progress=False)
    assert time.perf_counter() - start < 1.0
    assert_dataset(again, expected)
    assert http_server.hits["/kriz/cifar-10-python.tar.gz"] == 1  # served from the cache
    # Without the decoded cache, the verified archive is read again instead of downloaded again.
    for npz in cache.glob("*.npz"):
        npz.unlink()
    assert_dataset(load_cifar10("download", data_dir=cache, url=url, md5=md5, progress=False), expected)
    assert http_server.hits["/kriz/cifar-10-python.tar.gz"] == 1


@pytest.mark.filterwarnings("error::DeprecationWarning")  # e.g. from importing numpy.core on NumPy 2
def test_archive_pickled_with_old_numpy_names(official_archive, tmp_path):
    path, _, expected = official_archive()
    with tarfile.open(path) as tar:
        assert b"numpy.core.multiarray" in tar.extractfile("cifar-10-batches-py/data_batch_1").read()
    assert_dataset(load_cifar10(path, data_dir=tmp_path / "cache", progress=False), expected)


@pytest.mark.parametrize("damage", ["truncated", "wrong shape"])
def test_damaged_cache_is_rebuilt(official_archive, tmp_path, damage):
    path, _, expected = official_archive()
    cache = tmp_path / "cache"
    load_cifar10(path, data_dir=cache, progress=False)
    (npz,) = cache.glob("*.npz")
    if damage == "truncated":
        npz.write_bytes(npz.read_bytes()[:1000])
    else:
        np.savez(npz, x_train=np.zeros((2, 32, 32, 3), np.uint8), y_train=np.zeros(2, np.int64),
                 x_test=np.zeros((1, 3, 32, 32), np.uint8), y_test=np.zeros(1, np.int64),
                 classes=np.array(["a"]))
    with pytest.warns(UserWarning, match="ignoring the unreadable cache"):
        assert_dataset(load_cifar10(path, data_dir=cache, progress=False), expected)
    assert_dataset(load_cifar10(path, data_dir=cache, progress=False), expected)  # rewritten, no warning


def test_unwritable_cache_still_loads(official_archive, tmp_path):
    path, _, expected = official_archive()
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="cannot write the cache"):
        assert_dataset(load_cifar10(path, data_dir=not_a_folder, progress=False), expected)


def test_download_without_content_length_shows_progress(official_archive, http_server, tmp_path, capfd):
    path, md5, expected = official_archive()
    url = http_server.serve("/cifar-10-python.tar.gz", path.read_bytes(), content_length=None)
    data = load_cifar10(source=None, data_dir=tmp_path / "cache", url=url, md5=md5, progress=True)
    assert_dataset(data, expected)
    assert http_server.hits["/cifar-10-python.tar.gz"] == 1  # source None -> "download"
    assert "cifar-10-python.tar.gz" in capfd.readouterr().err  # the progress bar was drawn


def test_checksum_mismatch_keeps_nothing(official_archive, http_server, tmp_path):
    path, md5, _ = official_archive()
    url = http_server.serve("/cifar-10-python.tar.gz", path.read_bytes())
    wrong = "0" * 32
    with pytest.raises(ChecksumError) as err:
        load_cifar10(data_dir=tmp_path / "cache", url=url, md5=wrong, progress=False)
    assert wrong in str(err.value) and md5 in str(err.value) and url in str(err.value)
    assert isinstance(err.value, ValueError)
    assert files_in(tmp_path / "cache") == []  # not even a hidden partial file


def test_download_cut_short_keeps_nothing(official_archive, http_server, tmp_path):
    path, md5, _ = official_archive()
    body = path.read_bytes()
    # The server announces the full length, sends half, and closes the connection.
    url = http_server.serve("/cifar-10-python.tar.gz", body, send=body[: len(body) // 2])
    with pytest.raises(DownloadError, match="cut short|interrupted") as err:
        load_cifar10(data_dir=tmp_path / "cache", url=url, md5=None, progress=False)
    assert isinstance(err.value, OSError)
    assert files_in(tmp_path / "cache") == []


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_archive_is_a_clear_error_and_not_cached(official_archive, http_server, tmp_path, damage):
    path, _, _ = official_archive()
    body = path.read_bytes()
    bad = body[: len(body) // 2] if damage == "truncated" else b"\x1f\x8b" + bytes(range(256)) * 8
    # Served as a complete file whose md5 is right: the download passes, reading it must not.
    url = http_server.serve("/cifar-10-python.tar.gz", bad)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="truncated or corrupt") as err:
        load_cifar10(data_dir=cache, url=url, md5=hashlib.md5(bad).hexdigest(), progress=False)
    assert "cifar-10-python.tar.gz" in str(err.value)
    assert list(cache.glob("*.npz")) == []
    # The same bytes as a local file.
    local = tmp_path / "local.tar.gz"
    local.write_bytes(bad)
    with pytest.raises(DataError, match="truncated or corrupt") as err:
        load_cifar10(local, data_dir=cache, progress=False)
    assert str(local) in str(err.value)
    assert list(cache.glob("*.npz")) == []


def test_no_network_says_how_to_use_a_local_copy(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/cifar-10-python.tar.gz"
    with pytest.raises(DownloadError) as err:
        load_cifar10(data_dir=tmp_path / "cache", url=url, progress=False)
    message = str(err.value)
    assert url in message and "MINISE_DATA" in message and "source=" in message
    assert files_in(tmp_path / "cache") == []


def test_http_error_is_a_download_error(http_server, tmp_path):
    url = http_server.serve("/elsewhere", b"")  # any other path gets 404
    with pytest.raises(DownloadError, match="404"):
        load_cifar10(data_dir=tmp_path, url=url.replace("/elsewhere", "/missing.tar.gz"), progress=False)
    assert files_in(tmp_path) == []


def test_archive_and_extracted_folder(official_archive, tmp_path):
    path, _, expected = official_archive(per_batch=2)
    assert_dataset(load_cifar10(path, data_dir=tmp_path / "cache", progress=False), expected)
    with tarfile.open(path) as tar:
        tar.extractall(tmp_path / "extracted", filter="data")
    for source in (tmp_path / "extracted" / "cifar-10-batches-py", tmp_path / "extracted"):
        assert_dataset(load_cifar10(source, data_dir=tmp_path / "cache", progress=False), expected)


def test_cifar100_download_and_meta(official_archive, http_server, tmp_path):
    path, md5, expected = official_archive("cifar100", per_batch=5)
    url = http_server.serve("/cifar-100-python.tar.gz", path.read_bytes())
    data = load_cifar100(data_dir=tmp_path / "cache", url=url, md5=md5, progress=False)
    assert_dataset(data, expected)
    assert data.classes == CIFAR100_CLASSES and len(data.classes) == 100
    assert "cifar-100-python.tar.gz" in files_in(tmp_path / "cache")
    assert http_server.hits["/cifar-100-python.tar.gz"] == 1


def test_downloaded_archive_that_no_longer_matches_is_fetched_again(official_archive, http_server, tmp_path):
    path, md5, expected = official_archive()
    url = http_server.serve("/cifar-10-python.tar.gz", path.read_bytes())
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "cifar-10-python.tar.gz").write_bytes(b"an old, damaged download")
    with pytest.warns(UserWarning, match="downloading it again"):
        data = load_cifar10(data_dir=cache, url=url, md5=md5, progress=False)
    assert_dataset(data, expected)
    assert http_server.hits["/cifar-10-python.tar.gz"] == 1
    assert (cache / "cifar-10-python.tar.gz").read_bytes() == path.read_bytes()


def test_wrong_data_set_or_missing_file(official_archive, tmp_path, write):
    path100, _, _ = official_archive("cifar100")
    with pytest.raises(DataError, match="data_batch_1"):  # says what a CIFAR-10 archive holds
        load_cifar10(path100, data_dir=tmp_path / "cache", progress=False)
    path, _, _ = official_archive()
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    del members["cifar-10-batches-py/data_batch_3"]
    broken = write.tar(tmp_path / "broken.tar.gz", members)
    with pytest.raises(DataError, match="missing data_batch_3"):
        load_cifar10(broken, data_dir=tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache").glob("*.npz")) == []


def test_bad_batch_contents(official_archive, tmp_path, write):
    path, _, _ = official_archive()
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    name = "cifar-10-batches-py/test_batch"
    original = pickle.loads(members[name], encoding="latin1")

    def load_with(**changes):
        members[name] = pickle.dumps({**original, **changes}, protocol=2)
        source = write.tar(tmp_path / "changed.tar.gz", members)
        return load_cifar10(source, data_dir=tmp_path / "cache", progress=False)

    with pytest.raises(DataError, match=r"test_batch.*\(n, 3072\).*3000"):
        load_with(data=original["data"][:, :3000])
    with pytest.raises(DataError, match=r"test_batch.*labels in \[0, 10\)"):
        load_with(labels=[0, 1, 10])  # 10 is not a CIFAR-10 label
    with pytest.raises(DataError, match=r"test_batch.*3 integer labels"):
        load_with(labels=[0, 1])
    assert list((tmp_path / "cache").glob("*.npz")) == []


def test_pickles_cannot_run_code(official_archive, tmp_path, write):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path, _, _ = official_archive()
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    members["cifar-10-batches-py/batches.meta"] = pickle.dumps({"label_names": Evil()}, protocol=2)
    evil = write.tar(tmp_path / "evil.tar.gz", members)
    with pytest.raises(DataError, match=r"io\.open"):
        load_cifar10(evil, data_dir=tmp_path / "cache", progress=False)
    assert not marker.exists()


def test_missing_source_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_cifar10(tmp_path / "nowhere.tar.gz", data_dir=tmp_path, progress=False)


def test_class_constants():
    assert CIFAR10_CLASSES == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                               "ship", "truck")
    assert len(set(CIFAR100_CLASSES)) == 100 and list(CIFAR100_CLASSES) == sorted(CIFAR100_CLASSES)
    assert CIFAR100_CLASSES[:3] == ("apple", "aquarium_fish", "baby") and CIFAR100_CLASSES[-1] == "worm"


def read_members(path):
    """{name: bytes} of the files of a tar archive."""
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_class_names_pickled_as_bytes_are_decoded(official_archive, tmp_path, write, protocol):
    path, _, expected = official_archive()
    members = read_members(path)
    members["cifar-10-batches-py/batches.meta"] = pickle.dumps(
        {"label_names": [name.encode() for name in CIFAR10_CLASSES]}, protocol=protocol)
    data = load_cifar10(write.tar(tmp_path / "bytes.tar.gz", members), data_dir=tmp_path / "cache", progress=False)
    assert data.classes == CIFAR10_CLASSES
    assert_dataset(data, expected)


@pytest.mark.parametrize("names, fragment", [
    (list(CIFAR10_CLASSES) + ["sofa", "lamp"], r"batches.meta.*12 class names.*10"),
    (list(CIFAR10_CLASSES[:9]), r"batches.meta.*9 class names.*10"),
    (list(range(10)), r"batches.meta.*'label_names'.*strings"),
])
def test_meta_file_with_the_wrong_class_names(official_archive, tmp_path, write, names, fragment):
    path, _, _ = official_archive()
    members = read_members(path)
    members["cifar-10-batches-py/batches.meta"] = pickle.dumps({"label_names": names}, protocol=2)
    with pytest.raises(DataError, match=fragment):
        load_cifar10(write.tar(tmp_path / "meta.tar.gz", members), data_dir=tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache").glob("*.npz")) == []


def test_two_copies_of_the_official_files_are_ambiguous(official_archive, png_folder, tmp_path, write):
    path, _, _ = official_archive()
    members = read_members(path)
    twice = {**members, **{f"backup/{name}": data for name, data in members.items()}}
    with pytest.raises(DataError, match=r"ambiguous.*cifar-10-batches-py, backup/cifar-10-batches-py"):
        load_cifar10(write.tree(tmp_path / "twice", twice), data_dir=tmp_path / "cache", progress=False)
    with_images = {**members, **{f"images/{name}": data for name, data in png_folder(n=1).items()}}
    with pytest.raises(DataError, match=r"ambiguous.*cifar-10-batches-py.*images"):
        load_cifar10(write.tar(tmp_path / "both.tar.gz", with_images), data_dir=tmp_path / "cache",
                     progress=False)


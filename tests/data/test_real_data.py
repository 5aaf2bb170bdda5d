"""Loading the real CIFAR-10 JPEGs of the shared archive: a small slice, and once the whole of it."""
import io
import shutil
import time

import numpy as np
from PIL import Image

from minise.data import CIFAR10_CLASSES, channel_stats, load_cifar10


def per_class(members):
    """Images of each class and split in the slice (the same for all of them)."""
    return sum(name.startswith("train/airplane/") for name in members)


def pillow_chw(jpeg):
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).transpose(2, 0, 1)


def test_slice_matches_pillow_decode(jpeg_slice, tmp_path):
    path, members = jpeg_slice
    data = load_cifar10(path, data_dir=tmp_path / "cache", progress=False)
    n = per_class(members) * len(CIFAR10_CLASSES)
    assert data.x_train.shape == (n, 3, 32, 32) and data.x_test.shape == (n, 3, 32, 32)
    assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.int64
    assert data.y_train.shape == (n,) and data.y_test.shape == (n,)
    assert data.classes == CIFAR10_CLASSES
    for split, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
        names = sorted(name for name in members if name.startswith(split + "/"))
        assert len(names) == len(x)
        for i, name in enumerate(names):  # the arrays follow the sorted member paths
            assert y[i] == CIFAR10_CLASSES.index(name.split("/")[1]), name
            np.testing.assert_array_equal(x[i], pillow_chw(members[name]), err_msg=name)
        assert np.bincount(y).tolist() == [per_class(members)] * 10


def test_cache_follows_edits_of_the_source(jpeg_slice, tmp_path, write):
    _, members = jpeg_slice
    source, cache = tmp_path / "edited.tar.gz", tmp_path / "cache"
    write.tar(source, members)
    first = load_cifar10(source, data_dir=cache, progress=False)
    # Drop the first training image and swap two test images: same path, new content.
    edited = dict(members)
    del edited[min(n for n in members if n.startswith("train/"))]
    a, b = sorted(n for n in members if n.startswith("test/"))[:2]
    edited[a], edited[b] = members[b], members[a]
    write.tar(source, edited)
    second = load_cifar10(source, data_dir=cache, progress=False)
    assert len(second.x_train) == len(first.x_train) - 1
    np.testing.assert_array_equal(second.x_train, first.x_train[1:])
    np.testing.assert_array_equal(second.x_test[0], first.x_test[1])
    # The cache of the old content was replaced, not kept beside the new one.
    assert len(list(cache.glob("*.npz"))) == 1
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == []  # no temporary files


def test_directory_and_zip_sources_equal_the_tar(jpeg_slice, tmp_path, write):
    path, members = jpeg_slice
    reference = load_cifar10(path, data_dir=tmp_path / "c1", progress=False)
    folder = write.tree(tmp_path / "folder", members)
    (folder / ".DS_Store").write_bytes(b"junk")  # OS junk is ignored
    zipped = write.zip(tmp_path / "slice.zip", {f"cifar10/{k}": v for k, v in members.items()})
    for source in (folder, zipped):
        data = load_cifar10(source, data_dir=tmp_path / "c2", progress=False)
        for got, want in zip(data[:4], reference[:4]):
            np.testing.assert_array_equal(got, want)
    # A directory edit (new bytes, new size) is seen on the next load, not served from the cache.
    name = sorted(n for n in members if n.startswith("train/"))[0]
    other = sorted(n for n in members if n.startswith("train/"))[-1]
    shutil.copyfile(folder / other, folder / name)
    data = load_cifar10(folder, data_dir=tmp_path / "c2", progress=False)
    np.testing.assert_array_equal(data.x_train[0], reference.x_train[-1])


def test_source_from_environment_and_default_cache(jpeg_slice, tmp_path, monkeypatch):
    path, members = jpeg_slice
    monkeypatch.setenv("MINISE_DATA", str(path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    data = load_cifar10(progress=False)  # source None -> $MINISE_DATA; cache -> $XDG_CACHE_HOME/minise
    assert len(data.x_train) == per_class(members) * 10
    assert len(list((tmp_path / "xdg" / "minise").glob("cifar10-*.npz"))) == 1


def test_whole_shared_archive(shared_archive, tmp_path):
    """The one full decode of the test suite: 60,000 JPEGs, then a cache hit."""
    cache = tmp_path / "cache"
    data = load_cifar10(shared_archive, data_dir=cache, progress=False)
    assert data.x_train.shape == (50_000, 3, 32, 32) and data.x_test.shape == (10_000, 3, 32, 32)
    assert np.bincount(data.y_train, minlength=10).tolist() == [5_000] * 10
    assert np.bincount(data.y_test, minlength=10).tolist() == [1_000] * 10
    # The statistics the archive's README states for all 60,000 decoded images.
    mean, std = channel_stats(np.concatenate([data.x_train, data.x_test]))
    np.testing.assert_allclose(mean, [0.4917, 0.4826, 0.4472], atol=6e-5)
    np.testing.assert_allclose(std, [0.2452, 0.2427, 0.2606], atol=6e-5)

    start = time.perf_counter()
    again = load_cifar10(shared_archive, data_dir=cache, progress=False)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"second load took {elapsed:.2f} s: the cache was not used"
    for got, want in zip(again, data):
        np.testing.assert_array_equal(got, want)
    assert again.classes == CIFAR10_CLASSES

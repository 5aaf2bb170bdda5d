"""Image-folder sources (train/CLASS/*.png|jpg) and what makes them invalid."""
import io

import numpy as np
import pytest
from PIL import Image

from minise.data import CIFAR10_CLASSES, CIFAR100_CLASSES, DataError, load_cifar10, load_cifar100


def decoded(png):
    return np.asarray(Image.open(io.BytesIO(png))).transpose(2, 0, 1)


def load(source, tmp_path, loader=load_cifar10):
    return loader(source, data_dir=tmp_path / "cache", progress=False)


def no_cache(tmp_path):
    return list((tmp_path / "cache").glob("*.npz")) == []


def test_labels_are_indices_in_the_cifar10_class_list(png_folder, tmp_path, write):
    members = png_folder(n=2)
    data = load(write.tree(tmp_path / "src", members), tmp_path)
    train = sorted(name for name in members if name.startswith("train/"))
    assert data.y_train.tolist() == [CIFAR10_CLASSES.index(name.split("/")[1]) for name in train]
    assert data.y_test.tolist() == [label for label in range(10) for _ in range(2)]
    for i, name in enumerate(train):  # PNG is lossless: pixels survive exactly
        np.testing.assert_array_equal(data.x_train[i], decoded(members[name]))
    assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.int64


def test_zip_and_tgz_sources(png_folder, tmp_path, write):
    members = png_folder(n=1)
    members["README.txt"] = b"files that are not images are ignored"
    members["train/ship/notes.md"] = b"also ignored"
    members["__MACOSX/train/ship/._0000.png"] = b"macOS resource fork, not a PNG"
    reference = load(write.tree(tmp_path / "src", members), tmp_path)
    for source in (write.zip(tmp_path / "d.zip", members), write.tar(tmp_path / "d.tgz", members)):
        data = load(source, tmp_path)
        for got, want in zip(data[:4], reference[:4]):
            np.testing.assert_array_equal(got, want)
    assert reference.y_train.tolist() == list(range(10))


def test_jpeg_extensions_any_case(tmp_path, write):
    rgb = np.full((32, 32, 3), 200, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=100)
    members = {f"{split}/{cls}/{name}": buf.getvalue() for cls in CIFAR10_CLASSES
               for split, name in (("train", "a.JPG"), ("train", "b.jpeg"), ("test", "c.jpg"))}
    data = load(write.tree(tmp_path / "src", members), tmp_path)
    assert len(data.x_train) == 20 and len(data.x_test) == 10
    assert np.abs(data.x_test.astype(int) - 200).max() <= 2  # JPEG is lossy, barely at q=100


def test_unknown_class_names_are_listed(png_folder, tmp_path, write):
    members = png_folder(classes=("cat", "kitten", "Dog"), n=1)
    with pytest.raises(DataError) as err:
        load(write.tar(tmp_path / "src.tar.gz", members), tmp_path)
    message = str(err.value)
    assert "Dog" in message and "kitten" in message and "src.tar.gz" in message
    assert "airplane" in message  # what was expected
    assert no_cache(tmp_path)


@pytest.mark.parametrize("shape, found", [
    ((32, 31, 3), "31x32 RGB"),    # PIL sizes are width x height
    ((33, 32, 3), "32x33 RGB"),
    ((32, 32), "32x32 L"),         # grayscale
    ((32, 32, 4), "32x32 RGBA"),
])
def test_image_that_is_not_32x32_rgb(png_folder, tmp_path, write, shape, found):
    members = png_folder(n=2)
    members["test/truck/0001.png"] = write.png(np.zeros(shape, np.uint8))
    with pytest.raises(DataError) as err:
        load(write.zip(tmp_path / "src.zip", members), tmp_path)
    message = str(err.value)
    assert "test/truck/0001.png" in message and "expected a 32x32 RGB image" in message and found in message
    assert no_cache(tmp_path)


def test_corrupt_image(png_folder, tmp_path, write):
    members = png_folder(n=2)
    members["train/cat/0001.png"] = members["train/cat/0001.png"][:60]  # truncated PNG
    with pytest.raises(DataError, match=r"train/cat/0001.png: cannot decode"):
        load(write.tree(tmp_path / "src", members), tmp_path)
    assert no_cache(tmp_path)


def test_layout_errors(png_folder, tmp_path, write):
    members = png_folder(n=1)
    only_train = {k: v for k, v in members.items() if k.startswith("train/")}
    with pytest.raises(DataError, match="no images under test/"):
        load(write.tree(tmp_path / "a", only_train), tmp_path)
    with pytest.raises(DataError, match=r"val/cat/x\.png.*SPLIT/CLASS"):
        extra = {"val/cat/x.png": members["train/cat/0000.png"]}
        load(write.tree(tmp_path / "b", {**members, **extra}), tmp_path)
    with pytest.raises(DataError, match="found neither"):
        load(write.tree(tmp_path / "c", {"notes.txt": b"nothing here"}), tmp_path)
    assert no_cache(tmp_path)


def test_cifar100_image_folders(tmp_path, write):
    pixels = np.arange(32 * 32 * 3, dtype=np.uint32).reshape(32, 32, 3).astype(np.uint8)
    png = write.png(pixels)
    members = {f"{split}/{cls}/0.png": png for split in ("train", "test") for cls in CIFAR100_CLASSES}
    data = load(write.tree(tmp_path / "src", members), tmp_path, load_cifar100)
    assert data.classes == CIFAR100_CLASSES
    assert data.y_train.tolist() == list(range(100)) == data.y_test.tolist()
    np.testing.assert_array_equal(data.x_test[99], pixels.transpose(2, 0, 1))
    with pytest.raises(DataError, match=r"cifar100.*airplane"):
        load(write.tree(tmp_path / "ten", {"train/airplane/0.png": png, "test/airplane/0.png": png}),
             tmp_path, load_cifar100)


@pytest.mark.parametrize("missing", ["test/cat/", "train/truck/"])
def test_a_missing_class_folder_is_named(png_folder, tmp_path, write, missing):
    members = {name: data for name, data in png_folder(n=1).items() if not name.startswith(missing)}
    split, cls = missing.strip("/").split("/")
    with pytest.raises(DataError, match=rf"no images of {cls} under {split}/"):
        load(write.tree(tmp_path / "src", members), tmp_path)
    assert no_cache(tmp_path)


def test_two_nested_trees_are_ambiguous(png_folder, tmp_path, write):
    members = png_folder(n=1)
    nested = {**{f"cifar10/{name}": data for name, data in members.items()},
              **{f"cifar10/old/{name}": data for name, data in members.items()}}
    with pytest.raises(DataError, match=r"ambiguous.*cifar10, cifar10/old"):
        load(write.zip(tmp_path / "src.zip", nested), tmp_path)
    assert no_cache(tmp_path)



def test_an_encrypted_zip_member_is_refused_naming_the_archive(png_folder, tmp_path, write):
    """zipfile raises RuntimeError for an encrypted member (and NotImplementedError for an unknown
    compression): a DataError naming the archive, not a traceback."""
    path = write.zip(tmp_path / "src.zip", png_folder(n=1))
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):   # general-purpose flags: bit 0, encrypted
        at = data.index(signature)
        data[at + offset] |= 1
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"src.zip: cannot read it .*encrypted"):
        load(path, tmp_path)

"""CIFAR-10 and CIFAR-100 loaders with a cache of the decoded arrays.

A source is one of

* ``"download"``: the official python archive, downloaded once into the cache folder;
* the official python archive (``cifar-10-python.tar.gz``) or its extracted folder
  (``cifar-10-batches-py/``): pickled uint8 arrays;
* image folders ``train/CLASS/*.png|jpg|jpeg`` and ``test/CLASS/...``, one folder for every class
  of the data set in each split, as a directory, a ``.tar.gz``/``.tgz`` or a ``.zip``, decoded
  with Pillow. The label of an image is the index of its folder name in the data set's own class
  list.

A source holds one copy of the data: the layout found in two folders is refused as ambiguous.
Only regular files are read, each within what CIFAR can hold (``reading``: ``MAX_*``); images
are decoded as they are read, so memory holds their pixels, not their files.

Decoding 60,000 JPEGs takes seconds, so the arrays are cached in an uncompressed ``.npz`` whose
name holds a checksum of the source: a second load only reads that file, and an edited source
gets a new checksum, hence a new cache file, so it is never served stale.
"""
import hashlib
import io
import os
import pickle
import stat
import tarfile
import urllib.parse
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..files import atomic_open, remove_stale_temporaries
from .download import (
    CIFAR10_MD5, CIFAR10_URL, CIFAR100_MD5, CIFAR100_URL, DataError, download, file_digest,
)
from .npz_map import memmap_npz
from .reading import (
    IMAGE_SUFFIXES, MAX_ARCHIVE_BYTES, Budget, file_kind, folder_files, shown, walk_archive, walk_folder,
)

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
# CIFAR-100's fine labels, in the order of the official meta file (which happens to be alphabetical).
CIFAR100_CLASSES = tuple("""
    apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
    butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab
    crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard
    lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom
    oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine
    possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake
    spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor
    train trout tulip turtle wardrobe whale willow_tree wolf woman worm
""".split())

SPLITS = ("train", "test")
IMAGE_SHAPE = (3, 32, 32)
_CACHE_VERSION = "1"  # part of every cache key: bump it when decoding or the cache layout changes


class Dataset(NamedTuple):
    """A loaded data set.

    x_train: uint8 (N_train, 3, 32, 32), NCHW.   y_train: int64 (N_train,).
    x_test:  uint8 (N_test, 3, 32, 32).          y_test:  int64 (N_test,).
    classes: tuple of str, ``classes[label]`` is the name of a label.
    """
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple

    def __repr__(self):  # the default repr would print four big arrays
        def arr(a):
            return f"{a.dtype}{a.shape}"
        return (f"Dataset(x_train={arr(self.x_train)}, y_train={arr(self.y_train)}, "
                f"x_test={arr(self.x_test)}, y_test={arr(self.y_test)}, {len(self.classes)} classes)")


@dataclass(frozen=True)
class _Format:
    """What the official python archive of one data set holds."""
    name: str            # also the prefix of cache file names
    folder: str          # folder inside the official archive
    train: tuple         # pickle files of the training split
    test: tuple          # pickle file of the test split
    meta: str            # pickle file with the class names
    names_key: str       # key of the class names in ``meta``
    labels_key: str      # key of the labels in each data pickle
    classes: tuple       # class names, for image folders

    @property
    def files(self):
        return self.train + self.test + (self.meta,)


_CIFAR10 = _Format("cifar10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                   ("test_batch",), "batches.meta", "label_names", "labels", CIFAR10_CLASSES)
_CIFAR100 = _Format("cifar100", "cifar-100-python", ("train",), ("test",), "meta",
                    "fine_label_names", "fine_labels", CIFAR100_CLASSES)


def load_cifar10(source=None, *, data_dir=None, progress=True, url=CIFAR10_URL, md5=CIFAR10_MD5):
    """Load CIFAR-10 as a :class:`Dataset` (50,000 + 10,000 images, 10 classes).

    source: ``None`` (the environment variable ``MINISE_DATA`` if set, else ``"download"``),
        ``"download"``, or a path to the official archive, its extracted folder, or image folders
        (directory, ``.tar.gz``/``.tgz`` or ``.zip``); see the module docstring.
    data_dir: cache folder (downloads and decoded arrays); default ``$XDG_CACHE_HOME/minise``
        or ``~/.cache/minise``.
    progress: show tqdm progress bars for the download and the image decoding.
    url, md5: where ``"download"`` fetches the archive and its expected md5 (None: no check).
    Raises DataError (a ValueError) for bad data, DownloadError (an OSError) when a download fails.
    """
    return _load(_CIFAR10, source, data_dir, progress, url, md5)


def load_cifar100(source=None, *, data_dir=None, progress=True, url=CIFAR100_URL, md5=CIFAR100_MD5):
    """Load CIFAR-100 with its 100 fine labels; same arguments as :func:`load_cifar10`.

    From the official archive the class names come from its ``meta`` file; image folders must be
    named after :data:`CIFAR100_CLASSES`.
    """
    return _load(_CIFAR100, source, data_dir, progress, url, md5)


def default_data_dir():
    """``$XDG_CACHE_HOME/minise``, or ``~/.cache/minise`` when that variable is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "minise"


# --- choosing the source and the cache -------------------------------------------------------

def _load(fmt, source, data_dir, progress, url, md5):
    if source is None:
        source = os.environ.get("MINISE_DATA") or "download"
    cache_dir = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if isinstance(source, str) and source == "download":
        return _load_download(fmt, cache_dir, progress, url, md5)
    expected = (f"expected the official archive, its extracted {fmt.folder}/ folder, or image folders "
                "(directory, .tar.gz or .zip)")
    if isinstance(source, str) and not source.strip():
        raise DataError(f"the {fmt.name} source is an empty path; {expected}, or 'download'")
    path = Path(source).expanduser()
    try:
        mode = path.stat().st_mode       # stat before open: a FIFO or a device is never opened
    except FileNotFoundError:
        raise FileNotFoundError(f"{fmt.name} source {shown(str(path))} does not exist: {expected}") from None
    if stat.S_ISDIR(mode):
        digest = _directory_digest(path, fmt)
    elif stat.S_ISREG(mode):
        size = path.stat().st_size
        if size > MAX_ARCHIVE_BYTES:
            raise DataError(f"{shown(str(path))} holds {size:,} bytes, more than any {fmt.name} archive "
                            f"({MAX_ARCHIVE_BYTES:,} bytes at most); refusing to read it")
        digest = file_digest(path)
    else:
        raise DataError(f"{fmt.name} source {shown(str(path))} is {file_kind(mode)}, not a regular file or "
                        f"a folder; {expected}")
    return _cached(fmt, cache_dir, str(path.resolve()), digest, lambda: _read_source(fmt, path, progress))


def _load_download(fmt, cache_dir, progress, url, md5):
    archive = cache_dir / (PurePosixPath(urllib.parse.urlparse(url).path).name or f"{fmt.name}.tar.gz")

    def fetch():
        if archive.exists() and (md5 is None or file_digest(archive, "md5") == md5.lower()):
            return archive
        if archive.exists():
            warnings.warn(f"{archive} does not have md5 {md5}: downloading it again")
        return download(url, archive, md5=md5, progress=progress)

    if md5 is not None:
        # The md5 pins the archive's bytes, so it can key the cache: a cache hit then needs
        # neither the archive nor a pass over its 160 MB to hash it.
        return _cached(fmt, cache_dir, url, "md5:" + md5.lower(),
                       lambda: _read_source(fmt, fetch(), progress))
    return _cached(fmt, cache_dir, url, file_digest(fetch()), lambda: _read_source(fmt, archive, progress))


def _cached(fmt, cache_dir, origin, digest, read):
    """Return the cached Dataset for (format, source digest), or ``read()`` it and cache it.

    origin (a path or URL) names the cache file's family, so that when a source changes, the
    cache of its previous content is deleted instead of piling up.
    """
    family = f"{fmt.name}-{_sha(origin)[:8]}-"
    path = cache_dir / f"{family}{_sha(_CACHE_VERSION, fmt.name, digest)[:16]}.npz"
    if cache_dir.is_dir():
        remove_stale_temporaries(str(cache_dir))    # of any source: writers killed mid-write
    data = _read_cache(path)
    if data is None:
        data = read()
        if not _write_cache(path, data):
            return data
        for old in cache_dir.glob(f"{family}*.npz"):  # the caches of this source's older versions
            if old != path:
                old.unlink(missing_ok=True)
    return data


def _sha(*parts):
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


def _read_cache(path):
    """The Dataset stored at ``path``, or None if there is none or it is unreadable."""
    if not path.exists():
        return None
    try:
        # Memory-mapped: the images are read from the file as they are used, and every worker
        # process of a run shares the same pages instead of holding its own copy.
        npz = memmap_npz(path)
        data = Dataset(npz["x_train"], npz["y_train"], npz["x_test"], npz["y_test"],
                       tuple(str(c) for c in npz["classes"]))
        _check(data, path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        warnings.warn(f"ignoring the unreadable cache {path} ({err}); decoding the source again")
        return None
    return data


def _write_cache(path, data):
    """Write ``data`` to ``path`` atomically (``files.atomic_open``); return False, with a
    warning, when that fails (a read-only home, a full disk): the data is good, only the cache is
    missing."""
    try:
        with atomic_open(path) as f:
            # Uncompressed on purpose: np.load then only copies bytes, well under a second.
            np.savez(f, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test,
                     y_test=data.y_test, classes=np.array(data.classes))
    except OSError as err:
        warnings.warn(f"cannot write the cache {path} ({err}); the source will be decoded again next time; "
                      "pass data_dir= to cache elsewhere")
        return False
    return True


def _check(data, where):
    """Raise DataError unless ``data`` has the documented shapes and dtypes."""
    for x, y, split in ((data.x_train, data.y_train, "train"), (data.x_test, data.y_test, "test")):
        if x.dtype != np.uint8 or x.shape[1:] != IMAGE_SHAPE or y.dtype != np.int64 or y.shape != x.shape[:1]:
            raise DataError(f"{where}: {split} split has images {x.dtype}{x.shape} and labels "
                            f"{y.dtype}{y.shape}; expected uint8 (N, 3, 32, 32) and int64 (N,)")


# --- reading a source: files first, then their meaning -----------------------------------------

def _wanted(name, fmt):
    """Whether a file of a source matters: an image or one of the official pickles."""
    parts = [part for part in name.split("/") if part not in ("", ".")]   # string work: called per member
    if not parts or any(part.startswith(".") or part == "__MACOSX" for part in parts):
        return False  # OS junk such as .DS_Store or macOS' ._x.jpg resource forks
    return os.path.splitext(parts[-1])[1].lower() in IMAGE_SUFFIXES or parts[-1] in fmt.files


def _directory_digest(root, fmt):
    """A checksum of a directory from its file names, sizes and modification times.

    Cheaper than hashing every byte, and any edit changes a size or an mtime. Names that are not
    UTF-8 go in as their bytes (surrogate escapes).
    """
    digest = hashlib.sha256()
    for name in folder_files(root, lambda n: _wanted(n, fmt), Budget(fmt, root)):
        st = os.stat(root / name)
        digest.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _read_source(fmt, path, progress):
    """Read and decode a source (a directory or an archive file) into a checked Dataset."""
    files = _read_files(fmt, path, progress)
    _check_one_layout(fmt, files, path)
    by_basename = {PurePosixPath(n).name: n for n in files if PurePosixPath(n).name in fmt.files}
    images = sorted(n for n in files if PurePosixPath(n).suffix.lower() in IMAGE_SUFFIXES)
    if by_basename:
        data = _parse_official(fmt, files, by_basename, path)
    elif images:
        data = _parse_image_folders(fmt, files, images, path)
    else:
        raise DataError(
            f"{path}: found neither the official {fmt.name} files ({', '.join(fmt.files)}) nor "
            f"images in train/CLASS/ and test/CLASS/ folders (.png, .jpg, .jpeg)")
    _check(data, path)
    return data


def _check_one_layout(fmt, names, source):
    """Refuse a source that holds the layout in more than one folder: the official files twice, or
    beside image folders, or two trees of SPLIT/CLASS/ folders, one nested in the other. Merged,
    they would mix two copies of the data (and a test image could land in train)."""
    roots = set()
    for name in names:
        path = PurePosixPath(name)
        if path.name in fmt.files:
            roots.add(path.parent)
        elif path.suffix.lower() in IMAGE_SUFFIXES and len(path.parts) >= 3 and path.parts[-3] in SPLITS:
            roots.add(path.parent.parent.parent)   # the folder that holds train/ and test/
    if len(roots) > 1:
        listed = ", ".join(str(r) for r in sorted(roots, key=lambda r: (len(r.parts), str(r))))
        raise DataError(f"{source}: ambiguous: the {fmt.name} files or SPLIT/CLASS/ image folders are in "
                        f"more than one folder ({listed}); keep one copy, or point the source at one folder")


def _read_files(fmt, path, progress):
    """{name: content} of the wanted files of a folder or an archive (``reading``'s bounds):
    images decoded to uint8 (32, 32, 3) pixels as they are read, other files as bytes."""
    files, budget = {}, Budget(fmt, path)

    def keep(name, raw):
        image = PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES
        files[name] = _decode_image(raw, f"{path}: {shown(name)}") if image else raw
        bar.update()

    with tqdm(desc=f"reading {shown(path.name)}", unit="file", disable=not progress) as bar:
        if path.is_dir():
            for name, raw in walk_folder(path, lambda n: _wanted(n, fmt), budget):
                keep(name, raw)
            return files
        with open(path, "rb") as f:  # outside the try: a missing or unreadable file is its own error
            try:
                for name, raw in walk_archive(f, path, lambda n: _wanted(n, fmt), budget):
                    keep(name, raw)
            except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError,
                    RuntimeError, NotImplementedError) as err:     # zipfile: encrypted, unknown compression
                raise DataError(f"{path}: cannot read it as a .tar.gz, .tgz, .tar or .zip archive; "
                                f"is it truncated or corrupt? ({type(err).__name__}: {err})") from err
    return files


def _parse_official(fmt, files, by_basename, source):
    missing = [name for name in fmt.files if name not in by_basename]
    if missing:
        raise DataError(f"{source}: the official {fmt.name} data has the files {', '.join(fmt.files)}; "
                        f"missing {', '.join(missing)}")
    meta = _unpickle(files[by_basename[fmt.meta]], f"{source}: {by_basename[fmt.meta]}")
    if fmt.names_key not in meta:
        raise DataError(f"{source}: {by_basename[fmt.meta]} has no '{fmt.names_key}' "
                        f"(found {sorted(map(str, meta))})")
    classes = _class_names(fmt, meta[fmt.names_key], f"{source}: {by_basename[fmt.meta]}")
    splits = []
    for names in (fmt.train, fmt.test):
        parts = [_official_batch(fmt, files[by_basename[n]], f"{source}: {by_basename[n]}", len(classes))
                 for n in names]
        splits += [np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])]
    return Dataset(*splits, classes)


def _class_names(fmt, names, where):
    """The class names of a meta file as a tuple of str (Python 3 pickles hold bytes), as many as
    the data set has classes."""
    if isinstance(names, (str, bytes)) or not all(isinstance(n, (str, bytes)) for n in names):
        raise DataError(f"{where}: '{fmt.names_key}' must be a list of strings, found {names!r:.80}")
    classes = tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names)
    if len(classes) != len(fmt.classes):
        raise DataError(f"{where}: '{fmt.names_key}' holds {len(classes)} class names; "
                        f"{fmt.name} has {len(fmt.classes)}")
    return classes


def _official_batch(fmt, raw, where, num_classes):
    """(x uint8 (n, 3, 32, 32), y int64 (n,)) from one pickled batch of the official archive."""
    batch = _unpickle(raw, where)
    if "data" not in batch or fmt.labels_key not in batch:
        raise DataError(f"{where}: expected the keys 'data' and '{fmt.labels_key}', "
                        f"found {sorted(map(str, batch))}")
    x = np.asarray(batch["data"])
    y = np.asarray(batch[fmt.labels_key])
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
        raise DataError(f"{where}: expected 'data' uint8 of shape (n, 3072), found {x.dtype}{x.shape}")
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or ((y < 0) | (y >= num_classes)).any():
        values = f"{y.min()}..{y.max()}" if y.size and np.issubdtype(y.dtype, np.number) else "none"
        raise DataError(f"{where}: expected {len(x)} integer labels in [0, {num_classes}), "
                        f"found {y.dtype}{y.shape} with values {values}")
    # Each row is 1024 red, then 1024 green, then 1024 blue values, row-major: reshaping gives NCHW.
    return x.reshape(-1, *IMAGE_SHAPE), y.astype(np.int64)


try:  # NumPy 2 moved numpy.core to numpy._core; 1.26 has both names
    import numpy._core  # noqa: F401
    _NUMPY_CORE = "numpy._core"
except ImportError:  # pragma: no cover - NumPy < 1.26
    _NUMPY_CORE = "numpy.core"


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler for the official batches: plain containers and NumPy arrays, nothing else.

    ``pickle.load`` can run any code named in the file; this one only builds the few NumPy
    objects that array pickles refer to, so a doctored archive cannot run code.
    """
    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
                ("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer")}

    def find_class(self, module, name):
        if module.startswith(("numpy.core.", "numpy._core.")):
            # The 2009 archives say numpy.core, NumPy 2 pickles say numpy._core: use this NumPy's name.
            submodule = module.rsplit(".", 1)[1]
            module = f"{_NUMPY_CORE}.{submodule}"
        else:
            submodule = module
        if (submodule, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of an array")
        return super().find_class(module, name)


def _unpickle(raw, where):
    """The dict in a pickle from the official archive, with str keys."""
    try:
        # latin1: the archives were pickled by Python 2, whose byte strings hold the pixel data.
        obj = _ArrayUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as err:  # unpickling bad bytes can raise almost anything
        raise DataError(f"{where}: not a readable pickle ({type(err).__name__}: {err})") from err
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a pickled dict, found {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _parse_image_folders(fmt, files, images, source):
    label_of = {name: label for label, name in enumerate(fmt.classes)}
    items = {split: [] for split in SPLITS}
    unknown = set()
    for name in images:  # sorted, so the order of the arrays is deterministic
        parts = PurePosixPath(name).parts
        if len(parts) < 3 or parts[-3] not in SPLITS:
            raise DataError(f"{source}: image {shown(name)} is not in a SPLIT/CLASS/ folder (SPLIT: train or test)")
        if parts[-2] not in label_of:
            unknown.add(parts[-2])
        else:
            items[parts[-3]].append((name, label_of[parts[-2]]))
    if unknown:
        raise DataError(f"{source}: unknown {fmt.name} class folder(s) {', '.join(sorted(unknown))}; "
                        f"expected names from {', '.join(fmt.classes)}")
    for split in SPLITS:
        if not items[split]:
            raise DataError(f"{source}: no images under {split}/; expected {split}/CLASS/*.png|jpg|jpeg")
        present = {label for _, label in items[split]}
        missing = [name for label, name in enumerate(fmt.classes) if label not in present]
        if missing:
            listed = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise DataError(f"{source}: no images of {listed} under {split}/; {fmt.name} image folders "
                            f"hold all {len(fmt.classes)} classes, in train/ and in test/")
    arrays = []
    for split in SPLITS:
        x = np.empty((len(items[split]), *IMAGE_SHAPE), np.uint8)
        for i, (name, _) in enumerate(items[split]):
            x[i] = files.pop(name).transpose(2, 0, 1)  # HWC -> CHW; popped, so the pixels are held once
        arrays += [x, np.array([label for _, label in items[split]], np.int64)]
    return Dataset(*arrays, fmt.classes)


def _decode_image(raw, where):
    """uint8 (32, 32, 3) pixels of an encoded 32x32 RGB image."""
    try:
        image = Image.open(io.BytesIO(raw))
        if image.size == (32, 32) and image.mode == "RGB":
            return np.asarray(image)  # decodes here, so truncated data fails inside the try
    except Exception as err:  # Pillow raises OSError, ValueError, SyntaxError... for bad bytes
        raise DataError(f"{where}: cannot decode the image ({type(err).__name__}: {err})") from err
    width, height = image.size
    raise DataError(f"{where}: expected a 32x32 RGB image, found {width}x{height} {image.mode}")

"""Fixtures for the data tests: the shared CIFAR-10 JPEG archive, archive writers, an HTTP server."""
import hashlib
import io
import pickle
import threading
import zipfile
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from archives import first_of_each_class, write_tar
from minise.data import CIFAR10_CLASSES, CIFAR100_CLASSES

# Read at import, before the autouse fixture below hides MINISE_DATA from the tests.
SLICE_PER_CLASS = 20  # images of each class of each split in the small slice of the shared archive


@pytest.fixture(autouse=True)
def _isolated_environment(isolated_data_env):
    """No test reads MINISE_DATA by accident or writes into the real ~/.cache."""


@pytest.fixture(scope="session")
def shared_archive(cifar_archive):
    return cifar_archive


@pytest.fixture(scope="session")
def jpeg_slice(shared_archive, tmp_path_factory):
    """(path, members): a .tar.gz holding the first SLICE_PER_CLASS JPEGs of each class and split
    of the shared archive, written to a temporary folder; members maps member name -> JPEG bytes."""
    members = first_of_each_class(shared_archive, {"train": SLICE_PER_CLASS, "test": SLICE_PER_CLASS})
    path = tmp_path_factory.mktemp("slice") / "cifar10-slice.tar.gz"
    write_tar(path, members)
    return path, members


def write_zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in sorted(members.items()):
            zf.writestr(name, data)
    return path


def write_tree(root, members):
    """Write {relative name: bytes} as files under root."""
    for name, data in members.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.fixture
def official_archive(tmp_path):
    """Factory: write a tiny archive in the official python format and return
    (path, md5, expected Dataset fields as a dict)."""
    def make(kind="cifar10", per_batch=3, seed=0, name=None):
        rng = np.random.default_rng(seed)
        members, xs, ys = {}, {"train": [], "test": []}, {"train": [], "test": []}
        if kind == "cifar10":
            folder, classes, labels_key = "cifar-10-batches-py", CIFAR10_CLASSES, "labels"
            batches = [(f"data_batch_{i}", "train") for i in range(1, 6)] + [("test_batch", "test")]
            meta_name, meta = "batches.meta", {"label_names": list(classes), "num_cases_per_batch": per_batch,
                                               "num_vis": 3072}
            key = str
        else:
            folder, classes, labels_key = "cifar-100-python", CIFAR100_CLASSES, "fine_labels"
            batches = [("train", "train"), ("test", "test")]
            meta_name, meta = "meta", {"fine_label_names": list(classes),
                                       "coarse_label_names": [f"super{i}" for i in range(20)]}
            # Python 3 pickles read with encoding="bytes" have bytes keys: the loader accepts both.
            key = str.encode
        for batch_name, split in batches:
            data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
            labels = [int(v) for v in rng.integers(0, len(classes), per_batch)]
            batch = {key("batch_label"): f"batch {batch_name}", key(labels_key): labels, key("data"): data,
                     key("filenames"): [f"img_{i}.png" for i in range(per_batch)]}
            if kind == "cifar100":
                batch[key("coarse_labels")] = [v // 5 for v in labels]
            # Protocol 2 and the module name numpy.core (NumPy 2 says numpy._core), like the 2009 files.
            members[f"{folder}/{batch_name}"] = pickle.dumps(batch, protocol=2).replace(
                b"numpy._core.", b"numpy.core.")
            xs[split].append(data.reshape(-1, 3, 32, 32))
            ys[split].append(np.array(labels, np.int64))
        members[f"{folder}/{meta_name}"] = pickle.dumps({key(k): v for k, v in meta.items()}, protocol=2)
        members[f"{folder}/readme.html"] = b"<html>not data</html>"
        path = write_tar(tmp_path / (name or f"{kind.replace('cifar', 'cifar-')}-python.tar.gz"), members)
        expected = dict(x_train=np.concatenate(xs["train"]), y_train=np.concatenate(ys["train"]),
                        x_test=np.concatenate(xs["test"]), y_test=np.concatenate(ys["test"]), classes=classes)
        return path, hashlib.md5(path.read_bytes()).hexdigest(), expected
    return make


class _Server:
    """What the test HTTP server serves, and how often each path was requested."""

    def __init__(self, port):
        self.port = port
        self.routes = {}
        self.hits = Counter()

    def serve(self, path, body, *, content_length="exact", send=None):
        """Serve ``body`` at ``path`` and return its URL.

        content_length: "exact", None (no header: the client reads to the end of the
        connection), or a number. send: the bytes actually sent (default body), e.g. a prefix.
        """
        length = len(body) if content_length == "exact" else content_length
        self.routes[path] = (length, body if send is None else send)
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def http_server():
    """A real ThreadingHTTPServer on 127.0.0.1 (port chosen by the OS), run in a thread."""
    state = None

    class Handler(BaseHTTPRequestHandler):  # HTTP/1.0: the connection closes after each reply
        def do_GET(self):
            state.hits[self.path] += 1
            if self.path not in state.routes:
                self.send_error(404, "no such file")
                return
            length, payload = state.routes[self.path]
            self.send_response(200)
            self.send_header("Content-Type", "application/gzip")
            if length is not None:
                self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = _Server(server.server_address[1])
    # A short poll interval: shutdown() waits for it, after every test.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def png_bytes(pixels):
    """PNG encoding of a uint8 array: (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) grayscale."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def png_folder():
    """Factory: {name: PNG bytes} for random 32x32 RGB images, n per (split, class); every
    CIFAR-10 class by default, as a source needs them all."""
    def make(classes=CIFAR10_CLASSES, n=3, seed=0):
        rng = np.random.default_rng(seed)
        return {f"{split}/{cls}/{i:04d}.png": png_bytes(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
                for split in ("train", "test") for cls in classes for i in range(n)}
    return make


@pytest.fixture
def write():
    """The file writers above, for tests: write.tar, write.zip, write.tree, write.png."""
    import types
    return types.SimpleNamespace(tar=write_tar, zip=write_zip, tree=write_tree, png=png_bytes)

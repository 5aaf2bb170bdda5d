"""Fixtures for the training, checkpoint and evaluation tests.

Every run trains on real CIFAR-10 JPEGs: a slice of the shared archive (30 training and 20 test
images of each class), decoded once per session into a cache folder that all runs share. The
slice, not the whole archive, because ``minise evaluate`` always scores the whole test split
of its source: 200 images here, instead of 10,000 (minutes of NumPy convolutions).

The archive is found as in ``tests/data``: ``$MINISE_DATA``, else
``<repo>/../shared/data/cifar10-jpeg.tar.gz``; the tests that need it skip when it is absent.
Helpers are handed out as fixtures, so no test module imports this file by name.
"""
import contextlib
import io
import types
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from archives import first_of_each_class, write_tar
from minise.data import load_cifar10
from minise.training import TrainConfig, train
from minise.training.train_command import main

# Read at import, before the autouse fixture below hides MINISE_DATA from the tests.
SLICE = {"train": 30, "test": 20}   # images of each class in each split of the slice
SMOKE = dict(train_subset=300, test_subset=200, epochs=2, batch_size=32)
# The uninterrupted run of the resume test (also the CLI test's run): small and quick.
SMALL = dict(train_subset=100, test_subset=100, epochs=2, batch_size=25)


@pytest.fixture(autouse=True)
def _isolated_environment(isolated_data_env):
    """No test reads MINISE_DATA by accident or writes into the real ~/.cache."""


@pytest.fixture(scope="session")
def cifar_slice(cifar_archive, tmp_path_factory):
    """A .tar.gz of the first SLICE[split] JPEGs of every class of the shared archive."""
    path = tmp_path_factory.mktemp("data") / "cifar10-slice.tar.gz"
    return write_tar(path, first_of_each_class(cifar_archive, SLICE))


@pytest.fixture(scope="session")
def data_dir(cifar_slice, tmp_path_factory):
    """The session's decode cache, filled once: every run afterwards only reads the .npz."""
    folder = tmp_path_factory.mktemp("cache")
    data = load_cifar10(str(cifar_slice), data_dir=str(folder), progress=False)
    assert len(data.y_train) == 10 * SLICE["train"] and len(data.y_test) == 10 * SLICE["test"]
    assert len(list(folder.glob("*.npz"))) == 1
    return folder


@pytest.fixture(scope="session")
def make_config(cifar_slice, data_dir):
    """make_config(out, **overrides) -> TrainConfig on the slice, with the shared cache."""
    def make(out, **overrides):
        return TrainConfig(**{**SMALL, "data": str(cifar_slice), "data_dir": str(data_dir), "out": str(out),
                              **overrides})
    return make


@pytest.fixture(scope="session")
def data_args(cifar_slice, data_dir):
    """The command-line options that point ``minise train`` at the slice and the cache."""
    return ["--data", str(cifar_slice), "--data-dir", str(data_dir)]


def _captured(fn, *args, **kwargs):
    """(fn's result, stdout, stderr): capsys is per test, these runs are per session."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        result = fn(*args, **kwargs)
    return result, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def smoke_run(make_config, tmp_path_factory):
    """``train`` for SMOKE epochs on 300 training and 200 test images (the test split's whole slice,
    so ``minise evaluate`` of its checkpoints scores the same images)."""
    config = make_config(tmp_path_factory.mktemp("smoke") / "run", **SMOKE)
    rows, stdout, stderr = _captured(train, config, progress=False)
    return types.SimpleNamespace(config=config, rows=rows, out=Path(config.out), stdout=stdout, stderr=stderr)


@pytest.fixture(scope="session")
def cli_run(data_args, tmp_path_factory):
    """``minise train`` (through ``main``) with the SMALL settings, run to the end without a stop."""
    out = tmp_path_factory.mktemp("cli") / "run"
    argv = [*data_args, "--out", str(out), "--no-progress",
            *[f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]]
    rc, stdout, stderr = _captured(main, argv)
    return types.SimpleNamespace(argv=argv, rc=rc, out=out, stdout=stdout, stderr=stderr)


@pytest.fixture
def poison_batch(monkeypatch):
    """poison_batch(at=k, action): call ``action(batch)`` on the k-th training batch (1-based,
    counted over the epochs of a run) as it leaves the augmentation: e.g. raise KeyboardInterrupt
    (a Ctrl-C mid-epoch) or return NaN images. Returns the call counter."""
    import minise.training.loop

    real = minise.training.loop.crop_flip
    calls = Counter()

    def install(at, action):
        def crop_flip(x, *args, **kwargs):
            out = real(x, *args, **kwargs)
            calls["n"] += 1
            if calls["n"] == at:
                return action(out)
            return out
        monkeypatch.setattr(minise.training.loop, "crop_flip", crop_flip)
        return calls
    return install


@pytest.fixture(scope="session")
def state_equal():
    """assert_state_equal(a, b, what): same keys (in order), and every array bit for bit equal."""
    def check(a, b, what=""):
        assert list(a) == list(b), f"{what}: keys differ"
        for k in a:
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, f"{what}: {k}"
            assert np.array_equal(a[k], b[k]), f"{what}: {k} differs"
    return check

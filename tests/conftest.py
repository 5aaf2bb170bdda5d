"""Test-wide settings and fixtures.

- The ``gpu`` marker skips, with its reason, where CuPy or a GPU is missing.
- ``cifar_archive``: the real CIFAR-10 JPEG archive, found through ``$MINISE_DATA`` or beside the
  checkout (``../shared/data/cifar10-jpeg.tar.gz``); tests that need it skip when it is absent.
- ``isolated_data_env``: no test reads ``MINISE_DATA`` by accident or writes into ``~/.cache``.
- Commands run in the test's own process (``MINISE_WORKERS=1``) unless a test asks for workers
  itself (tests/distributed).
"""
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
os.environ["MINISE_WORKERS"] = "1"
CIFAR_ARCHIVE = Path(os.environ.get("MINISE_DATA") or REPO_ROOT.parent / "shared/data/cifar10-jpeg.tar.gz")


@pytest.fixture(scope="session")
def cifar_archive():
    """Path of the real CIFAR-10 JPEG archive (read-only); skips when it is absent."""
    if not CIFAR_ARCHIVE.is_file():
        pytest.skip(f"the CIFAR-10 JPEG archive is not at {CIFAR_ARCHIVE}: set MINISE_DATA to "
                    "the path of cifar10-jpeg.tar.gz to run the tests on real data")
    return CIFAR_ARCHIVE


@pytest.fixture
def isolated_data_env(monkeypatch, tmp_path):
    monkeypatch.delenv("MINISE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def _gpu_missing_reason():
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed (pip install -e .[gpu])"
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            return "CUDA reports no GPU"
    except Exception as err:  # no driver, no device
        return f"no usable GPU: {err}"
    return None


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    reason = _gpu_missing_reason()
    if reason:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=reason))

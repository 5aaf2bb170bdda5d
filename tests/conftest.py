"""Test-wide settings: the ``gpu`` marker skips, with its reason, where CuPy or a GPU is missing."""
import pytest


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

"""CIFAR data: loading (download, archives, image folders, cache), augmentation, batching.

Images are uint8 NCHW (N, 3, 32, 32) and labels int64 (N,) until :func:`normalize` turns the
images into floats for the network.
"""
from .cifar import (
    CIFAR10_CLASSES, CIFAR100_CLASSES, Dataset, default_data_dir, load_cifar10, load_cifar100,
)
from .download import (
    CIFAR10_MD5, CIFAR10_URL, CIFAR100_MD5, CIFAR100_URL, ChecksumError, DataError, DownloadError,
    download,
)
from .loader import iterate_batches, num_batches, subset, subset_indices
from .transforms import channel_stats, crop_flip, crop_flip_draws, normalize, random_crop_flip

__all__ = [
    "CIFAR10_CLASSES", "CIFAR100_CLASSES", "Dataset", "default_data_dir", "load_cifar10",
    "load_cifar100", "CIFAR10_MD5", "CIFAR10_URL", "CIFAR100_MD5", "CIFAR100_URL", "ChecksumError",
    "DataError", "DownloadError", "download", "iterate_batches", "num_batches", "subset", "subset_indices",
    "channel_stats", "crop_flip", "crop_flip_draws", "normalize", "random_crop_flip",
]

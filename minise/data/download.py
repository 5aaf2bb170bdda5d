"""Download a file over HTTP(S) with a progress bar, and verify its checksum.

The file is first written to a temporary name in the target folder and renamed to its final name
only once it is complete and its md5 matches, so an interrupted or wrong download never leaves a
file behind that a later run could mistake for a good one.
"""
import hashlib
import http.client
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from ..files import atomic_open

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"

OFFLINE_HINT = (
    "To use a local copy instead, pass its path (`source=`, or `--data` on the command line) or set "
    "the environment variable "
    "MINISE_DATA to it: the official python archive (.tar.gz), its extracted folder, or image "
    "folders train/CLASS/*.png|jpg and test/CLASS/*.png|jpg as a directory, .tar.gz or .zip."
)


class DataError(ValueError):
    """A data file exists but does not hold what was expected (corrupt, truncated, wrong layout)."""


class ChecksumError(DataError):
    """A file's checksum differs from the expected one."""


class DownloadError(OSError):
    """A download failed (no network, HTTP error, connection dropped before the end)."""


def file_digest(path, algorithm="sha256", chunk_size=1 << 20):
    """Hex digest of a file's bytes, read in chunks so big archives need little memory."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def download(url, dest, *, md5=None, progress=True, timeout=60, chunk_size=1 << 20):
    """Download ``url`` to the file ``dest`` and return ``dest`` as a Path.

    ``md5``: expected hex digest, or None to skip the check. Raises ``DownloadError`` (an OSError)
    when the server cannot be reached or the transfer stops early, ``ChecksumError`` (a
    ValueError) when the bytes are not the expected ones; in both cases no file is left behind.
    """
    dest = Path(dest)
    # A temporary file beside dest, renamed to dest only once it is complete and verified; any
    # error (KeyboardInterrupt too) deletes it.
    with atomic_open(dest) as out:
        received, found_md5, total = _fetch(url, out, progress, timeout, chunk_size, dest.name)
        if total is not None and received != total:
            raise DownloadError(f"download of {url} was cut short: received {received} of {total} bytes")
        if md5 is not None and found_md5 != md5.lower():
            raise ChecksumError(
                f"download of {url} is corrupt: expected md5 {md5}, found {found_md5} "
                f"({received} bytes); nothing was kept. {OFFLINE_HINT}"
            )
    return dest


def _fetch(url, out, progress, timeout, chunk_size, label):
    """Stream ``url`` into the open file ``out``; return (bytes received, md5 hex, Content-Length or None)."""
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as err:
        raise DownloadError(f"cannot download {url}: HTTP {err.code} {err.reason}. {OFFLINE_HINT}") from err
    except urllib.error.URLError as err:
        raise DownloadError(f"cannot download {url}: {err.reason}. {OFFLINE_HINT}") from err
    except (OSError, http.client.HTTPException) as err:  # e.g. a timeout while connecting
        raise DownloadError(f"cannot download {url}: {err}. {OFFLINE_HINT}") from err
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length else None  # servers may omit it: tqdm then shows no percentage
        digest = hashlib.md5()
        received = 0
        with tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=not progress) as bar:
            while True:
                try:
                    chunk = response.read(chunk_size)
                except (OSError, http.client.HTTPException) as err:  # reset, timeout, IncompleteRead
                    raise DownloadError(
                        f"download of {url} was interrupted after {received} bytes: {err!r}"
                    ) from err
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    return received, digest.hexdigest(), total

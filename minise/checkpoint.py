"""Checkpoints: one ``.npz`` file of arrays plus a JSON header, written atomically.

Layout of the file (no pickles, so loading never runs code):
    "__meta__"            a JSON string: format tag, epoch, config, scheduler, optimiser
                          hyper-parameters, metrics, anything JSON can hold
    "model/<key>"         the model's state_dict, PyTorch's keys
    "optim/<i>/<name>"    per-parameter optimiser state (momentum buffers, Adam moments)
"""
import json
import math
import os
import zipfile

import numpy
import numpy.lib.format

from .files import atomic_open, zip_entry_count

FORMAT = "minise-checkpoint-1"
# Bounds checked before anything is read. The largest minise model, ResNet-1202 with SE blocks,
# has about 2,000 tensors (each with a momentum buffer) and none over a few MB; the header (epoch
# rows, settings) is a few KB a run.
MAX_ENTRIES = 20_000
MAX_ENTRY_BYTES = 1 << 30
_HEADER_READERS = {(1, 0): numpy.lib.format.read_array_header_1_0, (2, 0): numpy.lib.format.read_array_header_2_0}


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, or not a minise checkpoint."""


def save_checkpoint(path, model_state, optimizer_state=None, **meta):
    """Write model (and optimiser) state and ``meta`` to ``path`` atomically.

    The file is written under a temporary name in the same folder, then renamed
    (``files.atomic_open``), so a crash mid-write never leaves a truncated checkpoint under ``path``.
    """
    arrays = {f"model/{k}": numpy.asarray(v) for k, v in model_state.items()}
    optim_meta = None
    if optimizer_state is not None:
        for index, state in optimizer_state["state"].items():
            for name, value in state.items():
                arrays[f"optim/{index}/{name}"] = numpy.asarray(value)
        optim_meta = optimizer_state["param_groups"]
    arrays["__meta__"] = numpy.array(json.dumps({"format": FORMAT, "optimizer_groups": optim_meta, **meta}))
    with atomic_open(path) as f:
        numpy.savez(f, **arrays)


def load_checkpoint(path, expected=None):
    """Return ``(model_state, optimizer_state or None, meta)`` from a checkpoint file.

    Every entry's header (its shape and dtype) is read before its data, and no entry is read that
    declares more bytes than the file stores for it (a zip member that inflates past its header is
    refused at the first byte past it). ``expected``: None, or a function of the meta returning
    ``{entry: shape}`` ("model/<key>", "optim/<i>/<name>"), checked against the headers before
    any array is read: an entry it does not name, or of another shape, is refused unread.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    if not zipfile.is_zipfile(path):      # numpy.load would try it as a pickle and say so
        raise CheckpointError(f"checkpoint '{path}' is truncated or not an .npz file "
                              "(no complete zip archive: an .npz written by minise train is one)")
    try:
        with open(path, "rb") as f:
            entries = zip_entry_count(f)
            if entries > MAX_ENTRIES:
                raise CheckpointError(f"checkpoint '{path}' lists {entries:,} entries, more than any minise "
                                      f"model's ({MAX_ENTRIES:,} at most); refusing to read it")
            with zipfile.ZipFile(f) as archive:
                infos = {_entry_name(info.filename, path): info for info in archive.infolist()}
                if "__meta__" not in infos:
                    raise CheckpointError(f"'{path}' is an .npz file but not a minise checkpoint (no __meta__ entry)")
                headers = {key: _header(archive, info, path) for key, info in infos.items()}
                if headers["__meta__"][1].kind != "U" or headers["__meta__"][0] != ():
                    raise CheckpointError(f"checkpoint '{path}' has a __meta__ entry of "
                                          f"{headers['__meta__'][1]}{headers['__meta__'][0]}, expected a string")
                meta = _meta(_read(archive, infos["__meta__"], path), path)
                if expected is not None:
                    _check_shapes(headers, expected(meta), path)
                arrays = {key: _read(archive, info, path) for key, info in infos.items() if key != "__meta__"}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"checkpoint '{path}' is truncated or not an .npz file ({err})") from err
    model_state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    groups = meta.pop("optimizer_groups")
    optimizer_state = None
    if groups is not None:
        state = {}
        for key, value in arrays.items():
            if key.startswith("optim/"):
                _, index, name = key.split("/", 2)
                state.setdefault(int(index), {})[name] = value
        optimizer_state = {"state": state, "param_groups": groups}
    return model_state, optimizer_state, meta


def _entry_name(member, path):
    if not member.endswith(".npy"):
        raise CheckpointError(f"checkpoint '{path}' holds '{member}', which is not an array (.npy) entry")
    return member[:-len(".npy")]


def _header(archive, info, path):
    """(shape, dtype) of an .npy entry from its header alone, checked against the bytes the zip
    stores for it."""
    with archive.open(info) as f:
        version = numpy.lib.format.read_magic(f)
        if version not in _HEADER_READERS:
            raise CheckpointError(f"checkpoint '{path}': entry {info.filename} has .npy version {version}, "
                                  "which minise never writes")
        shape, _, dtype = _HEADER_READERS[version](f)
    if dtype.hasobject:
        raise CheckpointError(f"checkpoint '{path}': entry {info.filename} holds Python objects; "
                              "a checkpoint holds numbers only")
    size = math.prod(shape) * dtype.itemsize
    if size > info.file_size or size > MAX_ENTRY_BYTES:
        raise CheckpointError(f"checkpoint '{path}': entry {info.filename} declares {dtype}{shape}, {size:,} bytes, "
                              f"more than the {info.file_size:,} the file stores for it"
                              if size > info.file_size else
                              f"more than any minise tensor ({MAX_ENTRY_BYTES:,} bytes at most); refusing to read it")
    return shape, dtype


def _check_shapes(headers, shapes, path):
    """Refuse, before any array is read, an entry that ``shapes`` does not name or whose shape
    differs, and a numeric entry of more than 8 bytes an element."""
    unknown = sorted(key for key in headers if key != "__meta__" and key not in shapes)
    if unknown:
        raise CheckpointError(f"checkpoint '{path}' holds {len(unknown)} entr{'y' if len(unknown) == 1 else 'ies'} "
                              f"that its model does not have ({', '.join(unknown[:3])}"
                              + (", ..." if len(unknown) > 3 else "") + "); refusing to read it")
    for key, (shape, dtype) in headers.items():
        if key != "__meta__" and (tuple(shape) != tuple(shapes[key]) or dtype.itemsize > 8):
            raise CheckpointError(f"checkpoint '{path}': {key} is {dtype}{shape}, but its model needs "
                                  f"shape {tuple(shapes[key])} of at most 8-byte numbers")


def _read(archive, info, path):
    with archive.open(info) as f:
        return numpy.lib.format.read_array(f, allow_pickle=False)


def _meta(array, path):
    try:
        meta = json.loads(str(array))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"checkpoint '{path}' has an unreadable header ({err})") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"checkpoint '{path}' has format {found!r}, expected {FORMAT!r}")
    return meta

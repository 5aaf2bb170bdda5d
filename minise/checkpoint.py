"""Checkpoints: one ``.npz`` file of arrays plus a JSON header, written atomically.

Layout of the file (no pickles, so loading never runs code):
    "__meta__"            a JSON string: format tag, epoch, config, scheduler, optimiser
                          hyper-parameters, metrics, anything JSON can hold
    "model/<key>"         the model's state_dict, PyTorch's keys
    "optim/<i>/<name>"    per-parameter optimiser state (momentum buffers, Adam moments)
"""
import json
import os
import zipfile

import numpy

from .files import atomic_open

FORMAT = "minise-checkpoint-1"


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


def load_checkpoint(path):
    """Return ``(model_state, optimizer_state or None, meta)`` from a checkpoint file."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    if not zipfile.is_zipfile(path):      # numpy.load would try it as a pickle and say so
        raise CheckpointError(f"checkpoint '{path}' is truncated or not an .npz file "
                              "(no complete zip archive: an .npz written by minise train is one)")
    try:
        with numpy.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
        raise CheckpointError(f"checkpoint '{path}' is truncated or not an .npz file ({err})") from err
    if "__meta__" not in arrays:
        raise CheckpointError(f"'{path}' is an .npz file but not a minise checkpoint (no __meta__ entry)")
    try:
        meta = json.loads(str(arrays.pop("__meta__")))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"checkpoint '{path}' has an unreadable header ({err})") from err
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint '{path}' has format {meta.get('format')!r}, expected {FORMAT!r}")
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

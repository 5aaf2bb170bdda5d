"""Reading what ``minise train`` wrote: a checkpoint with its settings checked, and the model
rebuilt from it in one call.

    model = minise.load_model("runs/latest/best.npz")      # eval mode, on the CPU
    logits = model(x)            # x: float32 (N, 3, 32, 32), normalised with the run's mean and std
"""
import math
import numbers
import os
from typing import NamedTuple

import numpy

from .. import __version__
from ..checkpoint import CheckpointError, load_checkpoint
from .config import FIELDS, TrainConfig, build_model, check_config


class RunCheckpoint(NamedTuple):
    """A checkpoint of ``minise train``: arrays, meta and the run's TrainConfig."""

    path: str
    model_state: dict
    optimizer_state: dict      # None in a checkpoint saved without the optimiser
    meta: dict                 # epoch, best_acc, metrics, normalization, scheduler, ...
    config: TrainConfig


def read_checkpoint(path):
    """Load a checkpoint of ``minise train`` and check its settings, epoch and rows before anything
    uses them, and its arrays' shapes against the model its settings build before any array is
    read; a CheckpointError (a ValueError) names what is wrong."""
    if not os.path.isfile(path) and os.path.basename(path) == "last.npz":
        folder = os.path.dirname(path) or "."
        raise CheckpointError(f"checkpoint '{path}' does not exist: a run writes last.npz when its first epoch "
                              f"ends, so the run in {folder} stopped before that (or it is not a run folder); "
                              f"start it over with minise train --out {folder} --overwrite and its settings")
    model_state, optimizer_state, meta = load_checkpoint(path, lambda meta: expected_entries(settings(meta, path)))
    epoch = meta.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
        found = "no 'epoch' entry" if epoch is None else f"epoch {epoch!r}"
        raise CheckpointError(f"checkpoint '{path}' has {found}, expected a whole number >= 0")
    if not isinstance(meta.get("metrics", []), list):
        raise CheckpointError(f"checkpoint '{path}' has metrics of type {type(meta['metrics']).__name__}, "
                              "expected a list of per-epoch rows")
    check_normalization(meta.get("normalization"), path)
    return RunCheckpoint(str(path), model_state, optimizer_state, meta, settings(meta, path))


def settings(meta, path):
    """The TrainConfig stored in a checkpoint's meta, checked like command-line options."""
    stored = meta.get("config")
    if not isinstance(stored, dict):
        raise CheckpointError(f"checkpoint '{path}' has no training settings: its 'config' is "
                              f"{type(stored).__name__}, expected a JSON object as minise train writes")
    unknown = sorted(set(stored) - set(FIELDS))
    if unknown:
        raise CheckpointError(f"checkpoint '{path}' has settings {unknown} that minise {__version__} does not "
                              "know: it was written by another (newer?) minise; use that version")
    try:
        config = TrainConfig(**stored)
        check_config(config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint '{path}' has bad settings: {err}") from None
    return config


def expected_entries(config):
    """{checkpoint entry: shape} that a run of ``config`` saves: its model's state_dict and SGD's
    momentum buffer of each parameter, numbered as the optimiser numbers them."""
    model = build_model(config)
    shapes = {f"model/{key}": value.shape for key, value in model.state_dict().items()}
    shapes.update({f"optim/{i}/momentum_buffer": p.shape for i, p in enumerate(model.parameters())})
    return shapes


def check_normalization(normalization, path):
    """A checkpoint's per-channel mean and std: three finite numbers each, the std's positive."""
    if normalization is None:
        return
    if not isinstance(normalization, dict) or set(normalization) != {"mean", "std"}:
        raise CheckpointError(f"checkpoint '{path}' has normalization {normalization!r:.80}, expected "
                              "{'mean': [3 numbers], 'std': [3 numbers]}")
    for name, values in normalization.items():
        if (not isinstance(values, list) or len(values) != 3
                or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in values)
                or (name == "std" and min(values) <= 0)):
            raise CheckpointError(f"checkpoint '{path}' has normalization {name} {values!r:.80}, expected 3 finite "
                                  "numbers, one per RGB channel" + (", each > 0" if name == "std" else ""))


def model_from(checkpoint, device="cpu"):
    """The model of a RunCheckpoint, with its weights, in eval mode, on ``device``; weights that
    hold NaN or inf (a run that diverged) are refused."""
    bad = [k for k, v in checkpoint.model_state.items() if v.dtype.kind == "f" and not numpy.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"checkpoint '{checkpoint.path}' has non-finite (NaN or inf) values in {bad[0]}"
                              + (f" and {len(bad) - 1} more tensor(s)" if len(bad) > 1 else "")
                              + ": its run diverged; use an earlier checkpoint")
    model = build_model(checkpoint.config)
    model.load_state_dict(checkpoint.model_state)
    return model.to(device).eval()


def load_model(path, device="cpu"):
    """The model of a ``minise train`` checkpoint (last.npz, best.npz): its architecture built from
    the settings stored in it, its weights loaded, in eval mode, on ``device``."""
    return model_from(read_checkpoint(path), device)

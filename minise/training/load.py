"""Reading what ``minise train`` wrote: a checkpoint with its settings checked, and the model
rebuilt from it in one call.

    model = minise.load_model("runs/latest/best.npz")      # eval mode, on the CPU
    logits = model(x)            # x: float32 (N, 3, 32, 32), normalised with the run's mean and std
"""
import numbers
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
    uses them; a CheckpointError (a ValueError) names what is wrong."""
    model_state, optimizer_state, meta = load_checkpoint(path)
    stored = meta.get("config")
    if not isinstance(stored, dict):
        raise CheckpointError(f"checkpoint '{path}' has no training settings: its 'config' is "
                              f"{type(stored).__name__}, expected a JSON object as minise train writes")
    unknown = sorted(set(stored) - set(FIELDS))
    if unknown:
        raise CheckpointError(f"checkpoint '{path}' has settings {unknown} that minise {__version__} does not "
                              "know: it was written by another (newer?) minise; use that version")
    epoch = meta.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
        found = "no 'epoch' entry" if epoch is None else f"epoch {epoch!r}"
        raise CheckpointError(f"checkpoint '{path}' has {found}, expected a whole number >= 0")
    if not isinstance(meta.get("metrics", []), list):
        raise CheckpointError(f"checkpoint '{path}' has metrics of type {type(meta['metrics']).__name__}, "
                              "expected a list of per-epoch rows")
    try:
        config = TrainConfig(**stored)
        check_config(config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint '{path}' has bad settings: {err}") from None
    return RunCheckpoint(str(path), model_state, optimizer_state, meta, config)


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

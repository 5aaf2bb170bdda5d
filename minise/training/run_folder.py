"""The files of a run folder (``--out``): claiming the folder, and writing metrics.csv, curves.png
and config.json, each atomically (a kill leaves the old file or the new one, never half), so
that they can always be rebuilt from the checkpoint's rows.

    config.json     the run's settings (TrainConfig, as JSON)
    metrics.csv     one row per finished epoch (METRICS)
    curves.png      loss and accuracy against epoch
    last.npz        the state after the last finished epoch: what --resume continues from
    best.npz        the state after the epoch of the best test accuracy so far
    interrupted.npz the weights at a Ctrl-C
"""
import csv
import dataclasses
import json
import os
import shutil

from ..files import atomic_open, remove_stale_temporaries

METRICS = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds"]
RUN_FILES = ["config.json", "metrics.csv", "curves.png", "last.npz", "best.npz", "interrupted.npz",
             "result.json", "confusion.png"]


class RunFolderError(ValueError):
    """The output folder holds another run (or other files), and neither --resume nor --overwrite was given."""


def claim(out, resume=False, overwrite=False):
    """Check that a new run may write into ``out``: it is empty, absent, or ``overwrite`` is set.
    Nothing is deleted here (see ``clear``); stale temporaries of killed writers are."""
    if os.path.isdir(out):
        remove_stale_temporaries(out)
    if resume or overwrite or not os.path.isdir(out):
        return
    held = sorted(os.listdir(out))
    if held:
        shown = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
        resumable = os.path.exists(os.path.join(out, "last.npz"))
        raise RunFolderError(f"--out {out} already holds files ({shown}): "
                             + (f"--resume {out} continues that run, " if resumable else "")
                             + "--overwrite replaces it, or choose another --out")


def clear(out):
    """Delete the files a run writes (RUN_FILES) from ``out``: an overwritten run leaves nothing of its own."""
    for name in RUN_FILES:
        path = os.path.join(out, name)
        if os.path.exists(path):
            os.remove(path)


def write_config(config, out):
    with atomic_open(os.path.join(out, "config.json"), "w") as f:
        json.dump(dataclasses.asdict(config), f, indent=2)


def write_metrics(rows, out):
    with atomic_open(os.path.join(out, "metrics.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRICS)
        writer.writeheader()
        writer.writerows(rows)


def write_curves(rows, out):
    """Loss and accuracy against epoch, train and test, as curves.png. Draws on its own Figure
    (no pyplot), so a notebook's plotting backend is left alone."""
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for split in ("train", "test"):
        ax_loss.plot(epochs, [r[f"{split}_loss"] for r in rows], label=split)
        ax_acc.plot(epochs, [100 * r[f"{split}_acc"] for r in rows], label=split)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_open(os.path.join(out, "curves.png")) as f:
        fig.savefig(f, format="png", dpi=80)


def write_outputs(config, rows, out):
    """config.json, metrics.csv and curves.png of a run with these per-epoch ``rows``."""
    write_config(config, out)
    write_metrics(rows, out)
    if rows:
        write_curves(rows, out)


def copy_checkpoint(source, target):
    """Copy ``source`` to ``target`` atomically (best.npz from the last.npz of a best epoch)."""
    with open(source, "rb") as src, atomic_open(target) as dst:
        shutil.copyfileobj(src, dst)

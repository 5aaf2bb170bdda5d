"""Evaluate a checkpoint: ``minise evaluate CHECKPOINT`` (or ``python -m minise.evaluate``).

Prints the test accuracy and the accuracy of each class, writes a confusion-matrix plot, and
can export the weights as a PyTorch-compatible state_dict: a ``.pt`` file when torch is
installed (``torch.load`` it into the PyTorch twin), otherwise an ``.npz`` with the same keys.
"""
import argparse
import dataclasses
import os
import sys

import numpy

from .backend import to_numpy
from .checkpoint import CheckpointError, load_checkpoint
from .train import TrainConfig, build_model, evaluate, prepare_data


def confusion_matrix(y_true, y_pred, num_classes):
    """counts[i, j] = number of images of class i predicted as class j."""
    pair_index = numpy.asarray(y_true) * num_classes + numpy.asarray(y_pred)
    return numpy.bincount(pair_index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def plot_confusion(counts, classes, path):
    """A row-normalised confusion matrix saved to ``path`` (its own Figure; no pyplot)."""
    from matplotlib.figure import Figure

    rates = counts / counts.sum(axis=1, keepdims=True).clip(min=1)
    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    if len(classes) <= 20:
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, f"{rates[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted class", ylabel="true class", title="Confusion matrix (row-normalised)")
    fig.colorbar(image, ax=ax, label="fraction of the true class")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def export_state_dict(model_state, path):
    """Write ``model_state`` for PyTorch: ``.pt`` through torch.save, else ``.npz``."""
    if path.endswith(".pt"):
        try:
            import torch
        except ImportError:
            raise RuntimeError("exporting .pt needs torch; install it or export to .npz instead") from None
        torch.save({k: torch.from_numpy(numpy.ascontiguousarray(v)) for k, v in model_state.items()}, path)
    elif path.endswith(".npz"):
        numpy.savez(path, **model_state)
    else:
        raise ValueError(f"export path must end in .pt or .npz, got {path!r}")


def _write_output(what, path, write):
    """``write(path)``, making its folder first; False, with a message, where that fails."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        write(path)
    except OSError as err:
        print(f"minise evaluate: error: could not write the {what} to {path}: {err}", file=sys.stderr)
        return False
    print(f"{what}: {path}")
    return True


def main(argv=None):
    p = argparse.ArgumentParser(prog="minise evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a last.npz or best.npz written by minise train")
    p.add_argument("--data", default=None, help="data source (default: the one the run used, or $MINISE_DATA)")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"])
    p.add_argument("--confusion", default=None, help="confusion-matrix plot (default: next to the checkpoint)")
    p.add_argument("--export", default=None, metavar="FILE.pt|FILE.npz",
                   help="also write the weights as a PyTorch state_dict")
    args = p.parse_args(argv)
    if args.export and not args.export.endswith((".pt", ".npz")):
        p.error(f"--export must end in .pt or .npz, got {args.export!r}")
    try:
        model_state, _, meta = load_checkpoint(args.checkpoint)
        config = TrainConfig(**meta["config"])
        config = dataclasses.replace(config, test_subset=0, data=args.data or config.data,
                                     device=args.device or config.device)
        model = build_model(config).to(config.device)
        model.load_state_dict(model_state)
        stats = meta.get("normalization")
        data = prepare_data(config, progress=False, stats=(stats["mean"], stats["std"]) if stats else None)
        x_test, y_test, classes = data.x_test, data.y_test, data.classes
        loss, acc, predictions = evaluate(model, x_test, y_test, config.batch_size)
    except (CheckpointError, ValueError, RuntimeError, OSError, KeyError) as err:
        print(f"minise evaluate: error: {err}", file=sys.stderr)
        return 1
    y = to_numpy(y_test)
    counts = confusion_matrix(y, predictions, len(classes))
    print(f"{os.path.basename(args.checkpoint)} (epoch {meta['epoch']}, {config.model}): "
          f"test accuracy {100 * acc:.2f}%  loss {loss:.4f}  on {len(y)} images")
    for c, name in enumerate(classes):
        print(f"  {name:<12} {100 * counts[c, c] / max(counts[c].sum(), 1):6.2f}%")
    plot_path = args.confusion or os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)), "confusion.png")
    if not _write_output("confusion matrix", plot_path, lambda path: plot_confusion(counts, classes, path)):
        return 1
    if args.export and not _write_output("PyTorch state_dict", args.export,
                                         lambda path: export_state_dict(model_state, path)):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

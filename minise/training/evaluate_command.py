"""``minise evaluate``: the test accuracy of a checkpoint, per class, a confusion-matrix plot, and
an export for PyTorch.

The export is a ``.pt`` file when torch is installed: a dict with the ``state_dict`` (PyTorch's
keys), the ``normalization`` (per-channel mean and std of the training images, in [0, 1] units),
the ``classes``, and the ``architecture`` (the keyword arguments of
``minise.models.cifar_resnet``; ``minise.twins.torch_twin`` builds the PyTorch module). An
``.npz`` export holds the state_dict's arrays alone.
"""
import dataclasses
import os
import sys
import tempfile

import numpy

from ..backend import check_device, to_numpy
from ..checkpoint import CheckpointError
from ..distributed import use_own_gpu, world
from ..distributed.launch import run_command, threads_per_worker
from ..execution.threads import set_num_threads
from .config import INTEGER_RANGES, architecture, option_name
from .load import model_from, read_checkpoint
from .loop import evaluate, prepare_images
from .options import add_shared_options, parser

EXAMPLES = [
    "minise evaluate runs/latest/best.npz",
    "minise evaluate runs/latest/best.npz --export se_resnet20.pt      # for PyTorch",
    "minise evaluate docs/results/se_resnet20_cifar10_50k.npz --confusion se20-confusion.png",
]


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


def export(checkpoint, classes, path):
    """Write the checkpoint's weights for PyTorch: ``.pt`` (with what rebuilds and feeds the model,
    see the module docstring) through torch.save, else a plain ``.npz`` of the state_dict."""
    model_state = checkpoint.model_state
    if path.endswith(".npz"):
        numpy.savez(path, **model_state)
        return
    import torch

    torch.save({"state_dict": {k: torch.from_numpy(numpy.ascontiguousarray(v)) for k, v in model_state.items()},
                "normalization": checkpoint.meta.get("normalization"), "classes": list(classes),
                "architecture": architecture(checkpoint.config),
                "build": "minise.twins.torch_twin(minise.models.cifar_resnet(**architecture)), then "
                         "load_state_dict(state_dict); inputs: float32 (N, 3, 32, 32) RGB in [0, 1], "
                         "minus normalization['mean'], over normalization['std'], per channel"}, path)


def check_writable(what, path):
    """Make ``path``'s folder and check that a file can be created there, before any work is done."""
    try:
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise OSError(f"cannot write the {what} to {path}: {err.strerror or err}") from None


def default_confusion_path(checkpoint_path):
    """confusion.png in the checkpoint's run folder (one with a config.json), else in the working
    folder (never beside weights that were shipped or copied alone)."""
    folder = os.path.dirname(os.path.abspath(checkpoint_path))
    return os.path.join(folder if os.path.exists(os.path.join(folder, "config.json")) else ".", "confusion.png")


def choose_device(asked, trained_on, quiet=False):
    """``asked``, else the checkpoint's device where this machine has it, else the CPU (said so,
    unless ``quiet``)."""
    if asked is not None:
        return asked
    try:
        return check_device(trained_on)
    except RuntimeError as err:
        if not quiet:
            print(f"device: cpu (the checkpoint was trained on {trained_on}, which this machine cannot use: {err})")
        return "cpu"


def build_parser():
    p = parser("minise evaluate", "Test a checkpoint of minise train on the whole test split: accuracy, per-class "
                                  "accuracy, a confusion-matrix plot, and an export for PyTorch.", EXAMPLES)
    p.add_argument("checkpoint", help="a last.npz or best.npz written by minise train")
    add_shared_options(p, device=None, helps={
        "data": "data source (default: the one the run used)",
        "device": "cpu or cuda (default: the checkpoint's device where this machine has it, else cpu)",
        "workers": "worker processes, each evaluating its shard of the test images (default: $MINISE_WORKERS, "
                   "else every CPU this process may use; one on cuda)"})
    p.add_argument("--confusion", default=None, metavar="FILE.png",
                   help="confusion-matrix plot (default: confusion.png in the checkpoint's run folder, "
                        "else in the working folder)")
    p.add_argument("--export", default=None, metavar="FILE.pt|FILE.npz",
                   help="also write the weights for PyTorch (.pt needs torch)")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    p = build_parser()
    args = p.parse_args(argv)
    if args.export and not args.export.endswith((".pt", ".npz")):
        p.error(f"--export must end in .pt or .npz, got {args.export!r}")
    for name in ("threads", "workers"):
        minimum, maximum = INTEGER_RANGES[name]
        if getattr(args, name) is not None and not minimum <= getattr(args, name) <= maximum:
            p.error(f"{option_name(name)} must be an integer from {minimum} to {maximum:,}, got {getattr(args, name)}")
    plot_path = args.confusion or default_confusion_path(args.checkpoint)
    try:
        return run_command("minise evaluate", ["evaluate", *argv], lambda: _evaluate(args, plot_path), args.workers,
                           args.device or "cpu", args.threads, before_launch=lambda: _check(args, plot_path))
    except (CheckpointError, ValueError, RuntimeError, OSError, KeyError) as err:
        print(f"minise evaluate: error: {err}", file=sys.stderr)
        return 1


def _check(args, plot_path):
    """What can be refused before any image is read (and before any worker starts)."""
    if args.export and args.export.endswith(".pt"):
        try:
            import torch  # noqa: F401  (checked now, not after the whole evaluation)
        except ImportError:
            raise RuntimeError("--export to .pt needs torch, which is not installed: install it, "
                               "or export to .npz instead") from None
    checkpoint = read_checkpoint(args.checkpoint)
    check_writable("confusion matrix", plot_path)
    if args.export:
        check_writable("export", args.export)
    return checkpoint


def _evaluate(args, plot_path):
    """Evaluate in this process: alone, or as one of the workers (each tests its shard of the
    test images; worker 0 prints and writes the plot and the export)."""
    lead = world().rank == 0
    checkpoint = _check(args, plot_path)
    config = checkpoint.config
    device = choose_device(args.device, config.device, quiet=not lead)
    config = dataclasses.replace(config, test_subset=0, data=config.data if args.data is None else args.data,
                                 device=device, threads=args.threads, workers=world().size)
    set_num_threads(config.threads or threads_per_worker(config.workers))
    if device == "cuda":
        use_own_gpu()
    model = model_from(checkpoint, device)
    stats = checkpoint.meta.get("normalization")
    data = prepare_images(config, progress=False, stats=(stats["mean"], stats["std"]) if stats else None)
    loss, acc, predictions = evaluate(model, data.x_test, data.y_test, config.batch_size,
                                      progress=not args.no_progress and lead, desc="evaluating",
                                      normalization=(data.mean, data.std))
    if not lead:
        return 0
    y = to_numpy(data.y_test)
    counts = confusion_matrix(y, predictions, len(data.classes))
    print(f"{os.path.basename(args.checkpoint)} (epoch {checkpoint.meta['epoch']}, {config.model}): "
          f"test accuracy {100 * acc:.2f}%  loss {loss:.4f}  on {len(y)} images")
    for c, name in enumerate(data.classes):
        print(f"  {name:<12} {100 * counts[c, c] / max(counts[c].sum(), 1):6.2f}%")
    plot_confusion(counts, data.classes, plot_path)
    print(f"confusion matrix: {plot_path}")
    if args.export:
        export(checkpoint, data.classes, args.export)
        print(f"PyTorch state_dict: {args.export}")
    return 0


"""Train a CIFAR (SE-)ResNet: ``minise train`` (or ``python -m minise.train``).

    minise train                                  # SE-ResNet-20 on a balanced 10k CIFAR-10 subset
    minise train --model resnet20 --epochs 30 --train-subset 5000 --out runs/r20-5k
    minise train --resume runs/r20-5k             # continue from runs/r20-5k/last.npz

The recipe (the defaults): SGD with nesterov momentum 0.9 and weight decay 5e-4, a one-cycle
schedule (max lr 0.1, 15% linear warm-up, linear decay), batch 128 (the last partial batch
dropped), random crop (reflect-pad 4) and horizontal flip, per-channel normalisation with the
training subset's mean and std, the whole test set evaluated after every epoch.

Files in ``--out``: metrics.csv, curves.png, config.json, last.npz (after every epoch, written
atomically) and best.npz (the best test accuracy so far).
"""
import argparse
import csv
import dataclasses
import json
import math
import numbers
import os
import sys
import time
from typing import NamedTuple

import numpy

from . import models, nn
from .backend import check_device, to_device, to_numpy
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .cli import int_tuple
from .data import channel_stats, iterate_batches, load_cifar10, load_cifar100, normalize, random_crop_flip, subset
from .models.blocks import PLACEMENTS
from .nn.se import EXCITATION_OPS, SQUEEZE_OPS
from .optim import SGD
from .optim.lr_scheduler import CosineAnnealingLR, MultiStepLR, OneCycleLR
from .step import TrainStep

MODELS = ["resnet20", "resnet32", "resnet56", "se_resnet20", "se_resnet32", "se_resnet56"]
SCHEDULES = ["onecycle", "cosine", "step", "constant"]
DATASETS = ["cifar10", "cifar100"]
METRICS = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds"]


# The recipe's one-cycle schedule: 15% linear warm-up to the max lr, then a linear anneal.
ONE_CYCLE = {"pct_start": 0.15, "anneal_strategy": "linear"}


@dataclasses.dataclass
class TrainConfig:
    model: str = "se_resnet20"
    reduction_ratio: int = 16
    min_hidden: int = 4          # the recipe's SE hidden width floor: max(C // r, 4)
    placement: str = "standard"  # where the SE block sits in a residual block (the paper's Fig. 5)
    se_stages: list = dataclasses.field(default_factory=lambda: [1, 2, 3])  # stages with SE blocks
    squeeze: str = "avg"
    excitation: str = "sigmoid"
    dataset: str = "cifar10"
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    train_subset: int = 10000    # 0: all training images
    test_subset: int = 0         # 0: all test images
    data: str = None             # a source for minise.data (None: $MINISE_DATA, else download)
    data_dir: str = None
    seed: int = 0
    device: str = "cpu"
    cuda_graph: bool = True      # on the GPU, replay each training step from a CUDA graph
    out: str = "runs/latest"

    def __post_init__(self):
        self.se_stages = list(self.se_stages)    # a list, as it comes back from JSON


class TrainingError(RuntimeError):
    """Training stopped: the loss became non-finite."""


def check_config(config):
    """Reject unknown names before any data is loaded."""
    for field, choices in (("model", MODELS), ("schedule", SCHEDULES), ("dataset", DATASETS),
                           ("device", ("cpu", "cuda")), ("placement", PLACEMENTS),
                           ("squeeze", list(SQUEEZE_OPS)), ("excitation", list(EXCITATION_OPS))):
        if getattr(config, field) not in choices:
            raise ValueError(f"unknown {field} {getattr(config, field)!r}; choose from {list(choices)}")
    if not set(config.se_stages) <= {1, 2, 3}:
        raise ValueError(f"se_stages must be drawn from 1, 2, 3; got {config.se_stages!r}")
    for field, minimum in (("epochs", 1), ("batch_size", 1), ("reduction_ratio", 1), ("min_hidden", 0),
                           ("train_subset", 0), ("test_subset", 0), ("seed", 0)):
        value = getattr(config, field)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            raise ValueError(f"{_option(field)} must be an integer >= {minimum}, got {value!r}")
    for field in ("lr", "momentum", "weight_decay"):
        value = getattr(config, field)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{_option(field)} must be a finite number >= 0, got {value!r}")
    classes = 100 if config.dataset == "cifar100" else 10
    for field in ("train_subset", "test_subset"):
        if getattr(config, field) % classes:
            raise ValueError(f"{_option(field)} must be a multiple of the {classes} classes (a balanced subset "
                             f"takes as many images of each; 0 takes all), got {getattr(config, field)}")


def _option(field):
    """A config field as the command line spells it: batch_size -> --batch-size."""
    return "--" + field.replace("_", "-")


def build_model(config):
    check_config(config)
    num_classes = 100 if config.dataset == "cifar100" else 10
    depth = int(config.model.rsplit("resnet", 1)[1])          # "se_resnet20" -> 20
    if not config.model.startswith("se_"):
        return models.cifar_resnet(depth, num_classes=num_classes)
    return models.cifar_resnet(depth, num_classes=num_classes, reduction_ratio=config.reduction_ratio,
                               min_hidden=config.min_hidden or None, placement=config.placement,
                               se_stages=tuple(config.se_stages),
                               se_options={"squeeze": config.squeeze, "excitation": config.excitation})


class Prepared(NamedTuple):
    """Normalised float32 images (N, 3, 32, 32) and int64 labels on the run's device."""

    x_train: object
    y_train: object
    x_test: object
    y_test: object
    classes: tuple
    mean: list          # per-channel statistics of the training subset, in [0, 1] units
    std: list


def prepare_data(config, progress=True, stats=None):
    """Load, subset and normalise the data. ``stats``: a (mean, std) to normalise with instead
    of the training subset's own (evaluate uses the statistics the model was trained with)."""
    load = {"cifar10": load_cifar10, "cifar100": load_cifar100}[config.dataset]
    data = load(config.data, data_dir=config.data_dir, progress=progress)
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    if config.train_subset:
        x_train, y_train = subset(x_train, y_train, config.train_subset, seed=0)
    if config.test_subset:
        x_test, y_test = subset(x_test, y_test, config.test_subset, seed=0)
    mean, std = (numpy.asarray(s, dtype=numpy.float64) for s in stats) if stats else channel_stats(x_train)
    arrays = [normalize(x_train, mean, std), y_train, normalize(x_test, mean, std), y_test]
    return Prepared(*(to_device(a, config.device) for a in arrays), data.classes,
                    to_numpy(mean).tolist(), to_numpy(std).tolist())


def make_optimizer(model, config, steps_per_epoch):
    optimizer = SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                    weight_decay=config.weight_decay)
    total = config.epochs * steps_per_epoch
    scheduler = {
        "onecycle": lambda: OneCycleLR(optimizer, max_lr=config.lr, total_steps=total, **ONE_CYCLE),
        "cosine": lambda: CosineAnnealingLR(optimizer, T_max=total),
        "step": lambda: MultiStepLR(optimizer, milestones=[total // 2, total * 3 // 4]),
        "constant": lambda: None,
    }[config.schedule]()
    return optimizer, scheduler


def evaluate(model, x, y, batch_size=128):
    """Mean loss, accuracy and predictions of ``model`` (in eval mode) on x: (N, 3, 32, 32)."""
    was_training = model.training
    model.eval()
    loss_fn, total_loss, predictions = nn.CrossEntropyLoss(), 0.0, []
    for xb, yb in iterate_batches(x, y, batch_size, shuffle=False):
        logits = model(xb)
        total_loss += loss_fn(logits, yb) * len(yb)
        predictions.append(to_numpy(logits.argmax(axis=1)))
    model.train(was_training)
    predictions = numpy.concatenate(predictions)
    return total_loss / len(y), float((predictions == to_numpy(y)).mean()), predictions


def train_epoch(step, scheduler, x, y, config, epoch, progress=True):
    """One pass over the shuffled, augmented training data with ``step`` (a TrainStep).
    Returns (mean loss, accuracy)."""
    from tqdm.auto import tqdm

    # Each epoch's shuffling and augmentation come from (seed, epoch): a resumed run draws
    # exactly what an uninterrupted one would.
    rng = numpy.random.default_rng([config.seed, epoch])
    step.model.train()
    step.reset()
    batches = iterate_batches(x, y, config.batch_size, rng=rng, drop_last=True)
    bar = tqdm(batches, total=len(y) // config.batch_size, desc=f"epoch {epoch + 1}/{config.epochs}",
               disable=not progress, leave=False, file=sys.stderr)
    # Reading the sums (which also stops a run whose loss is NaN) waits for the GPU, so there it
    # happens every 10 steps; on the CPU it costs nothing.
    check_every = 10 if config.device == "cuda" else 1
    start = time.perf_counter()
    for i, (xb, yb) in enumerate(bar):
        step(random_crop_flip(xb, rng), yb)
        if scheduler is not None:
            scheduler.step()
        if i % check_every == 0:
            loss_sum, correct, seen = step.totals()
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}",
                            img_s=f"{seen / (time.perf_counter() - start):.0f}")
    loss_sum, correct, seen = step.totals()
    return loss_sum / seen, correct / seen


def plot_curves(rows, path):
    """Loss and accuracy against epoch, train and test, saved to ``path``. Draws on its own
    Figure (no pyplot), so a notebook's plotting backend is left alone."""
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
    fig.savefig(path, dpi=80)


def write_metrics(rows, out):
    with open(os.path.join(out, "metrics.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRICS)
        writer.writeheader()
        writer.writerows(rows)


def train(config, resume=False, progress=True):
    """Run (or resume) training as ``config`` says; returns the list of per-epoch metric rows."""
    check_config(config)
    check_device(config.device)
    config = dataclasses.replace(config, out=os.fspath(config.out),
                                 data=None if config.data is None else os.fspath(config.data),
                                 data_dir=None if config.data_dir is None else os.fspath(config.data_dir))
    os.makedirs(config.out, exist_ok=True)
    nn.manual_seed(config.seed)
    model = build_model(config).to(config.device)
    data = prepare_data(config, progress)
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    steps = len(y_train) // config.batch_size
    if steps == 0:
        raise ValueError(f"batch size {config.batch_size} is larger than the {len(y_train)} training images")
    optimizer, scheduler = make_optimizer(model, config, steps)
    step = TrainStep(model, optimizer, graph=config.device == "cuda" and config.cuda_graph)
    rows, start_epoch, best = [], 0, -1.0
    last_path, best_path = os.path.join(config.out, "last.npz"), os.path.join(config.out, "best.npz")
    if resume:
        model_state, optim_state, meta = load_checkpoint(last_path)
        if meta["epoch"] >= config.epochs:
            print(f"{config.out} has finished all {config.epochs} epochs: nothing to resume", file=sys.stderr)
            return meta["metrics"]
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optim_state)
        if scheduler is not None:
            scheduler.load_state_dict(meta["scheduler"])
        rows, start_epoch, best = meta["metrics"], meta["epoch"], meta["best_acc"]
    with open(os.path.join(config.out, "config.json"), "w") as f:
        json.dump(dataclasses.asdict(config), f, indent=2)

    def checkpoint(path, epoch):
        save_checkpoint(path, model.state_dict(), optimizer.state_dict(), epoch=epoch, best_acc=best,
                        config=dataclasses.asdict(config), metrics=rows,
                        normalization={"mean": data.mean, "std": data.std},
                        scheduler=scheduler.state_dict() if scheduler is not None else None,
                        rng={"shuffle_and_augment": f"numpy default_rng([seed={config.seed}, epoch])"})

    # Evaluation gives the same numbers at any batch size (BN uses its running statistics); on
    # the GPU large batches mean fewer launches, on the CPU they would only mean larger buffers.
    eval_batch_size = 1000 if config.device == "cuda" else config.batch_size
    epoch = start_epoch
    try:
        for epoch in range(start_epoch, config.epochs):
            start = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            train_loss, train_acc = train_epoch(step, scheduler, x_train, y_train, config, epoch, progress)
            test_loss, test_acc, _ = evaluate(model, x_test, y_test, eval_batch_size)
            rows.append(dict(epoch=epoch + 1, lr=lr, train_loss=train_loss, train_acc=train_acc,
                             test_loss=test_loss, test_acc=test_acc, seconds=time.perf_counter() - start))
            if test_acc > best:
                best = test_acc
                checkpoint(best_path, epoch + 1)
            checkpoint(last_path, epoch + 1)
            write_metrics(rows, config.out)
            plot_curves(rows, os.path.join(config.out, "curves.png"))
            print(f"epoch {epoch + 1:3d}/{config.epochs}  lr {lr:.4f}  train loss {train_loss:.4f} "
                  f"acc {100 * train_acc:5.2f}%  test loss {test_loss:.4f} acc {100 * test_acc:5.2f}%  "
                  f"{rows[-1]['seconds']:.1f}s", flush=True)
    except KeyboardInterrupt:
        checkpoint(os.path.join(config.out, "interrupted.npz"), epoch)
        then = (f"`minise train --resume {config.out}` continues from the end of epoch {epoch} (last.npz)"
                if os.path.exists(last_path) else "no epoch had finished, so there is nothing to resume: "
                                                  "run the command again")
        print(f"\ninterrupted in epoch {epoch + 1}: weights saved to {config.out}/interrupted.npz; {then}",
              file=sys.stderr)
        raise
    except FloatingPointError as err:
        kept = (f"The last good checkpoint (end of epoch {epoch}) is kept in {last_path}"
                if os.path.exists(last_path) else "No epoch had finished, so no checkpoint was written")
        raise TrainingError(f"training stopped in epoch {epoch + 1}: {err}. {kept}") from err
    return rows


def parse_args(argv=None):
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="minise train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default=d.model, choices=MODELS)
    p.add_argument("--reduction-ratio", type=int, default=d.reduction_ratio)
    p.add_argument("--min-hidden", type=int, default=d.min_hidden,
                   help="floor on the SE hidden width (0: the paper's C // r)")
    p.add_argument("--placement", default=d.placement, choices=PLACEMENTS, help="SE block position")
    p.add_argument("--se-stages", default=",".join(map(str, d.se_stages)),
                   type=int_tuple("1,2,3"), help="stages with SE blocks")
    p.add_argument("--squeeze", default=d.squeeze, choices=list(SQUEEZE_OPS))
    p.add_argument("--excitation", default=d.excitation, choices=list(EXCITATION_OPS))
    p.add_argument("--dataset", default=d.dataset, choices=["cifar10", "cifar100"])
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr, help="max lr for onecycle, initial lr otherwise")
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=d.nesterov)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--schedule", default=d.schedule, choices=SCHEDULES)
    p.add_argument("--train-subset", type=int, default=d.train_subset, help="balanced subset size (0: all)")
    p.add_argument("--test-subset", type=int, default=d.test_subset, help="balanced subset size (0: all)")
    p.add_argument("--data", default=d.data, help="data source: archive, folder, 'download' "
                                                  "(default: $MINISE_DATA, else download)")
    p.add_argument("--data-dir", default=d.data_dir, help="cache folder (default ~/.cache/minise)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, choices=["cpu", "cuda"])
    p.add_argument("--cuda-graph", action=argparse.BooleanOptionalAction, default=d.cuda_graph,
                   help="with --device cuda, record the training step once as a CUDA graph and replay it")
    p.add_argument("--out", default=d.out, help="output folder")
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the run in DIR from DIR/last.npz (its saved settings are used)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    progress = not args.no_progress
    try:
        if args.resume:
            _, _, meta = load_checkpoint(os.path.join(args.resume, "last.npz"))
            config = TrainConfig(**{**meta["config"], "out": args.resume})
            train(config, resume=True, progress=progress)
        else:
            fields = {f.name for f in dataclasses.fields(TrainConfig)}
            train(TrainConfig(**{k: v for k, v in vars(args).items() if k in fields}), progress=progress)
    except KeyboardInterrupt:
        return 130
    except (TrainingError, CheckpointError, ValueError, RuntimeError, OSError) as err:
        print(f"minise train: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

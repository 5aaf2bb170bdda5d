"""Training a CIFAR (SE-)ResNet: the data, the optimiser, the epoch loop and the test pass.

The recipe (TrainConfig's defaults): SGD with nesterov momentum 0.9 and weight decay 5e-4, a
one-cycle schedule (max lr 0.1, 15% linear warm-up, linear decay), batch 128 (the last partial
batch dropped), random crop (reflect-pad 4) and horizontal flip, per-channel normalisation with
the training subset's mean and std, the test images evaluated after every epoch.

After every epoch, in this order: last.npz (so a resumable state exists from the first finished
epoch on), best.npz (a copy of last.npz when the epoch is the best so far), metrics.csv and
curves.png; all written atomically. A resume first rebuilds best.npz, metrics.csv, curves.png
and config.json from last.npz, so a kill between these writes loses nothing.

With several worker processes (``minise.distributed``) every worker runs this same code: each
trains on its contiguous shard of every batch and tests on its shard of the test images; the
shuffling and augmentation are drawn for the whole batch, so the data stream does not depend
on the worker count. Worker 0 alone prints and writes the run's files.
"""
import dataclasses
import os
import sys
import time
from typing import NamedTuple

import numpy

from .. import nn
from ..backend import check_device, device_of, to_device, to_numpy
from ..checkpoint import load_checkpoint, save_checkpoint
from ..data import (
    channel_stats, crop_flip, crop_flip_draws, iterate_batches, load_cifar10, load_cifar100, normalize, subset,
)
from ..distributed import say, shard, use_own_gpu, world
from ..distributed.launch import threads_per_worker
from ..execution import no_grad
from ..execution.threads import set_num_threads
from ..optim import SGD
from ..optim.lr_scheduler import CosineAnnealingLR, MultiStepLR, OneCycleLR
from ..step import TrainStep
from . import run_folder
from .config import build_model, check_config
from .load import read_checkpoint

# The recipe's one-cycle schedule: 15% linear warm-up to the max lr, then a linear anneal.
ONE_CYCLE = {"pct_start": 0.15, "anneal_strategy": "linear"}


class TrainingError(RuntimeError):
    """Training stopped: the loss became non-finite, or a file could not be written."""


class Prepared(NamedTuple):
    """Images (N, 3, 32, 32) and int64 labels on the run's device: uint8 from
    ``prepare_images``, normalised float32 from ``prepare_data``."""

    x_train: object
    y_train: object
    x_test: object
    y_test: object
    classes: tuple
    mean: list          # per-channel statistics of the training subset, in [0, 1] units
    std: list


def prepare_images(config, progress=True, stats=None):
    """Load and subset the data, and compute the normalisation: the images stay uint8 (the test
    set, when whole, as a memory map of the decoded cache), to be normalised batch by batch.
    ``stats``: a (mean, std) to normalise with instead of the training subset's own (evaluate
    uses the statistics the model was trained with). Several workers: worker 0 decodes and
    caches the source first, then the others read the cache."""
    comm = world()
    load = {"cifar10": load_cifar10, "cifar100": load_cifar100}[config.dataset]
    if comm.rank != 0:
        comm.barrier()
    data = load(config.data, data_dir=config.data_dir, progress=progress)
    if comm.rank == 0:
        comm.barrier()
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    if config.train_subset:
        x_train, y_train = subset(x_train, y_train, config.train_subset, seed=0)
    if config.test_subset:
        x_test, y_test = subset(x_test, y_test, config.test_subset, seed=0)
    mean, std = (numpy.asarray(s, dtype=numpy.float64) for s in stats) if stats else channel_stats(x_train)
    on_device = [a if config.device == "cpu" else to_device(a, config.device) for a in (x_train, y_train, x_test,
                                                                                          y_test)]
    return Prepared(*on_device, data.classes, to_numpy(mean).tolist(), to_numpy(std).tolist())


def prepare_data(config, progress=True, stats=None):
    """``prepare_images`` with every image normalised: float32 arrays of the whole sets."""
    images = prepare_images(config, progress, stats)
    return images._replace(x_train=normalize(images.x_train, images.mean, images.std),
                           x_test=normalize(images.x_test, images.mean, images.std))


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


def evaluate(model, x, y, batch_size=128, progress=False, desc="test", normalization=None):
    """Mean loss, accuracy and predictions of ``model`` (in eval mode) on x: (N, 3, 32, 32),
    normalised, or uint8 with ``normalization`` = (mean, std) to normalise each batch with.
    Under ``no_grad``: the layers keep nothing for a backward pass. With several workers each
    tests its contiguous shard of x and the sums and predictions are gathered on every worker."""
    from tqdm.auto import tqdm

    comm = world()
    lo, hi = shard(len(y), comm.rank, comm.size)
    was_training = model.training
    model.eval()
    loss_fn, total_loss, predictions = nn.CrossEntropyLoss(), 0.0, numpy.zeros(len(y), dtype=numpy.int64)
    batches = iterate_batches(x[lo:hi], y[lo:hi], batch_size, shuffle=False)
    if normalization is not None:
        normalization = _on_device(normalization, device_of(x))
    for i, (xb, yb) in enumerate(tqdm(batches, total=-(-(hi - lo) // batch_size), desc=desc, unit="batch",
                                      disable=not progress, leave=False, file=sys.stderr)):
        if normalization is not None:
            xb = normalize(xb, *normalization)
        with no_grad():
            logits = model(xb)
        total_loss += loss_fn(logits, yb) * len(yb)
        at = lo + i * batch_size
        predictions[at:at + len(yb)] = to_numpy(logits.argmax(axis=1))
    model.train(was_training)
    comm.all_sum(predictions)                   # each worker's shard, zeros elsewhere: summed, the whole set
    total_loss = float(comm.all_sum(numpy.array([total_loss]))[0])
    return total_loss / len(y), float((predictions == to_numpy(y)).mean()), predictions


def _on_device(stats, device):
    """(mean, std) as float64 arrays on ``device``: normalize() then copies nothing per batch."""
    return tuple(to_device(numpy.asarray(s, dtype=numpy.float64), device) for s in stats)


def train_epoch(step, scheduler, data, config, epoch, progress=True):
    """One pass over the shuffled, augmented training images of ``data`` (uint8, from
    ``prepare_images``) with ``step`` (a TrainStep). Returns (mean loss, accuracy).

    Each epoch's shuffling and augmentation come from (seed, epoch), drawn for the whole batch
    by every worker alike: a resumed run, or one with another worker count, sees exactly the
    same batches. A worker normalises and augments only its shard of each batch."""
    from tqdm.auto import tqdm

    comm = world()
    rng = numpy.random.default_rng([config.seed, epoch])
    step.model.train()
    step.reset()
    B = config.batch_size
    order = rng.permutation(len(data.y_train))
    lo, hi = shard(B, comm.rank, comm.size)
    steps = len(order) // B
    bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", disable=not progress,
               leave=False, file=sys.stderr)
    # Reading the sums (which also stops a run whose loss is NaN) waits for the GPU, so there it
    # happens every 10 steps; on the CPU it costs nothing.
    check_every = 10 if config.device == "cuda" else 1
    stats = _on_device((data.mean, data.std), config.device)     # once, not a copy to the device per batch
    start = time.perf_counter()
    for i in bar:
        batch = order[i * B:(i + 1) * B]
        dy, dx, flip = crop_flip_draws(B, rng)              # the whole batch's draws, on every worker
        mine = batch[lo:hi] if config.device == "cpu" else to_device(batch[lo:hi], config.device)
        xb = normalize(data.x_train[mine], *stats)
        step(crop_flip(xb, dy[lo:hi], dx[lo:hi], flip[lo:hi]), data.y_train[mine], batch_size=B)
        if scheduler is not None:
            scheduler.step()
        if i % check_every == 0 or i == steps - 1:
            loss_sum, correct, seen = step.totals()
            bar.set_postfix({"loss": f"{loss_sum / seen:.3f}", "acc": f"{correct / seen:.3f}",
                             "img/s": f"{seen / (time.perf_counter() - start):.0f}"})
    loss_sum, correct, seen = step.totals()
    return loss_sum / seen, correct / seen


def resolve(config):
    """``config`` with what it leaves open made explicit, as config.json records it: the data
    source ($MINISE_DATA or "download" when None), the worker count of this run, each worker's
    thread count (its share of the CPUs), plain-string paths."""
    data = os.fspath(config.data) if config.data is not None else os.environ.get("MINISE_DATA") or "download"
    workers = world().size
    return dataclasses.replace(config, out=os.fspath(config.out), data=data,
                               data_dir=None if config.data_dir is None else os.fspath(config.data_dir),
                               workers=workers, threads=config.threads or threads_per_worker(workers))


def train(config, resume=False, progress=True, overwrite=False):
    """Run (or resume) training as ``config`` says; returns the list of per-epoch metric rows.

    A new run refuses an ``out`` folder that holds files unless ``overwrite`` (which deletes the
    files a run writes there first); ``resume`` continues from ``out``/last.npz.

    Under ``mpiexec`` every worker calls this; worker 0 alone prints and writes files."""
    check_config(config)
    check_device(config.device)
    comm = world()
    config = resolve(config)
    lead = comm.rank == 0
    progress = progress and lead
    if lead:
        run_folder.claim(config.out, resume, overwrite)
    set_num_threads(config.threads)
    if config.device == "cuda":
        use_own_gpu()
    last_path, best_path = os.path.join(config.out, "last.npz"), os.path.join(config.out, "best.npz")
    saved = read_checkpoint(last_path) if resume else None
    if saved is not None and saved.meta["epoch"] >= config.epochs:
        if lead:
            repair(saved, config)
        say(f"{config.out} has finished all {config.epochs} epochs: nothing to resume "
            "(its metrics.csv, curves.png and best.npz are rebuilt from last.npz)", file=sys.stderr)
        return saved.meta["metrics"]
    nn.manual_seed(config.seed)
    model = build_model(config).to(config.device)
    data = prepare_images(config, progress)
    steps = len(data.y_train) // config.batch_size
    if steps == 0:
        raise ValueError(f"batch size {config.batch_size} is larger than the {len(data.y_train)} training images")
    if comm.size > config.batch_size:
        raise ValueError(f"{comm.size} workers cannot share a batch of {config.batch_size} images: use at most "
                         f"--workers {config.batch_size}")
    optimizer, scheduler = make_optimizer(model, config, steps)
    # A CUDA graph records one process's kernels; several GPU workers sum gradients through the host.
    step = TrainStep(model, optimizer, graph=config.device == "cuda" and config.cuda_graph and comm.size == 1)
    rows, start_epoch, best, best_epoch = [], 0, -1.0, 0
    if saved is not None:
        model.load_state_dict(saved.model_state)
        optimizer.load_state_dict(saved.optimizer_state)
        if scheduler is not None:
            scheduler.load_state_dict(saved.meta["scheduler"])
        rows, start_epoch, best = saved.meta["metrics"], saved.meta["epoch"], saved.meta["best_acc"]
        best_epoch = saved.meta.get("best_epoch", 0)
        if lead:
            repair(saved, config)
        say(f"resuming {config.out} after epoch {start_epoch} of {config.epochs}", flush=True)
    elif lead:
        if overwrite:
            run_folder.clear(config.out)
        run_folder.write_config(config, config.out)
    say(f"training {config.model} into {config.out}: {config.epochs} epoch{'s' * (config.epochs != 1)}, "
        f"{len(data.y_train)} training and {len(data.y_test)} test images from {config.data}, device "
        f"{config.device}, workers: {config.workers}, threads per worker: {config.threads}", flush=True)

    def checkpoint(path, epoch):
        save_checkpoint(path, model.state_dict(), optimizer.state_dict(), epoch=epoch, best_acc=best,
                        best_epoch=best_epoch, config=dataclasses.asdict(config), metrics=rows,
                        normalization={"mean": data.mean, "std": data.std},
                        scheduler=scheduler.state_dict() if scheduler is not None else None,
                        rng={"shuffle_and_augment": f"numpy default_rng([seed={config.seed}, epoch])"})

    # Evaluation gives the same numbers at any batch size (BN uses its running statistics); on
    # the GPU large batches mean fewer launches, on the CPU they would only mean larger buffers.
    eval_batch_size = 1000 if config.device == "cuda" else config.batch_size
    epoch = saved_epoch = start_epoch           # saved_epoch: the epoch that last.npz holds
    try:
        for epoch in range(start_epoch, config.epochs):
            start = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            train_loss, train_acc = train_epoch(step, scheduler, data, config, epoch, progress)
            test_loss, test_acc, _ = evaluate(model, data.x_test, data.y_test, eval_batch_size, progress,
                                              desc=f"epoch {epoch + 1}/{config.epochs} test",
                                              normalization=(data.mean, data.std))
            rows.append(dict(epoch=epoch + 1, lr=lr, train_loss=train_loss, train_acc=train_acc,
                             test_loss=test_loss, test_acc=test_acc, seconds=time.perf_counter() - start))
            if test_acc > best:
                best, best_epoch = test_acc, epoch + 1
            if lead:
                checkpoint(last_path, epoch + 1)
            saved_epoch = epoch + 1
            if lead:
                if best_epoch == epoch + 1:
                    run_folder.copy_checkpoint(last_path, best_path)
                run_folder.write_metrics(rows, config.out)
                run_folder.write_curves(rows, config.out)
            say(f"epoch {epoch + 1:3d}/{config.epochs}  lr {lr:.4f}  train loss {train_loss:.4f} "
                f"acc {100 * train_acc:5.2f}%  test loss {test_loss:.4f} acc {100 * test_acc:5.2f}%  "
                f"{rows[-1]['seconds']:.1f}s", flush=True)
    except KeyboardInterrupt:
        if lead:
            checkpoint(os.path.join(config.out, "interrupted.npz"), epoch)
        then = (f"`minise train --resume {config.out}` continues from the end of epoch {saved_epoch} (last.npz)"
                if saved_epoch else "no epoch had finished, so there is nothing to resume: "
                                                  "run the command again with --overwrite")
        say(f"\ninterrupted in epoch {epoch + 1}: weights saved to {config.out}/interrupted.npz; {then}",
              file=sys.stderr)
        raise
    except (FloatingPointError, OSError) as err:
        kept = (f"The last good checkpoint (end of epoch {saved_epoch}) is kept in {last_path}: "
                f"`minise train --resume {config.out}` continues from it"
                if saved_epoch else "No epoch had finished, so no checkpoint was written")
        raise TrainingError(f"training stopped in epoch {epoch + 1}: {err}. {kept}") from err
    say(f"done: best test accuracy {100 * best:.2f}% at epoch {best_epoch} of {config.epochs}, final "
          f"{100 * rows[-1]['test_acc']:.2f}%; {sum(r['seconds'] for r in rows):.0f} s over the epochs; "
          f"files in {config.out} "
          f"({', '.join(n for n in run_folder.RUN_FILES if os.path.exists(os.path.join(config.out, n)))})",
          flush=True)
    return rows


def repair(saved, config):
    """Rebuild a run folder's outputs from its last.npz (``saved``): config.json, metrics.csv,
    curves.png, and best.npz where the last epoch was the best and best.npz is not of it (a kill
    between the two checkpoint writes)."""
    out = config.out
    run_folder.write_outputs(config, saved.meta["metrics"], out)
    epoch, best_epoch = saved.meta["epoch"], saved.meta.get("best_epoch")
    best_path = os.path.join(out, "best.npz")
    if epoch and best_epoch == epoch:
        if not os.path.exists(best_path) or _epoch_of(best_path) != epoch:
            run_folder.copy_checkpoint(os.path.join(out, "last.npz"), best_path)


def _epoch_of(path):
    try:
        return load_checkpoint(path)[2].get("epoch")
    except ValueError:              # a CheckpointError: a torn or foreign best.npz is rebuilt
        return None

"""The PyTorch reference recipe, to time a whole minise training run against on the same card.

    python -m benchmarks.torch_recipe --model resnet20 --train-subset 0 --epochs 30 --device cuda
    python -m benchmarks.torch_recipe --train-subset 0 --epochs 30 --cuda-graph     # torch's fastest mode

PyTorch eager trains the PyTorch twin of the minise model that ``minise train`` would build
(same structure and initial weights, ``minise.twins``) on the same data (the same subset and
normalisation, ``minise.training.prepare_data``) with the recipe of the reference runs: SGD with
nesterov momentum 0.9 and weight decay 5e-4 on all parameters, ``OneCycleLR`` (max lr 0.1, 15%
linear warm-up, linear anneal) stepped every batch, batch 128 with the last partial batch dropped,
reflect-pad-4 random crop with one offset per batch and a flip per image (the reference's
augmentation; minise draws an offset per image), and an evaluation on the test set after every
epoch. It prints one line per epoch, then the final accuracy and the seconds, summed over the
epochs as ``metrics.csv``'s ``seconds`` column is, and the seconds since main() started (data
preparation included); ``--out FILE`` writes the rows as CSV. ``--cuda-graph`` replays the whole training step from one CUDA graph
(``GraphStep``), as minise's ``--device cuda`` does.
"""
import argparse
import csv
import sys
import time

import numpy

from minise.training import TrainConfig, build_model, prepare_data
from minise.training.loop import ONE_CYCLE
from minise.twins import torch_twin


def evaluate(torch, model, x, y, batch_size=1000):
    """Mean cross-entropy and accuracy of ``model`` in eval mode on x: (N, 3, 32, 32)."""
    model.eval()
    loss, correct = torch.zeros((), device=x.device), torch.zeros((), device=x.device, dtype=torch.int64)
    with torch.no_grad():
        for start in range(0, len(y), batch_size):                # summed on the device, read once
            logits = model(x[start:start + batch_size])
            target = y[start:start + batch_size]
            loss += torch.nn.functional.cross_entropy(logits, target, reduction="sum")
            correct += (logits.argmax(1) == target).sum()
    model.train()
    return loss.item() / len(y), correct.item() / len(y)


def crop_flip(torch, x, offsets, draws, padding=4):
    """Reflect-pad, crop an H x W window at one random offset for the whole batch, and mirror
    each image left-right with probability 0.5. x: (N, C, H, W) on the device; ``offsets``: a
    host generator (the offset slices), ``draws``: a generator on x's device (the flips)."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4, mode="reflect")
    dy, dx = torch.randint(0, 2 * padding + 1, (2,), generator=offsets).tolist()
    out = padded[:, :, dy:dy + h, dx:dx + w]
    flip = torch.rand(n, generator=draws, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


class GraphStep:
    """A PyTorch training step (forward, cross-entropy, backward, SGD) captured by hand in one
    CUDA graph and replayed, as PyTorch's CUDA-graph documentation shows for a whole network
    ("CUDA Graphs", whole-network capture): the first ``WARMUP`` steps run eagerly on a side
    stream (with ``optimizer.step()``, which makes the momentum buffers), the next is recorded
    on fixed input tensors, and every step after copies its batch into them and replays.

    ``torch.optim.SGD.step`` reads the learning rate as a Python number, which a graph would
    freeze; so the recorded update is SGD's multi-tensor arithmetic (weight decay, momentum,
    Nesterov; no dampening) written with foreach operations that read the learning rate and
    momentum from device tensors, filled from the optimiser's group before each replay: the
    one-cycle schedule reaches every step. ``step(x, y)`` returns the loss (a tensor that the
    next replay overwrites).
    """

    WARMUP = 3

    def __init__(self, torch, model, optimizer):
        (group,) = optimizer.param_groups
        if group["dampening"] != 0 or group["maximize"]:
            raise ValueError("GraphStep: the recorded SGD update has no dampening and does not maximize")
        self.torch, self.model, self.optimizer, self.group = torch, model, optimizer, group
        self.side = torch.cuda.Stream()
        self.graph = None
        self.steps = 0

    def __call__(self, x, y):
        torch = self.torch
        if self.steps < self.WARMUP:
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                loss = torch.nn.functional.cross_entropy(self.model(x), y)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
            torch.cuda.current_stream().wait_stream(self.side)
        else:
            if self.graph is None:
                self._record(x, y)
            self.x.copy_(x)
            self.y.copy_(y)
            self.neg_lr.fill_(-self.group["lr"])
            self.momentum.fill_(self.group["momentum"])
            self.graph.replay()
            loss = self.loss
        self.steps += 1
        return loss.detach()

    def _record(self, x, y):
        torch, group = self.torch, self.group
        params = group["params"]
        bufs = [self.optimizer.state[p]["momentum_buffer"] for p in params]
        self.x, self.y = x.clone(), y.clone()
        self.neg_lr, self.momentum = (torch.zeros((), device=x.device, dtype=params[0].dtype) for _ in range(2))
        self.optimizer.zero_grad(set_to_none=True)     # backward in the graph makes the gradients
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.loss = torch.nn.functional.cross_entropy(self.model(self.x), self.y)
            self.loss.backward()
            sgd_update(torch, params, bufs, self.neg_lr, self.momentum, group["weight_decay"], group["nesterov"])


def sgd_update(torch, params, bufs, neg_lr, momentum, weight_decay, nesterov):
    """torch.optim.SGD's multi-tensor update (no dampening) with the learning rate (as -lr) and
    momentum read from 0-d tensors: g = grad + wd * p;  b = mu * b + g;  g = g + mu * b
    (Nesterov) or g = b;  p = p - lr * g."""
    with torch.no_grad():
        grads = [p.grad for p in params]
        if weight_decay != 0:
            grads = torch._foreach_add(grads, params, alpha=weight_decay)
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, grads)
        grads = torch._foreach_add(grads, torch._foreach_mul(bufs, momentum)) if nesterov else bufs
        torch._foreach_add_(params, torch._foreach_mul(grads, neg_lr))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.torch_recipe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="se_resnet20")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--train-subset", type=int, default=10000, help="0: all 50,000 training images")
    parser.add_argument("--test-subset", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    parser.add_argument("--data", default=None, help="CIFAR-10 source (default: $MINISE_DATA)")
    parser.add_argument("--data-dir", default=None, help="decode cache folder (as minise train's)")
    parser.add_argument("--out", default=None, help="write the per-epoch rows to this CSV file")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="replay the whole training step from one CUDA graph (GraphStep); needs --device cuda")
    options = parser.parse_args(argv)
    if options.cuda_graph and options.device != "cuda":
        parser.error("--cuda-graph needs --device cuda")
    process_start = time.perf_counter()

    import torch

    from minise import nn

    config = TrainConfig(model=options.model, epochs=options.epochs, train_subset=options.train_subset,
                         test_subset=options.test_subset, seed=options.seed, data=options.data,
                         data_dir=options.data_dir)
    data = prepare_data(config, progress=False)                 # NumPy arrays, normalised
    nn.manual_seed(config.seed)
    model = torch_twin(build_model(config)).to(options.device)
    # copies: the decoded cache's arrays are read-only memory maps, which torch will not wrap
    x_train, y_train, x_test, y_test = (torch.from_numpy(numpy.array(a)).to(options.device)
                                        for a in (data.x_train, data.y_train, data.x_test, data.y_test))
    steps_per_epoch = len(y_train) // config.batch_size
    if steps_per_epoch == 0:
        parser.error(f"--train-subset {options.train_subset}: {len(y_train)} training images make no full "
                     f"batch of {config.batch_size}; use at least {config.batch_size}")
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                nesterov=config.nesterov, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, **ONE_CYCLE,
                                                    total_steps=config.epochs * steps_per_epoch)
    # The crop offsets are read on the host (they slice), so they come from a host generator; the
    # order and the flips are drawn on the device, so no step waits for a host-to-device copy.
    offsets = torch.Generator().manual_seed(config.seed)
    draws = torch.Generator(device=options.device).manual_seed(config.seed)
    synchronize = torch.cuda.synchronize if options.device == "cuda" else (lambda: None)
    graph_step = GraphStep(torch, model, optimizer) if options.cuda_graph else None
    rows = []
    for epoch in range(config.epochs):
        synchronize()
        start = time.perf_counter()
        order = torch.randperm(len(y_train), generator=draws, device=options.device)
        loss_sum = torch.zeros((), device=options.device)
        for b in range(steps_per_epoch):
            part = order[b * config.batch_size:(b + 1) * config.batch_size]
            x, y = crop_flip(torch, x_train[part], offsets, draws), y_train[part]
            if graph_step is not None:
                loss = graph_step(x, y)
            else:
                loss = torch.nn.functional.cross_entropy(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            scheduler.step()
            loss_sum += loss.detach()
        test_loss, test_acc = evaluate(torch, model, x_test, y_test)
        synchronize()
        rows.append({"epoch": epoch + 1, "train_loss": loss_sum.item() / steps_per_epoch, "test_loss": test_loss,
                     "test_acc": test_acc, "seconds": time.perf_counter() - start})
        print(f"epoch {epoch + 1:3d}/{config.epochs}  train loss {rows[-1]['train_loss']:.4f}  "
              f"test loss {test_loss:.4f} acc {100 * test_acc:.2f}%  {rows[-1]['seconds']:.1f}s", flush=True)
    total = sum(r["seconds"] for r in rows)
    mode = "one CUDA graph per step" if options.cuda_graph else "eager"
    print(f"torch {torch.__version__} {options.model} on {options.device} ({mode}): final test accuracy "
          f"{100 * rows[-1]['test_acc']:.2f}% in {total:.1f} s over {config.epochs} epochs; "
          f"{time.perf_counter() - process_start:.1f} s since the start (data preparation included)")
    if options.out:
        with open(options.out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

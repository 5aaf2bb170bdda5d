"""One training step, run as written or replayed from a CUDA graph.

    step = TrainStep(model, optimizer, graph=True)     # graph=True: CuPy arrays only
    for xb, yb in batches:
        step(xb, yb)                  # zero grads, forward, cross-entropy, backward, update
        scheduler.step()
    loss_sum, correct, seen = step.totals()            # one read from the device

On a GPU, a step of a small CIFAR ResNet is a few thousand small kernels, and issuing them one
by one from Python takes far longer than running them. With ``graph=True`` the first two steps
run as written; the third is recorded as a CUDA graph (``gpu.CudaGraph``); every step after it
copies the batch into the recorded input arrays and replays the graph: one launch. The
arithmetic is the same kernels on the same values, so the weights match the written-out step
bit for bit (tests/gpu checks this).

What recording asks of a step, and how this one meets it:
- fixed arrays: batches are copied into input arrays made once; the layers and optimisers
  already update parameters, gradients, momentum buffers and BN statistics in place;
- no reads back to the host: the loss and the number of correct predictions are summed on the
  device and read by ``totals()``; the learning rate and momentum, which a scheduler changes
  every step, are read from device scalars (``Optimizer.keep_on_device``);
- fixed shapes: every batch has the first one's shape (drop the last partial batch).

Data parallel (``minise.distributed``): each worker calls ``step(x_shard, y_shard,
batch_size=B)`` with its shard of a batch of B. Its loss gradient is scaled by its share,
len(y) / B, and after the backward pass the parameter gradients are summed over the workers in
one buffer (``GradientSum``), so every worker applies the step of the whole batch; ``totals()``
sums over the workers too.
"""
import numpy  # the three host numbers of totals(), summed over workers

from .backend import GPU_INSTALL_HINT, cupy, device_of, get_array_module, is_array
from .distributed import world
from .distributed.data_parallel import GradientSum
from .nn import CrossEntropyLoss


class TrainStep:
    """``TrainStep(model, optimizer, loss_fn=None, graph=False)``; call it as ``step(x, y)``.

    x: (N, 3, H, W) floats and y: (N,) integer labels, on the model's device. The label values
    are not range-checked here (that would read them back to the host every step): the data
    loaders check them. ``loss_fn`` defaults to ``CrossEntropyLoss()``.
    """

    def __init__(self, model, optimizer, loss_fn=None, graph=False):
        self.model, self.optimizer = model, optimizer
        self.loss_fn = loss_fn if loss_fn is not None else CrossEntropyLoss()
        self.comm = world()
        self._gradient_sum = GradientSum(model.parameters(), self.comm)
        if graph and self.comm.size > 1:
            raise ValueError("TrainStep: a CUDA graph records one process's step; with several workers use graph=False")
        if graph and not optimizer.capturable:
            raise ValueError(f"TrainStep: {type(optimizer).__name__} cannot be recorded as a CUDA graph "
                             "(its step reads host values); use SGD or graph=False")
        self._graph = None
        if graph:
            if cupy is None:
                raise RuntimeError(f"CUDA graphs need CuPy, which is not installed: {GPU_INSTALL_HINT}")
            from .gpu import CudaGraph          # the GPU package imports only where CuPy is
            self._graph = CudaGraph()
        self._like = None                    # (shape, dtype, device) of the first batch's x and y
        self._inputs = None                  # graph: the recorded (x, y) arrays, batches are copied in
        self._loss_sum = self._correct = None
        self.steps = self.seen = 0
        self._share = 1.0                    # this worker's part of the batch (1: the whole batch)

    def __call__(self, x, y, batch_size=None):
        """One step on x, y: the whole batch, or this worker's shard of a batch of ``batch_size``."""
        if self._like is None:
            self._start(x, y)
        self._check_batch(x, y)
        self._share = 1.0 if batch_size is None else len(y) / batch_size
        if self._graph is None:
            self._step(x, y)
        else:
            self._inputs[0][...] = x
            self._inputs[1][...] = y
            self.optimizer.sync_device_values()
            if self.steps < 2:   # the first makes the optimiser state, the second compiles its update kernels
                self._graph.run(lambda: self._step(*self._inputs))
            elif self._graph.graph is None:
                self._graph.record(lambda: self._step(*self._inputs))
                self._graph.replay()
            else:
                self._graph.replay()
        self.steps += 1
        self.seen += len(y)

    def _step(self, x, y):
        self.optimizer.zero_grad()
        logits = self.model(x)
        loss = self.loss_fn.forward_array(logits, y)
        dlogits = self.loss_fn.backward()
        self.model.backward(dlogits if self._share == 1.0 else dlogits * self._share)   # this shard's part
        self._gradient_sum()
        self.optimizer.step()
        self._loss_sum += loss * len(y)
        self._correct += (logits.argmax(axis=1) == y).sum()

    def _start(self, x, y):
        """Check and remember the first batch; make the device sums (and, for a graph, the input
        arrays and the device copies of the hyper-parameters)."""
        if self._graph is not None and device_of(x) != "cuda":
            raise TypeError("TrainStep: graph=True needs CuPy arrays (a model on 'cuda'), got a batch on "
                            f"{device_of(x)}")
        xp = get_array_module(x)
        self._like = [_spec(a) for a in (x, y)]
        self._loss_sum, self._correct = xp.zeros((), dtype="float64"), xp.zeros((), dtype="int64")
        if self._graph is not None:
            self._inputs = (xp.empty_like(x), xp.empty_like(y))
            self.optimizer.keep_on_device(xp, next(self.model.parameters()).data.dtype)

    def _check_batch(self, x, y):
        for name, new, like in (("x", x, self._like[0]), ("y", y, self._like[1])):
            got = _spec(new)
            if got != like:
                raise ValueError(f"TrainStep: every batch must be like the first; expected {name} as "
                                 f"{_shown(like)}, got {_shown(got) if got else type(new).__name__} "
                                 "(drop the last partial batch)")

    def reset(self):
        """Start new sums (at the start of an epoch)."""
        if self._loss_sum is not None:
            self._loss_sum.fill(0)
            self._correct.fill(0)
        self.seen = 0

    def totals(self):
        """(sum of per-batch mean loss x batch size, correct predictions, images) since ``reset``.
        Raises ``FloatingPointError`` when the loss has become NaN or infinite."""
        if self._loss_sum is None:
            return 0.0, 0, 0
        loss_sum, correct, seen = float(self._loss_sum), int(self._correct), self.seen
        if self.comm.size > 1:
            loss_sum, correct, seen = self.comm.all_sum(numpy.array([loss_sum, correct, seen], dtype="float64"))
            loss_sum, correct, seen = float(loss_sum), int(correct), int(seen)
        if loss_sum != loss_sum or loss_sum in (float("inf"), float("-inf")):
            raise FloatingPointError(f"the training loss is {loss_sum / seen} (non-finite) after "
                                     f"{seen} images of this epoch; check the learning rate and input")
        return loss_sum, correct, seen


def _spec(a):
    """(shape, dtype, device) of an array; None for anything else."""
    return (tuple(a.shape), a.dtype, device_of(a)) if is_array(a) else None


def _shown(spec):
    shape, dtype, device = spec
    return f"{device} {dtype} {shape}"

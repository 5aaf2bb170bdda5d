"""How fast could minise's CPU training step get while it keeps its matrix products?

    python -m benchmarks.cpu_floor [--model se_resnet20] [--threads 2] [--repeats 5] [--out FILE]

The step (batch 128, float32) is split in two, and each part is timed on its own:

- products: every matrix product the convolutions' formula makes in one step (forward ``W @ cols``,
  weight gradient ``cols @ doutᵀ``, input gradient), with their operands built beforehand: no
  padding, im2col, col2im or transposing is timed;
- rest: the step with each convolution replaced by a stand-in that returns its output and its
  input gradient from a buffer, doing no work; BatchNorm, ReLU, SE, pooling, the loss and the
  optimiser (including the convolutions' weights) run as usual.

``products + rest`` is what the step would take if building and reordering the column matrices
cost nothing: a floor for any convolution that keeps these products. The same split is made for
the forward pass in eval mode (what evaluating the test set runs), and PyTorch's step and eval
forward (the twin, same weights and batch) are timed beside them. Last, each is turned into the
minutes of the README's default run: 30 epochs on the 10k subset, 78 steps and 79 evaluation
batches of 128 per epoch (the last holds 16 images, counted as a full batch; loading and
augmenting the data are not counted).
"""
import argparse
import contextlib
import os
import statistics
import time

import numpy

from benchmarks.cpu import environment, time_pair, write_report
from minise.models import resnet20, se_resnet20
from minise.nn import Conv2d
from minise.nn.im2col import output_size, padded_im2col
from minise.nn.ops import matmul
from minise.optim import SGD
from minise.step import TrainStep
from minise.twins import torch_twin

MODELS = {"resnet20": resnet20, "se_resnet20": lambda: se_resnet20(min_hidden=4)}
BATCH, STEPS, EVAL_BATCHES, EPOCHS = 128, 10_000 // 128, -(-10_000 // 128), 30


def conv_layers(model):
    return [m for _, m in model.named_modules() if isinstance(m, Conv2d)]


def product_runs(conv, x, dout):
    """The products ``conv`` makes on input x (N, C, H, W) and output gradient dout
    (N, O, Ho, Wo), operands prepared beforehand, as two functions:
    forward() -> W_mat @ cols (O, N*Ho*Wo); backward() -> (cols @ dout_matᵀ (C*kh*kw, O), the
    input-gradient product: the flipped kernel @ dout's columns (C, N*H*W) for stride 1, else
    W_matᵀ @ dout_mat (C*kh*kw, N*Ho*Wo), which col2im then adds back)."""
    N, C, H, W = x.shape
    O = conv.out_channels
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    Ho, Wo = output_size(H, kh, sh, ph), output_size(W, kw, sw, pw)
    cols = padded_im2col(x, conv.kernel_size, conv.stride, conv.padding,
                         numpy.empty((C * kh * kw, N * Ho * Wo), x.dtype))
    w_mat = conv.weight.data.reshape(O, -1)
    dout_mat = numpy.ascontiguousarray(dout.transpose(1, 0, 2, 3).reshape(O, -1))
    if conv.stride == (1, 1) and ph < kh and pw < kw:       # as Conv2d._dx_transposed_conv
        dout_cols = padded_im2col(dout, conv.kernel_size, (1, 1), (kh - 1 - ph, kw - 1 - pw),
                                  numpy.empty((O * kh * kw, N * H * W), x.dtype))
        w_flipped = numpy.ascontiguousarray(conv.weight.data[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(C, -1))
        dx_product = lambda: matmul(w_flipped, dout_cols)
    else:                                                   # as Conv2d._dx_col2im
        dx_product = lambda: matmul(w_mat.T, dout_mat)
    return (lambda: matmul(w_mat, cols)), (lambda: (matmul(cols, dout_mat.T), dx_product()))


@contextlib.contextmanager
def conv2d_replaced(forward, backward):
    """Within ``with``: ``Conv2d.forward`` and ``Conv2d.backward`` are the given functions."""
    saved = Conv2d.forward, Conv2d.backward
    Conv2d.forward, Conv2d.backward = forward, backward
    try:
        yield
    finally:
        Conv2d.forward, Conv2d.backward = saved


def stub_convolutions(outputs, input_grads):
    """Within ``with``: every Conv2d returns the output and input gradient it gave on the
    recorded batch (dicts keyed by id(conv)), from a buffer, without computing anything."""
    return conv2d_replaced(lambda conv, x: outputs[id(conv)], lambda conv, dout: input_grads[id(conv)])


def record_convolutions(model, step, x, y):
    """One real step; each conv's input, output, output gradient and input gradient."""
    seen = {}
    forward, backward = Conv2d.forward, Conv2d.backward

    def forward_recording(conv, x):
        out = forward(conv, x)
        seen[id(conv)] = {"x": x.copy(), "out": out.copy(order="K")}    # its memory layout too
        return out

    def backward_recording(conv, dout):
        dx = backward(conv, dout)
        seen[id(conv)].update(dout=dout.copy(), dx=dx.copy(order="K"))
        return dx
    with conv2d_replaced(forward_recording, backward_recording):
        step(x, y)
    return seen


def median_ms(run, repeats):
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure(torch, make, repeats):
    """Median ms of each part; keys: step, products, rest, and the same with ``eval_``, and torch's."""
    model = make()
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((BATCH, 3, 32, 32), dtype=numpy.float32)
    y = rng.integers(0, 10, BATCH)
    twin = torch_twin(model)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    step = TrainStep(model, SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4))
    t_opt = torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    t_loss = torch.nn.CrossEntropyLoss()

    def torch_step():
        t_opt.zero_grad()
        t_loss(twin(xt), yt).backward()
        t_opt.step()

    def torch_eval():
        with torch.no_grad():
            twin.eval()(xt)
        twin.train()

    def minise_eval():
        model.eval()(x)
        model.train()

    ms = {}
    ms["step"], ms["torch_step"] = map(statistics.median, time_pair(lambda: step(x, y), torch_step, repeats))
    ms["eval_step"], ms["torch_eval_step"] = map(statistics.median, time_pair(minise_eval, torch_eval, repeats))

    seen = record_convolutions(model, step, x, y)
    runs = [product_runs(conv, seen[id(conv)]["x"], seen[id(conv)]["dout"]) for conv in conv_layers(model)]
    ms["products"] = median_ms(lambda: [(f(), b()) for f, b in runs], repeats)
    ms["eval_products"] = median_ms(lambda: [f() for f, _ in runs], repeats)
    with stub_convolutions({k: v["out"] for k, v in seen.items()}, {k: v["dx"] for k, v in seen.items()}):
        ms["rest"] = median_ms(lambda: step(x, y), repeats)
        ms["eval_rest"] = median_ms(minise_eval, repeats)
    return ms


def minutes(step_ms, eval_ms):
    return EPOCHS * (STEPS * step_ms + EVAL_BATCHES * eval_ms) / 60e3


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cpu_floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="se_resnet20")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/cpu_floor.md")
    options = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # see benchmarks.cpu: read when torch loads

    import torch
    import minise
    torch.set_num_threads(options.threads)
    minise.set_num_threads(options.threads)                  # the products on T-threaded BLAS
    ms = measure(torch, MODELS[options.model], options.repeats)

    floor, eval_floor = ms["products"] + ms["rest"], ms["eval_products"] + ms["eval_rest"]
    rows = [("minise as it is", ms["step"], ms["eval_step"]),
            ("the convolutions' matrix products alone", ms["products"], ms["eval_products"]),
            ("everything but the convolutions", ms["rest"], ms["eval_rest"]),
            ("floor: products + the rest (column matrices free)", floor, eval_floor),
            ("PyTorch (the twin)", ms["torch_step"], ms["torch_eval_step"])]
    lines = [f"| {options.model}, batch {BATCH} | training step ms | eval forward ms | "
             f"default run, minutes |", "|---|---|---|---|"]
    lines += [f"| {name} | {s:.0f} | {e:.0f} | {minutes(s, e):.1f} |" for name, s, e in rows]
    env = environment(torch, options.threads)
    report = ["# CPU step floor: minise's matrix products and the rest of the step", ""]
    report += [f"- {k}: {v}" for k, v in env.items()] + [f"- repeats: {options.repeats} (medians)", ""] + lines
    report += ["", f"Minutes: {EPOCHS} epochs x ({STEPS} steps + {EVAL_BATCHES} eval batches); loading and "
                   "augmenting the data are not counted."]
    write_report(report, options.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

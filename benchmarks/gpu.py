"""minise-CuPy against PyTorch CUDA, side by side in one process on one GPU.

    python -m benchmarks.gpu [--repeats 50] [--rows conv16,se,...] [--out FILE] [--profile FILE]

Three tables, printed as they come and written to ``--out``:

1. Times: the rows of ``benchmarks.cpu`` (float32), timed after a warm-up with a device
   synchronize around every repetition, interleaved, as the median of many repetitions; and
   the training steps replayed from CUDA graphs on both sides, torch's captured by hand
   (``benchmarks.torch_recipe.GraphStep``): torch's fastest mode. TF32 is off in torch, as
   minise computes in float32.
2. Kernels per SE-ResNet-20 training step by layer type, forward and backward: one eager step
   with a marker kernel launched at every layer's entry and exit, so the kernels between two
   markers are that layer's (the step has the graph's kernels, less the batch copies).
3. Dispatch: host microseconds per call of an ``@accelerated`` function through the dispatch,
   and of its GPU version called directly; the difference is what the dispatch costs.

``--profile FILE`` writes where the host's time goes in the eager layer rows (cProfile).
"""
import argparse
import collections
import cProfile
import datetime
import io
import pstats
import statistics
import sys
import time

import numpy

from benchmarks.cpu import rows, time_pair, write_report


def count_kernels(torch, run, synchronize):
    """GPU kernels (and copies) one call of ``run`` launches, from PyTorch's CUPTI-based
    profiler, which sees every launch in the process, CuPy's included."""
    return len(_device_events(torch, run, synchronize))


def _device_events(torch, run, synchronize):
    """The kernels and copies ``run`` launches, in the order they ran (one stream)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run()
        synchronize()
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    return sorted(events, key=lambda e: e.time_range.start)


def graph_rows(torch):
    """Both frameworks' training steps replayed from CUDA graphs."""
    from minise.models import resnet20, se_resnet20
    return {
        "resnet20_graphs": ("ResNet-20 SGD step, batch 128, both from CUDA graphs", lambda: _graph_pair(torch, resnet20)),
        "se_resnet20_graphs": ("SE-ResNet-20 SGD step, batch 128, both from CUDA graphs",
                               lambda: _graph_pair(torch, lambda: se_resnet20(min_hidden=4))),
    }


def _graph_pair(torch, make, batch=128):
    """(minise step, torch step): the same model and batch, SGD with Nesterov momentum and
    weight decay, each replayed from its CUDA graph."""
    from benchmarks.torch_recipe import GraphStep
    from minise.backend import to_device
    from minise.optim import SGD
    from minise.step import TrainStep
    from minise.twins import torch_twin

    model = make()
    twin = torch_twin(model).to("cuda")
    model.to("cuda")
    rng = numpy.random.default_rng(0)
    x_host, y_host = rng.standard_normal((batch, 3, 32, 32), dtype=numpy.float32), rng.integers(0, 10, batch)
    hyper = dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    step = TrainStep(model, SGD(model.parameters(), **hyper), graph=True)
    torch_step = GraphStep(torch, twin, torch.optim.SGD(twin.parameters(), **hyper))
    x, y = to_device(x_host, "cuda"), to_device(y_host, "cuda")
    xt, yt = torch.from_numpy(x_host).cuda(), torch.from_numpy(y_host).cuda()
    return (lambda: step(x, y)), (lambda: torch_step(xt, yt))


def kernels_by_layer(torch, cupy, make, synchronize, batch=128):
    """{(label, 'forward' or 'backward'): [calls, kernels]} for one eager training step of
    ``make()`` (after two warm-up steps), and the step's total. Labels are layer types; an SE
    block counts as one layer (its inner layers inside it); a residual block's own kernels
    (the addition, ...) are its own; the loss, zero_grad and the optimiser's step are labelled
    so; the rest of the step (its sums of loss and accuracy) is "step (other)"."""
    from minise import nn
    from minise.backend import to_device
    from minise.optim import SGD
    from minise.step import TrainStep

    model = make().to("cuda")
    optimizer = SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    step = TrainStep(model, optimizer)
    rng = numpy.random.default_rng(0)
    x, y = (to_device(a, "cuda") for a in (rng.standard_normal((batch, 3, 32, 32), dtype=numpy.float32),
                                             rng.integers(0, 10, batch)))
    step(x, y), step(x, y)
    marker = cupy.RawKernel('extern "C" __global__ void minise_marker() {}', "minise_marker")
    stack, labels, calls = [("step (other)", "")], [], collections.Counter()

    def mark():
        marker((1,), (1,), ())
        labels.append(stack[-1])

    def wrap(owner, method, label, direction):
        original = getattr(owner, method)

        def wrapped(*args, **kwargs):
            stack.append((label, direction))
            calls[stack[-1]] += 1
            mark()
            try:
                return original(*args, **kwargs)
            finally:
                stack.pop()
                mark()
        object.__setattr__(owner, method, wrapped)

    def wrap_layers(module):
        name = type(module).__name__
        wrap(module, "forward", name, "forward")
        wrap(module, "backward", name, "backward")
        if not isinstance(module, nn.SEBlock):
            for child in module.children():
                wrap_layers(child)
    wrap_layers(model)
    wrap(step.loss_fn, "forward_array", "CrossEntropyLoss", "forward")
    wrap(step.loss_fn, "backward", "CrossEntropyLoss", "backward")
    wrap(optimizer, "zero_grad", "zero_grad", "")
    wrap(optimizer, "step", "SGD step", "")
    counts = collections.defaultdict(lambda: [0, 0])
    segment = -1
    events = _device_events(torch, lambda: step(x, y), synchronize)
    for event in events:
        if event.name == "minise_marker":
            segment += 1
        else:
            counts[labels[segment] if segment >= 0 else ("step (other)", "")][1] += 1
    for key, n in calls.items():
        counts[key][0] = n
    return counts, sum(1 for e in events if e.name != "minise_marker")


def kernel_table(counts, total):
    lines = ["| layer type | calls per step | kernels forward | kernels backward | kernels per call (fwd + bwd) |",
             "|---|---|---|---|---|"]
    labels = sorted({label for label, _ in counts}, key=lambda l: -sum(counts[(l, d)][1] for d in
                                                                         ("forward", "backward", "")))
    for label in labels:
        fwd, bwd, other = (counts.get((label, d), [0, 0]) for d in ("forward", "backward", ""))
        n = max(fwd[0], other[0], 1)
        if other[0] or label == "step (other)":
            lines.append(f"| {label} | {other[0] or 1} | {other[1]} | - | {other[1] / (other[0] or 1):.1f} |")
        else:
            lines.append(f"| {label} | {n} | {fwd[1]} | {bwd[1]} | {(fwd[1] + bwd[1]) / n:.1f} |")
    lines.append(f"| **all** | | | | **{total}** per step |")
    return lines


def dispatch_overhead(cupy, synchronize, calls=3000):
    """Host microseconds per call of ``ops.matmul`` on (4, 4) matrices through the dispatch and
    of its GPU version called directly (median of five runs of ``calls`` calls)."""
    from minise.nn import ops

    a, b, out = (cupy.ones((4, 4), dtype=cupy.float32) for _ in range(3))
    results = []
    for fn in (lambda: ops.matmul(a, b, out=out), lambda: ops.matmul.gpu(a, b, out=out)):
        times = []
        for _ in range(5):
            synchronize()
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            times.append((time.perf_counter() - start) / calls * 1e6)
            synchronize()
        results.append(statistics.median(times))
    return results


def host_profile(runs, repeats=20, top=25):
    """cProfile of ``repeats`` calls of each (title, run): the functions with the most own time."""
    text = io.StringIO()
    for title, run in runs:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(repeats):
            run()
        profiler.disable()
        text.write(f"## {title}: {repeats} calls\n\n")
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    return text.getvalue()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--rows", default=None, help="comma-separated row keys (default: all)")
    parser.add_argument("--out", default="benchmarks/results/gpu.md")
    parser.add_argument("--profile", default=None, help="write a cProfile of the eager layer rows to this file")
    parser.add_argument("--times-only", action="store_true", help="only the first table (for older code)")
    options = parser.parse_args(argv)

    import cupy
    import torch

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False

    def synchronize():
        cupy.cuda.Device().synchronize()
        torch.cuda.synchronize()

    table = {**rows(torch, device="cuda"), **graph_rows(torch)}
    keys = options.rows.split(",") if options.rows else list(table)
    props = cupy.cuda.runtime.getDeviceProperties(0)
    env = {
        "date": datetime.date.today().isoformat(),
        "card": props["name"].decode() if isinstance(props["name"], bytes) else props["name"],
        "cupy": cupy.__version__,
        "torch": f"{torch.__version__} (TF32 off)",
        "CUDA runtime": cupy.cuda.runtime.runtimeGetVersion(),
    }
    lines = ["| row | minise-CuPy ms (median, min-max) | torch ms (median, min-max) | minise/torch "
             "| kernels per call (minise / torch) |",
             "|---|---|---|---|---|"]
    built = {}
    for key in keys:
        title, build = table[key]
        run_minise, run_torch = built[key] = build()
        tm, tt = time_pair(run_minise, run_torch, options.repeats, warmup=5, synchronize=synchronize)
        mm, mt = statistics.median(tm), statistics.median(tt)
        try:
            kernels = f"{count_kernels(torch, run_minise, synchronize)} / {count_kernels(torch, run_torch, synchronize)}"
        except Exception as err:  # the profiler is optional here; the timings stand without it
            kernels = f"n/a ({type(err).__name__})"
        lines.append(f"| {title} | {mm:.3f} ({min(tm):.3f}-{max(tm):.3f}) | {mt:.3f} ({min(tt):.3f}-{max(tt):.3f}) "
                     f"| {mm / mt:.2f}x | {kernels} |")
        print(lines[-1], flush=True)
    report = ["# GPU benchmark: minise-CuPy vs PyTorch", ""] + [f"- {k}: {v}" for k, v in env.items()] + [""] + lines
    if not options.times_only:
        report += _kernel_and_dispatch_tables(torch, cupy, synchronize)
    write_report(report, options.out)
    if options.profile:
        eager = [(table[k][0], built[k][0]) for k in keys if k in built and k in ("conv16", "se", "bn")]
        with open(options.profile, "w") as f:
            f.write(host_profile(eager))
    return 0


def _kernel_and_dispatch_tables(torch, cupy, synchronize):
    from minise.models import se_resnet20
    from minise.nn import ops

    counts, total = kernels_by_layer(torch, cupy, lambda: se_resnet20(min_hidden=4), synchronize)
    report = ["", "## Kernels per SE-ResNet-20 training step (batch 128, eager), by layer type", ""]
    report += kernel_table(counts, total)
    print("\n".join(report), flush=True)
    if getattr(ops.matmul, "gpu", None) is None:     # code from before the dispatch had .gpu
        return report
    through, direct = dispatch_overhead(cupy, synchronize)
    report += ["", "## Dispatch", "",
               f"Host time per call of `minise.nn.ops.matmul` on (4, 4) float32 matrices: {through:.2f} us through "
               f"`@accelerated`, {direct:.2f} us calling its GPU version directly: {through - direct:.2f} us a call "
               "for the dispatch."]
    print(report[-1], flush=True)
    return report


if __name__ == "__main__":
    sys.exit(main())

"""Where one worker's CPU training step goes, layer by layer, in minise and in PyTorch.

    python -m benchmarks.profile_cpu [--steps 3] [--threads 1] [--out FILE]

SE-ResNet-20, batch 128, float32, one SGD step, both frameworks in one process at the same
thread count (one: a data-parallel worker). minise: every module's forward and backward is
timed, each charged with its own time only (a block's residual add, not its children's work),
the rest of the step (the loss, the optimiser) as "loss, optimiser, rest". PyTorch: its
profiler's self time of each operator, in the forward or the backward pass (an operator run by
the autograd engine), grouped the same way: convolutions by their weight's shape, BatchNorm,
ReLU, the SE block's operators, the residual add. Times are per step, in ms (the sums of the
profiled steps divided by their number; profiling itself adds a little to each call, so the
shares are of the profiled step). The last row is the step without profiling, both frameworks
timed in turn (minise, torch, minise, ...), medians.
"""
import argparse
import collections
import os
import statistics
import sys
import time

from benchmarks.cpu import _train_step_row, environment, time_pair, write_report

SE_ROW = "SE blocks, global pool, classifier"


def conv_group(weight_shape):
    """``conv 3x3 16->32`` from a weight (O, C, kh, kw); in SE-ResNet-20 the shape says the
    stage (and the stride: those that change the width have stride 2)."""
    O, C, kh, kw = weight_shape
    return f"conv {kh}x{kw} {C}->{O}"


def minise_group(module, parents):
    """The row a minise module's own time goes to."""
    from minise import nn
    if any(isinstance(p, nn.SEBlock) for p in parents + [module]):
        return SE_ROW
    if isinstance(module, nn.Conv2d):
        return conv_group(module.weight.data.shape)
    if isinstance(module, nn.BatchNorm2d):
        return "BatchNorm"
    if isinstance(module, nn.ReLU):
        return "ReLU"
    if type(module).__name__ in ("BasicBlock", "Bottleneck", "SEBottleneck"):
        return "residual add"
    if isinstance(module, (nn.Linear, nn.AdaptiveAvgPool2d, nn.Flatten)):
        return SE_ROW
    return "other (containers, operators not named above)"


def profile_minise(model, step, steps):
    """{(group, "fwd" | "bwd"): ms per step} and the step's ms, each module's own time."""
    times = collections.defaultdict(float)
    stack = []          # [elapsed of the children of each timed call in progress]
    modules = dict(model.named_modules())

    def ancestors(name):
        parts = name.split(".")
        return [modules[".".join(parts[:i])] for i in range(len(parts))]

    def timed(method, key):
        def run(*args):
            stack.append(0.0)
            start = time.perf_counter()
            result = method(*args)
            elapsed = time.perf_counter() - start
            children = stack.pop()
            times[key] += elapsed - children
            if stack:
                stack[-1] += elapsed
            return result
        return run

    for name, module in modules.items():
        if not name:
            continue
        group = minise_group(module, ancestors(name))
        module.forward = timed(module.forward, (group, "fwd"))
        module.backward = timed(module.backward, (group, "bwd"))
    step()
    times.clear()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    total = (time.perf_counter() - start) * 1e3 / steps
    per_step = {k: v * 1e3 / steps for k, v in times.items()}
    per_step[("loss, optimiser, rest", "fwd")] = total - sum(per_step.values())
    return per_step, total


def torch_group(event):
    """The row of a PyTorch operator, from its name and its inputs' shapes."""
    name = event.name
    if "convolution" in name:
        weights = [s for s in event.input_shapes if len(s) == 4 and s[2] <= 7 and s[3] <= 7]
        return conv_group(weights[0]) if weights else "conv (other)"
    if "batch_norm" in name:
        return "BatchNorm"
    if "relu" in name or "threshold" in name or "clamp" in name:
        return "ReLU"
    if any(k in name for k in ("sigmoid", "mean", "adaptive_avg_pool", "addmm", "mm", "mul", "sum", "div")):
        return SE_ROW
    if name in ("aten::add", "aten::add_"):
        return "residual add"
    if any(k in name for k in ("_foreach", "sgd", "zero_", "fill_")):
        return "loss, optimiser, rest"
    if "cross_entropy" in name or "log_softmax" in name or "nll_loss" in name:
        return "loss, optimiser, rest"
    return "other (containers, operators not named above)"


def profile_torch(step, steps):
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step()
    times = collections.defaultdict(float)
    for event in prof.events():
        if not event.name.startswith("aten::") or event.self_cpu_time_total <= 0:
            continue
        parent, backward = event.cpu_parent, False
        while parent is not None:
            backward = backward or parent.name.startswith("autograd::engine")
            parent = parent.cpu_parent
        times[(torch_group(event), "bwd" if backward else "fwd")] += event.self_cpu_time_total / 1e3 / steps
    return dict(times)


def table(minise, minise_total, torch_times, step_ms):
    groups = sorted({g for g, _ in minise} | {g for g, _ in torch_times},
                    key=lambda g: -(minise.get((g, "fwd"), 0) + minise.get((g, "bwd"), 0)))
    lines = ["| layer | minise fwd ms | minise bwd ms | minise share | torch fwd ms | torch bwd ms | torch share |",
             "|---|---|---|---|---|---|---|"]
    for g in groups:
        mf, mb = minise.get((g, "fwd"), 0.0), minise.get((g, "bwd"), 0.0)
        tf, tb = torch_times.get((g, "fwd"), 0.0), torch_times.get((g, "bwd"), 0.0)
        t_all = sum(torch_times.values())
        lines.append(f"| {g} | {mf:.1f} | {mb:.1f} | {100 * (mf + mb) / minise_total:.0f}% | {tf:.1f} | {tb:.1f} | "
                     f"{100 * (tf + tb) / t_all if t_all else 0:.0f}% |")
    lines.append(f"| **step, unprofiled** (minise/torch {step_ms[0] / step_ms[1]:.2f}x) | {step_ms[0]:.0f} | | | "
                 f"{step_ms[1]:.0f} | | |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_cpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/profile_cpu.md")
    options = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    import minise
    from minise.models import se_resnet20
    torch.set_num_threads(options.threads)
    minise.set_num_threads(options.threads)
    minise.nn.manual_seed(0)
    model = se_resnet20(min_hidden=4)
    run_minise, run_torch = _train_step_row(torch, lambda: model)      # batch 128, SGD, the same batch
    step_ms = [statistics.median(t) for t in time_pair(run_minise, run_torch, options.steps)]   # interleaved
    torch_times = profile_torch(run_torch, options.steps)
    minise_times, minise_total = profile_minise(model, run_minise, options.steps)
    report = ["# Where the CPU step goes: SE-ResNet-20, batch 128, per layer", ""]
    report += [f"- {k}: {v}" for k, v in environment(torch, options.threads).items()]
    report += [f"- steps profiled: {options.steps}", ""] + table(minise_times, minise_total, torch_times, step_ms)
    write_report(report, options.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""minise against PyTorch on the CPU, side by side in one process.

    python -m benchmarks.cpu [--threads 2] [--repeats 15] [--rows conv64,bn,...] [--out FILE]
    python -m benchmarks.cpu --threads 1,2,4,8,16 [--rows se_resnet20]      # a scaling table
    python -m benchmarks.cpu --workers 1,2,4,8,16     # minise on W processes (benchmarks.workers)

Each row times the same work in both frameworks (same shapes, float32, same thread count:
``minise.set_num_threads`` and ``torch.set_num_threads``): a warm-up, then interleaved
repetitions (minise, torch, minise, torch, ...), reporting the median, min and max in
milliseconds and the ratio of medians minise/torch (lower is better). Peak resident memory of
a training step is measured in a fresh subprocess per framework. With several thread counts,
each row is timed at each count, with each framework's speed-up over its own time at the
first count. The markdown table is printed and written to ``--out``.
"""
import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy

from minise.backend import to_device
from minise.twins import torch_twin


def _layer_row(torch, make, shape, backward=True, device="cpu"):
    """Return (minise_fn, torch_fn) that run forward (+ backward) of one layer on ``shape``."""
    m = make()
    t = torch_twin(m).to(device)
    m.to(device)
    rng = numpy.random.default_rng(0)
    x_host = rng.standard_normal(shape, dtype=numpy.float32)
    x = to_device(x_host, device)
    dout_host = rng.standard_normal(m(x).shape, dtype=numpy.float32)
    dout = to_device(dout_host, device)
    xt = torch.from_numpy(x_host).to(device).requires_grad_(backward)
    dout_t = torch.from_numpy(dout_host).to(device)

    def run_minise():
        m(x)
        if backward:
            m.backward(dout)

    def run_torch():
        out = t(xt)
        if backward:
            out.backward(dout_t)

    return run_minise, run_torch


def _train_step_row(torch, make, batch=128, device="cpu", sides=("minise", "torch"), graph=False):
    """One SGD step: forward, cross-entropy, backward, update. ``sides`` limits what is built
    (the memory probe builds one framework only); ``graph``: minise replays the step from a
    CUDA graph (minise.step.TrainStep), torch stays eager."""
    from minise.optim import SGD
    from minise.step import TrainStep
    model = make()
    rng = numpy.random.default_rng(0)
    x_host = rng.standard_normal((batch, 3, 32, 32), dtype=numpy.float32)
    y_host = rng.integers(0, 10, batch)
    run_minise = run_torch = None
    if "torch" in sides:
        twin = torch_twin(model).to(device)
        xt, yt = torch.from_numpy(x_host).to(device), torch.from_numpy(y_host).to(device)
        tloss = torch.nn.CrossEntropyLoss()
        topt = torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)

        def run_torch():
            topt.zero_grad()
            tloss(twin(xt), yt).backward()
            topt.step()
    if "minise" in sides:
        model.to(device)
        x, y = to_device(x_host, device), to_device(y_host, device)
        step = TrainStep(model, SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4),
                         graph=graph)

        def run_minise():
            step(x, y)
    return run_minise, run_torch


def rows(torch, device="cpu", sides=("minise", "torch")):
    from minise import nn
    from minise.models import resnet20, se_resnet20
    layer = lambda make, shape, backward=True: (lambda: _layer_row(torch, make, shape, backward, device))
    step = lambda make: (lambda: _train_step_row(torch, make, device=device, sides=sides))
    return {
        "conv64_fwd": ("Conv2d 3x3 64->64 (128,64,32,32) fwd",
                       layer(lambda: nn.Conv2d(64, 64, 3, padding=1, bias=False), (128, 64, 32, 32), False)),
        "conv64": ("Conv2d 3x3 64->64 (128,64,32,32) fwd+bwd",
                   layer(lambda: nn.Conv2d(64, 64, 3, padding=1, bias=False), (128, 64, 32, 32))),
        "conv16": ("Conv2d 3x3 16->16 (128,16,32,32) fwd+bwd",
                   layer(lambda: nn.Conv2d(16, 16, 3, padding=1, bias=False), (128, 16, 32, 32))),
        "conv32s2": ("Conv2d 3x3 32->64 s2 (128,32,32,32) fwd+bwd",
                     layer(lambda: nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False), (128, 32, 32, 32))),
        "bn": ("BatchNorm2d(64) train (128,64,32,32) fwd+bwd", layer(lambda: nn.BatchNorm2d(64), (128, 64, 32, 32))),
        "se": ("SEBlock(64, 16) (128,64,32,32) fwd+bwd", layer(lambda: nn.SEBlock(64, 16), (128, 64, 32, 32))),
        "maxpool": ("MaxPool2d(2) (128,64,32,32) fwd+bwd", layer(lambda: nn.MaxPool2d(2), (128, 64, 32, 32))),
        "linear": ("Linear 512->10 (128,512) fwd+bwd", layer(lambda: nn.Linear(512, 10), (128, 512))),
        "resnet20": ("ResNet-20 SGD step, batch 128", step(resnet20)),
        "se_resnet20": ("SE-ResNet-20 SGD step, batch 128", step(lambda: se_resnet20(min_hidden=4))),
        **({} if device == "cpu" else {
            "resnet20_graph": ("ResNet-20 SGD step, batch 128, minise from a CUDA graph",
                               lambda: _train_step_row(torch, resnet20, device=device, graph=True)),
            "se_resnet20_graph": ("SE-ResNet-20 SGD step, batch 128, minise from a CUDA graph",
                                  lambda: _train_step_row(torch, lambda: se_resnet20(min_hidden=4), device=device,
                                                          graph=True)),
        }),
    }


def time_pair(run_a, run_b, repeats, warmup=2, synchronize=lambda: None):
    """Interleaved wall-clock times in ms; ``synchronize`` waits for queued device work."""
    for _ in range(warmup):
        run_a(), run_b()
    synchronize()
    times_a, times_b = [], []
    for _ in range(repeats):
        for run, times in ((run_a, times_a), (run_b, times_b)):
            start = time.perf_counter()
            run()
            synchronize()
            times.append((time.perf_counter() - start) * 1e3)
    return times_a, times_b


def peak_rss_mb(framework, row, threads):
    """Peak RSS (MB) of a fresh process that builds ``row`` for one framework and runs 3 steps.

    Read from VmHWM in /proc (ru_maxrss would carry over the parent's peak across fork+exec).
    """
    code = (f"import benchmarks.cpu as b, torch, minise; torch.set_num_threads({threads}); "
            f"minise.set_num_threads({threads}); "
            f"fns = b.rows(torch, sides=({framework!r},))[{row!r}][1](); "
            f"fn = fns[{0 if framework == 'minise' else 1}]\n"
            f"for _ in range(3): fn()\n"
            f"print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1]) / 1024


def environment(torch, threads):
    from threadpoolctl import threadpool_info
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, {i.get('num_threads')} threads)"
            for i in threadpool_info() if i.get("user_api") == "blas"]
    return {
        "date": datetime.date.today().isoformat(),
        "machine": f"{cpu}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable by this process)",
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "BLAS (threadpoolctl)": "; ".join(blas) or "unknown",
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        "threads": threads,
    }


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a == "--workers" or a.startswith("--workers=") for a in argv):
        from . import workers                  # minise on W worker processes beside torch on W threads
        return workers.main(argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="2", help="a thread count, or several separated by commas "
                        "(e.g. 1,2,4,8,16) for a scaling table")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--rows", default=None, help="comma-separated row keys (default: all; with several "
                                                     "thread counts: se_resnet20)")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/cpu.md, or cpu-scaling.md")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocesses")
    parser.add_argument("--omp-wait-policy", default="PASSIVE",
                        help="OMP_WAIT_POLICY for PyTorch's OpenMP threads (default PASSIVE: with the "
                             "default ACTIVE, torch's idle threads spin on the cores while minise runs "
                             "between torch's repetitions, which slows small minise ops tenfold)")
    options = parser.parse_args(argv)
    try:
        counts = [int(t) for t in options.threads.split(",")]
        assert counts and min(counts) >= 1
    except (ValueError, AssertionError):
        parser.error(f"--threads {options.threads!r}: expected positive integers separated by commas, e.g. 1,2,4")
    os.environ.setdefault("OMP_WAIT_POLICY", options.omp_wait_policy)   # read when torch loads

    import torch
    table = rows(torch)
    scaling = len(counts) > 1
    keys = options.rows.split(",") if options.rows else (["se_resnet20"] if scaling else list(table))
    unknown = [k for k in keys if k not in table]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(table)}")
    out = options.out or ("benchmarks/results/cpu-scaling.md" if scaling else "benchmarks/results/cpu.md")
    report = ["# CPU benchmark: minise vs PyTorch", ""]
    report += [f"- {k}: {v}" for k, v in environment(torch, options.threads).items()] + [""]
    report += (_scaling(torch, table, keys, counts, options) if scaling
               else _one_count(torch, table, keys, counts[0], options))
    write_report(report, out)
    return 0


def _use_threads(torch, threads):
    import minise
    minise.set_num_threads(threads)
    torch.set_num_threads(threads)


def _time_row(build, key, repeats):
    run_minise, run_torch = build()
    repeats = max(3, repeats // 3) if key.endswith("resnet20") else repeats
    tm, tt = time_pair(run_minise, run_torch, repeats)
    return tm, tt, statistics.median(tm), statistics.median(tt)


def _one_count(torch, table, keys, threads, options):
    """The table of rows at one thread count, with throughput and peak RSS of the steps."""
    _use_threads(torch, threads)
    lines = ["| row | minise ms (median, min-max) | torch ms (median, min-max) | minise/torch |",
             "|---|---|---|---|"]
    extra = []
    for key in keys:
        title, build = table[key]
        tm, tt, mm, mt = _time_row(build, key, options.repeats)
        line = (f"| {title} | {mm:.2f} ({min(tm):.2f}-{max(tm):.2f}) | {mt:.2f} ({min(tt):.2f}-{max(tt):.2f}) "
                f"| {mm / mt:.2f}x |")
        lines.append(line)
        print(line, flush=True)
        if key.endswith("resnet20"):
            extra.append((key, mm, f"{title}: minise {128e3 / mm:.0f} img/s, torch {128e3 / mt:.0f} img/s"
                                   + _memory_note(key, threads, options)))
    medians = {k: m for k, m, _ in extra}
    if "resnet20" in medians and "se_resnet20" in medians:
        extra.append(("", 0, f"SE overhead (minise): {medians['se_resnet20'] / medians['resnet20']:.2f}x "
                             f"the ResNet-20 step"))
    return lines + [""] + [f"- {n}" for _, _, n in extra]


def _scaling(torch, table, keys, counts, options):
    """Each row at each thread count: both frameworks' medians, their ratio and speed-ups."""
    lines = [f"| row | threads | minise ms (median, min-max) | torch ms (median, min-max) | minise/torch "
             f"| minise speed-up over {counts[0]} | torch speed-up over {counts[0]} |",
             "|---|---|---|---|---|---|---|"]
    notes = []
    for key in keys:
        title, build = table[key]
        first = None
        for threads in counts:
            _use_threads(torch, threads)
            tm, tt, mm, mt = _time_row(build, key, options.repeats)
            first = first or (mm, mt)
            line = (f"| {title} | {threads} | {mm:.1f} ({min(tm):.1f}-{max(tm):.1f}) | {mt:.1f} ({min(tt):.1f}-"
                    f"{max(tt):.1f}) | {mm / mt:.2f}x | {first[0] / mm:.2f}x | {first[1] / mt:.2f}x |")
            lines.append(line)
            print(line, flush=True)
        if key.endswith("resnet20") and not options.no_memory:
            notes.append(f"- {title}, {counts[-1]} threads:" + _memory_note(key, counts[-1], options)[1:])
    return lines + [""] + notes


def _memory_note(key, threads, options):
    if options.no_memory:
        return ""
    rss_m, rss_t = peak_rss_mb("minise", key, threads), peak_rss_mb("torch", key, threads)
    return f"; peak RSS minise {rss_m:.0f} MB, torch {rss_t:.0f} MB ({rss_m / rss_t:.2f}x)"


def write_report(lines, path):
    """Print the report and write it to ``path``."""
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    sys.exit(main())

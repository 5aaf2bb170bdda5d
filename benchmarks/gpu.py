"""minise-CuPy against PyTorch CUDA eager, side by side in one process on one GPU.

    python -m benchmarks.gpu [--repeats 50] [--rows conv64,se_resnet20,...] [--out FILE]

The same rows as ``benchmarks.cpu`` (float32), timed after a warm-up with a device
synchronize around every repetition, interleaved, as the median of many repetitions.
"""
import argparse
import datetime
import statistics
import sys

from benchmarks.cpu import rows, time_pair, write_report


def count_kernels(torch, run, synchronize):
    """GPU kernels (and copies) one call of ``run`` launches, from PyTorch's CUPTI-based
    profiler, which sees every launch in the process, CuPy's included."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run()
        synchronize()
    return sum(1 for event in prof.events() if event.device_type == torch.autograd.DeviceType.CUDA)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--rows", default=None, help="comma-separated row keys (default: all)")
    parser.add_argument("--out", default="benchmarks/results/gpu.md")
    options = parser.parse_args(argv)

    import cupy
    import torch

    def synchronize():
        cupy.cuda.Device().synchronize()
        torch.cuda.synchronize()

    table = rows(torch, device="cuda")
    keys = options.rows.split(",") if options.rows else list(table)
    props = cupy.cuda.runtime.getDeviceProperties(0)
    env = {
        "date": datetime.date.today().isoformat(),
        "card": props["name"].decode() if isinstance(props["name"], bytes) else props["name"],
        "cupy": cupy.__version__,
        "torch": torch.__version__,
        "CUDA runtime": cupy.cuda.runtime.runtimeGetVersion(),
    }
    lines = ["| row | minise-CuPy ms (median, min-max) | torch eager ms (median, min-max) | minise/torch "
             "| kernels per call (minise / torch) |",
             "|---|---|---|---|---|"]
    for key in keys:
        title, build = table[key]
        run_minise, run_torch = build()
        tm, tt = time_pair(run_minise, run_torch, options.repeats, warmup=5, synchronize=synchronize)
        mm, mt = statistics.median(tm), statistics.median(tt)
        try:
            kernels = f"{count_kernels(torch, run_minise, synchronize)} / {count_kernels(torch, run_torch, synchronize)}"
        except Exception as err:  # the profiler is optional here; the timings stand without it
            kernels = f"n/a ({type(err).__name__})"
        lines.append(f"| {title} | {mm:.3f} ({min(tm):.3f}-{max(tm):.3f}) | {mt:.3f} ({min(tt):.3f}-{max(tt):.3f}) "
                     f"| {mm / mt:.2f}x | {kernels} |")
        print(lines[-1], flush=True)
    write_report(["# GPU benchmark: minise-CuPy vs PyTorch eager", ""] + [f"- {k}: {v}" for k, v in env.items()]
                 + [""] + lines, options.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

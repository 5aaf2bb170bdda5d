"""minise's training step on W worker processes beside PyTorch's on W threads.

    python -m benchmarks.workers --workers 1,2,4,8,16 [--repeats 10] [--out FILE]

For each W: minise's SE-ResNet-20 SGD step (batch 128, float32) run by W MPI processes with one
BLAS thread each, every worker on its shard of the batch (``mpiexec -n W``; W = 1 is one plain
process), then PyTorch's twin step in this process with ``torch.set_num_threads(W)``. Each is
warmed up and timed ``--repeats`` times; the table gives the medians, the ratio minise/torch,
each framework's speed-up over its own time at the first W, and the memory of all of minise's
W processes added up beside torch's one process (each measured in fresh processes): their peak
RSS, which counts the pages the workers share (MPI's shared-memory segments, the libraries)
once per worker, and their PSS after the steps, which divides each shared page among its
sharers. minise runs in other processes than torch, so the two are timed one after the
other, not interleaved: run it on an otherwise idle machine.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy

from minise.distributed.launch import mpiexec

from .cpu import environment, peak_rss_mb, rows, time_pair, write_report

MODEL = "se_resnet20"


def worker_step(repeats):
    """In each worker: time the step on this worker's shard; worker 0 prints a JSON line with the
    median ms and the summed peak RSS of every worker (MB)."""
    import minise
    from minise.distributed import shard, world
    from minise.models import se_resnet20
    from minise.optim import SGD
    from minise.step import TrainStep

    comm = world()
    minise.set_num_threads(1)
    model = se_resnet20(min_hidden=4)
    rng = numpy.random.default_rng(0)
    x, y = rng.standard_normal((128, 3, 32, 32), dtype=numpy.float32), rng.integers(0, 10, 128)
    lo, hi = shard(128, comm.rank, comm.size)
    step = TrainStep(model, SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4))
    times = []
    for i in range(repeats + 2):
        comm.barrier()                      # every worker starts the step together
        start = time.perf_counter()
        step(x[lo:hi], y[lo:hi], batch_size=128)
        if i >= 2:
            times.append((time.perf_counter() - start) * 1e3)
    # Peak RSS counts pages shared between the workers (MPI's shared-memory segments, the
    # libraries' code) once in every worker; PSS, read after the steps, shares them out.
    memory = numpy.array([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, _pss_mb()])
    comm.all_sum(memory)
    if comm.rank == 0:
        print(json.dumps({"ms": statistics.median(times), "rss_mb": float(memory[0]), "pss_mb": float(memory[1])}),
              flush=True)


def _pss_mb():
    """This process's proportional set size (MB): each shared page divided among its sharers."""
    with open("/proc/self/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Pss:")) / 1024.0


def minise_step(workers, repeats):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MINISE_WORKERS="1")
    argv = [sys.executable, "-m", "benchmarks.workers", "--worker-step", str(repeats)]
    command = argv if workers == 1 else [mpiexec(), "-n", str(workers), *argv]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def torch_step(torch, threads, repeats):
    torch.set_num_threads(threads)
    _, run_torch = rows(torch, sides=("torch",))[MODEL][1]()
    times, _ = time_pair(run_torch, lambda: None, repeats)
    return statistics.median(times), peak_rss_mb("torch", MODEL, threads)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.workers", description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", default="1,2", help="worker counts, e.g. 1,2,4,8,16")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", default=None, help="also write the markdown table here")
    p.add_argument("--worker-step", type=int, default=None, help=argparse.SUPPRESS)
    options = p.parse_args(argv)
    if options.worker_step is not None:
        return worker_step(options.worker_step)
    import torch

    counts = [int(c) for c in options.workers.split(",")]
    lines = [f"# {MODEL} SGD step, batch 128: minise on W processes, torch on W threads", ""]
    lines += [f"- {k}: {v}" for k, v in environment(torch, "1 per minise worker; W for torch").items()] + [""]
    lines += ["| W | minise ms | torch ms | minise / torch | minise speed-up | torch speed-up | "
              "minise peak RSS, all workers (MB) | minise PSS, all workers (MB) | torch peak RSS (MB) | "
              "RSS ratio | PSS / torch RSS |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    first = None
    for w in counts:
        m = minise_step(w, options.repeats)
        t_ms, t_rss = torch_step(torch, w, options.repeats)
        first = first or (m["ms"], t_ms)
        lines.append(f"| {w} | {m['ms']:.0f} | {t_ms:.0f} | {m['ms'] / t_ms:.2f}x | {first[0] / m['ms']:.2f}x | "
                     f"{first[1] / t_ms:.2f}x | {m['rss_mb']:.0f} | {m['pss_mb']:.0f} | {t_rss:.0f} | "
                     f"{m['rss_mb'] / t_rss:.2f}x | {m['pss_mb'] / t_rss:.2f}x |")
        print(lines[-1], flush=True)
    if options.out:
        write_report(lines, options.out)
    else:
        print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())

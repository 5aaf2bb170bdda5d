"""Draw docs/figures/workers_scaling.png from a benchmarks.workers table: the step time of
minise on W worker processes and of torch on W threads.

    python docs/figures/draw_workers_scaling.py benchmarks/results/workers-xeon.md
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rows(path):
    """(W, minise ms, torch ms) for each row of the markdown table."""
    out = []
    with open(path) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) > 3 and cells[0].isdigit():
                out.append((int(cells[0]), float(cells[1]), float(cells[2])))
    return out


def main(path, out="docs/figures/workers_scaling.png"):
    table = rows(path)
    workers = [w for w, _, _ in table]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(workers, [m for _, m, _ in table], "o-", label="minise: W worker processes")
    ax.plot(workers, [t for _, _, t in table], "s-", label="PyTorch: W threads")
    ax.set_xscale("log", base=2)
    ax.set_xticks(workers, [str(w) for w in workers])
    ax.set_xlabel("workers (minise) / threads (PyTorch)")
    ax.set_ylabel("SE-ResNet-20 SGD step, batch 128 (ms)")
    ax.set_title("16-core Xeon host, float32")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(out)


if __name__ == "__main__":
    main(*sys.argv[1:])

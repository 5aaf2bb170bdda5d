"""``minise ablate``: the SE ablation runner (examples in EXAMPLES, shown by ``minise ablate --help``).

It trains a grid of settings x seeds (``ablate_grid``) with ``minise train``'s code, one run at a
time, writes each run's result.json (``ablate_results``) and rebuilds the tables
(``ablate_tables``) after each run. A failing run (e.g. a non-finite loss) is recorded as
"failed" and the grid goes on; the command then exits 1 naming it. Ctrl-C stops the grid (exit 130).
With several workers each run is trained by all of them (``minise.distributed``); worker 0 alone
decides what is left to train, takes the runs' locks, prints and writes the files.
"""
import contextlib
import dataclasses
import glob
import json
import os
import sys
import traceback

from ..backend import check_device
from ..distributed import say, world
from ..distributed.launch import run_command
from .ablate_grid import GRIDS, OPTIONS, plan, set_grid, shard
from .ablate_results import write_atomic, existing, run_lock
from .ablate_tables import write_tables
from .config import TrainConfig
from .loop import train
from .options import SHARED_FIELDS, add_config_options, add_shared_options, parser as make_parser


def run_one(run, progress=True):
    """Train (or resume from last.npz) one run and write its result.json; returns the result.
    An error is recorded as status "failed", not raised; KeyboardInterrupt is raised."""
    config = run.config
    last = os.path.join(config.out, "last.npz")
    result = dict(name=run.name, setting=run.setting, order=run.order, seed=config.seed, device=config.device,
                  params=run.params, mult_adds=run.mult_adds, config=dataclasses.asdict(config))
    resume = os.path.exists(last)       # else the run starts again: a failed or killed first epoch is replaced
    try:
        rows = train(config, resume=resume, overwrite=not resume, progress=progress)   # a finished last.npz: no training
        result.update(status="finished", final_acc=rows[-1]["test_acc"], best_acc=max(r["test_acc"] for r in rows),
                      final_test_loss=rows[-1]["test_loss"], seconds=sum(r["seconds"] for r in rows), metrics=rows)
    except Exception as err:
        result.update(status="failed", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc())
    if world().rank == 0:
        os.makedirs(config.out, exist_ok=True)
        write_atomic(os.path.join(config.out, "result.json"), json.dumps(result, indent=1))
    return result


def run_grid(runs, out, progress=True):
    """Train every run without a finished result.json, rebuilding the tables in ``out`` after each;
    returns the names of the runs that failed. Conflicting files stop it before any training."""
    comm = world()
    lead = comm.rank == 0
    states = comm.broadcast({run.name: existing(run) for run in runs} if lead else None)
    todo = [run for run in runs if states[run.name] != "finished"]
    say(f"{len(runs)} runs, {len(runs) - len(todo)} finished before; training {len(todo)} in {out}", flush=True)
    failed = []
    for k, run in enumerate(todo, 1):
        with run_lock(run, out) if lead else contextlib.nullcontext(None) as mine:
            # another process may have finished it meanwhile; worker 0 looks, every worker follows
            state = comm.broadcast((existing(run) if mine else None) if lead else None)
            mine = comm.broadcast(mine)
            if state in (None, "finished"):
                say(f"[{k}/{len(todo)}] {run.name}: " + ("finished by another process" if mine else
                    "skipped: another process is training it"), flush=True)
                continue
            say(f"[{k}/{len(todo)}] {run.name}: training ({state})", flush=True)
            result = run_one(run, progress and lead)
        if result["status"] == "finished":
            say(f"[{k}/{len(todo)}] {run.name}: final {100 * result['final_acc']:.2f}%, "
                  f"best {100 * result['best_acc']:.2f}%, {result['seconds']:.0f} s", flush=True)
        else:
            failed.append(run.name)
            say(f"[{k}/{len(todo)}] {run.name}: FAILED: {result['error']}", flush=True)
        if lead:
            write_tables(out)
    if lead:
        write_tables(out)
    return failed


# ---- the command ---------------------------------------------------------------------------------

EXAMPLES = [
    "minise ablate --grid paper                       # the SE-Net paper's ablations, seeds 0 1 2, 10 epochs",
    "minise ablate --grid reduction --seeds 0 --epochs 5 --train-subset 2000 --out runs/r-quick",
    "minise ablate --set excitation=sigmoid,tanh --set lr=0.1,0.05 --dry-run",
    "CUDA_VISIBLE_DEVICES=1 minise ablate --grid paper --device cuda --shard 1/2   # one process per GPU",
    "minise ablate --summarize --out runs/ablate      # rebuild the tables from the files, train nothing",
]


def build_parser():
    p = make_parser("minise ablate", "Train a grid of SE settings x seeds with minise train's code, resumably, "
                                     "and tabulate the mean and std of each setting's test accuracy.", EXAMPLES)
    p.add_argument("--grid", action="append", choices=list(GRIDS), help="a built-in grid (repeatable)")
    p.add_argument("--set", action="append", metavar="KEY=V1,V2", help="a TrainConfig field and its values "
                   "(repeatable; their product is added to the grid); se_stages as 1+2+3")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one run of each setting per seed")
    add_config_options(p, [f for f in OPTIONS if f not in ("out", *SHARED_FIELDS)], epochs=10)
    add_shared_options(p)
    p.add_argument("--out", default="runs/ablate", help="the grid's folder (each run in OUT/runs/NAME)")
    p.add_argument("--shard", default="0/1", metavar="I/K", help="run only the runs whose index is I mod K")
    p.add_argument("--dry-run", action="store_true", help="list the runs and what is on disk, train nothing")
    p.add_argument("--summarize", action="store_true", help="rebuild the tables in --out, train nothing")
    return p


def runs_from_args(args):
    """The (sharded) runs that the command line asks for; ValueError on a bad grid."""
    settings = [s for g in args.grid or () for s in GRIDS[g]] + set_grid(args.set or ())
    if not settings:
        raise ValueError(f"nothing to run: name a grid with --grid ({', '.join(GRIDS)}) or build one with "
                         "--set KEY=V1,V2")
    base = TrainConfig(**{f: getattr(args, f) for f in OPTIONS})
    return shard(plan(settings, base, args.seeds), args.shard)


def _dry_run(runs, args):
    """List the runs, their model sizes and what is on disk for each."""
    print(f"{len(runs)} runs (shard {args.shard}) in {args.out}:")
    for i, run in enumerate(runs, 1):
        print(f"{i:4d}  {run.name:<56} params {run.params:>9,}  mult-adds {run.mult_adds / 1e6:6.2f}M  "
              f"{existing(run)}")
    return 0


def _print_tables(out):
    with open(os.path.join(out, "summary.md")) as f:
        print("\n" + f.read(), end="")
    print(f"tables: {', '.join(os.path.join(out, n) for n in ('runs.csv', 'summary.csv', 'summary.md'))}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.summarize:
            if not glob.glob(os.path.join(glob.escape(args.out), "runs", "*", "result.json")):
                raise ValueError(f"no result.json under {os.path.join(args.out, 'runs')}: nothing to summarize")
            write_tables(args.out)
            _print_tables(args.out)
            return 0
        try:
            runs = runs_from_args(args)
        except ValueError as err:
            parser.error(str(err))
        if args.dry_run:
            return _dry_run(runs, args)
        check_device(args.device)
        return run_command("minise ablate", ["ablate", *argv], lambda: _train(runs, args), args.workers,
                           args.device, args.threads)
    except KeyboardInterrupt:
        print(f"\nminise ablate: interrupted; finished runs are kept in {args.out}: run the same command again "
              "to go on (an interrupted run resumes from its last.npz)", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, OSError) as err:      # CheckpointError is a ValueError
        print(f"minise ablate: error: {err}", file=sys.stderr)
        return 1


def _train(runs, args):
    """The grid in this process: alone, or as one of the workers (worker 0 prints the tables)."""
    failed = run_grid(runs, args.out, progress=not args.no_progress)
    if world().rank != 0:
        return 0
    _print_tables(args.out)
    if failed:
        print(f"minise ablate: {len(failed)} run(s) failed: {', '.join(failed)} (the error is in each run's "
              "result.json; the same command retries them)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The SE ablation runner: ``minise ablate`` (examples in EXAMPLES, shown by ``minise ablate --help``).

The grid. A *setting* is a dict of TrainConfig field overrides, e.g. {"reduction_ratio": 4}.
``--grid NAME`` (repeatable) takes the settings of a built-in grid (GRIDS); ``--set KEY=V1,V2``
(repeatable) builds the cartesian product of its values, and those settings are *added* to the
--grid ones (they do not multiply them). Each setting is resolved against the run-wide options
(--epochs, --train-subset, --lr, ...) into a full TrainConfig, checked with ``check_config`` and
by building its model, all before anything trains. Runs go seed by seed (every setting's first
seed, then every setting's second ...), so a grid stopped half-way has every setting once.

Run identity. Settings that resolve to the same effective run are one run: a plain ResNet ignores
the SE fields, and ``min_hidden`` becomes 0 (the paper's C // r) where the floor widens no SE
block (at r=4 every block already has C // r >= 4, so h1 and h4 are one run). A run is named by
what matters, e.g. ``resnet20-seed0`` or ``se_resnet20-r16-h4-avg-sigmoid-standard-s123-seed1``
(``-hN`` only where the floor acts), plus every other field that differs from the run-wide
options (``-lr0.05``).

Files in ``--out``: ``runs/<name>/`` holds the run's ``minise train`` files and, once it ends,
``result.json`` (written atomically). runs.csv (one row per run), summary.csv and summary.md
(one row per setting, over its finished seeds) are rebuilt from every result.json present after
each run and at the end, so shards sharing --out lose no rows and a crash loses at most the run
in progress. CSV accuracies are fractions, as in metrics.csv; summary.md shows percent.

Resuming: the same command again skips finished runs, continues a run that has a last.npz and
retries failed ones. A result.json or last.npz made with other settings than the grid now asks
for is an error. Processes sharing --out (shards, or the same command started twice) each take a
run's lock (``runs/.<name>.lock``) before training it, so every run is trained once. A failing run (e.g. a non-finite loss) is recorded as "failed" and the grid
goes on; the command then exits 1 naming it. Ctrl-C stops the grid (exit 130).
"""
import contextlib
import csv
import dataclasses
import glob
import io
import itertools
import json
import math
import os
import sys
import traceback
from typing import NamedTuple

import numpy

from ..backend import check_device
from ..files import atomic_open
from ..nn import SEBlock
from ..summary import summary
from .config import FIELDS, TrainConfig, build_model, check_config
from .load import read_checkpoint
from .loop import train
from .options import add_config_options, parser as make_parser

try:
    import fcntl
except ImportError:     # Windows: no lock; --summarize rebuilds the tables if two shards raced
    fcntl = None

SE_FIELDS = ("reduction_ratio", "min_hidden", "squeeze", "excitation", "placement", "se_stages")
NOT_RUN = ("out", "data", "data_dir", "device", "cuda_graph", "threads", "workers")   # where and how a run computes, not what
RUN_WIDE = {"seed": "--seeds", "out": "--out", "data": "--data", "data_dir": "--data-dir", "device": "--device",
            "threads": "--threads", "workers": "--workers"}
# The TrainConfig fields that are options of the command; the model and SE fields are the grid's.
OPTIONS = [f for f in FIELDS if f not in ("model", "seed", *SE_FIELDS)]
RESULT_KEYS = {"name": str, "setting": str, "order": int, "seed": int, "config": dict, "status": str}
FINISHED_KEYS = {"final_acc": float, "best_acc": float, "final_test_loss": float, "seconds": float, "params": int,
                 "mult_adds": int}
RESULT_COLUMNS = ["status", "final_acc", "best_acc", "final_test_loss", "params", "mult_adds", "seconds",
                  "device", "error"]
SUMMARY_COLUMNS = ["n", "final_acc_mean", "final_acc_std", "best_acc_mean", "best_acc_std", "seconds_mean",
                   "delta_vs_resnet", "delta_se"]

_SE20 = {"model": "se_resnet20"}
GRIDS = {
    "reduction": [{"model": "resnet20"}] + [{**_SE20, "reduction_ratio": r, "min_hidden": h}
                                            for r in (4, 8, 16) for h in (1, 4)],
    "squeeze": [{**_SE20, "squeeze": s} for s in ("avg", "max")],
    "excitation": [{**_SE20, "excitation": e} for e in ("sigmoid", "tanh", "relu")],
    "placement": [{**_SE20, "placement": p} for p in ("standard", "pre", "post", "identity")],
    "stage": [{"model": "resnet20"}] + [{**_SE20, "se_stages": s} for s in ([1], [2], [3], [1, 2, 3])],
}
GRIDS["paper"] = [s for g in ("reduction", "squeeze", "excitation", "placement") for s in GRIDS[g]]


class Run(NamedTuple):
    """One training run of the grid: a setting and a seed."""

    name: str           # the folder name: the setting's name and -seedN
    setting: str        # the setting's name, shared by its seeds
    order: int          # the setting's place in the grid, to keep the tables in grid order
    config: TrainConfig
    params: int         # the model's parameters and mult-adds for one 3x32x32 image
    mult_adds: int


# ---- the grid ------------------------------------------------------------------------------------

def parse_set(text):
    """'KEY=V1,V2,...' -> (field, [values]), each value converted to the TrainConfig field's type
    (se_stages written 1+2+3, since commas separate the values)."""
    key, sep, values = text.partition("=")
    field = key.strip().replace("-", "_")
    if not sep or not field:
        raise ValueError(f"--set {text!r}: expected KEY=V1,V2,... e.g. --set reduction_ratio=4,8,16")
    if field in RUN_WIDE:
        raise ValueError(f"--set {text!r}: {field} is a run-wide option ({RUN_WIDE[field]}), not a setting")
    if field not in FIELDS:
        raise ValueError(f"--set {text!r}: unknown key {key!r}; choose from "
                         f"{[f for f in FIELDS if f not in RUN_WIDE]}")
    items = [v.strip() for v in values.split(",")]
    if not all(items):
        raise ValueError(f"--set {text!r}: empty value; write KEY=V1,V2,... without empty items")
    return field, [_convert(field, item, text) for item in items]


def _convert(field, text, whole):
    kind = FIELDS[field].type
    bools = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
    try:
        if kind is bool:
            return bools[text.lower()]
        if kind is list:
            return [int(v) for v in text.split("+")]
        return kind(text)
    except (KeyError, ValueError):
        wanted = {bool: "true or false", list: "stage numbers joined by + (e.g. 1+2+3)", int: "an integer",
                  float: "a number"}.get(kind, f"a {kind.__name__}")
        raise ValueError(f"--set {whole!r}: {field} takes {wanted}, got {text!r}") from None


def set_grid(texts):
    """The settings of the cartesian product of ``--set`` options (a list of 'KEY=V1,V2' strings)."""
    parsed = dict()
    for text in texts:
        field, values = parse_set(text)
        if field in parsed:
            raise ValueError(f"--set {field} is given twice; list all its values in one --set {field}=V1,V2")
        parsed[field] = values
    if not parsed:
        return []
    return [dict(zip(parsed, combo)) for combo in itertools.product(*parsed.values())]


def resolve(setting, base):
    """(config, params, mult_adds): ``setting`` applied to ``base`` (a TrainConfig of the run-wide
    options), made canonical (see the module docstring) and validated by building its model."""
    unknown, fixed = sorted(set(setting) - set(FIELDS)), sorted(set(setting) & set(RUN_WIDE))
    if unknown or fixed:
        what = f"unknown field(s) {unknown}" if unknown else f"{fixed} are run-wide options, not settings"
        raise ValueError(f"setting {setting}: {what}; settings may change {[f for f in FIELDS if f not in RUN_WIDE]}")
    try:
        config = dataclasses.replace(base, **setting)
        check_config(config)
        is_se = config.model.startswith("se_")
        config = dataclasses.replace(config, **({"se_stages": sorted(set(config.se_stages))} if is_se else
                                                {f: getattr(base, f) for f in SE_FIELDS}))
        if 0 < config.train_subset < config.batch_size:
            raise ValueError(f"batch size {config.batch_size} is larger than the {config.train_subset} training images")
        model = build_model(config)
    except (ValueError, TypeError) as err:
        raise ValueError(f"setting {setting}: {err}") from None
    blocks = [m for m in model.modules() if isinstance(m, SEBlock)]
    if is_se and not any(b.hidden > b.input_channels // b.reduction_ratio for b in blocks):
        config = dataclasses.replace(config, min_hidden=0)      # the floor widens no block: the same model
    stats = summary(model, (1, 3, 32, 32), col_names=("num_params", "mult_adds"), verbose=False)
    return config, stats.total_params, stats.total_mult_adds


def _text(value):
    """A value as names and tables write it: se_stages as 1+2+3, floats exactly (repr)."""
    if isinstance(value, list):
        return "+".join(map(str, value))
    return repr(value) if isinstance(value, float) else str(value)


def setting_name(config, base):
    """The filesystem-safe name of a resolved setting, e.g. se_resnet20-r16-h4-avg-sigmoid-standard-s123."""
    parts = [config.model]
    if config.model.startswith("se_"):
        parts += [f"r{config.reduction_ratio}", *([f"h{config.min_hidden}"] if config.min_hidden else []),
                  config.squeeze, config.excitation, config.placement, "s" + "".join(map(str, config.se_stages))]
    parts += [f"{f}{_text(getattr(config, f))}" for f in FIELDS
              if f not in ("model", *SE_FIELDS, *RUN_WIDE) and getattr(config, f) != getattr(base, f)]
    return "".join(c if c.isascii() and (c.isalnum() or c in "._+-") else "_" for c in "-".join(parts))


def identity(config):
    """What makes a run what it is: every TrainConfig field but where and how it reads, writes and
    computes (NOT_RUN), and for a plain ResNet none of the SE fields."""
    skip = set(NOT_RUN) | (set() if config.model.startswith("se_") else set(SE_FIELDS))
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in skip}


def plan(settings, base, seeds):
    """The runs of ``settings`` x ``seeds``, seed by seed, each distinct setting once, with folders
    under ``base.out``/runs. Raises ValueError on a bad setting before anything trains."""
    if not settings or not seeds or min(seeds) < 0:
        raise ValueError(f"a grid needs at least one setting and seeds >= 0; got {len(settings)} "
                         f"setting(s) and seeds {list(seeds)}")
    check_config(base)  # a bad run-wide option is named as such, not as the first setting's fault
    resolved = {}       # setting name -> (config, params, mult_adds)
    for setting in settings:
        config, params, mult_adds = resolve(setting, base)
        resolved.setdefault(setting_name(config, base), (config, params, mult_adds))
    return [Run(f"{name}-seed{seed}", name, order,
                dataclasses.replace(config, seed=seed, out=os.path.join(base.out, "runs", f"{name}-seed{seed}")),
                params, mult_adds)
            for seed in dict.fromkeys(seeds)
            for order, (name, (config, params, mult_adds)) in enumerate(resolved.items())]


def shard(runs, text):
    """The runs of shard 'I/K': those whose index in the grid is I mod K."""
    try:
        index, count = (int(v) for v in text.split("/"))
        assert 0 <= index < count
    except (ValueError, AssertionError):
        raise ValueError(f"--shard {text!r}: expected I/K with 0 <= I < K, e.g. 0/2 and 1/2 for two "
                         "processes") from None
    return runs[index::count]


# ---- running -------------------------------------------------------------------------------------

def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); delete it to run that run again") from err


def read_result(path):
    """A run's result.json, checked to hold what the tables need; ValueError naming what is missing."""
    result = _read_json(path)
    if not isinstance(result, dict):
        raise ValueError(f"{path} holds {type(result).__name__}, expected a JSON object; delete it to run that "
                         "run again")
    wanted = {**RESULT_KEYS, **(FINISHED_KEYS if result.get("status") == "finished" else {})}
    missing = [k for k in wanted if k not in result]
    wrong = [f"{k} ({type(result[k]).__name__}, expected {kind.__name__})" for k, kind in wanted.items()
             if k in result and not isinstance(result[k], (int, float) if kind is float else kind)]
    if missing or wrong or result["status"] not in ("finished", "failed"):
        what = (f"lacks {missing}" if missing else f"has bad values: {', '.join(wrong)}" if wrong else
                f"has status {result['status']!r}, expected 'finished' or 'failed'")
        raise ValueError(f"{path} {what}; delete it to run that run again")
    return result


def _check_same(run, stored, path):
    """Raise if the config ``stored`` in ``path`` is not the run the grid asks for."""
    defaults = dataclasses.asdict(TrainConfig())        # a field added since: its default
    diff = [f"{k}={stored.get(k, defaults[k])!r} (now {v!r})" for k, v in identity(run.config).items()
            if stored.get(k, defaults[k]) != v]
    if diff:
        raise ValueError(f"{path} was made with other settings than the grid now asks for: {', '.join(diff)}. "
                         f"Use another --out, or delete {os.path.dirname(path)} to train the run again")


def existing(run):
    """What is on disk for ``run``: "finished", or what training it will do ("new", "resumes after
    epoch N", "failed before"); raises if its result.json or last.npz were made with other settings."""
    result_path, last = (os.path.join(run.config.out, f) for f in ("result.json", "last.npz"))
    notes = []
    if os.path.exists(result_path):
        result = read_result(result_path)
        _check_same(run, result["config"], result_path)
        if result["status"] == "finished":
            return "finished"
        notes.append("failed before")
    if os.path.exists(last):
        meta = read_checkpoint(last).meta
        _check_same(run, meta["config"], last)
        done = meta["epoch"] >= run.config.epochs
        notes.append("every epoch in last.npz, no result yet" if done else f"resumes after epoch {meta['epoch']}")
    return ", ".join(notes) or "new"


def _write_atomic(path, text):
    """Write ``text`` to ``path``: a crash leaves the old file or the new one, never half."""
    with atomic_open(path, "w", newline="") as f:
        f.write(text)


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
    os.makedirs(config.out, exist_ok=True)
    _write_atomic(os.path.join(config.out, "result.json"), json.dumps(result, indent=1))
    return result


def run_grid(runs, out, progress=True):
    """Train every run without a finished result.json, rebuilding the tables in ``out`` after each;
    returns the names of the runs that failed. Conflicting files stop it before any training."""
    states = {run.name: existing(run) for run in runs}
    todo = [run for run in runs if states[run.name] != "finished"]
    print(f"{len(runs)} runs, {len(runs) - len(todo)} finished before; training {len(todo)} in {out}", flush=True)
    failed = []
    for k, run in enumerate(todo, 1):
        with run_lock(run, out) as mine:
            state = existing(run) if mine else None     # another process may have finished it meanwhile
            if state in (None, "finished"):
                print(f"[{k}/{len(todo)}] {run.name}: " + ("finished by another process" if mine else
                      "skipped: another process is training it"), flush=True)
                continue
            print(f"[{k}/{len(todo)}] {run.name}: training ({state})", flush=True)
            result = run_one(run, progress)
        if result["status"] == "finished":
            print(f"[{k}/{len(todo)}] {run.name}: final {100 * result['final_acc']:.2f}%, "
                  f"best {100 * result['best_acc']:.2f}%, {result['seconds']:.0f} s", flush=True)
        else:
            failed.append(run.name)
            print(f"[{k}/{len(todo)}] {run.name}: FAILED: {result['error']}", flush=True)
        write_tables(out)
    write_tables(out)
    return failed


# ---- the tables ----------------------------------------------------------------------------------

def load_runs(out):
    """One row per result.json under ``out``/runs (finished and failed), as in runs.csv, in grid
    order. Config fields other than the fixed columns get a column where their values differ."""
    paths = sorted(glob.glob(os.path.join(glob.escape(os.fspath(out)), "runs", "*", "result.json")))
    results = sorted((read_result(p) for p in paths), key=lambda r: (r["order"], r["setting"], r["seed"]))
    fixed = ("model", *SE_FIELDS, "seed", "train_subset", "test_subset", "epochs", *NOT_RUN)
    extra = [f for f in FIELDS if f not in fixed and len({json.dumps(r["config"].get(f)) for r in results}) > 1]
    rows = []
    for r in results:
        config, is_se = r["config"], r["config"]["model"].startswith("se_")
        rows.append({"name": r["name"], "setting": r["setting"], "model": config["model"],
                     **{f: _text(config[f]) if is_se and f == "se_stages" else config[f] if is_se else None
                        for f in SE_FIELDS},
                     **{f: config.get(f) for f in extra}, "seed": r["seed"],
                     **{f: config[f] for f in ("train_subset", "test_subset", "epochs")},
                     **{c: r.get(c) for c in RESULT_COLUMNS}})
    return rows


def _options(row):
    """A runs.csv or summary row's run-wide options: train_subset, test_subset, epochs and any
    extra field column (what a setting must share with its baseline)."""
    skip = {"name", "setting", "model", *SE_FIELDS, "seed", *RESULT_COLUMNS, *SUMMARY_COLUMNS}
    return {k: v for k, v in row.items() if k not in skip}


def summarize(rows):
    """One row per setting over its finished runs (rows as load_runs gives them): mean and sample
    std (ddof=1; None for one seed) of the final and best accuracy, mean seconds, and
    delta_vs_resnet ± delta_se: the mean final accuracy minus that of the plain ResNet of the same
    depth and run-wide options, where one is present, with the combined standard error
    sqrt(s1²/n1 + s2²/n2) (None unless both have two seeds or more)."""
    groups = {}
    for row in rows:
        if row["status"] == "finished":
            groups.setdefault(row["setting"], []).append(row)
    table = []
    for runs in groups.values():
        entry = {k: v for k, v in runs[0].items() if k not in ("name", "seed", *RESULT_COLUMNS)}
        stats = {m: [r[m] for r in runs] for m in ("final_acc", "best_acc")}
        std = {m: float(numpy.std(v, ddof=1)) if len(v) > 1 else None for m, v in stats.items()}
        entry.update(n=len(runs), final_acc_mean=float(numpy.mean(stats["final_acc"])), final_acc_std=std["final_acc"],
                     best_acc_mean=float(numpy.mean(stats["best_acc"])), best_acc_std=std["best_acc"],
                     params=runs[0]["params"], mult_adds=runs[0]["mult_adds"],
                     seconds_mean=float(numpy.mean([r["seconds"] for r in runs])), delta_vs_resnet=None, delta_se=None)
        table.append(entry)
    key = lambda model, e: (model, json.dumps(_options(e)))
    baselines = {key(e["model"], e): e for e in table if not e["model"].startswith("se_")}
    for e in table:
        b = baselines.get(key(e["model"].removeprefix("se_"), e))
        if e["model"].startswith("se_") and b is not None:
            e["delta_vs_resnet"] = e["final_acc_mean"] - b["final_acc_mean"]
            if e["final_acc_std"] is not None and b["final_acc_std"] is not None:
                e["delta_se"] = math.sqrt(e["final_acc_std"] ** 2 / e["n"] + b["final_acc_std"] ** 2 / b["n"])
    return table


def _pm(mean, std, sign=""):
    """'78.41 ± 0.32' from fractions; the mean alone without a std; '' without a mean."""
    if mean is None:
        return ""
    return f"{100 * mean:{sign}.2f}" + ("" if std is None else f" ± {100 * std:.2f}")


def format_markdown(table, failed=()):
    """summary.md: the summary rows with accuracies in percent, mean ± std; run-wide options that
    differ between rows get a column, the others one line above the table."""
    options = list(_options(table[0])) if table else []
    varying = [k for k in options if len({json.dumps(e[k]) for e in table}) > 1]
    lines = ["# SE ablation: test accuracy (%)", "",
             "Mean ± sample std (ddof=1) over the finished seeds of the final and of the best test accuracy. "
             "Δ vs ResNet: mean final accuracy minus that of the plain ResNet of the same depth and options, "
             "in points, ± the combined standard error sqrt(s1²/n1 + s2²/n2)."]
    if table:
        lines += ["", "Options: " + ", ".join(f"{k}={table[0][k]}" for k in options if k not in varying), "",
                  "| setting | " + "".join(f"{k} | " for k in varying) +
                  "seeds | final | best | Δ vs ResNet | params | mult-adds (M) | s / run |",
                  "|---|" + "---|" * len(varying) + "---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {e['setting']} | " + "".join(f"{e[k]} | " for k in varying) +
                  f"{e['n']} | {_pm(e['final_acc_mean'], e['final_acc_std'])} | "
                  f"{_pm(e['best_acc_mean'], e['best_acc_std'])} | {_pm(e['delta_vs_resnet'], e['delta_se'], '+')} | "
                  f"{e['params']:,} | {e['mult_adds'] / 1e6:.2f} | {e['seconds_mean']:.0f} |" for e in table]
    else:
        lines += ["", "No finished runs yet."]
    if failed:
        lines += ["", "Failed runs (not in the table): " + ", ".join(failed) + "."]
    return "\n".join(lines) + "\n"


def _csv(rows):
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


@contextlib.contextmanager
def _flock(path, wait=True):
    """Hold an exclusive lock on the file ``path`` (made if needed) while the block runs; yields
    whether this process has it (without ``wait``, False when another process holds it)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        taken = True
        if fcntl is not None:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                taken = False
        yield taken


def _locked(out):
    """Hold ``out``/.tables.lock, so processes sharing ``out`` rebuild the tables one at a time and
    the last rebuild sees every result.json written before it."""
    return _flock(os.path.join(out, ".tables.lock"))


def run_lock(run, out):
    """Try to take ``run``'s lock (``out``/runs/.<name>.lock): yields False when another process
    holds it, i.e. is training that run. The kernel drops the lock when its holder dies."""
    return _flock(os.path.join(out, "runs", f".{run.name}.lock"), wait=False)


def write_tables(out):
    """Rebuild runs.csv, summary.csv and summary.md in ``out`` from every result.json there,
    atomically; returns (rows, table)."""
    os.makedirs(out, exist_ok=True)
    with _locked(out):
        rows = load_runs(out)
        table = summarize(rows)
        _write_atomic(os.path.join(out, "runs.csv"), _csv(rows))
        _write_atomic(os.path.join(out, "summary.csv"), _csv(table))
        _write_atomic(os.path.join(out, "summary.md"),
                      format_markdown(table, [r["name"] for r in rows if r["status"] != "finished"]))
    return rows, table


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
    add_config_options(p, [f for f in OPTIONS if f != "out"], epochs=10)
    p.add_argument("--out", default="runs/ablate", help="the grid's folder (each run in OUT/runs/NAME)")
    p.add_argument("--shard", default="0/1", metavar="I/K", help="run only the runs whose index is I mod K")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
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
        failed = run_grid(runs, args.out, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"\nminise ablate: interrupted; finished runs are kept in {args.out}: run the same command again "
              "to go on (an interrupted run resumes from its last.npz)", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, OSError) as err:      # CheckpointError is a ValueError
        print(f"minise ablate: error: {err}", file=sys.stderr)
        return 1
    _print_tables(args.out)
    if failed:
        print(f"minise ablate: {len(failed)} run(s) failed: {', '.join(failed)} (the error is in each run's "
              "result.json; the same command retries them)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

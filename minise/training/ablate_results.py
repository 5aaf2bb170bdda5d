"""The files of ``minise ablate``: each run's result.json, read back and checked, and the locks
that let processes share a grid's folder.

Files in ``--out``: ``runs/<name>/`` holds the run's ``minise train`` files and, once it ends,
``result.json`` (written atomically). runs.csv (one row per run), summary.csv and summary.md
(one row per setting, over its finished seeds) are rebuilt from every result.json present after
each run and at the end, so shards sharing --out lose no rows and a crash loses at most the run
in progress. CSV accuracies are fractions, as in metrics.csv; summary.md shows percent.

Resuming: the same command again skips finished runs, continues a run that has a last.npz and
retries failed ones. A result.json or last.npz made with other settings than the grid now asks
for is an error. Processes sharing --out (shards, or the same command started twice) each take a
run's lock (``runs/.<name>.lock``) before training it, so every run is trained once.
"""
import contextlib
import dataclasses
import glob
import json
import os

from ..files import atomic_open
from .ablate_grid import NOT_RUN, SE_FIELDS, setting_text, identity
from .config import FIELDS, TrainConfig
from .load import read_checkpoint

try:
    import fcntl
except ImportError:     # Windows: no lock; --summarize rebuilds the tables if two shards raced
    fcntl = None
RESULT_KEYS = {"name": str, "setting": str, "order": int, "seed": int, "config": dict, "status": str}
FINISHED_KEYS = {"final_acc": float, "best_acc": float, "final_test_loss": float, "seconds": float, "params": int,
                 "mult_adds": int}
RESULT_COLUMNS = ["status", "final_acc", "best_acc", "final_test_loss", "params", "mult_adds", "seconds",
                  "device", "error"]

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


def write_atomic(path, text):
    """Write ``text`` to ``path``: a crash leaves the old file or the new one, never half."""
    with atomic_open(path, "w", newline="") as f:
        f.write(text)


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
                     **{f: setting_text(config[f]) if is_se and f == "se_stages" else config[f] if is_se else None
                        for f in SE_FIELDS},
                     **{f: config.get(f) for f in extra}, "seed": r["seed"],
                     **{f: config[f] for f in ("train_subset", "test_subset", "epochs")},
                     **{c: r.get(c) for c in RESULT_COLUMNS}})
    return rows


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


def locked(out):
    """Hold ``out``/.tables.lock, so processes sharing ``out`` rebuild the tables one at a time and
    the last rebuild sees every result.json written before it."""
    return _flock(os.path.join(out, ".tables.lock"))


def run_lock(run, out):
    """Try to take ``run``'s lock (``out``/runs/.<name>.lock): yields False when another process
    holds it, i.e. is training that run. The kernel drops the lock when its holder dies."""
    return _flock(os.path.join(out, "runs", f".{run.name}.lock"), wait=False)

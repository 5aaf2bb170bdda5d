"""The tables of ``minise ablate``: runs.csv, summary.csv and summary.md, rebuilt from every
result.json of a grid's folder."""
import csv
import io
import json
import math
import os

import numpy

from .ablate_grid import SE_FIELDS
from .ablate_results import RESULT_COLUMNS, locked, write_atomic, load_runs

SUMMARY_COLUMNS = ["n", "final_acc_mean", "final_acc_std", "best_acc_mean", "best_acc_std", "seconds_mean",
                   "delta_vs_resnet", "delta_se"]

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


def write_tables(out):
    """Rebuild runs.csv, summary.csv and summary.md in ``out`` from every result.json there,
    atomically; returns (rows, table)."""
    os.makedirs(out, exist_ok=True)
    with locked(out):
        rows = load_runs(out)
        table = summarize(rows)
        write_atomic(os.path.join(out, "runs.csv"), _csv(rows))
        write_atomic(os.path.join(out, "summary.csv"), _csv(table))
        write_atomic(os.path.join(out, "summary.md"),
                      format_markdown(table, [r["name"] for r in rows if r["status"] != "finished"]))
    return rows, table

"""The grid of ``minise ablate``: settings, their runs and the runs' names.

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
"""
import dataclasses
import itertools
import os
from typing import NamedTuple

from ..nn import SEBlock
from ..summary import summary
from .config import FIELDS, TrainConfig, build_model, check_config

SE_FIELDS = ("reduction_ratio", "min_hidden", "squeeze", "excitation", "placement", "se_stages")
NOT_RUN = ("out", "data", "data_dir", "device", "cuda_graph", "threads", "workers")   # where and how a run computes
RUN_WIDE = {"seed": "--seeds", "out": "--out", "data": "--data", "data_dir": "--data-dir", "device": "--device",
            "threads": "--threads", "workers": "--workers"}
# The TrainConfig fields that are options of the command; the model and SE fields are the grid's.
OPTIONS = [f for f in FIELDS if f not in ("model", "seed", *SE_FIELDS)]

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


def setting_text(value):
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
    parts += [f"{f}{setting_text(getattr(config, f))}" for f in FIELDS
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

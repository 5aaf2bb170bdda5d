"""A torchinfo-like summary: the layer tree with shapes, parameter counts and mult-adds.

    >>> summary(nn.SEBlock(64, 16), (1, 64, 32, 32))

runs one forward pass on a random input of that size, records each module's input and output
shape, and prints one row per module. Mult-adds count the multiply-accumulates of the matrix
products (Conv2d: N*O*Ho*Wo*C*kh*kw; Linear: rows*in*out); element-wise layers count none.
"""
from dataclasses import dataclass, field

import numpy

from .backend import get_array_module
from .nn import Conv2d, Linear

COLUMNS = {"input_size": "Input Shape", "output_size": "Output Shape", "num_params": "Param #",
           "mult_adds": "Mult-Adds"}


@dataclass
class Row:
    depth: int
    index: str
    name: str
    module: object
    input_size: tuple = None
    output_size: tuple = None
    num_params: int = 0
    mult_adds: int = 0


@dataclass
class ModelStatistics:
    """What ``summary`` measured; ``str()`` gives the table."""

    rows: list = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    total_mult_adds: int = 0
    input_bytes: int = 0
    activation_bytes: int = 0
    param_bytes: int = 0
    col_names: tuple = ("input_size", "output_size", "num_params")

    @property
    def non_trainable_params(self):
        return self.total_params - self.trainable_params

    def __str__(self):
        width = 40 + 26 * len(self.col_names)
        rule = "=" * width
        lines = [rule, f"{'Layer (type:depth-idx)':<40}" + "".join(f"{COLUMNS[c]:<26}" for c in self.col_names), rule]
        for row in self.rows:
            prefix = "" if row.depth == 0 else "│    " * (row.depth - 1) + "├─"
            label = type(row.module).__name__ + (f": {row.index}" if row.depth else "")
            lines.append(f"{prefix + label:<40}" + "".join(f"{_cell(row, c):<26}" for c in self.col_names))
        mb = 1e6
        lines += [rule, f"Total params: {self.total_params:,}", f"Trainable params: {self.trainable_params:,}",
                  f"Non-trainable params: {self.non_trainable_params:,}",
                  f"Total mult-adds (M): {self.total_mult_adds / 1e6:.2f}", rule,
                  f"Input size (MB): {self.input_bytes / mb:.2f}",
                  f"Forward/backward pass size (MB): {self.activation_bytes / mb:.2f}",
                  f"Params size (MB): {self.param_bytes / mb:.2f}",
                  f"Estimated Total Size (MB): {(self.input_bytes + self.activation_bytes + self.param_bytes) / mb:.2f}",
                  rule]
        return "\n".join(lines)


def _cell(row, column):
    value = getattr(row, column)
    if column in ("input_size", "output_size"):
        return "--" if value is None else str(list(value))
    return f"{value:,}" if value else "--"


def summary(model, input_size, col_names=("input_size", "output_size", "num_params"), dtype="float32",
            verbose=True, seed=0):
    """Print and return the ModelStatistics of ``model`` on a random input of ``input_size``.

    input_size: the full input shape, batch included, e.g. (1, 64, 32, 32).
    col_names: any of "input_size", "output_size", "num_params", "mult_adds".
    The model's train/eval mode and BatchNorm running statistics are left as they were.
    """
    unknown = [c for c in col_names if c not in COLUMNS]
    if unknown:
        raise ValueError(f"summary: unknown column(s) {unknown}; choose from {list(COLUMNS)}")
    rows, by_module = [], {}
    for name, module in model.named_modules():
        depth = name.count(".") + 1 if name else 0
        row = Row(depth, "", name, module, num_params=sum(p.size for p in module._parameters.values()))
        rows.append(row)
        by_module[id(module)] = row
    _number(rows)
    first = next(iter(model.parameters()), None)
    xp = numpy if first is None else get_array_module(first.data)
    x = xp.asarray(numpy.random.default_rng(seed).standard_normal(input_size).astype(dtype))
    saved = {name: b.copy() for name, b in model.named_buffers()}
    originals = {}
    for module in model.modules():
        originals[id(module)] = module.__dict__.get("forward")
        module.forward = _recording(module, by_module[id(module)])
    try:
        model(x)
    finally:
        for module in model.modules():
            if originals[id(module)] is None:
                del module.__dict__["forward"]
            else:
                module.forward = originals[id(module)]
        buffers = dict(model.named_buffers())
        for name, b in saved.items():
            buffers[name][...] = b
    _fill_containers(model, by_module)
    params = list(model.parameters())
    leaves = [r for r in rows if not r.module._modules and r.output_size is not None]
    stats = ModelStatistics(
        rows=rows,
        total_params=sum(p.size for p in params),
        trainable_params=sum(p.size for p in params if p.requires_grad),
        total_mult_adds=sum(r.mult_adds for r in rows),
        input_bytes=x.nbytes,
        activation_bytes=2 * sum(int(numpy.prod(r.output_size)) for r in leaves) * x.dtype.itemsize,
        param_bytes=sum(p.data.nbytes for p in params),
        col_names=tuple(col_names),
    )
    if verbose:
        print(stats)
    return stats


def _number(rows):
    """torchinfo's depth-idx: a row's depth and its 1-based position among rows of that depth
    under the same parent."""
    counters = {}
    for row in rows:
        counters[row.depth] = counters.get(row.depth, 0) + 1
        for deeper in [d for d in counters if d > row.depth]:
            del counters[deeper]
        row.index = f"{row.depth}-{counters[row.depth]}"


def _recording(module, row):
    forward = type(module).forward.__get__(module)

    def recorded(x, *args, **kwargs):
        out = forward(x, *args, **kwargs)
        if row.input_size is None:
            row.input_size = tuple(x.shape)
            row.output_size = tuple(out.shape) if hasattr(out, "shape") else ()
            row.mult_adds = _mult_adds(module, x, out)
        return out

    return recorded


def _mult_adds(module, x, out):
    if isinstance(module, Conv2d):
        kh, kw = module.kernel_size
        return int(numpy.prod(out.shape)) * module.in_channels * kh * kw
    if isinstance(module, Linear):
        return int(numpy.prod(out.shape)) * module.in_features
    return 0


def _fill_containers(model, by_module):
    """A container that was never called itself (the SE block runs its ``sequence`` as two
    slices) takes its shapes from its first and last recorded children."""
    for module in reversed(list(model.modules())):
        row = by_module[id(module)]
        children = [by_module[id(c)] for c in module.children() if by_module[id(c)].input_size is not None]
        if row.input_size is None and children:
            row.input_size, row.output_size = children[0].input_size, children[-1].output_size

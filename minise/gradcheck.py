"""Numeric gradient checks: compare a module's backward pass with central differences.

    >>> from minise import gradcheck, nn
    >>> result = gradcheck(nn.SEBlock(8, 2), x)      # x: any float array the block accepts
    >>> print(result)                                 # max relative error per tensor
    >>> result.passed

The check runs in float64 on a copy of the module. With a random upstream gradient ``dout``,
the scalar f = sum(module(x) * dout) has df/dx = backward(dout), which is compared with
(f(x + h e_i) - f(x - h e_i)) / 2h for every element i of the input and of every parameter.
(An all-ones dout would hide errors: BatchNorm's outputs in a channel sum to a constant, so
the true dx is zero, and a backward that drops the mean and variance terms matches it.)

``python -m minise.gradcheck`` (or ``minise gradcheck``) checks every layer, the SE block, the
residual blocks and the loss over several configurations and exits non-zero on any failure.
"""
import argparse
import copy
import math
from dataclasses import dataclass, field

import numpy

from .backend import get_array_module, to_numpy

THRESHOLD = 1e-7


def rel_error(a, b, floor=0.0):
    """max |a - b| / max(max|a|, max|b|, floor): the error relative to the tensor's scale.

    ``floor`` keeps a tensor whose true gradient is zero (a conv bias before BatchNorm) from
    comparing rounding noise with rounding noise; gradcheck sets it from the module's largest
    gradient.
    """
    a, b = to_numpy(a), to_numpy(b)
    scale = max(float(numpy.abs(a).max(initial=0)), float(numpy.abs(b).max(initial=0)), floor, 1e-300)
    return float(numpy.abs(a - b).max(initial=0)) / scale


def numeric_gradient(f, x, h=1e-6):
    """Central-difference gradient of the scalar function ``f()`` with respect to array ``x``.

    ``x`` is perturbed in place, one element at a time, and restored exactly.
    """
    grad = get_array_module(x).zeros(x.shape, dtype=x.dtype)
    for i in numpy.ndindex(x.shape):
        saved = x[i].item()
        x[i] = saved + h
        f_plus = f()
        x[i] = saved - h
        f_minus = f()
        x[i] = saved
        grad[i] = (f_plus - f_minus) / (2 * h)
    return grad


@dataclass
class GradcheckResult:
    """Max relative error per tensor ("input" and each parameter name)."""

    errors: dict = field(default_factory=dict)
    threshold: float = THRESHOLD

    @property
    def passed(self):
        return all(e <= self.threshold for e in self.errors.values())

    def __str__(self):
        width = max((len(name) for name in self.errors), default=0)
        return "\n".join(f"{name:<{width}}  {err:.2e}  {'pass' if err <= self.threshold else 'FAIL'}"
                         for name, err in self.errors.items())


def gradcheck(module, x, *args, dout=None, h=1e-6, seed=0, threshold=THRESHOLD):
    """Check ``module.backward`` against central differences, in float64.

    x: the input (any shape the module accepts; cast to float64). ``args`` go to forward after
    x (the loss's target). ``dout``: the upstream gradient, random normal when None (ignored
    for a loss, whose forward returns a float). The module itself is not changed.
    Returns a GradcheckResult.
    """
    module = copy.deepcopy(module).double()
    x = get_array_module(x).array(x, dtype="float64", order="C")
    out = module(x, *args)
    is_loss = isinstance(out, float)
    if dout is None and not is_loss:
        rng = numpy.random.default_rng([seed, 1])   # not the stream a user's x likely came from
        dout = get_array_module(x).asarray(rng.standard_normal(out.shape))
    saved_buffers = {name: b.copy() for name, b in module.named_buffers()}

    def f():
        value = module(x, *args)
        return value if is_loss else float((value * dout).sum())

    module.zero_grad()
    module(x, *args)
    analytic = {"input": module.backward() if is_loss else module.backward(dout)}
    analytic.update((name, p.grad.copy()) for name, p in module.named_parameters())
    numeric = {"input": numeric_gradient(f, x, h)}
    numeric.update((name, numeric_gradient(f, p.data, h)) for name, p in module.named_parameters())
    for name, b in saved_buffers.items():  # BatchNorm's running statistics moved with each call
        dict(module.named_buffers())[name][...] = b
    floor = 1e-3 * max(float(numpy.abs(to_numpy(g)).max(initial=0)) for g in numeric.values())
    return GradcheckResult({name: rel_error(analytic[name], numeric[name], floor) for name in analytic},
                           threshold)


def main(argv=None):
    from .gradcheck_cases import standard_cases
    raise SystemExit(run_cases(standard_cases(), argv))


def _positive_threshold(text):
    """--threshold: a finite number > 0 (a NaN one would fail every layer, a negative one too)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, such as 1e-6; got {text!r}")
    return value


def run_cases(cases, argv=None):
    """Check each (layer, config, module, x, args) case; print a table; return 0 if all pass."""
    parser = argparse.ArgumentParser(prog="minise gradcheck", description="Check every layer's backward pass "
                                     "against central differences in float64; exit 1 on any failure.",
                                     epilog="examples:\n  minise gradcheck\n  minise gradcheck --only SEBlock "
                                            "--threshold 1e-6", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threshold", type=_positive_threshold, default=THRESHOLD,
                        help=f"max relative error to pass (default {THRESHOLD:g})")
    parser.add_argument("--only", default=None, metavar="NAME",
                        help="check only the layers whose name contains NAME (any case; default: every layer)")
    options = parser.parse_args(argv)
    cases = list(cases)
    if options.only:
        layers = list(dict.fromkeys(layer for layer, *_ in cases))
        cases = [case for case in cases if options.only.lower() in case[0].lower()]
        if not cases:
            parser.error(f"--only {options.only!r} matches no layer; choose a part of one of {layers}")
    failures, rows = 0, 0
    print(f"{'layer':<18} {'config':<40} {'tensor':<28} {'max rel error':>13}  result")
    for layer, config, module, x, args in cases:
        result = gradcheck(module, x, *args, threshold=options.threshold)
        for tensor, err in result.errors.items():
            ok = err <= options.threshold
            failures += not ok
            rows += 1
            print(f"{layer:<18} {config:<40} {tensor:<28} {err:>13.2e}  {'pass' if ok else 'FAIL'}")
    print(f"\n{rows - failures} passed, {failures} failed (threshold {options.threshold:g})")
    return 1 if failures or rows == 0 else 0


if __name__ == "__main__":
    main()

"""Grade one backward function: call it, compare what it returns with the library's answer and
with central differences (``minise.gradcheck``), and name the likely mistake in words.

A ``Case`` holds the arguments to call with, the right answers and the catalogued mistakes of
one exercise on one set of arrays; ``grade(cases, fn)`` judges ``fn`` on several cases (different
sizes, fresh values, float64 and float32) and returns a ``Feedback``: right only when right on
every case, else the findings of the first case it gets wrong. The checks, in order:
    the blank is still empty (NotImplementedError, or None returned)  -> "not yet implemented"
    it raised                                 -> the error and the line that raised it
    an argument was written in place          -> which one
    the number of returned arrays; each array's dtype (the inputs' own)
    the values: right within the dtype's tolerance; a catalogued mistake (named, with the
    output it spoils); the transpose; off by a constant factor (H*W, N, -1, ...), or by a size
    written as a number; or just wrong, with the size of the error
A near miss (close to the right answer, but not within the tolerance) is called that, never
given a mistake's name: a mistake is named only where its values differ from the right ones.
"""
import copy
import os
import traceback
from dataclasses import dataclass, field

import numpy

from ..backend import to_numpy
from ..gradcheck import THRESHOLD, rel_error

CORRECT, NOT_YET, WRONG = "correct", "not yet implemented", "wrong"
TOLERANCE = {"float64": THRESHOLD, "float32": 1e-4}   # max relative error of a right answer, per dtype
DISTINCT = 100       # a mistake is named only where it is this many tolerances away from the right answer
NEAR = 1e-3          # an answer this close (relative) to the right one is a near miss, not a mistake


def tolerance(dtype):
    """The largest relative error a right answer of this dtype may have."""
    return TOLERANCE.get(numpy.dtype(dtype).name, THRESHOLD)


@dataclass
class Output:
    """One array the function returns: its name, its shape in letters ("(N, C, H, W)"), the
    library's answer, the central-difference gradient (a function computing it, called on first
    use; None where there is none) and a hint shown when the shape is wrong."""

    name: str
    shape_text: str
    expected: object
    numeric: object = None
    shape_hint: str = ""


@dataclass
class Mistake:
    """A catalogued mistake's values for one output, its name and what it means."""

    output: str
    values: object
    kind: str
    message: str


@dataclass
class Case:
    """One exercise's test on one set of arrays: ``fn(*args.values())`` should return ``outputs``
    (a tuple when there are several), in ``dtype``. ``sizes`` names the dimensions (N, C, H, W,
    ...) for the shape and factor messages; ``factor_hints`` says what a factor such as "H*W"
    usually means."""

    function: str
    args: dict
    outputs: list
    reference: str
    sizes: dict
    mistakes: list = field(default_factory=list)
    factor_hints: dict = field(default_factory=dict)
    dtype: str = "float64"

    @property
    def label(self):
        return ", ".join(f"{k}={v}" for k, v in self.sizes.items()) + f", {self.dtype}"


@dataclass
class Finding:
    """One problem: a short key ("shape", "transpose", "factor", "in_place", ...), what it
    means, the outputs it concerns (where the message does not name them) and the largest
    gradient-check error among them (None where no check ran)."""

    kind: str
    message: str
    outputs: list = field(default_factory=list)
    gradient_error: float = None
    concerns: list = field(default_factory=list)     # the outputs it is about, named in the message or not

    def __str__(self):
        text = f"{', '.join(self.outputs)}: {self.message}" if self.outputs else self.message
        return text + (f" [{_gradient_check_text(self.gradient_error)}]" if self.gradient_error is not None else "")


@dataclass
class Feedback:
    """What ``grade`` found. ``status`` is "correct", "not yet implemented" or "wrong";
    ``findings`` the problems (empty when correct); ``verdicts`` one line per right output."""

    function: str
    status: str
    findings: list = field(default_factory=list)
    verdicts: list = field(default_factory=list)
    case: str = ""           # the case the findings come from, e.g. "N=3, C=4, H=5, W=7, float64"
    stuck: str = None        # what to do when stuck; None: the blank's hints

    @property
    def wrong_outputs(self):
        return [name for f in self.findings for name in f.concerns]

    @property
    def passed(self):
        return self.status == CORRECT

    @property
    def kinds(self):
        return [f.kind for f in self.findings]

    def __str__(self):
        lines = [f"{self.function}: {self.status}" + (f" (on the case {self.case})" if self.case else "")]
        lines += [f"  ✗ {f}" for f in self.findings]
        lines += [f"  ✓ {v}" for v in self.verdicts]
        stuck = (f"exercises.hint({self.function!r}) gives a hint, one step more each call"
                 if self.stuck is None else self.stuck)
        if self.status == WRONG and stuck:
            lines.append(f"  (stuck? {stuck})")
        return "\n".join(lines)

    __repr__ = __str__


def grade(cases, fn):
    """Judge ``fn`` on every case. Returns the first case's Feedback where it is not right (a
    note added where it was right on an earlier case), else the first case's: correct."""
    right_on, first = [], None
    for case in cases:
        feedback = grade_one(case, fn)
        first = first or feedback
        if not feedback.passed:
            feedback.case = case.label if feedback.status == WRONG else ""
            if right_on:
                feedback.findings.append(Finding("case_dependent", (
                    f"it was right on the case {right_on[0]} and is wrong on this one: does it use a "
                    f"number that holds for one size only? Read the sizes from the arguments' shapes")))
            return feedback
        right_on.append(case.label)
    first.verdicts.append(f"right on all {len(cases)} cases: " + "; ".join(right_on))
    return first


def grade_one(case, fn):
    """Call ``fn`` on the case's arguments and judge what it returns. Returns a Feedback."""
    args = copy.deepcopy(case.args)           # the function may write into its arguments
    try:
        result = fn(*args.values())
    except NotImplementedError as err:
        return Feedback(case.function, NOT_YET, [Finding("not_implemented", _not_implemented(case, err))])
    except Exception as err:                  # the learner's code failed: say where, no traceback
        return Feedback(case.function, WRONG, [Finding("error", _describe_error(case.function, err))])
    if result is None:
        return Feedback(case.function, NOT_YET, [Finding(
            "not_implemented", f"{case.function} returns None: fill in the blank and return "
                               f"{_names(case.outputs)}")])
    findings = [Finding("in_place", _in_place_message(name, case.function))
                for name in _written_in_place(case.args, args)]
    returned = _as_outputs(result, case.outputs)
    if isinstance(returned, Finding):
        return Feedback(case.function, WRONG, findings + [returned])
    verdicts = []
    for output, got in zip(case.outputs, returned):
        problem = _judge(case, output, got)
        if problem is None:
            verdicts.append(_verdict(case, output, got))
            continue
        problem.concerns = [output.name]
        same = next((f for f in findings if f.outputs and (f.kind, f.message) == (problem.kind, problem.message)), None)
        if same is None:
            findings.append(problem)
        else:                                 # one mistake that spoils several outputs
            same.outputs += problem.outputs
            same.concerns += problem.concerns
            errors = [e for e in (same.gradient_error, problem.gradient_error) if e is not None]
            same.gradient_error = max(errors) if errors else None
    if any(f.kind == "not_implemented" for f in findings):
        return Feedback(case.function, NOT_YET, findings, verdicts)
    return Feedback(case.function, WRONG if findings else CORRECT, findings, verdicts)


# ---- what went wrong before any value could be compared -------------------------------------
def _not_implemented(case, err):
    inner = traceback.extract_tb(err.__traceback__)[-1].name
    if inner not in (case.function, "<lambda>") and not inner.startswith("<"):
        return (f"{case.function} calls {inner}, whose blank is still empty: "
                f"fill in {inner} first")
    return f"fill in the blank of {case.function} (it still raises NotImplementedError), then run the check again"


def _describe_error(function, err):
    """The error and the line of the learner's code that raised it (numpy's frames skipped)."""
    numpy_dir = os.path.dirname(numpy.__file__)
    frames = [f for f in traceback.extract_tb(err.__traceback__) if not f.filename.startswith(numpy_dir)]
    where = ""
    if frames:
        frame = frames[-1]
        where = f" in {frame.name}, line {frame.lineno}" + (f": {frame.line.strip()}" if frame.line else "")
    return f"{function} raised {type(err).__name__}: {err}{where}"


def _walk_arrays(name, value):
    """(label, array) for an argument that is an array or a dict of arrays (a cache)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk_arrays(f"{name}[{key!r}]", item)
    elif hasattr(value, "shape") and hasattr(value, "dtype"):
        yield name, value


def _written_in_place(originals, passed):
    return [label for name in originals
            for (label, before), (_, after) in zip(_walk_arrays(name, originals[name]),
                                                   _walk_arrays(name, passed[name]))
            if not numpy.array_equal(to_numpy(before), to_numpy(after), equal_nan=True)]


def _in_place_message(label, function):
    return (f"{label} was written in place: {function} must leave its arguments as it found them "
            f"(where a tensor fans out, another layer still needs {label}). Compute into a new "
            f"array, e.g. `dx = dout * ...`, not `dout *= ...` or `dout[...] = ...`")


def _names(outputs):
    names = ", ".join(o.name for o in outputs)
    return names if len(outputs) == 1 else f"({names})"


def _as_outputs(result, outputs):
    """The returned arrays as a list matched to ``outputs``, or a Finding when the count is off."""
    if len(outputs) == 1:
        if isinstance(result, tuple):
            return Finding("arity", f"returned a tuple of {len(result)}; expected one array, "
                                    f"{outputs[0].name} {outputs[0].shape_text}")
        return [result]
    if not isinstance(result, (tuple, list)) or len(result) != len(outputs):
        count = f"{len(result)} values" if isinstance(result, (tuple, list)) else "one value"
        return Finding("arity", f"returned {count}; expected {len(outputs)}: {_names(outputs)}")
    return list(result)


# ---- one returned array ------------------------------------------------------------------------
def _judge(case, output, got):
    """None when ``got`` is right, else the Finding that explains it best."""
    if got is None:
        return Finding("not_implemented", f"{output.name} is still None: fill in its part of the blank")
    got = numpy.asarray(to_numpy(got))
    expected = to_numpy(output.expected)
    if got.dtype.kind not in "fiu" and got.dtype.kind != "b":
        return Finding("type", f"{output.name} should be an array of numbers, got dtype {got.dtype}")
    tol = tolerance(case.dtype)
    named = _named_mistake(case, output, got, expected, tol)
    if named is not None and got.shape != expected.shape:
        return named
    if got.shape != expected.shape:
        return _shape_finding(case, output, got, expected, tol)
    if got.dtype != numpy.dtype(case.dtype):
        return Finding("dtype", f"has dtype {got.dtype}; this case's inputs are {case.dtype}, and a "
                                f"backward returns its inputs' dtype (an array made with np.ones(shape) or "
                                f"a mask left as bool changes it: pass dtype=..., or multiply by an array of "
                                f"the inputs)", [output.name])
    if not numpy.isfinite(got).all():
        return Finding("values", f"{output.name} contains NaN or inf")
    error = rel_error(got, expected)
    if error <= tol:
        numeric_error = _numeric_error(output, got)
        if numeric_error is None or numeric_error <= THRESHOLD:
            return None
        return Finding("values", f"{output.name} matches {case.reference} but not central differences",
                       gradient_error=numeric_error)
    near = error <= max(NEAR, DISTINCT * tol)
    finding = named or _factor_finding(case, output, got, expected, tol) or Finding(
        "near_miss" if near else "values",
        (f"{output.name} is close to the right answer but not within the tolerance of {case.dtype} "
         f"(max relative error {error:.2g}, allowed {tol:g}): a small term is missing or extra, or "
         f"precision is lost (e.g. a float16 step)" if near else
         f"{output.name} has the right shape but wrong values (max relative error {error:.2g} against "
         f"{case.reference}), and matches none of the catalogued mistakes"))
    if finding.kind in ("values", "near_miss"):     # unexplained: the gradient check says how far off
        finding.gradient_error = _numeric_error(output, got)
    return finding


def _numeric_error(output, got):
    """The relative error of ``got`` against central differences (None where the case has none).
    The central differences are computed on first use: they cost two forward passes per value."""
    if callable(output.numeric):
        output.numeric = output.numeric()
    return None if output.numeric is None else rel_error(got, output.numeric)


def _named_mistake(case, output, got, expected, tol):
    """The Finding of the catalogued mistake ``got`` matches (same shape, within ``tol``) on this
    output, where that mistake's values differ from the right answer; else None."""
    for m in case.mistakes:
        values = to_numpy(m.values)
        if m.output != output.name or values.shape != got.shape:
            continue
        if values.shape == expected.shape and rel_error(values, expected) <= DISTINCT * tol:
            continue                          # on these arrays the mistake does not show
        if rel_error(got, values) <= tol:
            return Finding(m.kind, f"matches the catalogued mistake '{m.kind}': {m.message}", [output.name])
    return None


def _shape_finding(case, output, got, expected, tol):
    if got.ndim == 2 and got.shape == expected.T.shape and rel_error(got.T, expected) <= tol:
        return Finding("transpose", f"{output.name} is the transpose of the right answer: the transpose "
                                    f"is missing. Expected {output.shape_text} = {expected.shape}, got "
                                    f"{got.shape}. {output.shape_hint}".rstrip())
    return Finding("shape", f"wrong shape returned for {output.name}: expected {output.shape_text} = "
                            f"{expected.shape}, got {got.shape}. {output.shape_hint}".rstrip())


def _factor_finding(case, output, got, expected, tol):
    """A Finding when got = k * expected for a constant k, naming k where the sizes explain it,
    or the number a size was replaced with."""
    norm = float((expected * expected).sum())
    if norm == 0:
        return None
    k = float((got * expected).sum()) / norm
    if abs(k - 1) <= DISTINCT * tol or rel_error(got, k * expected) > tol:
        return None
    factors = _factors(case.sizes)
    for label, value in factors.items():
        if abs(k - value) <= DISTINCT * tol * abs(value):
            if label == "-1":
                return Finding("sign", f"{output.name} has the wrong sign (it is minus the right answer)")
            hint = case.factor_hints.get(label, "")
            return Finding("factor", f"{output.name} is off by a factor of {label} = {value:g} "
                                     f"(it is {k:g} times the right answer). {hint}".rstrip())
    by_product_first = sorted(factors.items(), key=lambda item: "*" not in item[0])
    for label, value in by_product_first:     # a size written as a number: divides by m, not by the size
        if value > 1 and label != "-1":
            m = value / k
            if abs(m - round(m)) <= DISTINCT * tol * m and round(m) > 1 and round(m) != value:
                return Finding("hard_coded", (
                    f"{output.name} is {k:.4g} times the right answer: it divides by {round(m)} where this "
                    f"case has {label} = {value:g}. Is a size written as a number? Read it from the "
                    f"arguments' shapes"))
    return Finding("factor", f"{output.name} is {k:.4g} times the right answer: a constant factor is off")


def _factors(sizes):
    """Named factors a gradient is typically off by: each size, H*W, their inverses, -1."""
    named = dict(sizes)
    if "H" in sizes and "W" in sizes:
        named["H*W"] = sizes["H"] * sizes["W"]
    factors = {"-1": -1.0}
    for label, value in named.items():
        factors[label] = float(value)
        factors[f"1/({label})" if any(op in label for op in "*/") else f"1/{label}"] = 1.0 / value
    return factors


def _gradient_check_text(err):
    return f"gradient check: max rel. error {err:.1e} ({'pass' if err <= THRESHOLD else 'fail'})"


def _verdict(case, output, got):
    line = f"{output.name}: matches {case.reference} (within {tolerance(case.dtype):g}, {case.dtype})"
    numeric_error = _numeric_error(output, numpy.asarray(to_numpy(got)))
    if numeric_error is not None:
        line += "; " + _gradient_check_text(numeric_error)
    return line

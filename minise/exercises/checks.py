"""The exercises' test cases, built from the library's own layers, and their typical wrong answers.

Each case draws small float64 arrays from a fixed seed, runs the library's layer forward and
backward for the right answer, differentiates the layer's forward numerically
(``minise.gradcheck.numeric_gradient``), and computes the wrong answers a learner typically
writes, each with its explanation. Sizes differ from each other (N=2, C=6, H=3, W=5, C//r=3)
so that a gradient off by H*W, or a transposed matrix, cannot pass for the right one.
"""
import numpy

from .. import nn
from ..gradcheck import numeric_gradient
from . import forward
from .grading import NOT_YET, WRONG, Case, Finding, Mistake, Output, grade

N, C, H, W, REDUCTION = 2, 6, 3, 5, 2
SIZES = {"N": N, "C": C, "H": H, "W": W}
IN_FEATURES, OUT_FEATURES = 5, 3
SE_PARAMS = ("sequence.2.weight", "sequence.4.weight", "sequence.4.bias")   # W1, W2, b2


def _rng(name):
    return numpy.random.default_rng(list(name.encode()))


def _se_block():
    """The library's SE block in float64, weights scaled so the gates spread over (0, 1) and
    some ReLU units are off (at the default scale every gate sits near 0.5)."""
    nn.manual_seed(0)
    se = nn.SEBlock(C, REDUCTION).double()
    for p in se.parameters():
        p.data *= 3
    return se


def _away_from_zero(rng, shape):
    """Normal values with |x| >= 0.1: a ReLU's kink then lies far outside the difference step."""
    x = rng.standard_normal(shape)
    return x + 0.1 * numpy.sign(x)


def _numeric(f, *arrays):
    return [numeric_gradient(f, a) for a in arrays]


# ---- the cases -------------------------------------------------------------------------------
def squeeze_case():
    rng, se = _rng("squeeze"), _se_block()
    x, dz = rng.standard_normal((N, C, H, W)), rng.standard_normal((N, C))
    se.squeeze(x)
    [numeric] = _numeric(lambda: float((se.squeeze(x) * dz).sum()), x)
    dx = Output("dx", "(N, C, H, W)", se.squeeze_backward(dz), numeric,
                "Each of the H*W pixels of channel c gets a share of dz[n, c].")
    return Case("squeeze_backward", {"dz": dz, "x_shape": x.shape}, [dx], "SEBlock.squeeze_backward", SIZES,
                factor_hints={
                    "H*W": "z is a mean over H*W pixels, so each pixel receives dz / (H*W): the division is missing.",
                    "1/(H*W)": "Divide by H*W once, not twice.",
                    "H": "Divide by H*W, both spatial sizes, not by W alone.",
                    "W": "Divide by H*W, both spatial sizes, not by H alone.",
                    "1/N": "The mean is over h and w only: each sample has its own z, nothing is divided by N.",
                })


def linear_case():
    rng = _rng("linear")
    nn.manual_seed(1)
    fc = nn.Linear(IN_FEATURES, OUT_FEATURES).double()
    x, dout = rng.standard_normal((4, IN_FEATURES)), rng.standard_normal((4, OUT_FEATURES))
    fc(x)
    dx = fc.backward(dout)
    numeric = _numeric(lambda: float((fc(x) * dout).sum()), x, fc.weight.data, fc.bias.data)
    outputs = [
        Output("dx", "(N, in_features)", dx, numeric[0], "dx = dout @ W: (N, out) @ (out, in)."),
        Output("dW", "(out_features, in_features)", fc.weight.grad, numeric[1],
               "dW = dout.T @ x: (out, N) @ (N, in), shaped like W."),
        Output("db", "(out_features,)", fc.bias.grad, numeric[2],
               "db sums dout over the batch axis 0: one entry per output feature."),
    ]
    return Case("linear_backward", {"dout": dout, "x": x, "W": fc.weight.data.copy()}, outputs,
                "nn.Linear.backward", {"N": 4, "in_features": IN_FEATURES, "out_features": OUT_FEATURES},
                factor_hints={"1/N": "db and dW sum over the batch, they do not average: the loss "
                                     "already holds any 1/N."})


def relu_case():
    rng, relu = _rng("relu"), nn.ReLU()
    x, dout = _away_from_zero(rng, (4, 3)), rng.standard_normal((4, 3))
    relu(x)
    expected = relu.backward(dout)
    [numeric] = _numeric(lambda: float((relu(x) * dout).sum()), x)
    dx = Output("dx", "the shape of x", expected, numeric)
    mistakes = [
        Mistake("dx", (x > 0) * 1.0, "missing_dout",
                "dx is the ReLU's local derivative alone: multiply it by dout (dx = dout * (x > 0))"),
        Mistake("dx", dout * (x < 0), "mask_reversed",
                "the mask is reversed: the gradient passes where x > 0 and is zero where x <= 0"),
        Mistake("dx", dout, "mask_missing", "dx equals dout: the ReLU's mask (x > 0) is missing"),
    ]
    return Case("relu_backward", {"dout": dout, "x": x}, [dx], "nn.ReLU.backward", {}, mistakes)


def sigmoid_case():
    rng, sigmoid = _rng("sigmoid"), nn.Sigmoid()
    x, dout = 2 * rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    out = sigmoid(x)
    expected = sigmoid.backward(dout)
    [numeric] = _numeric(lambda: float((sigmoid(x) * dout).sum()), x)
    dx = Output("dx", "the shape of x", expected, numeric)
    mistakes = [
        Mistake("dx", dout * x * (1 - x), "sigmoid_from_input",
                "the sigmoid derivative uses x instead of the output: sigma'(x) = out * (1 - out) "
                "with out = sigma(x), not x * (1 - x)"),
        Mistake("dx", out * (1 - out), "missing_dout",
                "dx is the sigmoid's local derivative alone: multiply it by dout"),
    ]
    return Case("sigmoid_backward", {"dout": dout, "x": x, "out": out}, [dx], "nn.Sigmoid.backward", {}, mistakes)


def excite_case():
    rng, se = _rng("excite"), _se_block()
    W1, W2, b2 = (dict(se.named_parameters())[name].data for name in SE_PARAMS)
    z, ds = rng.standard_normal((N, C)), rng.standard_normal((N, C, 1, 1))
    _, cache = forward.excite(z, W1, W2, b2)
    se.excite(z)
    expected = [se.excite_backward(ds)] + [dict(se.named_parameters())[name].grad for name in SE_PARAMS]
    numeric = _numeric(lambda: float((se.excite(z) * ds).sum()), z, W1, W2, b2)
    outputs = [
        Output("dz", "(N, C)", expected[0], numeric[0], "dz has one entry per (sample, channel), like z."),
        Output("dW1", "(C//r, C)", expected[1], numeric[1], "dW1 = da.T @ z, shaped like W1."),
        Output("dW2", "(C, C//r)", expected[2], numeric[2], "dW2 = de.T @ h, shaped like W2."),
        Output("db2", "(C,)", expected[3], numeric[3], "db2 sums de over the batch axis 0."),
    ]
    args = {"ds": ds, "cache": cache, "W1": W1.copy(), "W2": W2.copy()}
    variants = {
        "sigmoid_from_input": (_excite_variant(ds, cache, W1, W2, sigmoid_at="e"),
                               "the sigmoid derivative uses its input e instead of its output s: "
                               "sigma'(e) = s * (1 - s)"),
        "relu_skipped": (_excite_variant(ds, cache, W1, W2, relu=False),
                         "the ReLU's backward is skipped: the gradient must be zeroed where a <= 0"),
    }
    mistakes = [Mistake(name, values, kind, message) for kind, (answer, message) in variants.items()
                for name, values in answer.items()]
    return Case("excite_backward", args, outputs, "SEBlock.excite_backward and the FC layers' gradients",
                {**SIZES, "C//r": C // REDUCTION}, mistakes)


def _excite_variant(ds, cache, W1, W2, sigmoid_at="s", relu=True):
    """The excitation's backward with one typical slip: sigma' evaluated at e, or no ReLU mask."""
    g = cache[sigmoid_at]
    de = ds.reshape(g.shape) * g * (1 - g)
    dh = de @ W2
    da = dh * (cache["a"] > 0) if relu else dh
    return {"dz": da @ W1, "dW1": da.T @ cache["z"], "dW2": de.T @ cache["h"], "db2": de.sum(axis=0)}


def rescale_case():
    rng, se = _rng("rescale"), _se_block()
    x, dout = rng.standard_normal((N, C, H, W)), rng.standard_normal((N, C, H, W))
    s = se.excite(se.squeeze(rng.standard_normal((N, C, H, W))))
    dx, ds = nn.SEBlock.rescale_backward(dout, x, s)
    numeric = _numeric(lambda: float((nn.SEBlock.rescale(x, s) * dout).sum()), x, s)
    outputs = [
        Output("dx", "(N, C, H, W)", dx, numeric[0]),
        Output("ds", "(N, C, 1, 1)", ds, numeric[1],
               "s holds one gate per (sample, channel): sum dout * x over h and w and keep the two unit "
               "axes, e.g. .sum(axis=(2, 3), keepdims=True)."),
    ]
    mistakes = [
        Mistake("dx", dout, "missing_s", "dx is missing the factor s: the direct path is dx = dout * s"),
        Mistake("dx", dout * x, "swapped_factor", "dx uses x where s belongs: dx = dout * s (and ds = sum of dout * x)"),
        Mistake("ds", dout.sum(axis=(2, 3), keepdims=True), "missing_x",
                "ds is missing the factor x: ds = sum over h, w of dout * x"),
    ]
    return Case("rescale_backward", {"dout": dout, "x": x, "s": s}, outputs, "SEBlock.rescale_backward", SIZES,
                mistakes, factor_hints={"1/(H*W)": "s scales all H*W pixels of its channel, so ds is "
                                                   "their sum, not their mean."})


def se_block_case():
    rng, se = _rng("se_block"), _se_block()
    params = dict(se.named_parameters())
    W1, W2, b2 = (params[name].data for name in SE_PARAMS)
    x, dout = rng.standard_normal((N, C, H, W)), rng.standard_normal((N, C, H, W))
    se(x)
    dx = se.backward(dout)
    direct = dout * se.s                   # before the numeric gradient runs forward again
    through_s = dx - direct
    numeric = _numeric(lambda: float((se(x) * dout).sum()), x, W1, W2, b2)
    outputs = [Output("dx", "(N, C, H, W)", dx, numeric[0])] + [
        Output(name, shape, params[key].grad, grad) for name, shape, key, grad in
        zip(("dW1", "dW2", "db2"), ("(C//r, C)", "(C, C//r)", "(C,)"), SE_PARAMS, numeric[1:])]
    mistakes = [
        Mistake("dx", direct, "path_through_s_missing",
                "the rescale's path through s is missing: x also reaches the output through "
                "s = excite(squeeze(x)), so dx = dout * s + squeeze_backward(dz)"),
        Mistake("dx", through_s, "direct_path_missing",
                "the direct path is missing: add dout * s, the gradient of x as the factor of the product"),
        Mistake("dx", direct + H * W * through_s, "path_through_s_factor",
                "the path through s is off by a factor of H*W: the squeeze is a mean, so its backward "
                "gives each pixel dz / (H*W)"),
        Mistake("dx", direct + through_s / (H * W), "path_through_s_factor",
                "the path through s is divided by H*W twice: squeeze_backward already divides dz by H*W"),
    ]
    args = {"dout": dout, "x": x, "W1": W1.copy(), "W2": W2.copy(), "b2": b2.copy()}
    return Case("se_block_backward", args, outputs, "SEBlock.backward", {**SIZES, "C//r": C // REDUCTION},
                mistakes)


# ---- checking a learner's function --------------------------------------------------------------
CASES = {case.__name__.removesuffix("_case") + "_backward": case for case in
         (squeeze_case, linear_case, relu_case, sigmoid_case, excite_case, rescale_case, se_block_case)}
HELPERS = {   # the blanks a composite blank usually calls
    "excite_backward": ("sigmoid_backward", "linear_backward", "relu_backward"),
    "se_block_backward": ("rescale_backward", "excite_backward", "squeeze_backward"),
}


def check(fn, exercise=None):
    """Grade ``fn`` as the answer to blank ``exercise`` (a key of CASES; by default the name
    ``fn`` was defined with). Returns a Feedback, which prints as the verdict.

    Where a composite blank (the excitation, the whole block) is wrong and calls other blanks
    that are themselves wrong or empty, the feedback says which to fix first.
    """
    if not callable(fn):
        raise TypeError(f"check: pass your function itself, e.g. check(squeeze_backward); "
                        f"got {type(fn).__name__}")
    exercise = exercise or getattr(fn, "__name__", None)
    if exercise not in CASES:
        raise ValueError(f"check: no exercise named {exercise!r}; the exercises are {list(CASES)} "
                         f"(name a function differently named: check(fn, 'relu_backward'))")
    feedback = grade(CASES[exercise](), fn)
    if feedback.status != WRONG:
        return feedback
    for helper in HELPERS.get(exercise, ()):
        helper_fn = _called(fn, helper)
        if helper_fn is None:
            continue
        result = check(helper_fn, helper)
        if result.status == NOT_YET:
            feedback.status = NOT_YET
        if not result.passed:
            first = result.findings[0].message
            feedback.findings.insert(0, Finding(f"helper_{result.kinds[0]}", f"{exercise} calls {helper}, "
                                                f"which is {result.status} ({first}): fix it first"))
    return feedback


def _called(fn, helper):
    """The function ``fn`` calls under the name ``helper`` (looked up in its globals), or None."""
    code, namespace = getattr(fn, "__code__", None), getattr(fn, "__globals__", {})
    if code is None or helper not in code.co_names or not callable(namespace.get(helper)):
        return None
    return namespace[helper]

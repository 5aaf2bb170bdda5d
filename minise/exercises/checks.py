"""The exercises' test cases, built from the library's own layers, and their catalogued mistakes.

Every check draws fresh cases: sizes that differ from each other and from case to case (N != C,
H != W, odd H and W, a different H*W in each case) and new random values at every call, so no
number written for one case can pass. Two cases are float64, checked also against central
differences (``minise.gradcheck.numeric_gradient``); one is float32, judged with float32's
tolerance. Each case runs the library's layer for the right answer and computes every mistake of
the blank's catalogue (``variants.SLIPS``) on the same arrays, so that the grader can name the
one an answer matches.
"""
import functools

import numpy

from .. import nn
from ..nn import textbook
from ..gradcheck import numeric_gradient
from . import forward, variants
from .grading import NOT_YET, WRONG, Case, Finding, Mistake, Output, grade

REDUCTION = 2
SE_PARAMS = ("sequence.2.weight", "sequence.4.weight", "sequence.4.bias")   # W1, W2, b2
DTYPES = ("float64", "float64", "float32")


def draw_sizes(rng, count=len(DTYPES)):
    """``count`` size sets {N, C, H, W}: N != C, H != W, both odd, each set with its own H*W."""
    spatial = [(3, 5), (3, 7), (5, 7)]
    rng.shuffle(spatial)
    sizes = []
    for H, W in spatial[:count]:
        N = int(rng.choice([2, 3]))
        C = int(rng.choice([c for c in (4, 6, 8) if c != N]))
        sizes.append({"N": N, "C": C, **dict(zip("HW", (H, W) if rng.random() < 0.5 else (W, H)))})
    return sizes


def _se_block(C, seed):
    """The library's SE block in float64, weights scaled so the gates spread over (0, 1) and
    some ReLU units are off (at the default scale every gate sits near 0.5)."""
    nn.manual_seed(seed)
    se = nn.SEBlock(C, REDUCTION).double()
    for p in se.parameters():
        p.data *= 3
    return se


def _away_from_zero(rng, shape):
    """Normal values with |x| >= 0.1: a ReLU's kink then lies far outside the difference step."""
    x = rng.standard_normal(shape)
    return x + 0.1 * numpy.sign(x)


def _numeric(f, *arrays):
    """Central differences of f with respect to each array, each computed when first asked for."""
    return [functools.partial(numeric_gradient, f, a) for a in arrays]


def _se_params(se):
    params = dict(se.named_parameters())
    return [params[name] for name in SE_PARAMS]


# ---- the cases: (arguments, outputs, reference, sizes, factor hints), all float64 -------------
def squeeze_case(rng, sizes):
    N, C, H, W = (sizes[k] for k in "NCHW")
    se = _se_block(C, int(rng.integers(1000)))
    x, dz = rng.standard_normal((N, C, H, W)), rng.standard_normal((N, C))
    se.squeeze(x)
    [numeric] = _numeric(lambda: float((se.squeeze(x) * dz).sum()), x)
    dx = Output("dx", "(N, C, H, W)", se.squeeze_backward(dz), numeric,
                "Each of the H*W pixels of channel c gets a share of dz[n, c].")
    hints = {"H*W": "z is a mean over H*W pixels: each pixel's share of dz is missing its division.",
             "1/(H*W)": "Divide by H*W once, not twice.", "1/N": "The mean is over h and w only."}
    return {"dz": dz, "x_shape": x.shape}, [dx], "SEBlock.squeeze_backward", sizes, hints


def max_squeeze_case(rng, sizes):
    """Notebook 01's Exercise 1.4: the backward of a global max pooling squeeze."""
    N, C, H, W = (sizes[k] for k in "NCHW")
    pool = nn.AdaptiveMaxPool2d((1, 1))
    x = rng.permuted(rng.standard_normal((N, C, H * W)) + numpy.arange(H * W) * 0.1, axis=2).reshape(N, C, H, W)
    dz = rng.standard_normal((N, C))
    pool(x)
    [numeric] = _numeric(lambda: float((pool(x).reshape(N, C) * dz).sum()), x)
    dx = Output("dx", "(N, C, H, W)", pool.backward(dz.reshape(N, C, 1, 1)), numeric,
                "dx has x's shape: one gradient per input pixel.")
    return {"x": x, "dz": dz}, [dx], "nn.AdaptiveMaxPool2d((1, 1)).backward", sizes, {}


def linear_case(rng, sizes):
    N, n_in, n_out = sizes["N"], 5 + sizes["H"] % 3, 3 + sizes["W"] % 2
    nn.manual_seed(int(rng.integers(1000)))
    fc = nn.Linear(n_in, n_out).double()
    x, dout = rng.standard_normal((N, n_in)), rng.standard_normal((N, n_out))
    fc(x)
    dx = fc.backward(dout)
    numeric = _numeric(lambda: float((fc(x) * dout).sum()), x, fc.weight.data, fc.bias.data)
    outputs = [
        Output("dx", "(N, in_features)", dx, numeric[0], "dx has x's shape: (N, out) times a matrix of W's."),
        Output("dW", "(out_features, in_features)", fc.weight.grad, numeric[1], "dW has W's shape."),
        Output("db", "(out_features,)", fc.bias.grad, numeric[2], "db has b's shape: one entry per output feature."),
    ]
    return ({"dout": dout, "x": x, "W": fc.weight.data.copy()}, outputs, "nn.Linear.backward",
            {"N": N, "in_features": n_in, "out_features": n_out},
            {"1/N": "The batch's gradients add up: the loss already holds any 1/N."})


def relu_case(rng, sizes):
    relu = nn.ReLU()
    x, dout = _away_from_zero(rng, (sizes["N"], sizes["C"])), rng.standard_normal((sizes["N"], sizes["C"]))
    relu(x)
    expected = relu.backward(dout)
    [numeric] = _numeric(lambda: float((relu(x) * dout).sum()), x)
    return {"dout": dout, "x": x}, [Output("dx", "the shape of x", expected, numeric)], "nn.ReLU.backward", {}, {}


def sigmoid_case(rng, sizes):
    sigmoid = nn.Sigmoid()
    x, dout = 2 * rng.standard_normal((sizes["N"], sizes["C"])), rng.standard_normal((sizes["N"], sizes["C"]))
    out = sigmoid(x)
    expected = sigmoid.backward(dout)
    [numeric] = _numeric(lambda: float((sigmoid(x) * dout).sum()), x)
    return ({"dout": dout, "x": x, "out": out}, [Output("dx", "the shape of x", expected, numeric)],
            "nn.Sigmoid.backward", {}, {})


def excite_case(rng, sizes):
    N, C = sizes["N"], sizes["C"]
    se = _se_block(C, int(rng.integers(1000)))
    W1, W2, b2 = (p.data for p in _se_params(se))
    z, ds = rng.standard_normal((N, C)), rng.standard_normal((N, C, 1, 1))
    _, cache = forward.excite(z, W1, W2, b2)
    se.excite(z)
    dz = se.excite_backward(ds)
    expected = [dz] + [p.grad for p in _se_params(se)]
    numeric = _numeric(lambda: float((se.excite(z) * ds).sum()), z, W1, W2, b2)
    outputs = [
        Output("dz", "(N, C)", expected[0], numeric[0], "dz has z's shape: one entry per (sample, channel)."),
        Output("dW1", "(C//r, C)", expected[1], numeric[1], "dW1 has W1's shape."),
        Output("dW2", "(C, C//r)", expected[2], numeric[2], "dW2 has W2's shape."),
        Output("db2", "(C,)", expected[3], numeric[3], "db2 has b2's shape."),
    ]
    args = {"ds": ds, "cache": cache, "W1": W1.copy(), "W2": W2.copy()}
    return (args, outputs, "SEBlock.excite_backward and the FC layers' gradients",
            {"N": N, "C": C, "C//r": C // REDUCTION}, {})


def rescale_case(rng, sizes):
    N, C, H, W = (sizes[k] for k in "NCHW")
    se = _se_block(C, int(rng.integers(1000)))
    x, dout = rng.standard_normal((N, C, H, W)), rng.standard_normal((N, C, H, W))
    s = se.excite(se.squeeze(rng.standard_normal((N, C, H, W))))
    dx, ds = nn.SEBlock.rescale_backward(dout, x, s)
    numeric = _numeric(lambda: float((nn.SEBlock.rescale(x, s) * dout).sum()), x, s)
    outputs = [Output("dx", "(N, C, H, W)", dx, numeric[0]),
               Output("ds", "(N, C, 1, 1)", ds, numeric[1], "ds has s's shape: one gate per (sample, channel).")]
    return ({"dout": dout, "x": x, "s": s}, outputs, "SEBlock.rescale_backward", sizes,
            {"1/(H*W)": "s scales all H*W pixels of its channel, so ds is their sum, not their mean."})


def se_block_case(rng, sizes):
    N, C, H, W = (sizes[k] for k in "NCHW")
    se = _se_block(C, int(rng.integers(1000)))
    params = _se_params(se)
    W1, W2, b2 = (p.data for p in params)
    x, dout = rng.standard_normal((N, C, H, W)), rng.standard_normal((N, C, H, W))
    se(x)
    dx = se.backward(dout)
    numeric = _numeric(lambda: float((se(x) * dout).sum()), x, W1, W2, b2)
    outputs = [Output("dx", "(N, C, H, W)", dx, numeric[0])] + [
        Output(name, shape, p.grad, grad) for name, shape, p, grad in
        zip(("dW1", "dW2", "db2"), ("(C//r, C)", "(C, C//r)", "(C,)"), params, numeric[1:])]
    args = {"dout": dout, "x": x, "W1": W1.copy(), "W2": W2.copy(), "b2": b2.copy()}
    return args, outputs, "SEBlock.backward", {**sizes, "C//r": C // REDUCTION}, {}


BN_EPS = 0.1      # large enough that leaving eps out, or adding it outside the root, shows


def batch_norm_case(rng, sizes):
    """Checked against the textbook loops (``nn.textbook.batch_norm2d_backward``) and central
    differences of the library's BatchNorm2d in training mode."""
    N, C, H, W = (sizes[k] for k in "NCHW")
    bn = nn.BatchNorm2d(C, eps=BN_EPS).double()
    bn.weight.data[...] = rng.uniform(0.5, 2, C)
    bn.bias.data[...] = rng.standard_normal(C)
    x = rng.normal(1, 2, (N, C, H, W))
    dout = rng.standard_normal((N, C, H, W))
    expected = textbook.batch_norm2d_backward(dout, x, bn.weight.data, bn.bias.data, BN_EPS)
    numeric = _numeric(lambda: float((bn(x) * dout).sum()), x, bn.weight.data, bn.bias.data)
    outputs = [Output("dx", "(N, C, H, W)", expected[0], numeric[0]),
               Output("dgamma", "(C,)", expected[1], numeric[1], "dgamma has gamma's shape: one entry per channel."),
               Output("dbeta", "(C,)", expected[2], numeric[2], "dbeta has beta's shape: one entry per channel.")]
    return ({"dout": dout, "x": x, "gamma": bn.weight.data.copy(), "eps": BN_EPS}, outputs,
            "nn.textbook.batch_norm2d_backward (the loops)", sizes, {})


def conv_case(rng, sizes):
    """A 3x3 convolution with padding 1, checked against the textbook loops
    (``nn.textbook.conv2d_backward``) and central differences of the library's Conv2d."""
    N, C, H, W = (sizes[k] for k in "NCHW")
    O = C + 1
    nn.manual_seed(int(rng.integers(1000)))
    conv = nn.Conv2d(C, O, 3, padding=1).double()
    x, dout = rng.standard_normal((N, C, H, W)), rng.standard_normal((N, O, H, W))
    expected = textbook.conv2d_backward(dout, x, conv.weight.data, conv.bias.data, padding=1)
    numeric = _numeric(lambda: float((conv(x) * dout).sum()), x, conv.weight.data, conv.bias.data)
    outputs = [Output("dx", "(N, C, H, W)", expected[0], numeric[0], "dx has x's shape, without the padding."),
               Output("dweight", "(O, C, kh, kw)", expected[1], numeric[1], "dweight has weight's shape."),
               Output("dbias", "(O,)", expected[2], numeric[2], "dbias has the bias's shape: one entry per output channel.")]
    return ({"dout": dout, "x": x, "weight": conv.weight.data.copy(), "padding": 1}, outputs,
            "nn.textbook.conv2d_backward (the loops)", {**sizes, "O": O}, {})


OUTPUTS = {"squeeze_backward": ("dx",), "max_squeeze_backward": ("dx",), "linear_backward": ("dx", "dW", "db"), "relu_backward": ("dx",),
           "sigmoid_backward": ("dx",), "excite_backward": ("dz", "dW1", "dW2", "db2"),
           "rescale_backward": ("dx", "ds"), "se_block_backward": ("dx", "dW1", "dW2", "db2"),
           "batch_norm_backward": ("dx", "dgamma", "dbeta"), "conv_backward": ("dx", "dweight", "dbias")}
CASES = {case.__name__.removesuffix("_case") + "_backward": case for case in
         (squeeze_case, max_squeeze_case, linear_case, relu_case, sigmoid_case, excite_case, rescale_case, se_block_case,
          batch_norm_case, conv_case)}
BLANKS = dict(variants.BLANKS)
SLIPS = dict(variants.SLIPS)


def output_names(exercise):
    """The names of what blank ``exercise`` returns, in order."""
    return OUTPUTS[exercise]


def make_cases(exercise, rng=None):
    """Fresh cases for blank ``exercise``: its arguments, right answers and catalogued mistakes on
    new arrays of new sizes; float64 cases first, then float32."""
    rng = rng if rng is not None else numpy.random.default_rng()
    cases = []
    for sizes, dtype in zip(draw_sizes(rng), DTYPES):
        args, outputs, reference, named_sizes, hints = CASES[exercise](rng, sizes)
        if dtype != "float64":      # the float32 case: float32 inputs, right answers from their float64 values
            args = {k: _rounded_to(v, dtype) for k, v in args.items()}
            _, outputs, reference, named_sizes, hints = _recompute(exercise, args, outputs, reference, named_sizes, hints)
        mistakes = _catalogue(exercise, _as_float64(args), [o.name for o in outputs])
        cases.append(Case(exercise, {k: _cast(v, dtype) for k, v in args.items()}, outputs, reference,
                          named_sizes, mistakes, hints, dtype))
    return cases


def _recompute(exercise, args, outputs, reference, sizes, hints):
    """The right answers on (float32-valued) arguments, in float64, without central differences."""
    right = BLANKS[exercise](*_as_float64(args).values())
    right = right if isinstance(right, tuple) else (right,)
    outputs = [Output(o.name, o.shape_text, r, None, o.shape_hint) for o, r in zip(outputs, right)]
    return args, outputs, reference, sizes, hints


def _catalogue(exercise, args, names):
    mistakes = []
    for slip, message in SLIPS[exercise].items():
        values = BLANKS[exercise](*args.values(), slip=slip)
        values = values if isinstance(values, tuple) else (values,)
        mistakes += [Mistake(name, v, slip, message) for name, v in zip(names, values)]
    return mistakes


def _map_arrays(value, f):
    if isinstance(value, dict):
        return {k: _map_arrays(v, f) for k, v in value.items()}
    return f(value) if isinstance(value, numpy.ndarray) else value


def _rounded_to(value, dtype):
    return _map_arrays(value, lambda a: a.astype(dtype).astype("float64"))


def _as_float64(args):
    return {k: _map_arrays(v, lambda a: a.astype("float64")) for k, v in args.items()}


def _cast(value, dtype):
    return _map_arrays(value, lambda a: a.astype(dtype))


# ---- checking a learner's function --------------------------------------------------------------
LAST = {}     # the latest Feedback of each blank, for hints.hint
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
    feedback = LAST[exercise] = grade(make_cases(exercise), fn)
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

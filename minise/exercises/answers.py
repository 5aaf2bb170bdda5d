"""The numeric exercises of notebooks 01-04: each answer is measured with minise and judged.

    >>> from minise import exercises
    >>> exercises.check_answer("2.2", 576)
    Exercise 2.2: wrong
      ✗ 576 is not what minise measures: 576 is the count with one bias, minise's default ...

``check_answer(question, answer)`` takes the answer exactly in the form the question asks for (a
number, or a pair as a tuple or list of two numbers): a string, a bool, an array or a pair of
the wrong length is refused as such, never broadcast. A wrong number gets the hint kept for it
(a typical wrong number is named), else a pointer to the part of the lesson that derives it.
``show_solution(question)`` prints the worked answer (``lesson_solutions.SOLUTIONS``).
"""
import numbers
from dataclasses import dataclass, field

import numpy

from .. import nn
from ..models import BasicBlock, cifar_resnet, resnet20, se_resnet20
from ..summary import summary
from .grading import CORRECT, WRONG, Feedback, Finding

NOT_ANSWERED = "not answered yet"


@dataclass
class Question:
    """What a question asks for (``form``: "number" or "pair", and what it means), how minise
    measures the answer, how close an answer must be, the typical wrong numbers and what each
    means, and where the lesson derives the answer."""

    form: str
    means: str
    measure: object
    hint: str
    rtol: float = 1e-6
    atol: float = 0.0
    typical: dict = field(default_factory=dict)


def n_params(model):
    return sum(p.data.size for p in model.parameters())


# ---- measuring the answers with minise ----------------------------------------------------------
def _numbers_in_z():
    x = numpy.zeros((8, 64, 16, 16))
    z = nn.SEBlock(64, reduction_ratio=4).squeeze(x)
    return z.size, x.size // z.size


def _one_pixel_raised():
    pool = nn.AdaptiveAvgPool2d((1, 1))
    x = numpy.random.default_rng(0).standard_normal((1, 1, 7, 7))
    before = pool(x)[0, 0, 0, 0]
    x[0, 0, 3, 5] += 49
    return pool(x)[0, 0, 0, 0] - before


def _uniform_gradient_spread():
    block = nn.SEBlock(16, reduction_ratio=4).double()
    block.squeeze(numpy.zeros((2, 16, 32, 32)))          # the forward pass records the input's shape
    return block.squeeze_backward(numpy.ones((2, 16))).flat[0]


def _squeeze_after_batch_norm():
    bn = nn.BatchNorm2d(16).double()                     # training mode, weight 1, bias 0
    x = numpy.random.default_rng(4).normal(3, 2, (8, 16, 8, 8))
    return float(nn.SEBlock(16, reduction_ratio=4).double().squeeze(bn(x)).mean(axis=0).max())


def _largest_sigmoid_slope():
    v = numpy.linspace(-8, 8, 1601).reshape(1, -1)      # includes v = 0
    sigmoid = nn.Sigmoid()
    sigmoid(v)
    return sigmoid.backward(numpy.ones_like(v)).max()    # dL/dv for dL/ds = 1: sigma'(v)


RESNET50_STAGES = [(256, 3), (512, 4), (1024, 6), (2048, 3)]   # (channels, blocks)


def _se_with_both_biases():
    return n_params(nn.SEBlock(64, 16, bias=(True, True)))


def _eq5_resnet50():
    return sum(blocks * n_params(nn.SEBlock(C, 16, bias=(False, False))) for C, blocks in RESNET50_STAGES)


def _dead_unit_gradients():
    dead = nn.SEBlock(16, reduction_ratio=4).double()   # 4 hidden units
    W1 = dead.sequence[2].weight.data
    W1[1] = -numpy.abs(W1[1])                            # unit 1 sees only negative weights ...
    z = numpy.abs(numpy.random.default_rng(5).standard_normal((6, 16)))   # ... and positive inputs
    dead.zero_grad()
    dead.excite(z)
    dead.excite_backward(numpy.random.default_rng(6).standard_normal((6, 16, 1, 1)))
    return (float(numpy.linalg.norm(dead.sequence[2].weight.grad[1])),
            float(numpy.linalg.norm(dead.sequence[4].weight.grad[:, 1])))


def constant_gate_block(C, gate):
    """An SE block whose excitation ignores z: W1 = W2 = 0 and b2 = logit(gate), so s = gate everywhere."""
    block = nn.SEBlock(C, reduction_ratio=4).double()
    for p in block.parameters():
        p.data[...] = 0
    block.sequence[4].bias.data[...] = numpy.log(gate / (1 - gate))
    return block


def _constant_gate_dx():
    quarter = constant_gate_block(16, 0.25)
    quarter(numpy.random.default_rng(7).standard_normal((2, 16, 8, 8)))
    dx = quarter.backward(numpy.ones((2, 16, 8, 8)))
    return float(dx.max()) if dx.min() == dx.max() else float("nan")


def path_ratio(H, upstream, seed=0):
    """|dx through s| / |dx direct| of an SEBlock(16, 4) on 256 random inputs of H x H, for the
    upstream gradient ``upstream(out, rng)``."""
    rng = numpy.random.default_rng(seed)
    nn.manual_seed(seed)
    block = nn.SEBlock(16, reduction_ratio=4).double()
    x = rng.standard_normal((256, 16, H, H))
    g = upstream(block(x), rng)
    dx_direct, ds = block.rescale_backward(g, x, block.s)
    dx_through_s = block.squeeze_backward(block.excite_backward(ds))
    return numpy.linalg.norm(dx_through_s) / numpy.linalg.norm(dx_direct)


def random_upstream(out, rng):
    return rng.standard_normal(out.shape)


def output_upstream(out, rng):
    return out


def ratio_change(upstream):
    """How much the path ratio changes from 16 x 16 to 32 x 32 maps (mean over three seeds)."""
    return float(numpy.mean([path_ratio(32, upstream, seed) / path_ratio(16, upstream, seed) for seed in range(3)]))


def _saturated_gate():
    saturated = constant_gate_block(16, 0.5)
    saturated.sequence[4].bias.data[...] = 40.0          # sigma(40) == 1.0 in float64
    x = numpy.random.default_rng(8).standard_normal((2, 16, 8, 8))
    saturated(x)
    dout = numpy.random.default_rng(9).standard_normal(x.shape)
    return float(numpy.abs(saturated.backward(dout) - dout).max())


def _se_in_se_resnet20():
    return n_params(se_resnet20()) - n_params(resnet20())


def _se_with_floor():
    return n_params(BasicBlock(16, 16, reduction_ratio=16, min_hidden=4)) - n_params(BasicBlock(16, 16))


def _se_arithmetic():
    stats = summary(nn.SEBlock(64, 16), (1, 64, 8, 8), col_names=("output_size", "mult_adds"), verbose=False)
    return stats.total_mult_adds, int(numpy.prod(stats.rows[0].input_size))


def _nine_half_gates():
    signal = numpy.ones((1, 16, 4, 4))
    for _ in range(9):
        gate = nn.SEBlock(16, 16, min_hidden=4).double()
        for p in gate.parameters():
            p.data[...] = 0                              # s = sigmoid(0) = 0.5 for every channel
        signal = gate(signal)
    return float(signal.mean())


def _se_pre_difference():
    standard = cifar_resnet(20, reduction_ratio=16, min_hidden=4)
    pre = cifar_resnet(20, reduction_ratio=16, min_hidden=4, placement="pre")
    return n_params(standard) - n_params(pre)


QUESTIONS = {
    "1.1": Question("pair", "(numbers in z, inputs per entry)", _numbers_in_z,
                    "notebook 01, 'Forward: one number per channel': what shape does z have, and what is one entry the mean of?",
                    typical={(512, 512): "the second number counts the inputs of one entry of z, one channel's map"}),
    "1.2": Question("number", "the change of z_c", _one_pixel_raised,
                    "notebook 01, 'Backward: the gradient spreads evenly': the weight of one pixel in the mean",
                    typical={49: "49 is the change of the pixel; z_c is a mean over all the pixels of the map"}),
    "1.3": Question("number", "the value of every entry of dx", _uniform_gradient_spread,
                    "notebook 01, 'Backward: the gradient spreads evenly'",
                    typical={1: "1 is dz itself: the squeeze's backward shares it among the pixels of the map",
                             32: "divide by the number of pixels of the map, not by its side"}),
    "1.5": Question("number", "the batch mean of z_c", _squeeze_after_batch_norm,
                    "notebook 01, Exercise 1.5's question: what does batch norm make of each channel's batch mean?",
                    atol=1e-9, typical={3: "3 is the inputs' mean before batch norm; the squeeze reads its output"}),
    "2.1": Question("number", "the largest value of sigma'(v)", _largest_sigmoid_slope,
                    "notebook 02, 'Backward, piece by piece': write sigma' with s and find its largest value on (0, 1)",
                    typical={0.5: "0.5 is the gate's value where its slope is largest, not the slope",
                             1: "the sigmoid's slope never reaches 1"}),
    "2.2": Question("number", "parameters of SEBlock(64, 16) with both biases", _se_with_both_biases,
                    "notebook 02, 'Counting parameters': count each FC's weights and biases",
                    typical={576: "576 is the count with one bias, minise's default bias=(False, True); this asks for both",
                             512: "512 counts the weights alone: add both layers' biases"}),
    "2.3": Question("number", "Eq. 5 for SE-ResNet-50, r = 16", _eq5_resnet50,
                    "notebook 02, 'Counting parameters', and the paper's Eq. 5 as the question quotes it",
                    typical={2530048: "2,530,048 counts minise's default second-FC bias too; Eq. 5 counts the FC weights only"}),
    "2.4": Question("pair", "(norm of row j of dW1, norm of column j of dW2)", _dead_unit_gradients,
                    "notebook 02, 'Backward, piece by piece': what does the ReLU's mask do to a unit that is off for every sample?"),
    "3.1": Question("number", "every entry of dx", _constant_gate_dx,
                    "notebook 03, 'Backward: two paths': which path is left when s does not depend on x?",
                    typical={1: "1 is dout: the direct path multiplies it by the gate",
                             0: "the direct path remains: only the path through s is zero"}),
    "3.2": Question("number", "ratio at 32x32 / ratio at 16x16", lambda: ratio_change(random_upstream),
                    "notebook 03, 'Backward: two paths': how do the norms of a sum of HW random terms and of "
                    "dz / (HW) spread over HW pixels grow with HW?", rtol=0.15,
                    typical={0.25: "that is 1/(HW ratio): the norms grow like square roots", 2: "the ratio shrinks, it does not grow"}),
    "3.3": Question("number", "ratio at 32x32 / ratio at 16x16, for g = out", lambda: ratio_change(output_upstream),
                    "notebook 03, 'Backward: two paths': with g * x positive everywhere, how does ds grow with HW?",
                    rtol=0.15, typical={0.5: "0.5 is the change for a random g (Exercise 3.2); here g * x has one sign"}),
    "3.4": Question("number", "max |dx - dout|", _saturated_gate,
                    "notebook 03, 'Backward: two paths': what is s (1 - s) when s is 1 in floating point?",
                    atol=1e-12),
    "4.1": Question("number", "extra parameters of se_resnet20() over resnet20()", _se_in_se_resnet20,
                    "notebook 04 and notebook 02's count: 2 C h + C per block, h = C // 16, three blocks per stage",
                    typical={784: "784 is one block of each width: there are three blocks per stage",
                             3024: "3,024 floors the hidden width at 4; se_resnet20() has no floor"}),
    "4.2": Question("number", "SE parameters in BasicBlock(16, 16, 16, min_hidden=4)", _se_with_floor,
                    "notebook 04: the hidden width with the floor is max(C // 16, 4)",
                    typical={48: "48 is the count without the floor (one hidden unit)"}),
    "4.3": Question("pair", "(FC mult-adds, rescale multiplications)", _se_arithmetic,
                    "notebook 04: the FCs run once per image, the rescale once per element",
                    typical={(32768, 4096): "the FCs run once per image, not once per pixel"}),
    "4.4": Question("number", "the factor after nine gates of 0.5", _nine_half_gates,
                    "notebook 04: each gate multiplies the signal by its value",
                    typical={4.5: "the gates multiply, they do not add"}),
    "4.5": Question("number", "standard minus SE-PRE parameters", _se_pre_difference,
                    "notebook 04: only the blocks that change width get a different SE block; count one with 4 hidden units"),
}


def check_answer(question, answer, measured=None):
    """Judge ``answer`` to exercise ``question`` ("2.2"), against the value minise measures (or
    ``measured``, where the notebook has measured it already). Returns a Feedback."""
    if question not in QUESTIONS:
        raise ValueError(f"check_answer: no exercise {question!r}; the exercises are {list(QUESTIONS)}")
    q = QUESTIONS[question]
    label = f"Exercise {question}"
    if answer is None:
        return Feedback(label, NOT_ANSWERED, [Finding("not_answered", f"set the answer ({q.means}) and run the cell again")])
    problem = _form_problem(q, answer)
    if problem:
        return Feedback(label, WRONG, [Finding("form", problem)], stuck="")
    value = q.measure() if measured is None else measured
    given, right = _as_tuple(answer), _as_tuple(value)
    if all(abs(g - r) <= q.atol + q.rtol * abs(r) for g, r in zip(given, right)):
        return Feedback(label, CORRECT, verdicts=[f"{answer!r} is what minise measures"])
    typical = next((m for v, m in q.typical.items() if _as_tuple(v) == given), None)
    finding = (Finding("typical", f"{answer!r} is not what minise measures: {typical}") if typical else
               Finding("value", f"{answer!r} is not what minise measures. Where it is derived: {q.hint}"))
    return Feedback(label, WRONG, [finding], stuck=f"exercises.show_solution({question!r}) prints the worked answer")


def _form_problem(q, answer):
    """What is wrong with the form of ``answer`` (not a number, a pair of the wrong length, ...), or ''."""
    example = "(10, 20)" if q.form == "pair" else "42 or 0.5"
    asked = f"{q.form} {q.means}, e.g. {example}"
    if q.form == "pair":
        if not isinstance(answer, (tuple, list)) or len(answer) != 2:
            size = f" of length {len(answer)}" if isinstance(answer, (tuple, list)) else ""
            return f"the answer should be a {asked}; got {type(answer).__name__}{size} {answer!r}"
        items = answer
    else:
        items = [answer]
    bad = next((a for a in items if not _is_number(a)), None)
    if bad is not None or (q.form == "number" and not _is_number(answer)):
        return f"the answer should be a {asked}; got {type(bad).__name__} {bad!r}"
    return ""


def _is_number(a):
    return isinstance(a, numbers.Real) and not isinstance(a, bool) and numpy.isfinite(a)


def _as_tuple(value):
    return tuple(float(v) for v in value) if isinstance(value, (tuple, list)) else (float(value),)

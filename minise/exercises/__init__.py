"""Exercises with graded feedback: write the SE block's backward passes yourself, answer the
lessons' questions, and train a network with your own code.

notebooks/08_build_your_own_se.ipynb leaves one blank per backward pass; each check calls your
function on three fresh cases (sizes that differ, new values at every call, two in float64 and
one in float32), compares what it returns with the library's layer and with central differences
(``minise.gradcheck``), and names the mistake where the answer matches one it knows:

    >>> from minise import exercises
    >>> exercises.check(rescale_backward)
    rescale_backward: wrong (on the case N=3, C=4, H=5, W=7, float64)
      ✗ ds: matches the catalogued mistake 'ds_missing_x': ds sums dout alone: ...

The blanks, in the order the notebook asks for them (shapes in ``forward``'s docstrings):

    squeeze_backward(dz, x_shape) -> dx
    linear_backward(dout, x, W) -> (dx, dW, db)
    relu_backward(dout, x) -> dx
    sigmoid_backward(dout, x, out) -> dx
    excite_backward(ds, cache, W1, W2) -> (dz, dW1, dW2, db2)      cache from forward.excite
    rescale_backward(dout, x, s) -> (dx, ds)
    se_block_backward(dout, x, W1, W2, b2) -> (dx, dW1, dW2, db2)

and notebooks/09_build_the_layers_you_use.ipynb's, checked against ``nn.textbook``'s loops:

    batch_norm_backward(dout, x, gamma, eps) -> (dx, dgamma, dbeta)         training mode
    conv_backward(dout, x, weight, padding) -> (dx, dweight, dbias)         stride 1

``variants`` holds the catalogue of typical mistakes the checks name (``variants.SLIPS``);
``your_layers.with_your_backward`` puts your SE block's and BatchNorm's backward into a model.

``hint(name)`` gives hints in steps: which output is wrong, which path, the formula, then where
the answer is; ``show_solution(name)`` prints one answer (``minise.exercises.solutions``).
``check_answer("2.2", answer)`` judges the numeric exercises of notebooks 01-04 (``answers``).
"""
import inspect

from . import solutions
from .answers import QUESTIONS, check_answer
from .checks import CASES, check
from .forward import excite, rescale, se_block, squeeze
from .grading import Feedback
from .hints import hint
from .lesson_solutions import SOLUTIONS


def show_solution(name):
    """Print one answer: of blank ``name`` (show_solution("rescale_backward")) or of a lesson's
    exercise (show_solution("2.2"))."""
    if name in SOLUTIONS:
        print(SOLUTIONS[name])
    elif name in CASES:
        print(inspect.getsource(getattr(solutions, name)))
    else:
        raise ValueError(f"no exercise named {name!r}; the exercises are {list(CASES) + list(SOLUTIONS)}")


__all__ = ["CASES", "QUESTIONS", "Feedback", "check", "check_answer", "excite", "hint", "rescale", "se_block",
           "show_solution", "squeeze"]

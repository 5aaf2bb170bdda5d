"""Exercises with graded feedback: write the SE block's backward passes yourself.

notebooks/08_build_your_own_se.ipynb leaves one blank per backward pass; each check calls your
function on small float64 arrays, compares what it returns with the library's layer and with
central differences (``minise.gradcheck``), and says in words what is likely wrong:

    >>> from minise import exercises
    >>> exercises.check(rescale_backward)
    rescale_backward: wrong
      ✗ wrong shape returned for ds: expected (N, C, 1, 1) = (2, 6, 1, 1), got (2, 6, 3, 5). ...

The blanks, in the order the notebook asks for them (shapes in ``forward``'s docstrings):

    squeeze_backward(dz, x_shape) -> dx
    linear_backward(dout, x, W) -> (dx, dW, db)
    relu_backward(dout, x) -> dx
    sigmoid_backward(dout, x, out) -> dx
    excite_backward(ds, cache, W1, W2) -> (dz, dW1, dW2, db2)      cache from forward.excite
    rescale_backward(dout, x, s) -> (dx, ds)
    se_block_backward(dout, x, W1, W2, b2) -> (dx, dW1, dW2, db2)

``hint(name)`` gives hints in steps: which output is wrong, which path, the formula, then where
the answer is; ``show_solution(name)`` prints one answer (``minise.exercises.solutions``).
"""
import inspect

from . import solutions
from .checks import CASES, check
from .forward import excite, rescale, se_block, squeeze
from .grading import Feedback
from .hints import hint


def show_solution(name):
    """Print the solution of blank ``name``, e.g. show_solution("rescale_backward")."""
    if name not in CASES:
        raise ValueError(f"no exercise named {name!r}; the exercises are {list(CASES)}")
    print(inspect.getsource(getattr(solutions, name)))


__all__ = ["CASES", "Feedback", "check", "excite", "hint", "rescale", "se_block", "show_solution", "squeeze"]

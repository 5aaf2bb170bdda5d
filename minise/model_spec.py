"""The text of ``minise summary --model``, parsed into a model; nothing in it is ever run.

A spec is a layer or model name of ``minise.nn`` / ``minise.models``, alone (``se_resnet20``) or
called with literal arguments (``SEBlock(64, 16)``, ``SEBottleneck(64, 16, 16, stride=2)``,
``Unflatten(1, (4, 4))``). A literal is an int, float, str, bool or None, a negated number, or a
tuple or list of literals. Attributes, subscripts, operators, nested calls and every other name
are refused, so the text can reach neither Python's builtins nor arbitrary computation.
"""
import ast

from . import models, nn
from .budget import check_parameters

MAX_LENGTH = 500  # characters: a spec is one short call; bounds the parser's work and the literals
DEFAULT_INPUT_SIZE = (1, 64, 32, 32)
_ATOMS = (int, float, str, bool, type(None))


class ModelSpecError(ValueError):
    """A --model text that is not a known name called with literal arguments."""


def constructors():
    """{name: class or function}: the Module classes of ``minise.nn`` (but Module itself) and
    everything ``minise.models`` exports (blocks, ResNets and the functions that build them)."""
    found = {name: getattr(nn, name) for name in nn.__all__}
    found = {name: value for name, value in found.items()
             if isinstance(value, type) and issubclass(value, nn.Module) and value is not nn.Module}
    found.update({name: getattr(models, name) for name in models.__all__})
    return found


def build_model(text, max_bytes=None):
    """The Module that ``text`` describes. Raises ModelSpecError (a ValueError) naming the fault,
    and, before anything is built, BudgetError where its parameters would take more than
    ``max_bytes`` (None: no budget)."""
    if not isinstance(text, str) or len(text) > MAX_LENGTH:
        raise ModelSpecError(f"expected a layer or model call of at most {MAX_LENGTH} characters")
    text = text.strip()
    try:
        tree = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError) as err:   # ValueError: an int literal of too many digits
        raise ModelSpecError(f"not valid syntax ({err.msg if isinstance(err, SyntaxError) else err})") from None
    if isinstance(tree, ast.Call):
        name, args, keywords = tree.func, tree.args, tree.keywords
    else:
        name, args, keywords = tree, [], []
    known = constructors()
    if not isinstance(name, ast.Name) or name.id not in known:
        raise ModelSpecError(f"expected a layer or model name, such as SEBlock(64, 16) or se_resnet20, "
                             f"optionally called with literal arguments; known names: {', '.join(sorted(known))}")
    if any(k.arg is None for k in keywords):
        raise ModelSpecError("**keyword unpacking is not allowed; write each argument out")
    positional = [_literal(a, text) for a in args]
    named = {k.arg: _literal(k.value, text) for k in keywords}
    if max_bytes is not None:
        check_parameters(name.id, known[name.id], positional, named, max_bytes)
    try:
        model = known[name.id](*positional, **named)
    except (TypeError, ValueError, MemoryError, OverflowError) as err:
        raise ModelSpecError(f"{name.id}: {type(err).__name__}: {err}") from None
    return model


def _literal(node, text, depth=0):
    """The value of a literal argument node of ``text``; ModelSpecError for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, _ATOMS):
        return node.value
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd))
            and isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float)):
        value = node.operand.value
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.Tuple, ast.List)) and depth < 2:
        items = [_literal(item, text, depth + 1) for item in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    raise ModelSpecError(f"argument {ast.get_source_segment(text, node)[:60]!r} is not a literal; arguments must be ints, "
                         "floats, strings, bools, None, or tuples or lists of these")


def fitting_input_size(model):
    """A one-sample input shape that ``model`` accepts: (1, 3, 32, 32) for the CIFAR ResNets,
    (1, F) for Linear and BatchNorm1d, (1, C, 32, 32) for a layer or block of C input channels,
    else (1, 64, 32, 32)."""
    if isinstance(model, models.CifarResNet):
        return (1, 3, 32, 32)
    if isinstance(model, nn.Sequential) and len(model):
        return fitting_input_size(model[0])
    if isinstance(model, nn.Linear):
        return (1, model.in_features)
    if isinstance(model, nn.BatchNorm1d):
        return (1, model.num_features)
    for width in ("input_channels", "in_channels", "num_features"):  # Bottleneck's in_channels is its width
        if isinstance(getattr(model, width, None), int):
            return (1, getattr(model, width), 32, 32)
    return DEFAULT_INPUT_SIZE

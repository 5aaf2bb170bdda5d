"""Inference without the backward pass's memory: ``with no_grad(): logits = model(x)``.

Inside the block, layers keep nothing for backward (no cached input, output or BatchNorm
statistics), so a forward pass holds only the activations still in use. ``backward`` after such
a forward pass raises, as it would before any forward pass.
"""
import contextlib
import threading

_state = threading.local()


def grad_enabled():
    """False inside ``no_grad()`` (in this thread)."""
    return getattr(_state, "enabled", True)


@contextlib.contextmanager
def no_grad():
    before = grad_enabled()
    _state.enabled = False
    try:
        yield
    finally:
        _state.enabled = before

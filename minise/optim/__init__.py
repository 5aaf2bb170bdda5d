"""minise.optim: optimisers and learning-rate schedules, named and behaving as in torch.optim.

    from minise.optim import SGD
    from minise.optim.lr_scheduler import OneCycleLR

Every optimiser updates ``param.data`` in place from ``param.grad``, with the array module
(NumPy or CuPy) of the parameter, and keeps each parameter's dtype.
"""
from . import lr_scheduler
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Adam", "AdamW", "Optimizer", "SGD", "lr_scheduler"]

"""minise: Squeeze-and-Excitation networks with every forward and backward pass written by hand."""
from . import nn
from .gradcheck import gradcheck, numeric_gradient, rel_error
from .summary import summary

__version__ = "0.1.0"

__all__ = ["nn", "gradcheck", "numeric_gradient", "rel_error", "summary", "__version__"]

"""PyTorch's default initialisation, drawn from one seedable generator.

PyTorch initialises Conv2d and Linear weights with ``kaiming_uniform_(w, a=sqrt(5))``:
gain = sqrt(2 / (1 + a^2)) = sqrt(1/3), std = gain / sqrt(fan_in), bound = sqrt(3) * std,
which comes to U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Biases use the same bound.
"""
import math

import numpy

_generator = numpy.random.default_rng()


def manual_seed(seed):
    """Seed the generator that every new layer draws its initial weights from."""
    global _generator
    _generator = numpy.random.default_rng(seed)


def uniform_fan_in(shape, fan_in, dtype="float32"):
    """Draw from U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for weights and biases."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return _generator.uniform(-bound, bound, size=shape).astype(dtype)


def zeros(shape, dtype="float32"):
    """A new host array of zeros (BatchNorm's bias and running mean)."""
    return numpy.zeros(shape, dtype=dtype)


def ones(shape, dtype="float32"):
    """A new host array of ones (BatchNorm's weight and running variance)."""
    return numpy.ones(shape, dtype=dtype)

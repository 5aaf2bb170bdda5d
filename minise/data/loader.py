"""Class-balanced subsets and a mini-batch iterator."""
import math

import numpy

from ..backend import to_numpy


def subset(x, y, n, seed=0, num_classes=None):
    """A class-balanced random subset: ``n // num_classes`` examples of every class.

    x: (N, ...) array; y: int (N,) labels 0..num_classes-1 (num_classes defaults to max(y) + 1).
    Returns (x_sub, y_sub) with n examples, grouped by class in label order: x[idx], y[idx] with
    idx = ``subset_indices(y, n, seed, num_classes)``.
    """
    if len(x) != len(y):
        raise ValueError(f"subset: x has {len(x)} examples but y has {len(y)} labels")
    idx = subset_indices(y, n, seed, num_classes)
    return x[idx], y[idx]


def subset_indices(y, n, seed=0, num_classes=None):
    """The indices of a class-balanced random subset of n examples, grouped by class in label
    order. Reproducible: ``rng = default_rng(seed)`` draws ``rng.permutation(flatnonzero(y == c))
    [:n // num_classes]`` for c = 0, 1, ... in turn, so a seed always picks the same examples."""
    y_host = to_numpy(y)  # index bookkeeping is host work, even when y lives on the GPU
    if num_classes is None:
        num_classes = int(y_host.max()) + 1 if len(y_host) else 0
    if num_classes <= 0 or not isinstance(n, (int, numpy.integer)) or n <= 0 or n % num_classes:
        raise ValueError(f"subset: n must be a positive multiple of the number of classes "
                         f"({num_classes}), got n={n!r}")
    per_class = n // num_classes
    rng = numpy.random.default_rng(seed)
    picked = []
    for c in range(num_classes):
        idx_c = numpy.flatnonzero(y_host == c)
        if len(idx_c) < per_class:
            raise ValueError(f"subset: class {c} has {len(idx_c)} examples, fewer than the "
                             f"{per_class} needed for n={n} over {num_classes} classes")
        picked.append(rng.permutation(idx_c)[:per_class])
    return numpy.concatenate(picked)


def num_batches(n, batch_size, drop_last=False):
    """How many batches :func:`iterate_batches` yields for n examples."""
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def iterate_batches(x, y, batch_size, *, shuffle=True, rng=None, drop_last=False):
    """Iterate over (x_batch, y_batch) pairs, one pass over the data (an epoch).

    x: (N, ...) and y: (N,) arrays, NumPy or CuPy. With ``shuffle`` the order is a new
    ``rng.permutation(N)`` at every call, so call it once per epoch with the same generator
    (``rng=None``: a fresh, unseeded one). The last batch is smaller when batch_size does not
    divide N, unless ``drop_last``. Without shuffle the batches are views, not copies.
    """
    # Checks run here, at the call, not at the first next() as they would in a generator.
    if len(x) != len(y):
        raise ValueError(f"iterate_batches: x has {len(x)} examples but y has {len(y)} labels")
    if not isinstance(batch_size, (int, numpy.integer)) or batch_size <= 0:
        raise ValueError(f"iterate_batches: batch_size must be a positive int, got {batch_size!r}")
    order = None
    if shuffle:
        order = (rng if rng is not None else numpy.random.default_rng()).permutation(len(x))
    return _batches(x, y, batch_size, order, num_batches(len(x), batch_size, drop_last))


def _batches(x, y, batch_size, order, count):
    for b in range(count):
        if order is None:
            part = slice(b * batch_size, (b + 1) * batch_size)
        else:
            part = order[b * batch_size:(b + 1) * batch_size]
        yield x[part], y[part]

"""Running a batch's math whole, or in chunks on the CPU's threads.

    out = per_sample(fn, x)          # fn(x_chunk) for each chunk, written into one output
    dw = batch_sum(fn, x, dout)      # fn(x_chunk, dout_chunk) added up over the chunks

``fn`` is a layer's plain array code; it must treat the samples (axis 0) independently, and
the result is the same as ``fn`` on the whole batch, up to rounding. The plain path runs
``fn`` on the whole batch once: inside ``with whole_batch():`` (the reference the chunked
path is tested against), on the GPU, for small batches and inside a worker thread.

Chunks: with T threads, a batch of B bytes (its first array) is cut into k chunks of nearly
equal size, k = T * ceil(B / (T * CHUNK_BYTES)) (never more than the samples), so that one
chunk's temporaries (a convolution's column matrix, about 9x its input) stay near the cache;
each thread takes a contiguous run of k / T chunks. One thread runs its chunks in turn, which
is faster than the whole batch at once for the same reason. The cut depends on the shapes and
T alone, and sums over chunks are added in chunk order, so a run is deterministic for a given
thread count.
"""
import contextlib
import threading
from concurrent.futures import wait

import numpy

from ..backend import get_array_module
from .threads import get_num_threads, pool

CHUNK_BYTES = 512 << 10      # a chunk's share of the first input, in bytes
MIN_BYTES = 64 << 10         # below this a batch runs whole: a thread hand-off costs more

_worker = threading.local()
_mode = {"whole_batch": False}


@contextlib.contextmanager
def whole_batch():
    """Within ``with``: every batch runs whole, in one call on the caller's thread (the plain
    path), whatever the thread count."""
    before = _mode["whole_batch"]
    _mode["whole_batch"] = True
    try:
        yield
    finally:
        _mode["whole_batch"] = before


def per_sample(fn, *batch):
    """``fn(*batch)`` with the samples split over the threads: an array (or a tuple of arrays),
    batch first, C-contiguous. ``fn`` may return views (a transpose): they are copied once,
    into the result; it must not return a scratch buffer."""
    spans = chunks(batch)
    if spans is None:
        return _contiguous(fn(*batch))
    results = {}
    lock = threading.Lock()

    def run(span):
        part = fn(*(a[span] for a in batch))
        parts = part if isinstance(part, tuple) else (part,)
        with lock:
            if not results:     # the first chunk done makes the outputs: its shapes, whole batch
                n = batch[0].shape[0]
                results["out"] = tuple(numpy.empty((n,) + p.shape[1:], dtype=p.dtype) for p in parts)
        for out, p in zip(results["out"], parts):
            out[span] = p
        return isinstance(part, tuple)

    is_tuple = _run(run, spans)[0]
    return results["out"] if is_tuple else results["out"][0]


def batch_sum(fn, *batch):
    """``fn(*batch)`` where ``fn`` sums over the samples: the chunks' results (arrays or tuples
    of arrays, None entries staying None) added up in chunk order."""
    spans = chunks(batch)
    if spans is None:
        return fn(*batch)
    parts = _run(lambda span: fn(*(a[span] for a in batch)), spans)
    total = parts[0]
    for part in parts[1:]:
        total = tuple(None if t is None else t + p for t, p in zip(total, part)) if isinstance(total, tuple) \
            else total + part
    return total


def chunks(batch):
    """The slices cutting axis 0 of the ``batch`` arrays into chunks, or None: run it whole."""
    first = batch[0]
    if (_mode["whole_batch"] or getattr(_worker, "busy", False) or not isinstance(first, numpy.ndarray)
            or first.ndim == 0 or first.nbytes < MIN_BYTES):
        return None
    n, threads = first.shape[0], get_num_threads()
    per_thread = -(-first.nbytes // (threads * CHUNK_BYTES))
    k = min(n, threads * per_thread)
    if k < 2:
        return None
    bounds = [n * i // k for i in range(k + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def _run(task, spans):
    """``task(span)`` for every span; the results in span order. The spans are dealt out in T
    contiguous runs, one per thread, the caller's thread taking the first: a hand-off per
    thread, not per chunk."""
    threads = min(get_num_threads(), len(spans))
    bounds = [len(spans) * i // threads for i in range(threads + 1)]
    runs = [spans[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def work(run):
        _worker.busy = True                 # a worker never hands work to the pool it runs on
        try:
            return [task(span) for span in run]
        finally:
            _worker.busy = False
    others = [pool().submit(work, run) for run in runs[1:]]
    try:
        results = work(runs[0])
    finally:
        wait(others)                        # no chunk still runs once this call has returned
    for future in others:
        results += future.result()
    return results


def _contiguous(result):
    if isinstance(result, tuple):
        return tuple(_contiguous(r) for r in result)
    return get_array_module(result).ascontiguousarray(result)

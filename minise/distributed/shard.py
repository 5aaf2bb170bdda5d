"""Cutting a global batch into contiguous shards, one per worker."""


def shard(n, rank, size):
    """(lo, hi): worker ``rank`` of ``size`` takes samples lo..hi-1 of a batch of ``n``.

    Shards are contiguous and in rank order, and differ in length by at most one sample
    (rank r takes floor(n*(r+1)/size) - floor(n*r/size)); with more workers than samples some
    shards are empty.
    """
    if not 0 <= rank < size:
        raise ValueError(f"shard: rank must be in [0, {size}), got {rank}")
    return n * rank // size, n * (rank + 1) // size

"""subset and iterate_batches."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minise.data import iterate_batches, num_batches, subset


def labelled(per_class=(30, 25, 40), seed=0):
    """x[i] = [i, label] so that every row tells where it came from; labels shuffled."""
    y = np.concatenate([np.full(k, c, np.int64) for c, k in enumerate(per_class)])
    y = np.random.default_rng(seed).permutation(y)
    return np.stack([np.arange(len(y)), y], axis=1), y


def test_subset_balanced_and_aligned():
    x, y = labelled()
    xs, ys = subset(x, y, 60, seed=3)
    assert np.bincount(ys).tolist() == [20, 20, 20]
    assert ys.tolist() == [0] * 20 + [1] * 20 + [2] * 20  # grouped in class order
    np.testing.assert_array_equal(xs[:, 1], ys)            # rows and labels stay paired
    assert len(set(xs[:, 0])) == 60                        # no example twice


def test_subset_follows_the_documented_recipe():
    x, y = labelled()
    rng = np.random.default_rng(11)
    idx = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:10] for c in range(3)])
    xs, ys = subset(x, y, 30, seed=11)
    np.testing.assert_array_equal(xs, x[idx])
    np.testing.assert_array_equal(ys, y[idx])


def test_subset_reproducible_and_seed_dependent():
    x, y = labelled()
    a, _ = subset(x, y, 30, seed=0)
    b, _ = subset(x, y, 30, seed=0)
    c, _ = subset(x, y, 30, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_subset_errors():
    x, y = labelled()
    with pytest.raises(ValueError, match=r"\(3\).*n=31"):
        subset(x, y, 31)
    with pytest.raises(ValueError, match=r"class 1\b.*\b25\b.*\b26\b"):
        subset(x, y, 78)
    with pytest.raises(ValueError, match=r"positive.*n=0"):
        subset(x, y, 0)
    with pytest.raises(ValueError, match=r"\b94\b.*\b95\b"):
        subset(x[1:], y, 30)
    with pytest.raises(ValueError, match=r"class 3\b.*\b0\b"):
        subset(x, y, 40, num_classes=4)


def test_batches_cover_each_index_once_with_partial_last_batch():
    x, y = np.arange(10) * 10, np.arange(10)
    batches = list(iterate_batches(x, y, 4, rng=np.random.default_rng(0)))
    assert [len(yb) for _, yb in batches] == [4, 4, 2]
    seen = np.concatenate([yb for _, yb in batches])
    assert sorted(seen.tolist()) == list(range(10))
    assert seen.tolist() != list(range(10))  # shuffled
    for xb, yb in batches:
        np.testing.assert_array_equal(xb, yb * 10)


def test_drop_last_and_num_batches():
    x = y = np.arange(10)
    batches = list(iterate_batches(x, y, 4, rng=np.random.default_rng(0), drop_last=True))
    assert [len(b) for _, b in batches] == [4, 4] and num_batches(10, 4, drop_last=True) == 2
    assert num_batches(10, 4) == 3 and num_batches(8, 4) == 2 and num_batches(8, 4, True) == 2


def test_reshuffles_every_epoch_and_is_reproducible():
    x = y = np.arange(50)
    rng = np.random.default_rng(5)
    epoch1 = np.concatenate([b for _, b in iterate_batches(x, y, 8, rng=rng)])
    epoch2 = np.concatenate([b for _, b in iterate_batches(x, y, 8, rng=rng)])
    assert not np.array_equal(epoch1, epoch2)
    rng = np.random.default_rng(5)
    again = np.concatenate([b for _, b in iterate_batches(x, y, 8, rng=rng)])
    np.testing.assert_array_equal(epoch1, again)


def test_no_shuffle_keeps_order_and_checks_early():
    x = y = np.arange(7)
    assert [b.tolist() for _, b in iterate_batches(x, y, 3, shuffle=False)] == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ValueError, match="batch_size"):
        iterate_batches(x, y, 0)  # raised at the call, before any next()
    with pytest.raises(ValueError, match=r"\b7\b.*\b6\b"):
        iterate_batches(x, y[:6], 2)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 60), batch_size=st.integers(1, 70), drop_last=st.booleans(), shuffle=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_batches_property(n, batch_size, drop_last, shuffle, seed):
    y = np.arange(n)
    batches = [b for _, b in iterate_batches(y, y, batch_size, shuffle=shuffle,
                                             rng=np.random.default_rng(seed), drop_last=drop_last)]
    assert len(batches) == num_batches(n, batch_size, drop_last)
    assert all(len(b) == batch_size for b in batches[:-1])
    seen = np.concatenate(batches) if batches else np.array([], int)
    assert len(set(seen.tolist())) == len(seen)                      # never twice in an epoch
    assert len(seen) == (n - n % batch_size if drop_last else n)     # all, or all but the remainder

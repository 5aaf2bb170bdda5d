"""per_sample and batch_sum: chunks on threads give what the whole batch gives."""
import numpy as np
import pytest

from minise.execution import batch, batch_sum, per_sample


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
@pytest.mark.parametrize("n", [1, 2, 5, 7, 130])
def test_per_sample_writes_every_chunk_where_it_belongs(num_threads, threads, n):
    num_threads(threads)
    x = np.random.default_rng(0).standard_normal((n, 3, 4))
    y = np.random.default_rng(1).standard_normal((n, 3, 4))
    out, both = per_sample(lambda a: a.transpose(0, 2, 1) * 2, x), per_sample(lambda a, b: (a + b, a.sum(2)), x, y)
    np.testing.assert_array_equal(out, x.transpose(0, 2, 1) * 2)
    assert out.flags.c_contiguous and out.shape == (n, 4, 3)
    np.testing.assert_array_equal(both[0], x + y)
    np.testing.assert_array_equal(both[1], x.sum(2))


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
@pytest.mark.parametrize("n", [1, 2, 7, 130])
def test_batch_sum_adds_the_chunks(num_threads, threads, n):
    num_threads(threads)
    x = np.random.default_rng(0).standard_normal((n, 3, 4))
    total, (first, nothing) = batch_sum(lambda a: a.sum(axis=(0, 2)), x), batch_sum(lambda a: (a.sum(0), None), x)
    np.testing.assert_allclose(total, x.sum(axis=(0, 2)), rtol=1e-13)
    np.testing.assert_allclose(first, x.sum(0), rtol=1e-13)
    assert nothing is None


def test_chunks_cut_the_batch_into_nearly_equal_parts_by_threads_and_bytes(monkeypatch):
    from minise.execution import threads
    monkeypatch.setattr(batch, "MIN_BYTES", 64 << 10)
    monkeypatch.setattr(batch, "CHUNK_BYTES", 512 << 10)
    before = threads.get_num_threads()
    try:
        threads.set_num_threads(4)
        x = np.empty((128, 16, 32, 32), dtype=np.float32)                  # 8 MiB: 16 chunks of 8
        spans = batch.chunks((x,))
        assert len(spans) == 16 and {s.stop - s.start for s in spans} == {8}
        assert spans[0].start == 0 and spans[-1].stop == 128
        assert [s.stop for s in spans[:-1]] == [s.start for s in spans[1:]]
        odd = batch.chunks((np.empty((13, 16, 32, 32), dtype=np.float32),))   # 13 samples, 4 threads
        assert len(odd) == 4 and sorted(s.stop - s.start for s in odd) == [3, 3, 3, 4]
        assert batch.chunks((np.empty((2, 4), dtype=np.float32),)) is None     # tiny: run whole
        threads.set_num_threads(1)
        assert len(batch.chunks((x,))) == 16                                   # one thread: chunks in turn
        with batch.whole_batch():
            assert batch.chunks((x,)) is None                                  # the plain path
    finally:
        threads.set_num_threads(before)


def test_a_chunk_that_fails_raises_in_the_caller(num_threads):
    num_threads(2)

    def fails_on_second_half(a):
        if a[0, 0] >= 4:
            raise ValueError("sample 4 is bad")
        return a

    with pytest.raises(ValueError, match="sample 4"):
        per_sample(fails_on_second_half, np.arange(8.0)[:, None])


def test_work_inside_a_chunk_is_not_handed_to_the_pool_again(num_threads):
    """A per-sample function that itself calls per_sample runs its inner call whole, in its own
    thread: waiting on the pool from inside the pool could deadlock."""
    num_threads(2)
    x = np.arange(16.0).reshape(8, 2)
    out = per_sample(lambda a: per_sample(lambda b: b * 2, a) + 1, x)
    np.testing.assert_array_equal(out, x * 2 + 1)

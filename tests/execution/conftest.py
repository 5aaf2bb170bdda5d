import pytest

from minise.execution import batch, threads


@pytest.fixture
def num_threads():
    """Set minise's thread count for one test (restored after), with chunks forced even on the
    tiny float64 shapes of a test: every batch of two or more samples is cut."""
    before = threads.get_num_threads()
    mp = pytest.MonkeyPatch()
    mp.setattr(batch, "MIN_BYTES", 0)
    mp.setattr(batch, "CHUNK_BYTES", 1)

    def use(n):
        threads.set_num_threads(n)
        return n

    yield use
    mp.undo()
    threads.set_num_threads(before)

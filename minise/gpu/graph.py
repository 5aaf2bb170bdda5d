"""A whole training step recorded as a CUDA graph and replayed with one launch."""
import contextlib

from .common import cupy


class CudaGraph:
    """GPU work recorded once as a CUDA graph and replayed with one launch.

        graph = CudaGraph()
        graph.run(step)       # an ordinary call, on the graph's stream and memory pool
        graph.record(step)    # records the kernels step() launches; runs none of them
        graph.replay()        # runs them all, on the same arrays

    A replay repeats the recorded kernels on the recorded addresses, so ``fn`` must work on
    arrays that outlive the graph (updating state in place) and must not read values back to
    the host. Everything runs on one stream that is ordered with the default stream, and draws
    from a private memory pool: memory the recorded kernels use stays reserved for them,
    whatever other code allocates or frees between replays. Run ``fn`` once with ``run`` before
    ``record``: that compiles its kernels and fills the pool.
    """

    def __init__(self):
        self.pool = cupy.cuda.MemoryPool()
        self.stream = cupy.cuda.Stream()      # a blocking stream: no overlap with default-stream work
        self.graph = None

    def run(self, fn):
        with self._context():
            return fn()

    def record(self, fn):
        with self._context():
            # "relaxed": a first-time allocation inside fn may call cudaMalloc, which is allowed
            self.stream.begin_capture(cupy.cuda.runtime.streamCaptureModeRelaxed)
            try:
                fn()
            except BaseException:
                self.stream.end_capture()     # leave the stream usable; the partial graph is dropped
                raise
            self.graph = self.stream.end_capture()

    def replay(self):
        self.graph.launch(self.stream)

    @contextlib.contextmanager
    def _context(self):
        """The graph's memory pool and stream."""
        with cupy.cuda.using_allocator(self.pool.malloc), self.stream:
            yield

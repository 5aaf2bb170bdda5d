"""Softmax cross-entropy, the classification loss."""
from ..backend import device_of, get_array_module, is_array
from ..execution import accelerated
from .validate import check_input, describe
from .module import Module


class CrossEntropyLoss(Module):
    """CrossEntropyLoss(label_smoothing=0.0), mean over the batch.

    logits: (N, K) floats, target: (N,) integer class indices -> a Python float
    (``forward_array``: the same as a 0-d array, left on the device).
    With p = softmax(logits) and q = (1 - e) * onehot(target) + e / K (e = label_smoothing):
        loss = -(1/N) sum_n sum_k q[n, k] * log p[n, k]
        dlogits = (p - q) / N                 (returned by backward())
    log p is computed as logits - max - log(sum(exp(logits - max))), which never overflows.
    """

    def __init__(self, label_smoothing=0.0):
        super().__init__()
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing!r}")
        self.label_smoothing = label_smoothing
        self._dlogits = None

    def forward(self, logits, target):
        check_input(self, logits, ndim=2, name="logits")
        xp = get_array_module(logits)
        N, K = logits.shape
        if not is_array(target) or target.dtype.kind not in "iu":
            raise TypeError(f"{describe(self)}: target must be an integer array of class indices, got "
                            f"{getattr(target, 'dtype', type(target).__name__)}")
        if target.shape != (N,):
            raise ValueError(f"{describe(self)}: target must have shape {(N,)} to match logits "
                             f"{tuple(logits.shape)}, got {tuple(target.shape)}")
        if get_array_module(target) is not xp:
            raise TypeError(f"{describe(self)}: logits and target must be on the same device, got logits on "
                            f"{device_of(logits)} and target on {device_of(target)}")
        if N and (int(target.min()) < 0 or int(target.max()) >= K):
            raise ValueError(f"{describe(self)}: target values must be in [0, {K}), got range "
                             f"[{int(target.min())}, {int(target.max())}]")
        loss = float(self.forward_array(logits, target))
        if loss != loss or loss in (float("inf"), float("-inf")):
            bad = int((~xp.isfinite(logits)).sum())
            raise FloatingPointError(f"{describe(self)}: the loss is {loss}; the logits hold {bad} "
                                     f"non-finite value(s) (NaN or inf) - check the learning rate and input")
        return loss

    def forward_array(self, logits, target):
        """The loss as a 0-d array on the logits' device, with no checks that read values back
        to the host: no synchronisation, so a CUDA graph can record it (``minise.step``).
        ``forward`` is this plus the checks."""
        loss, self._dlogits = softmax_cross_entropy(logits, target, self.label_smoothing)
        return loss

    def backward(self, dout=None):
        """Gradient of the mean loss with respect to the logits: (N, K)."""
        if self._dlogits is None:
            raise RuntimeError(f"{describe(self)}: backward called before forward (nothing is cached)")
        return self._dlogits

    def extra_repr(self):
        return f"label_smoothing={self.label_smoothing}"


@accelerated("softmax_cross_entropy")
def softmax_cross_entropy(logits, target, label_smoothing):
    """(loss, dlogits) for logits (N, K) and integer targets (N,): the mean loss as a 0-d
    array and its gradient (p - q) / N, (N, K). On the GPU: one kernel (``minise.gpu.loss``)."""
    xp = get_array_module(logits)
    N, K = logits.shape
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    e = label_smoothing
    onehot = (target[:, None] == xp.arange(K)).astype(logits.dtype)     # (N, K)
    q = onehot * (1 - e) + e / K
    # -sum(q * log p), written so that a masked class (logit -inf, q = 0) adds 0, not NaN
    loss = -(q * xp.where(q > 0, log_probs, 0)).sum()
    return loss / N, (xp.exp(log_probs) - q) / N

"""Train with your own code: your backward passes inside a real network.

``with_your_backward(model, se_block_backward=..., batch_norm_backward=...)`` returns ``model``
with every SE block (and, where you give one, every BatchNorm2d) replaced by a layer whose
forward is the library's and whose backward calls your function. Nothing in the library's layer
files changes: the replacements are the subclasses below, which override ``backward_math``.

    your se_block_backward(dout, x, W1, W2, b2) -> (dx, dW1, dW2, db2)      (notebook 08)
    your batch_norm_backward(dout, x, gamma, eps) -> (dx, dgamma, dbeta)    (notebook 09)

``loss_curve(model, x, y, ...)`` trains with the library's stable pieces (``optim.SGD``,
``step.TrainStep``, ``data.iterate_batches``) and returns the loss of every step.
"""
import numpy

from ..backend import device_of
from ..data import iterate_batches
from ..nn import BatchNorm2d, SEBlock
from ..optim import SGD
from ..step import TrainStep


class YourSEBlock(SEBlock):
    """An SEBlock whose backward is ``backward(dout, x, W1, W2, b2) -> (dx, dW1, dW2, db2)``;
    the parameter gradients are added into ``.grad``, as every layer does."""

    def __init__(self, like, backward):
        if like.bias != (False, True):
            raise ValueError(f"YourSEBlock: your se_block_backward takes W1, W2 and b2 (bias=(False, True)); "
                             f"this block has bias={like.bias}")
        super().__init__(like.input_channels, like.reduction_ratio, like.hidden, like.squeeze_op,
                         like.excitation_op, like.bias)
        _copy_state(self, like)
        self.your_backward = backward

    def backward_math(self, dout):
        W1, W2, b2 = self.sequence[2].weight, self.sequence[4].weight, self.sequence[4].bias
        dx, dW1, dW2, db2 = self.your_backward(dout, self._x, W1.data, W2.data, b2.data)
        W1.grad += dW1
        W2.grad += dW2
        b2.grad += db2
        return dx


class YourBatchNorm2d(BatchNorm2d):
    """A BatchNorm2d whose training-mode backward is ``backward(dout, x, gamma, eps) -> (dx,
    dgamma, dbeta)``; in eval mode it is the library's."""

    keeps_input = True      # your backward takes x itself

    def __init__(self, like, backward):
        super().__init__(like.num_features, like.eps, like.momentum)
        _copy_state(self, like)
        self.your_backward = backward

    def backward_math(self, dout):
        if not self.training:
            return super().backward_math(dout)
        dx, dgamma, dbeta = self.your_backward(dout, self._x, self.weight.data, self.eps)
        self.weight.grad += dgamma
        self.bias.grad += dbeta
        return dx


def with_your_backward(model, se_block_backward=None, batch_norm_backward=None):
    """``model`` with its SEBlocks and BatchNorm2d layers replaced by ones that call your backward
    functions (those given; None leaves the library's). Returns the model, changed in place."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, SEBlock) and se_block_backward is not None:
                _replace(parent, name, YourSEBlock(child, se_block_backward))
            elif isinstance(child, BatchNorm2d) and batch_norm_backward is not None:
                _replace(parent, name, YourBatchNorm2d(child, batch_norm_backward))
    return model


def _copy_state(new, like):
    """Give ``new`` the device, dtype and state of ``like``."""
    weight = next(like.parameters()).data
    new.to(device_of(weight), weight.dtype)
    new.load_state_dict(like.state_dict())


def _replace(parent, name, new):
    """Put ``new`` in the place of child ``name``, keeping the children's order."""
    new.train(parent.training)
    parent._modules[name] = new
    object.__setattr__(parent, name, new)


def loss_curve(model, x, y, epochs, batch_size=32, lr=0.05, momentum=0.9, seed=0):
    """Train ``model`` on (x, y) for ``epochs`` with SGD; returns the training loss of every step.
    The batch order comes from ``seed``, so two models see the same batches."""
    step = TrainStep(model, SGD(model.parameters(), lr=lr, momentum=momentum))
    rng = numpy.random.default_rng(seed)
    losses = []
    for _ in range(epochs):
        for xb, yb in iterate_batches(x, y, batch_size, rng=rng, drop_last=True):
            step.reset()
            step(xb, yb)
            loss_sum, _, seen = step.totals()
            losses.append(loss_sum / seen)
    return numpy.array(losses)

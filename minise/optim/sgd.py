"""Stochastic gradient descent, with momentum, dampening, Nesterov momentum and weight decay."""
from ..execution import accelerated
from .optimizer import Optimizer, check_number


class SGD(Optimizer):
    r"""SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False).

    The same algorithm as ``torch.optim.SGD``. With learning rate :math:`\gamma`, weight decay
    :math:`\lambda`, momentum :math:`\mu` and dampening :math:`\tau`, each step does, for every
    parameter :math:`\theta` with gradient :math:`g_t = \nabla_\theta f(\theta_{t-1})`:

    .. math::
        g_t &\leftarrow g_t + \lambda\,\theta_{t-1}           && \text{if } \lambda \ne 0
              \text{ (L2 penalty, added to the gradient)} \\
        b_t &\leftarrow \begin{cases} g_t & t = 1 \\
                                      \mu\, b_{t-1} + (1-\tau)\, g_t & t > 1 \end{cases}
                                                               && \text{if } \mu \ne 0 \\
        g_t &\leftarrow \begin{cases} g_t + \mu\, b_t & \text{nesterov} \\
                                      b_t & \text{otherwise} \end{cases}
                                                               && \text{if } \mu \ne 0 \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\, g_t

    Note that the momentum buffer starts as the first gradient itself (not as
    :math:`(1-\tau) g_1`), as in PyTorch. The buffer is kept in
    ``optimizer.state[p]["momentum_buffer"]``.

    ``p.grad`` is only read, never modified; ``p.data`` is updated in place.
    Parameters with ``requires_grad=False`` are skipped.
    """

    _device_keys = ("lr", "momentum")   # what a one-cycle schedule changes every step

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False):
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
        }
        super().__init__(params, defaults)

    def _validate_group(self, group):
        lr, momentum = group["lr"], group["momentum"]
        dampening, weight_decay = group["dampening"], group["weight_decay"]
        for key in ("lr", "momentum", "dampening", "weight_decay"):
            check_number("SGD", key, group[key])
        if lr < 0.0:
            raise ValueError(f"SGD: invalid learning rate {lr} (must be >= 0)")
        if momentum < 0.0:
            raise ValueError(f"SGD: invalid momentum value {momentum} (must be >= 0)")
        if weight_decay < 0.0:
            raise ValueError(f"SGD: invalid weight_decay value {weight_decay} (must be >= 0)")
        if group["nesterov"] and (momentum <= 0 or dampening != 0):
            raise ValueError(
                f"SGD: Nesterov momentum requires a momentum > 0 and zero dampening "
                f"(got momentum={momentum}, dampening={dampening})"
            )

    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for i, group in enumerate(self.param_groups):
            lr, momentum = self._value(i, "lr"), self._value(i, "momentum")   # floats, or device scalars
            dampening = float(group["dampening"])
            weight_decay = float(group["weight_decay"])
            nesterov = group["nesterov"]

            ready = ([], [], [])      # parameters, gradients and momentum buffers: one update for all
            for p in self._params_to_update(group):
                state = self.state.get(p, {})
                self._check_state_device(p, state)
                buf = state.get("momentum_buffer")
                if group["momentum"] != 0 and buf is not None:
                    for arrays, a in zip(ready, (p.data, p.grad, buf)):
                        arrays.append(a)
                    continue
                g = p.grad
                if weight_decay != 0:
                    g = g + weight_decay * p.data                 # g <- g + lambda*theta (new array)
                if group["momentum"] != 0:
                    buf = g.copy()                                # b_1 = g_1
                    self.state.setdefault(p, {})["momentum_buffer"] = buf
                    g = g + momentum * buf if nesterov else buf   # g <- g + mu*b, or g <- b
                p.data -= lr * g                                  # theta <- theta - gamma*g, in place
            if ready[0]:
                momentum_update_all(*ready, lr, momentum, weight_decay, dampening, nesterov)
        return loss


@accelerated("momentum_update_all")
def momentum_update_all(params, grads, bufs, lr, momentum, weight_decay, dampening, nesterov):
    """``momentum_update`` of each parameter in the lists. On the GPU: one kernel for all of
    them (``minise.gpu.sgd``)."""
    for param, grad, buf in zip(params, grads, bufs):
        momentum_update(param, grad, buf, lr, momentum, weight_decay, dampening, nesterov)


@accelerated("momentum_update")
def momentum_update(param, grad, buf, lr, momentum, weight_decay, dampening, nesterov):
    """A step once the momentum buffer ``buf`` exists; ``param`` and ``buf`` change in place.
    On the GPU: one kernel (``minise.gpu.sgd``)."""
    g = grad
    if weight_decay != 0:
        g = g + weight_decay * param                      # g <- g + lambda*theta (new array)
    buf *= momentum                                       # b <- mu*b ...
    buf += (1 - dampening) * g                            #      ... + (1 - tau)*g
    g = g + momentum * buf if nesterov else buf           # g <- g + mu*b, or g <- b
    param -= lr * g                                       # theta <- theta - gamma*g, in place

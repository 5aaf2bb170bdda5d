"""Adam and AdamW (Adam with decoupled weight decay), with the optional AMSGrad variant."""
from ..backend import get_array_module
from .optimizer import Optimizer, check_number


class Adam(Optimizer):
    r"""Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False).

    The same algorithm as ``torch.optim.Adam`` (and, with ``decoupled_weight_decay=True``,
    as ``torch.optim.AdamW``). With learning rate :math:`\gamma`, weight decay :math:`\lambda`
    and :math:`m_0 = v_0 = \hat v^{\max}_0 = 0`, step :math:`t = 1, 2, \dots` does, for every
    parameter :math:`\theta` with gradient :math:`g_t`:

    .. math::
        g_t &\leftarrow g_t + \lambda\,\theta_{t-1}
              && \text{Adam: L2 penalty added to the gradient} \\
        \theta_{t-1} &\leftarrow (1 - \gamma\lambda)\,\theta_{t-1}
              && \text{AdamW: decoupled decay, applied to the weights} \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\, g_t
              && \text{first moment (mean) estimate} \\
        v_t &= \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2
              && \text{second moment (uncentred variance) estimate} \\
        v^{\max}_t &= \max(v^{\max}_{t-1}, v_t)
              && \text{amsgrad only; then used in place of } v_t \\
        \theta_t &= \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\,
              \frac{m_t}{\sqrt{v_t}\,/\sqrt{1-\beta_2^t} + \epsilon}

    :math:`1-\beta_1^t` and :math:`1-\beta_2^t` are the bias corrections: ``m`` and ``v``
    start at zero, so early on they underestimate the moments by exactly those factors.
    Note that :math:`\epsilon` is added *after* dividing :math:`\sqrt{v_t}` by
    :math:`\sqrt{1-\beta_2^t}`, as in PyTorch.

    State per parameter (in ``optimizer.state[p]``): ``"step"`` (an int), ``"exp_avg"``
    (:math:`m`), ``"exp_avg_sq"`` (:math:`v`) and, with amsgrad, ``"max_exp_avg_sq"``.

    ``decoupled_weight_decay`` is keyword-only, as in PyTorch; ``AdamW`` sets it.
    """

    _scalar_state_keys = ("step",)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False,
                 *, decoupled_weight_decay=False):
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults)

    def _validate_group(self, group):
        name = type(self).__name__
        for key in ("lr", "eps", "weight_decay"):
            check_number(name, key, group[key])
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {betas!r}")
        for i, beta in enumerate(betas):
            check_number(name, f"betas[{i}]", beta)
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{name}: invalid beta parameter at index {i}: {beta} (must be in [0, 1))")
        if group["lr"] < 0.0:
            raise ValueError(f"{name}: invalid learning rate {group['lr']} (must be >= 0)")
        if group["eps"] < 0.0:
            raise ValueError(f"{name}: invalid epsilon value {group['eps']} (must be >= 0)")
        if group["weight_decay"] < 0.0:
            raise ValueError(f"{name}: invalid weight_decay value {group['weight_decay']} (must be >= 0)")

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        for group in self.param_groups:  # JSON turns the betas tuple into a list
            group["betas"] = tuple(group["betas"])

    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            lr = float(group["lr"])
            beta1, beta2 = (float(b) for b in group["betas"])
            eps = float(group["eps"])
            weight_decay = float(group["weight_decay"])
            amsgrad = group["amsgrad"]
            decoupled = group["decoupled_weight_decay"]

            for p in self._params_to_update(group):
                xp = get_array_module(p.data)
                state = self.state.setdefault(p, {})
                if not state:                                     # lazy init on the first step
                    state["step"] = 0
                    state["exp_avg"] = xp.zeros_like(p.data)
                    state["exp_avg_sq"] = xp.zeros_like(p.data)
                if amsgrad and "max_exp_avg_sq" not in state:
                    state["max_exp_avg_sq"] = xp.zeros_like(p.data)
                self._check_state_device(p, state)
                m, v = state["exp_avg"], state["exp_avg_sq"]

                state["step"] += 1
                t = state["step"]
                g = p.grad
                if weight_decay != 0:
                    if decoupled:
                        p.data *= 1 - lr * weight_decay           # AdamW: theta <- (1 - gamma*lambda)*theta
                    else:
                        g = g + weight_decay * p.data             # Adam: g <- g + lambda*theta (new array)

                m += (1 - beta1) * (g - m)                        # m <- beta1*m + (1-beta1)*g  (as torch's lerp)
                v *= beta2                                        # v <- beta2*v ...
                v += (1 - beta2) * g * g                          #      ... + (1-beta2)*g^2

                bias_correction1 = 1 - beta1 ** t                 # 1 - beta1^t
                bias_correction2 = 1 - beta2 ** t                 # 1 - beta2^t
                step_size = lr / bias_correction1                 # gamma / (1 - beta1^t)
                if amsgrad:
                    v_max = state["max_exp_avg_sq"]
                    xp.maximum(v_max, v, out=v_max)               # v_max <- max(v_max, v)
                    v = v_max
                denom = xp.sqrt(v)                                # sqrt(v) / sqrt(1 - beta2^t) + eps
                denom /= bias_correction2 ** 0.5
                denom += eps
                p.data -= step_size * m / denom                   # theta <- theta - step_size * m / denom
        return loss


class AdamW(Adam):
    r"""AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False).

    Adam with *decoupled* weight decay (Loshchilov & Hutter): instead of adding
    :math:`\lambda\theta` to the gradient (where Adam's normalisation would rescale it), the
    weights are shrunk directly before the Adam update,

    .. math::
        \theta_{t-1} \leftarrow (1 - \gamma\lambda)\,\theta_{t-1},

    then the update proceeds as in :class:`Adam` with no weight decay. The same algorithm as
    ``torch.optim.AdamW``, including its default ``weight_decay=1e-2``.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         decoupled_weight_decay=True)

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        for group in self.param_groups:  # AdamW always decouples, whatever the checkpoint says
            group["decoupled_weight_decay"] = True

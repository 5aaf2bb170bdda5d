r"""Learning-rate schedules, stepped as in PyTorch.

Usage is exactly ``torch.optim.lr_scheduler``'s::

    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = OneCycleLR(optimizer, max_lr=0.1, total_steps=len(loader) * epochs,
                           pct_start=0.15, anneal_strategy="linear")
    for x, y in batches:
        ...                      # forward, backward
        optimizer.step()         # uses the current group["lr"]
        scheduler.step()         # then moves the lr on to the next step's value

Constructing a scheduler sets every group's ``"lr"`` to the schedule's value at step 0 (and
records the group's starting lr as ``group["initial_lr"]``, the schedule's ``base_lr``).
Each ``scheduler.step()`` adds one to ``last_epoch`` (the number of steps taken; PyTorch's
name, although it counts batches for per-batch schedules) and writes the new learning rates
into ``optimizer.param_groups``; ``get_last_lr()`` returns them.

Every schedule here is written in **closed form**: the lr at step :math:`t` is computed from
the group's ``base_lr`` and :math:`t` alone (PyTorch computes several of them recursively, from
the previous lr; the values agree to rounding, about 1e-15 relative). So the formula in each
docstring is the code, and a resumed run reproduces an uninterrupted one bit for bit. The
price: two schedulers on one optimiser do not compose (the last to step wins), as
``SequentialLR``/``ChainedScheduler`` would need.
"""
import bisect
import copy
import math
import numbers

from .optimizer import Optimizer


class LRScheduler:
    """Base class. Subclasses implement ``get_lr()``: the learning rate of every parameter group
    at step ``self.last_epoch``, from ``self.base_lrs``."""

    def __init__(self, optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected a minise Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = -1
        self.step()  # step 0: set the schedule's initial learning rates

    def get_lr(self):
        """The learning rate of each group at step ``self.last_epoch``."""
        raise NotImplementedError

    def step(self):
        """Advance the schedule one step. Call it after ``optimizer.step()``."""
        self.last_epoch += 1
        self._apply()

    def _apply(self):
        """Write the learning rates for ``self.last_epoch`` into the optimiser's groups."""
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self):
        """The learning rates the last ``step()`` (or the constructor) set, one per group."""
        return list(self._last_lr)

    def state_dict(self):
        """Everything but the optimiser: ``last_epoch``, ``base_lrs`` and the hyper-parameters.

        Only numbers, strings, lists and dicts, so it can be stored as JSON."""
        return {key: copy.deepcopy(value) for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state_dict):
        """Restore a ``state_dict()``, and set the optimiser's lrs to the restored step's values.

        (The second part means it does not matter whether the optimiser's state is loaded
        before or after the scheduler is constructed.)
        """
        base_lrs = state_dict.get("base_lrs")
        if base_lrs is None or "last_epoch" not in state_dict:
            raise ValueError(f"{type(self).__name__}.load_state_dict: expected a dict with 'base_lrs' and 'last_epoch'")
        if len(base_lrs) != len(self.optimizer.param_groups):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: the state dict is for {len(base_lrs)} parameter "
                f"group(s), the optimizer has {len(self.optimizer.param_groups)}"
            )
        self.__dict__.update(copy.deepcopy(state_dict))
        self._apply()

    def __repr__(self):
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, last_lr={self.get_last_lr()})"


def _positive_int(value, name, owner):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")
    return int(value)


class StepLR(LRScheduler):
    r"""StepLR(optimizer, step_size, gamma=0.1): decay the lr by ``gamma`` every ``step_size`` steps.

    .. math:: \eta_t = \eta_{\text{base}} \cdot \gamma^{\lfloor t / \text{step\_size} \rfloor}
    """

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size = _positive_int(step_size, "step_size", "StepLR")
        self.gamma = gamma
        super().__init__(optimizer)

    def get_lr(self):
        return [base_lr * self.gamma ** (self.last_epoch // self.step_size) for base_lr in self.base_lrs]


class MultiStepLR(LRScheduler):
    r"""MultiStepLR(optimizer, milestones, gamma=0.1): decay the lr by ``gamma`` at each milestone.

    .. math:: \eta_t = \eta_{\text{base}} \cdot \gamma^{\#\{\text{milestones} \le t\}}

    A milestone listed twice decays twice, as in PyTorch. (``self.milestones`` is a sorted
    list rather than PyTorch's ``Counter``, so that the state dict survives JSON.)
    """

    def __init__(self, optimizer, milestones, gamma=0.1):
        milestones = list(milestones)
        for m in milestones:
            if isinstance(m, bool) or not isinstance(m, numbers.Integral):
                raise ValueError(f"MultiStepLR: milestones must be integers, got {milestones!r}")
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = gamma
        super().__init__(optimizer)

    def get_lr(self):
        passed = bisect.bisect_right(self.milestones, self.last_epoch)  # how many milestones are <= t
        return [base_lr * self.gamma ** passed for base_lr in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    r"""CosineAnnealingLR(optimizer, T_max, eta_min=0): half a cosine from ``base_lr`` down to ``eta_min``.

    .. math::
        \eta_t = \eta_{\min} + \tfrac12 (\eta_{\text{base}} - \eta_{\min})
                 \left(1 + \cos\frac{\pi t}{T_{\max}}\right)

    The lr reaches ``eta_min`` at :math:`t = T_{\max}`; stepping further follows the cosine
    back up, as PyTorch does. (PyTorch computes this recursively; the closed form agrees to
    rounding.)
    """

    def __init__(self, optimizer, T_max, eta_min=0.0):
        self.T_max = _positive_int(T_max, "T_max", "CosineAnnealingLR")
        self.eta_min = eta_min
        super().__init__(optimizer)

    def get_lr(self):
        cos_factor = (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
        return [self.eta_min + (base_lr - self.eta_min) * cos_factor for base_lr in self.base_lrs]


class LinearLR(LRScheduler):
    r"""LinearLR(optimizer, start_factor=1/3, end_factor=1.0, total_iters=5): linear warm-up (or decay).

    The lr is ``base_lr`` times a factor that moves linearly from ``start_factor`` to
    ``end_factor`` over ``total_iters`` steps, then stays there:

    .. math::
        \eta_t = \eta_{\text{base}} \left(s + (e - s)\,\frac{\min(t, T)}{T}\right)
    """

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5):
        if not 0 < start_factor <= 1:
            raise ValueError(f"LinearLR: start_factor must be in (0, 1], got {start_factor}")
        if not 0 <= end_factor <= 1:
            raise ValueError(f"LinearLR: end_factor must be in [0, 1], got {end_factor}")
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = _positive_int(total_iters, "total_iters", "LinearLR")
        super().__init__(optimizer)

    def get_lr(self):
        fraction = min(self.total_iters, self.last_epoch) / self.total_iters
        factor = self.start_factor + (self.end_factor - self.start_factor) * fraction
        return [base_lr * factor for base_lr in self.base_lrs]


class OneCycleLR(LRScheduler):
    r"""The 1cycle policy (Smith & Topin), the same schedule as ``torch.optim.lr_scheduler.OneCycleLR``.

    ``OneCycleLR(optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None,
    pct_start=0.3, anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85,
    max_momentum=0.95, div_factor=25.0, final_div_factor=1e4, three_phase=False)``

    The lr climbs from ``initial_lr = max_lr / div_factor`` to ``max_lr`` over the first
    ``pct_start`` of the ``total_steps`` steps, then anneals down to
    ``min_lr = initial_lr / final_div_factor``. ``max_lr`` (like the momenta) may be one number
    or a list with one value per parameter group. Give either ``total_steps``, or
    ``epochs`` and ``steps_per_epoch``. ``step()`` may be called ``total_steps`` times.

    Phases (two by default), each from step :math:`a` to step :math:`b`:

    ======  ==========================================  ===========  ==========
    three   phase end step :math:`b`                     lr           momentum
    ======  ==========================================  ===========  ==========
    no      ``pct_start * total_steps - 1``              initial→max  max→base
    no      ``total_steps - 1``                          max→min      base→max
    yes     ``pct_start * total_steps - 1``              initial→max  max→base
    yes     ``2 * pct_start * total_steps - 2``          max→initial  base→max
    yes     ``total_steps - 1``                          initial→min  max→max
    ======  ==========================================  ===========  ==========

    Within a phase, with :math:`p = (t - a) / (b - a)` going from 0 to 1, a value goes from
    ``start`` to ``end`` by

    .. math::
        \text{cos:}\quad    \text{end} + \tfrac12(\text{start} - \text{end})(1 + \cos \pi p)
        \qquad
        \text{linear:}\quad \text{start} + (\text{end} - \text{start})\, p

    **Momentum cycling.** PyTorch cycles momentum by default (``cycle_momentum=True``,
    ``base_momentum=0.85``, ``max_momentum=0.95``), inversely to the lr, and so does this
    class, with the same defaults: the schedule *sets* ``group["momentum"]`` for SGD, or
    ``beta1`` of ``group["betas"]`` for Adam/AdamW, on every step. Mind that this overrides
    the momentum given to the optimiser (even ``momentum=0``: plain SGD becomes momentum SGD);
    pass ``cycle_momentum=False`` to keep the optimiser's own momentum.

    Like PyTorch, it stores ``initial_lr``, ``max_lr``, ``min_lr`` (and ``max_momentum``,
    ``base_momentum``) in each parameter group, so they travel with the optimiser's state dict.
    PyTorch's ``last_epoch`` argument (for resuming) is not offered: use ``load_state_dict``.
    """

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None,
                 pct_start=0.3, anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85,
                 max_momentum=0.95, div_factor=25.0, final_div_factor=1e4, three_phase=False):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"OneCycleLR: expected a minise Optimizer, got {type(optimizer).__name__}")
        if total_steps is not None:
            self.total_steps = _positive_int(total_steps, "total_steps", "OneCycleLR")
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = (_positive_int(epochs, "epochs", "OneCycleLR")
                                * _positive_int(steps_per_epoch, "steps_per_epoch", "OneCycleLR"))
        else:
            raise ValueError("OneCycleLR: give either total_steps, or both epochs and steps_per_epoch")
        if isinstance(pct_start, bool) or not isinstance(pct_start, numbers.Real) or not 0 <= pct_start <= 1:
            raise ValueError(f"OneCycleLR: pct_start must be a number between 0 and 1, got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"OneCycleLR: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy
        self.three_phase = three_phase

        total = self.total_steps
        if three_phase:
            self._schedule_phases = [
                {"end_step": float(pct_start * total) - 1, "start_lr": "initial_lr", "end_lr": "max_lr",
                 "start_momentum": "max_momentum", "end_momentum": "base_momentum"},
                {"end_step": float(2 * pct_start * total) - 2, "start_lr": "max_lr", "end_lr": "initial_lr",
                 "start_momentum": "base_momentum", "end_momentum": "max_momentum"},
                {"end_step": total - 1, "start_lr": "initial_lr", "end_lr": "min_lr",
                 "start_momentum": "max_momentum", "end_momentum": "max_momentum"},
            ]
        else:
            self._schedule_phases = [
                {"end_step": float(pct_start * total) - 1, "start_lr": "initial_lr", "end_lr": "max_lr",
                 "start_momentum": "max_momentum", "end_momentum": "base_momentum"},
                {"end_step": total - 1, "start_lr": "max_lr", "end_lr": "min_lr",
                 "start_momentum": "base_momentum", "end_momentum": "max_momentum"},
            ]

        groups = optimizer.param_groups
        for group, lr in zip(groups, _per_group("max_lr", max_lr, groups)):
            group["initial_lr"] = lr / div_factor
            group["max_lr"] = lr
            group["min_lr"] = group["initial_lr"] / final_div_factor

        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError("OneCycleLR: cycle_momentum=True needs an optimizer with momentum or betas")
            self.use_beta1 = "betas" in optimizer.defaults
            max_momenta = _per_group("max_momentum", max_momentum, groups)
            base_momenta = _per_group("base_momentum", base_momentum, groups)
            for group, m_max, m_base in zip(groups, max_momenta, base_momenta):
                self._set_momentum(group, m_max)
                group["max_momentum"] = m_max
                group["base_momentum"] = m_base
        super().__init__(optimizer)

    def _set_momentum(self, group, momentum):
        if self.use_beta1:
            group["betas"] = (momentum, *group["betas"][1:])
        else:
            group["momentum"] = momentum

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self):
        """The lr of each group at step ``last_epoch``; also sets each group's momentum."""
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(
                f"OneCycleLR: tried to step {step} times; the schedule has total_steps={self.total_steps}"
            )
        lrs = []
        for group in self.optimizer.param_groups:
            start_step = 0.0
            for i, phase in enumerate(self._schedule_phases):
                end_step = phase["end_step"]
                if step <= end_step or i == len(self._schedule_phases) - 1:
                    pct = (step - start_step) / (end_step - start_step)
                    lrs.append(self._anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct))
                    if self.cycle_momentum:
                        momentum = self._anneal(group[phase["start_momentum"]], group[phase["end_momentum"]], pct)
                        self._set_momentum(group, momentum)
                    break
                start_step = end_step
        return lrs


def _per_group(name, value, groups):
    """One value per parameter group: a list/tuple of that length, or one value repeated."""
    if isinstance(value, (list, tuple)):
        if len(value) != len(groups):
            raise ValueError(
                f"OneCycleLR: {name} has {len(value)} values but the optimizer has {len(groups)} parameter group(s)"
            )
        return list(value)
    return [value] * len(groups)

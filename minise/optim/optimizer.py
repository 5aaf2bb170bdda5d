"""The base class of every optimiser: parameter groups, ``zero_grad`` and checkpoints.

An optimiser holds a list of *parameter groups*. Each group is a plain dict with the key
``"params"`` (a list of ``Parameter``s) and one key per hyper-parameter (``"lr"``,
``"momentum"``, ...), exactly as in ``torch.optim``:

    >>> opt = SGD([{"params": model.features.parameters()},
    ...            {"params": model.classifier.parameters(), "lr": 0.1}],
    ...           lr=0.01, momentum=0.9)
    >>> opt.param_groups[1]["lr"]
    0.1

Hyper-parameters a group leaves out come from the constructor's defaults. Learning-rate
schedulers change ``group["lr"]`` between steps, and ``step()`` reads it afresh every time.

Per-parameter state (SGD's momentum buffer, Adam's moment estimates) lives in
``optimizer.state[param]``, a dict of arrays on the parameter's device and in its dtype.

Every update writes into ``param.data`` *in place*: layers keep references to their
parameter arrays, so rebinding ``param.data`` would silently detach them from the optimiser.
"""
import copy
import numbers

from ..backend import check_device, device_of, get_array_module, is_array, to_device, to_numpy
from ..execution import accelerated
from ..nn.parameter import Parameter


class _RequiredParameter:
    """Marks a hyper-parameter that has no default and so must be given."""

    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()


class Optimizer:
    """Base class: ``Optimizer(params, defaults)``.

    Args:
        params: an iterable of ``Parameter``s, or of dicts that each define a parameter group
            (``{"params": [...], "lr": ...}``), as in PyTorch.
        defaults: the hyper-parameters of a group that does not set them itself.

    Subclasses implement ``step()`` and may override ``_validate_group(group)`` to check a
    group's hyper-parameters (it runs for the defaults and for every group added).
    """

    # State entries that are one number per parameter (Adam's "step"), not arrays. Loading
    # turns them back into Python ints, whatever carried them (a 0-d array from an .npz file,
    # a torch tensor).
    _scalar_state_keys = ()
    # Hyper-parameters a scheduler may change between steps, which ``step()`` can read from the
    # device (``keep_on_device``); empty where ``step()`` also does host arithmetic with state
    # (Adam's bias corrections use the step count), so that it can't be recorded as a CUDA graph.
    _device_keys = ()

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}          # Parameter -> {"momentum_buffer": array, ...}
        self.param_groups = []
        self._on_device = None   # per group, {key: 0-d device array} once keep_on_device is called
        self._validate_group(self.defaults)

        if isinstance(params, (Parameter, dict)) or is_array(params):
            raise TypeError(
                f"{type(self).__name__}: params must be an iterable of Parameters or of dicts "
                f"(parameter groups), got a single {type(params).__name__}; "
                "pass a list, e.g. model.parameters()"
            )
        if isinstance(params, set):
            raise TypeError(
                f"{type(self).__name__}: params must be an ordered collection (a set has no fixed "
                "order, so checkpoints would not line up); use a list"
            )
        try:
            groups = list(params)
        except TypeError:
            raise TypeError(
                f"{type(self).__name__}: params must be an iterable of Parameters or of dicts, "
                f"got {type(params).__name__}"
            ) from None
        if len(groups) == 0:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # ---- parameter groups ---------------------------------------------------------------
    def add_param_group(self, param_group):
        """Add a group (a dict with ``"params"`` and any hyper-parameters to override).

        Useful for fine-tuning: unfreeze layers and hand them to the optimiser mid-training.
        The dict passed in is copied, not kept.
        """
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(
                f"{name}: a parameter group must be a dict with a 'params' key, "
                f"got {type(param_group).__name__} (do not mix Parameters and dicts in params)"
            )
        if "params" not in param_group:
            raise ValueError(f"{name}: a parameter group must have a 'params' key")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Parameter):
            params = [params]
        elif isinstance(params, set):
            raise TypeError(f"{name}: a group's params must be an ordered collection, not a set; use a list")
        params = list(params)
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(f"{name} can only optimise Parameters, but one of the params is a {type(p).__name__}")
        if len(params) == 0:
            raise ValueError(f"{name}: a parameter group has an empty 'params' list")
        if len({id(p) for p in params}) != len(params):
            raise ValueError(f"{name}: a parameter group lists the same Parameter more than once")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError(f"{name}: some parameters appear in more than one parameter group")
        group["params"] = params

        for key, default in self.defaults.items():
            if default is required and key not in group:
                raise ValueError(f"{name}: parameter group didn't specify a value of required hyper-parameter {key!r}")
            group.setdefault(key, default)
        self._validate_group(group)
        self.param_groups.append(group)

    def _validate_group(self, group):
        """Check a group's hyper-parameters; raise ``ValueError`` with a clear message if bad."""

    def _params_to_update(self, group):
        """The group's parameters that take part in this step: those with ``requires_grad``."""
        return [p for p in group["params"] if p.requires_grad and p.grad is not None]

    # ---- the step -----------------------------------------------------------------------
    def zero_grad(self):
        """Set every parameter's ``.grad`` to zero, in place (backward passes add into it)."""
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        if grads:
            zero_arrays(grads)

    def step(self, closure=None):
        """Update every parameter from its ``.grad``. ``closure``, if given, is called first
        and its value (the loss) returned, as in PyTorch."""
        raise NotImplementedError

    # ---- hyper-parameters on the device, for CUDA graphs ---------------------------------
    @property
    def capturable(self):
        """True where ``step()`` is array work only, so a CUDA graph can record it."""
        return bool(self._device_keys)

    def keep_on_device(self, xp, dtype):
        """From now on ``step()`` reads the scheduled hyper-parameters (SGD: lr and momentum)
        from 0-d arrays on the device instead of the group dicts. A recorded CUDA graph keeps
        the addresses of its operands, not Python numbers, so this is how a scheduler's new
        learning rate reaches the replays: call ``sync_device_values()`` before each one."""
        if not self.capturable:
            raise ValueError(f"{type(self).__name__}.step() reads host values every step "
                             "and cannot be recorded as a CUDA graph; use SGD")
        self._on_device = [{k: xp.full((), g[k], dtype=dtype) for k in self._device_keys}
                           for g in self.param_groups]

    def sync_device_values(self):
        """Copy each group's current hyper-parameters into their device arrays (no host wait)."""
        for group, arrays in zip(self.param_groups, self._on_device):
            for key, array in arrays.items():
                array.fill(group[key])

    def _value(self, group_index, key):
        """``param_groups[i][key]`` as ``step()``'s arithmetic uses it: a Python float, or its
        device array after ``keep_on_device``."""
        if self._on_device is None:
            return float(self.param_groups[group_index][key])
        return self._on_device[group_index][key]

    # ---- devices ------------------------------------------------------------------------
    def to(self, device=None, dtype=None):
        """Move the optimiser's state arrays to ``"cpu"``/``"cuda"`` and/or cast them to ``dtype``.

        Call it after ``model.to(...)`` when resuming on another device: the parameters are
        moved by the model, the momentum buffers and moment estimates by this. Returns self.
        """
        if device is not None:
            check_device(device)
        for state in self.state.values():
            for key, value in state.items():
                if is_array(value):
                    if device is not None:
                        value = to_device(value, device)
                    if dtype is not None and value.dtype.kind == "f":
                        value = value.astype(dtype, copy=False)
                    state[key] = value
        return self

    def _check_state_device(self, p, state):
        """Raise a clear error when state and parameter live on different devices."""
        device = device_of(p.data)
        for key, value in state.items():
            if is_array(value) and device_of(value) != device:
                raise RuntimeError(
                    f"{type(self).__name__}: state {key!r} of a parameter is on {device_of(value)} "
                    f"but the parameter is on {device}; call optimizer.to({device!r}) after moving the model"
                )

    # ---- checkpoints --------------------------------------------------------------------
    def state_dict(self):
        """The optimiser's state in PyTorch's layout, with host NumPy copies of every array::

            {"state": {0: {"momentum_buffer": ndarray}, 1: {...}, ...},
             "param_groups": [{"lr": 0.1, "momentum": 0.9, ..., "params": [0, 1]}, ...]}

        Parameters are numbered in order across all groups; ``state`` only has entries for
        parameters that have state already (none before the first ``step()``).
        """
        index = {}
        param_groups = []
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            packed["params"] = []
            for p in group["params"]:
                index[id(p)] = len(index)
                packed["params"].append(index[id(p)])
            param_groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[index[id(p)]] = {k: _host_copy(v) for k, v in self.state[p].items()}
        return {"state": state, "param_groups": param_groups}

    def load_state_dict(self, state_dict):
        """Load a ``state_dict()`` (of an optimiser of the same type over the same parameters).

        The saved hyper-parameters (``lr``, ``momentum``, ...) replace the current ones; the
        state arrays are copied onto each parameter's device, in its dtype. Nothing changes
        unless every check passes; a mismatch raises ``ValueError``.

        The state dict may have been through JSON and ``.npz`` (tuples turned into lists,
        Adam's integer ``step`` into a 0-d array): both come back as they were.
        """
        name = type(self).__name__
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError(f"{name}.load_state_dict: expected a dict with keys 'state' and 'param_groups'")
        groups = self.param_groups
        saved_groups = state_dict["param_groups"]
        if len(groups) != len(saved_groups):
            raise ValueError(
                f"{name}.load_state_dict: loaded state dict has {len(saved_groups)} parameter group(s), "
                f"this optimizer has {len(groups)}"
            )
        for i, (g, s) in enumerate(zip(groups, saved_groups)):
            if len(g["params"]) != len(s["params"]):
                raise ValueError(
                    f"{name}.load_state_dict: parameter group {i} has {len(s['params'])} parameter(s) "
                    f"in the loaded state dict but {len(g['params'])} in this optimizer"
                )
        id_map = {}
        for g, s in zip(groups, saved_groups):
            id_map.update(zip(s["params"], g["params"]))

        new_state = {}
        for index, saved in state_dict["state"].items():
            if index not in id_map:
                raise ValueError(f"{name}.load_state_dict: state for parameter index {index}, which no group lists")
            p = id_map[index]
            entry = {}
            for key, value in saved.items():
                if key in self._scalar_state_keys:
                    entry[key] = int(value)
                elif is_array(value):
                    if tuple(value.shape) != tuple(p.data.shape):
                        raise ValueError(
                            f"{name}.load_state_dict: state {key!r} of parameter {index} has shape "
                            f"{tuple(value.shape)}, the parameter has shape {tuple(p.data.shape)}"
                        )
                    entry[key] = _to_param(value, p)
                else:
                    entry[key] = copy.deepcopy(value)
            new_state[p] = entry

        new_groups = []
        for g, s in zip(groups, saved_groups):
            group = {k: copy.deepcopy(v) for k, v in s.items() if k != "params"}
            group["params"] = g["params"]
            new_groups.append(group)
        for group in new_groups:
            self._validate_group(group)

        self.state = new_state
        self.param_groups = new_groups

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        return "\n".join(lines) + "\n)"


@accelerated("zero_arrays")
def zero_arrays(arrays):
    """Set every array of the list to zero, in place. On the GPU: one kernel for all of them
    (``minise.gpu.sgd``)."""
    for a in arrays:
        a[...] = 0


def check_number(optimizer_name, key, value):
    """Raise ``TypeError`` unless ``value`` is a real number (bools are not hyper-parameters)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{optimizer_name}: {key} must be a real number, got {value!r}")


def _host_copy(value):
    """A NumPy copy of an array (never a view of live state); other values deep-copied."""
    if is_array(value):
        host = to_numpy(value)
        return host.copy() if host is value else host
    return copy.deepcopy(value)


def _to_param(value, p):
    """A fresh copy of ``value`` on ``p``'s device and in ``p``'s dtype."""
    value = to_device(value, device_of(p.data))
    return get_array_module(p.data).array(value, dtype=p.data.dtype, copy=True)

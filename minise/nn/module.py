"""The base class of every layer, and ``Sequential``.

A ``Module`` registers the ``Parameter``s, buffers and child modules assigned to it as
attributes, in order, so that ``named_parameters()`` and ``state_dict()`` give PyTorch's dotted
names (``sequence.2.weight``) without any bookkeeping in the layers themselves.
"""
from collections import OrderedDict

import numpy  # for host-side checks of loaded state dicts; the layers' math uses their input's module

from ..backend import check_device, device_of, get_array_module, is_array, to_device, to_numpy
from ..execution import grad_enabled
from .parameter import Parameter
from .validate import check_dout, check_input, output_spec


class Module:
    """Base class: ``forward(x)`` caches what ``backward(dout)`` needs; ``backward`` returns dx.

    ``backward(dout)`` returns the gradient with respect to the input, *adds* the parameter
    gradients into each ``Parameter.grad`` and never writes into ``dout``.

    A layer writes its math in two methods, on a whole batch:
        forward_math(x) -> out            (may keep arrays for backward: name them in ``keeps``)
        backward_math(dout) -> dx         (reads ``self._x`` and what forward_math kept)
    and this class does the rest once: ``forward`` checks x (``input_ndim`` dims and, where
    ``input_channels_from`` names an attribute, that many channels in dim 1, the parameters'
    dtype and device), runs forward_math and keeps x as ``_x`` (unless ``keeps_input`` is
    False: a layer that needs only its output, or what forward_math kept) and the output's
    shape and dtype as ``_out`` (the output array itself where ``keeps_output``); ``backward``
    checks dout against ``_out`` and runs backward_math. Under ``minise.no_grad()`` nothing is
    kept.
    """

    input_ndim = None              # the input's number of dims (an int or a tuple); None: no check
    input_channels_from = None     # the attribute holding dim 1's size, e.g. "in_channels"
    keeps_input = True             # keep x as _x for backward_math
    keeps_output = False           # keep the output array (activations' derivatives need it)
    keeps = ()                     # what forward_math keeps for backward_math, beyond _x and _out

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        self._forget()

    # ---- registration -------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() first")
        # A buffer stays a buffer when rebound to a new array; anything else re-registers.
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, (Parameter, Module)):
            self._buffers.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name, array):
        """A state array that is saved in ``state_dict`` but is not trained (BN's running stats)."""
        object.__setattr__(self, name, array)
        self._buffers[name] = None  # the value lives on the attribute; this keeps the order

    # ---- forward / backward -------------------------------------------------------------
    def forward(self, x):
        if self.input_ndim is not None:
            channels = getattr(self, self.input_channels_from) if self.input_channels_from else None
            check_input(self, x, ndim=self.input_ndim, channels=channels)
        out = self.forward_math(x)
        if grad_enabled():
            self._x = x if self.keeps_input else None
            self._out = out if self.keeps_output else output_spec(out)
        else:
            self._forget()
        return out

    def backward(self, dout):
        check_dout(self, dout, self._out)
        return self.backward_math(dout)

    def forward_math(self, x):
        raise NotImplementedError(f"{type(self).__name__} defines no forward_math")

    def backward_math(self, dout):
        raise NotImplementedError(f"{type(self).__name__} defines no backward_math")

    def _forget(self):
        """Drop what forward kept for backward."""
        for name in ("_x", "_out") + tuple(self.keeps):
            object.__setattr__(self, name, None)

    def __call__(self, x, *args, **kwargs):
        return self.forward(x, *args, **kwargs)

    # ---- traversal ----------------------------------------------------------------------
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_children(self):
        return iter(self._modules.items())

    def children(self):
        return iter(self._modules.values())

    def named_parameters(self, prefix=""):
        for module_name, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                yield (f"{module_name}.{name}" if module_name else name), p

    def parameters(self):
        return (p for _, p in self.named_parameters())

    def named_buffers(self, prefix=""):
        for module_name, module in self.named_modules(prefix):
            for name in module._buffers:
                yield (f"{module_name}.{name}" if module_name else name), getattr(module, name)

    # ---- training state -----------------------------------------------------------------
    def zero_grad(self):
        for p in self.parameters():
            p.zero_grad()

    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    # ---- device and dtype ---------------------------------------------------------------
    def to(self, device=None, dtype=None):
        """Move parameters, gradients and buffers to ``"cpu"``/``"cuda"`` and/or cast to ``dtype``.

        Integer buffers (``num_batches_tracked``) keep their integer dtype.
        """
        if device is not None:
            check_device(device)
        for m in self.modules():
            for p in m._parameters.values():
                p.data, p.grad = (_convert(a, device, dtype) for a in (p.data, p.grad))
            for name in m._buffers:
                object.__setattr__(m, name, _convert(getattr(m, name), device, dtype))
            m._forget()                # what forward kept is on the old device or dtype
        return self

    def double(self):
        return self.to(dtype="float64")

    def float(self):
        return self.to(dtype="float32")

    @property
    def device(self):
        """``"cpu"`` or ``"cuda"``: where the first parameter or buffer lives."""
        for _, array in self._state_arrays():
            return device_of(array)
        return "cpu"

    # ---- state dict ---------------------------------------------------------------------
    def _state_arrays(self):
        """(key, array) for every parameter and buffer, module by module, as PyTorch orders them."""
        for module_name, module in self.named_modules():
            prefix = f"{module_name}." if module_name else ""
            for name, p in module._parameters.items():
                yield prefix + name, p.data
            for name in module._buffers:
                yield prefix + name, getattr(module, name)

    def state_dict(self):
        """An ordered dict of NumPy copies of every parameter and buffer, keyed as in PyTorch."""
        return OrderedDict((name, to_numpy(a).copy()) for name, a in self._state_arrays())

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays from ``state_dict`` into this module's parameters and buffers, in place.

        Values are cast to each target's dtype and device. With ``strict=True`` any missing or
        unexpected key raises ``ValueError`` naming them; a shape mismatch, a value that is not
        numeric (strings, objects) or that does not fit the target's dtype (overflow, a
        fraction for an integer buffer) always raises. Every value is checked and converted
        before the first is written, so a refused load changes nothing. Returns
        ``(missing, unexpected)``.
        """
        own = dict(self._state_arrays())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        converted, mis_shaped, bad_values = {}, [], []
        for name, target in own.items():
            if name not in state_dict:
                continue
            try:
                value = _host_array(state_dict[name])
            except (TypeError, ValueError) as err:
                bad_values.append(f"{name}: {err}")
                continue
            if tuple(value.shape) != tuple(target.shape):
                mis_shaped.append(f"{name}: expected {tuple(target.shape)}, got {tuple(value.shape)}")
                continue
            problem = _conversion_problem(value, target.dtype)
            if problem:
                bad_values.append(f"{name}: {problem}")
            else:
                converted[name] = value.astype(target.dtype)
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {unexpected}")
        if mis_shaped:
            problems.append(f"wrong shapes: {mis_shaped}")
        if bad_values:
            problems.append(f"values that cannot be loaded: {bad_values}")
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: " + "; ".join(problems) +
                             "; nothing was changed")
        for name, value in converted.items():
            target = own[name]
            target[...] = get_array_module(target).asarray(value)
        return missing, unexpected

    # ---- printing -----------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        return "\n".join(lines) + "\n)"


def _convert(array, device, dtype):
    if device is not None:
        array = to_device(array, device)
    if dtype is not None and array.dtype.kind == "f":
        array = array.astype(dtype, copy=False)
    return array


def _conversion_problem(value, dtype):
    """Why ``value`` (a NumPy array) cannot be cast to ``dtype`` without loss, or None."""
    if value.dtype.kind not in "biuf":
        return f"expected numbers ({dtype}), got dtype {value.dtype}"
    with numpy.errstate(all="ignore"):
        cast = value.astype(dtype)
        if numpy.dtype(dtype).kind == "f":
            if value.dtype.kind == "f" and bool((numpy.isfinite(value) & ~numpy.isfinite(cast)).any()):
                return f"values overflow {dtype} (largest magnitude {numpy.abs(value).max():.3g})"
        elif value.dtype.kind == "f" or bool((cast.astype(value.dtype) != value).any()):
            if not numpy.isfinite(value).all() or bool((cast.astype(value.dtype) != value).any()):
                return f"values do not fit the integer dtype {dtype}"
    return None


def _host_array(value):
    """A NumPy view of ``value`` (a NumPy/CuPy array, a CPU torch tensor or a nested list)."""
    if is_array(value):
        return to_numpy(value)
    if hasattr(value, "detach"):  # a torch tensor: weights may be swapped with PyTorch directly
        value = value.detach().cpu().numpy()
    return to_numpy(value)


class Sequential(Module):
    """Modules applied in order; children are named "0", "1", ... and can be indexed or sliced.

    ``backward`` runs the children's backward passes in reverse order (the chain rule).
    """

    def __init__(self, *modules):
        super().__init__()
        for i, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential: item {i} is a {type(module).__name__}, not a Module")
            setattr(self, str(i), module)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x

    def backward(self, dout):
        for module in reversed(self._modules.values()):
            dout = module.backward(dout)
        return dout

    def __getitem__(self, index):
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*modules[index])
        return modules[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

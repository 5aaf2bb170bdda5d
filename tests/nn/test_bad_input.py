"""Wrong inputs raise a TypeError/ValueError (RuntimeError for backward before forward) whose
message names the layer, what it expected and what it got."""
import re

import numpy as np
import pytest

from layer_cases import LAYERS
from minise import nn
from minise.models import BasicBlock, Bottleneck

F32 = np.float32


def _x(shape, dtype=F32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


NAMES = list(LAYERS)


def make(name):
    return LAYERS[name][0]()


def who(name):
    """A message starts with the layer's repr, e.g. 'Conv2d(3, 4, kernel_size=...): '."""
    return rf"^{name}\(.*\): "


def msg(name, *parts):
    return who(name) + ".*".join(re.escape(p) for p in parts)


# ---- wrong ndim --------------------------------------------------------------------------
WRONG_NDIM = {
    "Conv2d": ((2, 3, 5), ["expected a 4-D input", "got shape (2, 3, 5) (3-D)"]),
    "BatchNorm1d": ((2, 3, 4, 4), ["expected a 2-D or 3-D input", "got shape (2, 3, 4, 4) (4-D)"]),
    "BatchNorm2d": ((2, 3), ["expected a 4-D input", "got shape (2, 3) (2-D)"]),
    "MaxPool2d": ((3, 4, 4), ["expected a 4-D input", "got shape (3, 4, 4) (3-D)"]),
    "AvgPool2d": ((3, 4, 4), ["expected a 4-D input", "got shape (3, 4, 4) (3-D)"]),
    "AdaptiveAvgPool2d": ((3, 4, 4), ["expected a 4-D input", "got shape (3, 4, 4) (3-D)"]),
    "Linear": ((4, 3, 1), ["expected a 2-D input", "got shape (4, 3, 1) (3-D)"]),
    "ReLU": ((), ["expected a 1-D", "32-D input", "got shape () (0-D)"]),
    "Sigmoid": ((), ["expected a 1-D", "32-D input", "got shape () (0-D)"]),
    "Tanh": ((), ["expected a 1-D", "32-D input", "got shape () (0-D)"]),
    "Identity": ((), ["expected a 1-D", "32-D input", "got shape () (0-D)"]),
    "Flatten": ((5,), ["dims 1..-1 do not fit an input of shape (5,)"]),
    "Unflatten": ((3,), ["dim 1", "(3,)", "(3, 1, 1)"]),
    "SEBlock": ((2, 4, 9), ["expected a 4-D input", "got shape (2, 4, 9) (3-D)"]),
    "BasicBlock": ((2, 3, 4), ["expected a 4-D input", "got shape (2, 3, 4) (3-D)"]),
    "Bottleneck": ((2, 8, 4), ["expected a 4-D input", "got shape (2, 8, 4) (3-D)"]),
}


@pytest.mark.parametrize("name", NAMES)
def test_wrong_ndim(name):
    shape, parts = WRONG_NDIM[name]
    with pytest.raises(ValueError, match=msg(name, *parts)):
        make(name)(_x(shape))


# ---- wrong channel count -----------------------------------------------------------------
WRONG_CHANNELS = {
    "Conv2d": ((2, 4, 5, 5), 3), "BatchNorm1d": ((4, 5), 3), "BatchNorm2d": ((2, 2, 4, 4), 3),
    "Linear": ((4, 7), 3), "SEBlock": ((2, 6, 3, 3), 4), "BasicBlock": ((2, 5, 4, 4), 3),
    "Bottleneck": ((2, 4, 4, 4), 8),
}


@pytest.mark.parametrize("name", list(WRONG_CHANNELS))
def test_wrong_channel_count(name):
    shape, expected = WRONG_CHANNELS[name]
    with pytest.raises(ValueError, match=msg(name, f"expected {expected} channels (dim 1)",
                                             f"got shape {shape} with {shape[1]}")):
        make(name)(_x(shape))


# ---- an empty batch ----------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_empty_batch_is_refused_by_name(name):
    shape = (0,) + tuple(LAYERS[name][1][1:])
    with pytest.raises(ValueError, match=re.escape(name) + r".*empty batch.*" + re.escape(str(shape))):
        make(name)(_x(shape))


def test_empty_batch_into_a_model_or_the_loss_is_one_clear_error():
    from minise.models import se_resnet20
    with pytest.raises(ValueError, match=r"empty batch.*\(0, 3, 32, 32\)"):
        se_resnet20().double()(np.zeros((0, 3, 32, 32)))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss.*logits is an empty batch"):
        nn.CrossEntropyLoss()(np.zeros((0, 10)), np.zeros(0, dtype=np.int64))


# ---- not a float array -------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_integer_input(name):
    x = np.ones(LAYERS[name][1], dtype=np.int64)
    with pytest.raises(TypeError, match=msg(name, "expected a floating-point input", "got dtype int64")):
        make(name)(x)


@pytest.mark.parametrize("name", NAMES)
def test_python_list_input(name):
    x = _x(LAYERS[name][1]).tolist()
    with pytest.raises(TypeError, match=msg(name, "expected the input to be a NumPy or CuPy array",
                                            "got list")):
        make(name)(x)


# ---- spatial size too small ----------------------------------------------------------------
@pytest.mark.parametrize("layer, shape, parts", [
    (lambda: nn.Conv2d(3, 4, 5), (1, 3, 4, 6),
     ["input of spatial size (4, 6) padded by (0, 0)", "smaller than the kernel (5, 5)"]),
    (lambda: nn.Conv2d(3, 4, (3, 7), padding=1), (1, 3, 4, 4),
     ["input of spatial size (4, 4) padded by (1, 1)", "smaller than the kernel (3, 7)"]),
    (lambda: nn.MaxPool2d(3), (1, 3, 2, 2),
     ["input of spatial size (2, 2) padded by (0, 0)", "smaller than the kernel (3, 3)"]),
    (lambda: nn.AvgPool2d(4, padding=1), (1, 3, 1, 5),
     ["input of spatial size (1, 5) padded by (1, 1)", "smaller than the kernel (4, 4)"]),
], ids=["Conv2d", "Conv2d-padded", "MaxPool2d", "AvgPool2d"])
def test_spatial_size_too_small(layer, shape, parts):
    module = layer()
    with pytest.raises(ValueError, match=msg(type(module).__name__, *parts)):
        module(_x(shape))


@pytest.mark.parametrize("sizes, shape", [((3, 1, 1), (2, 4)), ((-1, 4), (2, 6)), ((2, 2), (2, 3, 1))])
def test_unflatten_size_mismatch(sizes, shape):
    with pytest.raises(ValueError, match=msg("Unflatten", "dim 1", str(shape), str(sizes))):
        nn.Unflatten(1, sizes)(_x(shape))


def test_adaptive_pool_non_divisible_size():
    with pytest.raises(ValueError, match=msg("AdaptiveAvgPool2d", "input spatial size (5, 4)",
                                             "multiple of the output size (2, 2)")):
        nn.AdaptiveAvgPool2d(2)(_x((1, 3, 5, 4)))


# ---- backward -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_backward_before_forward(name):
    shape = LAYERS[name][1]
    with pytest.raises(RuntimeError, match=rf"^{name}\(.*backward called before forward"):
        make(name).backward(_x(shape))


def _forwarded(name):
    module = make(name)
    out = module(_x(LAYERS[name][1]))
    return module, out


@pytest.mark.parametrize("name", NAMES)
def test_dout_of_wrong_shape(name):
    module, out = _forwarded(name)
    bad = _x(out.shape[:-1] + (out.shape[-1] + 1,))
    with pytest.raises(ValueError, match=rf"^{name}\(.*" + re.escape(
            f"dout must have the output's shape {out.shape}, got {bad.shape}")):
        module.backward(bad)


@pytest.mark.parametrize("name", NAMES)
def test_dout_of_other_dtype(name):
    module, out = _forwarded(name)
    with pytest.raises(TypeError, match=rf"^{name}\(.*" + re.escape(
            "dout must be a cpu array of dtype float32 like the output, got a cpu array of dtype float64")):
        module.backward(np.ones(out.shape, dtype=np.float64))


@pytest.mark.parametrize("name", NAMES)
def test_dout_python_list(name):
    module, out = _forwarded(name)
    with pytest.raises(TypeError, match=rf"^{name}\(.*expected dout to be a NumPy or CuPy array, got list"):
        module.backward(np.ones(out.shape, dtype=F32).tolist())


# ---- float64 into a float32 layer ---------------------------------------------------------
WITH_PARAMETERS = ["Conv2d", "BatchNorm1d", "BatchNorm2d", "Linear", "SEBlock", "BasicBlock", "Bottleneck"]


@pytest.mark.parametrize("name", WITH_PARAMETERS)
def test_float64_input_into_float32_layer(name):
    # a block names itself and its first weight (e.g. "block.0.weight")
    with pytest.raises(TypeError, match=rf"^{name}\(.*the input has dtype float64 but [\w.]*weight "
                                        r"has dtype float32.*\.double\(\)"):
        make(name)(_x(LAYERS[name][1], dtype=np.float64))


def test_float64_layer_accepts_float64_after_double():
    conv = nn.Conv2d(3, 4, 3).double()
    assert conv(_x((1, 3, 4, 4), dtype=np.float64)).dtype == np.float64
    with pytest.raises(TypeError, match=r"^Conv2d\(.*input has dtype float32 but weight has dtype float64"):
        conv(_x((1, 3, 4, 4)))


# The composite blocks are what the user called; their errors should say so, not only name a
# layer deep inside them.
@pytest.mark.parametrize("name, x", [
    ("SEBlock", _x((2, 4, 3, 3), dtype=np.float64)),
    ("BasicBlock", _x((2, 5, 4, 4))),
    ("BasicBlock", _x((2, 3, 4, 4), dtype=np.float64)),
    ("Bottleneck", _x((2, 4, 4, 4))),
], ids=["SEBlock-float64", "BasicBlock-channels", "BasicBlock-float64", "Bottleneck-channels"])
def test_composite_errors_name_the_composite(name, x):
    with pytest.raises((TypeError, ValueError)) as info:
        make(name)(x)
    assert re.match(rf"^{name}\(", str(info.value)), str(info.value)


# ---- constructor arguments ------------------------------------------------------------------
CONSTRUCTOR_CASES = [
    (lambda: nn.Conv2d(3, 4, 0), ValueError, ["Conv2d: kernel_size must be at least 1, got (0, 0)"]),
    (lambda: nn.Conv2d(3, 4, (3, 0)), ValueError, ["Conv2d: kernel_size must be at least 1, got (3, 0)"]),
    (lambda: nn.Conv2d(3, 4, 3, padding=-1), ValueError, ["Conv2d: padding must be at least 0, got (-1, -1)"]),
    (lambda: nn.Conv2d(3, 4, 3, stride=0), ValueError, ["Conv2d: stride must be at least 1, got (0, 0)"]),
    (lambda: nn.Conv2d(3, 4, 2.5), TypeError, ["Conv2d: kernel_size must be an int or a tuple of two ints, got 2.5"]),
    (lambda: nn.Conv2d(3, 4, (3,)), TypeError, ["Conv2d: kernel_size must be an int or a tuple of two ints, got (3,)"]),
    (lambda: nn.Conv2d(0, 4, 3), ValueError, ["Conv2d: in_channels must be a positive int, got 0"]),
    (lambda: nn.Linear(3, 0), ValueError, ["Linear: out_features must be a positive int, got 0"]),
    (lambda: nn.MaxPool2d(0), ValueError, ["MaxPool2d: kernel_size must be at least 1, got (0, 0)"]),
    (lambda: nn.MaxPool2d(2, stride=0), ValueError, ["MaxPool2d: stride must be at least 1, got (0, 0)"]),
    (lambda: nn.MaxPool2d(3, padding=2), ValueError,
     ["MaxPool2d: padding (2, 2) must be at most half the kernel size (3, 3)"]),
    (lambda: nn.AvgPool2d(2, padding=(0, 2)), ValueError,
     ["AvgPool2d: padding (0, 2) must be at most half the kernel size (2, 2)"]),
    (lambda: nn.AvgPool2d(2, padding=-1), ValueError, ["AvgPool2d: padding must be at least 0, got (-1, -1)"]),
    (lambda: nn.AdaptiveAvgPool2d(0), ValueError, ["AdaptiveAvgPool2d: output_size must be at least 1, got (0, 0)"]),
    (lambda: nn.SEBlock(8, 16), ValueError,
     ["SEBlock: input_channels // reduction_ratio = 8 // 16 = 0 hidden units", "reduction_ratio <= 8"]),
    (lambda: nn.SEBlock(0, 2), ValueError, ["SEBlock: input_channels must be a positive int, got 0"]),
    (lambda: nn.BatchNorm2d(3, momentum=2), ValueError,
     ["BatchNorm2d: momentum must be in [0, 1] or None, got 2"]),
    (lambda: nn.BatchNorm1d(3, eps=0), ValueError, ["BatchNorm1d: eps must be positive, got 0"]),
    (lambda: nn.BatchNorm2d(0), ValueError, ["BatchNorm2d: num_features must be a positive int, got 0"]),
    (lambda: BasicBlock(4, 4, stride=0), ValueError, ["BasicBlock: stride must be a positive int, got 0"]),
    (lambda: Bottleneck(4, 2, stride=-1), ValueError, ["Bottleneck: stride must be a positive int, got -1"]),
    (lambda: nn.CrossEntropyLoss(label_smoothing=1.5), ValueError,
     ["CrossEntropyLoss: label_smoothing must be in [0, 1], got 1.5"]),
]


@pytest.mark.parametrize("factory, error, parts", CONSTRUCTOR_CASES,
                         ids=[re.sub(r"[^\w.,()=-]+", "_", c[2][0]) for c in CONSTRUCTOR_CASES])
def test_bad_constructor_arguments(factory, error, parts):
    with pytest.raises(error, match="^" + ".*".join(re.escape(p) for p in parts)):
        factory()


def test_momentum_none_is_allowed():
    bn = nn.BatchNorm1d(2, momentum=None)
    bn(_x((4, 2)))
    assert int(bn.num_batches_tracked) == 1


def test_batchnorm_train_needs_more_than_one_value_per_channel():
    with pytest.raises(ValueError, match=msg("BatchNorm1d", "training needs more than one value per channel",
                                             "got input shape (1, 3)")):
        nn.BatchNorm1d(3)(_x((1, 3)))


# ---- CrossEntropyLoss -----------------------------------------------------------------------
CE = r"^CrossEntropyLoss\(label_smoothing=0\.0\): "


def test_cross_entropy_float_targets():
    with pytest.raises(TypeError, match=CE + "target must be an integer array of class indices, got float64"):
        nn.CrossEntropyLoss()(_x((4, 5)), np.array([0.0, 1.0, 2.0, 3.0]))


def test_cross_entropy_list_targets():
    with pytest.raises(TypeError, match=CE + "target must be an integer array.*got list"):
        nn.CrossEntropyLoss()(_x((4, 5)), [0, 1, 2, 3])


@pytest.mark.parametrize("target, low, high", [([0, 1, 5, 2], 0, 5), ([-1, 0, 1, 2], -1, 2)])
def test_cross_entropy_out_of_range_targets(target, low, high):
    with pytest.raises(ValueError, match=CE + re.escape(f"target values must be in [0, 5), got range [{low}, {high}]")):
        nn.CrossEntropyLoss()(_x((4, 5)), np.array(target))


def test_cross_entropy_wrong_target_shape():
    with pytest.raises(ValueError, match=CE + re.escape("target must have shape (4,) to match logits (4, 5), got (4, 1)")):
        nn.CrossEntropyLoss()(_x((4, 5)), np.zeros((4, 1), dtype=np.int64))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_cross_entropy_non_finite_logits(bad):
    logits = _x((4, 5))
    logits[2, 1] = bad
    with pytest.raises(FloatingPointError, match=CE + r"the loss is .*1 non-finite value"):
        nn.CrossEntropyLoss()(logits, np.array([0, 1, 2, 3]))


@pytest.mark.parametrize("logits, error, parts", [
    (np.ones((4, 5), dtype=np.int64), TypeError, ["expected a floating-point logits, got dtype int64"]),
    ([[0.0] * 5] * 4, TypeError, ["expected the logits to be a NumPy or CuPy array, got list"]),
    (np.zeros((4, 5, 1), dtype=F32), ValueError, ["expected a 2-D logits, got shape (4, 5, 1) (3-D)"]),
], ids=["int", "list", "3-D"])
def test_cross_entropy_bad_logits(logits, error, parts):
    with pytest.raises(error, match=CE + ".*".join(re.escape(p) for p in parts)):
        nn.CrossEntropyLoss()(logits, np.array([0, 1, 2, 3]))


def test_cross_entropy_backward_before_forward():
    with pytest.raises(RuntimeError, match=CE + "backward called before forward"):
        nn.CrossEntropyLoss().backward()


# ---- NaN in the input propagates, no exception ------------------------------------------------
def test_nan_propagates_through_conv2d():
    x = _x((1, 2, 5, 5))
    x[0, 1, 2, 2] = np.nan
    out = nn.Conv2d(2, 3, 3, padding=1)(x)
    expected = np.zeros((1, 3, 5, 5), dtype=bool)
    expected[:, :, 1:4, 1:4] = True                  # the outputs whose 3x3 window covers (2, 2)
    np.testing.assert_array_equal(np.isnan(out), expected)


def test_nan_propagates_through_relu():
    x = _x((2, 3))
    x[1, 2] = np.nan
    x[0, 0] = -1.0
    out = nn.ReLU()(x)
    assert np.isnan(out[1, 2]) and np.isnan(out).sum() == 1
    assert out[0, 0] == 0


@pytest.mark.parametrize("padding", [0, 1])
def test_nan_propagates_through_maxpool2d(padding):
    x = _x((1, 1, 4, 4))
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 3, 3] = 50.0                   # a large value in another window stays finite
    out = nn.MaxPool2d(2, padding=padding)(x)
    nan = np.isnan(out)
    assert nan.sum() == 1 and nan[0, 0, 0, 0 + padding]
    assert out[0, 0, -1, -1] == 50.0

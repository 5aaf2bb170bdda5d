"""The configurations that ``minise gradcheck`` checks: every layer, block and the loss.

Tiny float64 shapes, so the whole battery runs in seconds. Each case is
(layer name, config description, module, input, extra forward args).
"""
import numpy

from . import nn
from .models import BasicBlock, Bottleneck, SEBottleneck


def _x(rng, *shape):
    return rng.standard_normal(shape)


def standard_cases(seed=0):
    rng = numpy.random.default_rng(seed)
    nn.manual_seed(seed)
    for k, s, p, bias, shape in [
        (3, 1, 1, True, (2, 3, 5, 5)),
        (3, 2, 1, False, (2, 3, 7, 6)),
        (1, 1, 0, True, (1, 4, 4, 3)),
        (5, 1, 2, True, (2, 2, 6, 5)),
        (3, 2, 0, True, (1, 3, 7, 7)),
        ((3, 1), (2, 1), (1, 0), False, (2, 2, 5, 4)),
    ]:
        yield ("Conv2d", f"k={k} s={s} p={p} bias={bias} x={shape}",
               nn.Conv2d(shape[1], 3, k, stride=s, padding=p, bias=bias), _x(rng, *shape), ())
    for mode in ("train", "eval"):
        for shape in [(4, 3, 3, 2), (1, 2, 3, 3)]:
            bn = nn.BatchNorm2d(shape[1])
            _randomise_bn(bn, rng)
            yield "BatchNorm2d", f"{mode} x={shape}", bn.train(mode == "train"), _x(rng, *shape), ()
        for shape in [(5, 3), (3, 2, 4)]:
            bn = nn.BatchNorm1d(shape[1])
            _randomise_bn(bn, rng)
            yield "BatchNorm1d", f"{mode} x={shape}", bn.train(mode == "train"), _x(rng, *shape), ()
    for k, s, p, shape in [(2, None, 0, (2, 2, 4, 4)), (3, 2, 1, (1, 2, 5, 6)), (3, 1, 0, (2, 1, 4, 5))]:
        yield ("MaxPool2d", f"k={k} s={s} p={p} x={shape}", nn.MaxPool2d(k, s, p), _x(rng, *shape), ())
        yield ("AvgPool2d", f"k={k} s={s} p={p} x={shape}", nn.AvgPool2d(k, s, p), _x(rng, *shape), ())
    for size, shape in [(1, (2, 3, 4, 5)), ((1, 1), (1, 2, 3, 3)), ((2, 3), (2, 2, 4, 6))]:
        yield "AdaptiveAvgPool2d", f"out={size} x={shape}", nn.AdaptiveAvgPool2d(size), _x(rng, *shape), ()
    for bias, shape in [(True, (3, 5)), (False, (1, 4))]:
        yield "Linear", f"bias={bias} x={shape}", nn.Linear(shape[1], 3, bias=bias), _x(rng, *shape), ()
    for layer in (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.Identity):
        yield layer.__name__, "x=(2, 3, 2, 2)", layer(), _x(rng, 2, 3, 2, 2), ()
    yield "Flatten", "start_dim=1 x=(2, 3, 2, 2)", nn.Flatten(), _x(rng, 2, 3, 2, 2), ()
    yield "Unflatten", "dim=1 (3, 1, 1) x=(2, 3)", nn.Unflatten(1, (3, 1, 1)), _x(rng, 2, 3), ()
    for C, r, shape in [(8, 2, (2, 8, 3, 3)), (7, 3, (1, 7, 2, 4)), (6, 6, (3, 6, 1, 1))]:
        yield "SEBlock", f"C={C} r={r} x={shape}", nn.SEBlock(C, r), _x(rng, *shape), ()
    yield "AdaptiveMaxPool2d", "out=1 x=(2, 3, 3, 4)", nn.AdaptiveMaxPool2d(1), _x(rng, 2, 3, 3, 4), ()
    for options in [dict(squeeze="max"), dict(excitation="tanh"), dict(excitation="relu"),
                    dict(bias=(True, False)), dict(min_hidden=3)]:
        config = " ".join(f"{k}={v}" for k, v in options.items())
        yield "SEBlock", f"C=8 r=4 {config}", nn.SEBlock(8, 4, **options), _x(rng, 2, 8, 3, 3), ()
    for cin, cout, s, r in [(4, 4, 1, None), (4, 8, 2, None), (4, 4, 1, 2), (3, 6, 2, 3)]:
        block = _randomise_all_bn(BasicBlock(cin, cout, stride=s, reduction_ratio=r), rng)
        yield "BasicBlock", f"{cin}->{cout} s={s} r={r}", block, _x(rng, 2, cin, 4, 4), ()
    for placement in ("pre", "post", "identity"):
        for cin, cout, s in [(4, 4, 1), (3, 6, 2)]:
            block = _randomise_all_bn(BasicBlock(cin, cout, stride=s, reduction_ratio=2, placement=placement), rng)
            yield "BasicBlock", f"{cin}->{cout} s={s} r=2 {placement}", block, _x(rng, 2, cin, 4, 4), ()
        block = _randomise_all_bn(SEBottleneck(8, 2, 2, placement=placement), rng)
        yield "SEBottleneck", f"8->2x4 s=1 r=2 {placement}", block, _x(rng, 2, 8, 4, 4), ()
    for cin, mid, s in [(8, 2, 1), (4, 2, 2)]:
        yield ("Bottleneck", f"{cin}->{mid}x4 s={s}", _randomise_all_bn(Bottleneck(cin, mid, stride=s), rng),
               _x(rng, 2, cin, 4, 4), ())
        yield ("SEBottleneck", f"{cin}->{mid}x4 s={s} r=2",
               _randomise_all_bn(SEBottleneck(cin, mid, 2, stride=s), rng), _x(rng, 2, cin, 4, 4), ())
    for smoothing in (0.0, 0.1):
        yield ("CrossEntropyLoss", f"label_smoothing={smoothing} x=(4, 5)",
               nn.CrossEntropyLoss(label_smoothing=smoothing), _x(rng, 4, 5), (rng.integers(0, 5, 4),))


def _randomise_bn(bn, rng):
    """Non-trivial affine parameters and running statistics, so eval mode is a real test."""
    C = bn.num_features
    bn.weight.data[...] = rng.uniform(0.5, 1.5, C)
    bn.bias.data[...] = rng.standard_normal(C)
    bn.running_mean[...] = rng.standard_normal(C)
    bn.running_var[...] = rng.uniform(0.5, 2.0, C)
    return bn


def _randomise_all_bn(module, rng):
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            _randomise_bn(m, rng)
    return module

"""The catalogue of typical mistakes: each blank's answer, written once with the slips learners make.

``squeeze_backward(dz, x_shape, slip=None)`` and the others take a blank's arguments and, with
``slip=None``, return the right answer (the same numbers as the library's layers). With ``slip``
set to a key of the blank's entry in ``SLIPS``, they return the answer with that one mistake.
The grader computes every slip on its test arrays and names the one an answer matches; the tests
play every slip and check that it gets its name.

Each slip's text says what the answer did, not what to write instead: the next hints say that.
"""
from ..backend import get_array_module
from .forward import excite, squeeze

SLIPS = {
    "squeeze_backward": {
        "no_division": "every pixel got the whole dz[n, c]: the division by the H*W pixels that "
                       "shared the mean is missing",
        "divided_by_H": "dz is divided by H alone: the mean was over H*W pixels",
        "divided_by_W": "dz is divided by W alone: the mean was over H*W pixels",
        "divided_twice": "dz is divided by H*W twice",
        "divided_by_N": "dz is also divided by N: each sample has its own mean, nothing is shared over the batch",
        "one_pixel": "dz went to a single pixel of each map, as in a max squeeze: an average spreads it over all of them",
        "not_spread": "dz / (H*W) came back with shape (N, C, 1, 1): it must be copied to every pixel, (N, C, H, W)",
    },
    "max_squeeze_backward": {
        "spread_evenly": "dz is spread evenly over the map, as in the average squeeze: only the largest pixel moved the maximum",
        "divided_by_pixels": "the largest pixel got dz / (H*W): it moved the maximum one for one, so it gets all of dz",
        "smallest_pixel": "dz went to the smallest pixel of each map: the maximum is the largest",
        "first_pixel": "dz went to the first pixel of each map, whichever pixel was largest",
        "not_spread": "dx came back with shape (N, C, 1, 1): it has the input's shape, zero except at each map's largest pixel",
    },
    "linear_backward": {
        "dW_transposed": "dW is x.T @ dout, the transpose: it must have W's shape (out, in)",
        "dW_mean": "dW is divided by N: the batch's gradients add up, the loss already holds any 1/N",
        "db_mean": "db is the mean over the batch: the batch's gradients add up (a sum, not a mean)",
        "db_over_features": "db is summed over the feature axis 1: the bias is shared by the samples, so sum over axis 0",
        "db_not_summed": "db is dout itself, one row per sample: the bias is shared by the batch, so its rows add up",
    },
    "relu_backward": {
        "missing_dout": "dx is the ReLU's local derivative (the mask) alone: the upstream gradient is not multiplied in",
        "mask_reversed": "the mask is reversed: the gradient passed where x <= 0 and stopped where x > 0",
        "mask_missing": "dx equals dout: the ReLU's mask is missing",
        "mask_from_dout": "the mask is taken from dout (dout > 0): it belongs to the forward input x",
        "times_output": "dout is multiplied by the ReLU's output max(x, 0) instead of its slope (0 or 1)",
    },
    "sigmoid_backward": {
        "derivative_at_input": "sigma' is computed as x * (1 - x), from the input: the formula s (1 - s) holds for the output",
        "sigma_of_output": "the sigmoid is applied to its own output: sigma(out) (1 - sigma(out)) is sigma' at out, not at x",
        "missing_dout": "dx is the sigmoid's local derivative alone: the upstream gradient is not multiplied in",
        "missing_one_minus": "dx = dout * out: the factor (1 - out) of sigma' is missing",
        "missing_out": "dx = dout * (1 - out): the factor out of sigma' is missing",
        "sign_flipped": "dx has the wrong sign: sigma is increasing, so sigma' > 0",
    },
    "excite_backward": {
        "sigma_prime_at_e": "the sigmoid's derivative is taken from its input e: its formula is written with the output s",
        "sigma_of_s": "the sigmoid is applied to s before its derivative is taken: s is already the sigmoid's output",
        "sigma_prime_missing": "the sigmoid's backward is skipped: de = ds, its derivative is missing",
        "relu_skipped": "the ReLU's backward is skipped: the gradient is not zeroed where a <= 0",
        "relu_mask_from_gradient": "the ReLU's mask is taken from the gradient (dh > 0): it belongs to the forward value a",
        "weights_swapped": "the weights are swapped: the gradient goes back through each FC layer's own weight "
                           "(W2 for the second FC, W1 for the first)",
        "dW2_from_a": "dW2 is built from a, the ReLU's input: the second FC's input is h = relu(a)",
        "dW1_transposed": "dW1 is z.T @ da, the transpose: it must have W1's shape (C//r, C)",
        "db2_over_channels": "db2 is summed over the channel axis 1: the bias is shared by the samples, so sum over axis 0",
        "db2_mean": "db2 is the mean over the batch: the batch's gradients add up",
    },
    "rescale_backward": {
        "dx_missing_s": "dx is dout alone: the direct path is missing the factor that multiplied x",
        "dx_times_x": "dx is dout times x: in a product, each factor's gradient is dout times the other factor",
        "ds_missing_x": "ds sums dout alone: the factor that s multiplied is missing",
        "ds_times_s": "ds sums dout times s: in a product, each factor's gradient is dout times the other factor",
        "ds_mean": "ds is a mean over the pixels: s scaled every pixel of its channel, so their gradients add up",
        "ds_not_summed": "ds has one value per pixel, (N, C, H, W): s holds one gate per (sample, channel), so "
                         "the pixels' gradients add up to (N, C, 1, 1)",
        "ds_keepdims_missing": "ds has the right values but shape (N, C): keep the two unit axes, (N, C, 1, 1), like s",
        "ds_over_channels_too": "ds is also summed over the channels: each channel has its own gate",
    },
    "se_block_backward": {
        "path_through_s_missing": "the path through s is missing: x also reaches the output through s = excite(squeeze(x))",
        "direct_path_missing": "the direct path is missing: x is also the factor of the product x * s",
        "through_s_not_divided": "the path through s is off by a factor of H*W: the squeeze's backward divides dz by H*W",
        "through_s_divided_twice": "the path through s is divided by H*W twice",
        "ds_for_dz": "ds was passed to the squeeze's backward in place of dz: the excitation's backward is skipped",
        "dx_missing_s": "the direct path is dout alone: it is missing the factor s",
        "ds_missing_x": "ds, inside the block, sums dout alone: the factor x is missing",
        "ds_mean": "ds, inside the block, is a mean over the pixels: their gradients add up",
        "sigma_prime_at_e": "in the excitation, the sigmoid's derivative is taken from its input e",
        "sigma_of_s": "in the excitation, the sigmoid is applied to s before its derivative",
        "sigma_prime_missing": "in the excitation, the sigmoid's backward is skipped (de = ds)",
        "relu_skipped": "in the excitation, the ReLU's backward is skipped",
        "relu_mask_from_gradient": "in the excitation, the ReLU's mask is taken from the gradient, not from a",
        "weights_swapped": "in the excitation, the gradient goes back through the wrong FC weights (W1 and W2 swapped)",
        "dW2_from_a": "dW2 is built from a, the ReLU's input: the second FC's input is h = relu(a)",
        "db2_over_channels": "db2 is summed over the channel axis 1: sum over the batch axis 0",
        "db2_mean": "db2 is the mean over the batch: the batch's gradients add up",
    },
    "batch_norm_backward": {
        "eval_formula": "dx treats the mean and the variance as constants, as in eval mode: in training "
                        "they depend on x, and both of their paths are missing",
        "mean_path_missing": "the path through the mean is missing: each x moves its channel's mean",
        "var_path_missing": "the path through the variance is missing: each x moves its channel's variance",
        "gamma_missing": "dx is missing the factor gamma: out = gamma * x_hat + beta",
        "unbiased_variance": "the variance is divided by M - 1: training normalises with the biased variance (M)",
        "eps_missing": "eps is left out of the standard deviation",
        "eps_outside_sqrt": "eps is added to the standard deviation: it belongs under the square root, with the variance",
        "stats_per_sample": "the statistics are taken per sample, over (H, W) only: BatchNorm's are over the "
                            "batch too, (N, H, W)",
        "dgamma_without_xhat": "dgamma sums dout alone: gamma multiplies x_hat",
        "dgamma_from_x": "dgamma sums dout times x: gamma multiplies the normalised x_hat, not x",
        "dgamma_mean": "dgamma is a mean over the channel's values: their gradients add up",
        "dbeta_over_batch_only": "dbeta is summed over the batch only, shape (C, H, W): beta has one entry per "
                                 "channel, shared by every pixel too",
    },
    "conv_backward": {
        "dweight_flipped": "dweight is flipped in h and w: the forward is a cross-correlation, its weight "
                           "gradient is not flipped",
        "dx_kernel_not_flipped": "dx slides the kernel over dout without flipping it: sending each output's "
                                 "gradient back to the inputs it read flips the kernel",
        "dweight_mean": "dweight is divided by N: the batch's gradients add up",
        "dbias_mean": "dbias is a mean: every output pixel of every sample added the bias, their gradients add up",
        "dbias_over_batch_only": "dbias is summed over the batch only: the bias is shared by every output pixel too",
        "padding_not_cropped": "dx has the padded shape: the padding's border is not part of x, crop it off",
        "cropped_wrong_corner": "dx is cropped from the padded gradient's corner: x sits padding pixels in from each edge",
    },
}
_EXCITE_SLIPS = set(SLIPS["excite_backward"])
_RESCALE_SLIPS = {"dx_missing_s", "ds_missing_x", "ds_mean"}


def _check(blank, slip):
    if slip is not None and slip not in SLIPS[blank]:
        raise ValueError(f"{blank}: no slip named {slip!r}; the slips are {list(SLIPS[blank])}")


def squeeze_backward(dz, x_shape, slip=None):
    """dz: (N, C) -> dx: (N, C, H, W); dx = dz / (H*W) on every pixel."""
    _check("squeeze_backward", slip)
    N, C, H, W = x_shape
    xp = get_array_module(dz)
    if slip == "one_pixel":
        dx = xp.zeros(x_shape, dtype=dz.dtype)
        dx[:, :, 0, 0] = dz
        return dx
    divisor = {"no_division": 1, "divided_by_H": H, "divided_by_W": W, "divided_twice": (H * W) ** 2,
               "divided_by_N": N * H * W}.get(slip, H * W)
    share = (dz / divisor)[:, :, None, None]
    return share if slip == "not_spread" else xp.ones(x_shape, dtype=dz.dtype) * share


def max_squeeze_backward(x, dz, slip=None):
    """z = max over h, w of x. x: (N, C, H, W), dz: (N, C) -> dx: all of dz at each map's largest pixel."""
    _check("max_squeeze_backward", slip)
    N, C, H, W = x.shape
    if slip in ("spread_evenly", "not_spread"):
        share = (dz / (H * W))[:, :, None, None]
        return share if slip == "not_spread" else get_array_module(x).ones_like(x) * share
    flat = x.reshape(N, C, H * W)
    where = {"smallest_pixel": lambda: flat.argmin(axis=2), "first_pixel": lambda: 0 * flat.argmax(axis=2)}.get(
        slip, lambda: flat.argmax(axis=2))()
    dx = get_array_module(x).zeros_like(flat)
    value = dz / (H * W) if slip == "divided_by_pixels" else dz
    get_array_module(x).put_along_axis(dx, where[:, :, None], value[:, :, None], axis=2)
    return dx.reshape(x.shape)


def linear_backward(dout, x, W, slip=None):
    """out = x @ W.T + b: (dx, dW, db) = (dout @ W, dout.T @ x, sum over n of dout)."""
    _check("linear_backward", slip)
    dW = x.T @ dout if slip == "dW_transposed" else dout.T @ x
    if slip == "dW_mean":
        dW = dW / len(x)
    db = {"db_mean": lambda: dout.mean(axis=0), "db_over_features": lambda: dout.sum(axis=1),
          "db_not_summed": lambda: dout.copy()}.get(slip, lambda: dout.sum(axis=0))()
    return dout @ W, dW, db


def relu_backward(dout, x, slip=None):
    """dx = dout where x > 0, else 0."""
    _check("relu_backward", slip)
    return {"missing_dout": lambda: (x > 0) * x.dtype.type(1), "mask_reversed": lambda: dout * (x < 0),
            "mask_missing": lambda: dout.copy(), "mask_from_dout": lambda: dout * (dout > 0),
            "times_output": lambda: dout * get_array_module(x).maximum(x, 0)}.get(slip, lambda: dout * (x > 0))()


def sigmoid_backward(dout, x, out, slip=None):
    """dx = dout * out * (1 - out)."""
    _check("sigmoid_backward", slip)
    xp = get_array_module(x)
    derivative = {"derivative_at_input": lambda: x * (1 - x),
                  "sigma_of_output": lambda: (1 / (1 + xp.exp(-out))) * (1 - 1 / (1 + xp.exp(-out))),
                  "missing_one_minus": lambda: out, "missing_out": lambda: 1 - out,
                  "sign_flipped": lambda: -out * (1 - out)}.get(slip, lambda: out * (1 - out))()
    return derivative if slip == "missing_dout" else dout * derivative


def excite_backward(ds, cache, W1, W2, slip=None):
    """ds: (N, C, 1, 1) -> (dz, dW1, dW2, db2), back through sigmoid, FC2, ReLU, FC1."""
    _check("excite_backward", slip)
    xp = get_array_module(ds)
    s, ds2 = cache["s"], ds.reshape(cache["s"].shape)
    gate = {"sigma_prime_at_e": cache["e"], "sigma_of_s": 1 / (1 + xp.exp(-s))}.get(slip, s)
    de = ds2 if slip == "sigma_prime_missing" else ds2 * gate * (1 - gate)
    dh = de @ W1.T if slip == "weights_swapped" else de @ W2
    mask = {"relu_skipped": 1, "relu_mask_from_gradient": dh > 0}.get(slip, cache["a"] > 0)
    da = dh * mask
    dz = da @ W2.T if slip == "weights_swapped" else da @ W1
    dW1 = cache["z"].T @ da if slip == "dW1_transposed" else da.T @ cache["z"]
    dW2 = de.T @ (cache["a"] if slip == "dW2_from_a" else cache["h"])
    db2 = {"db2_over_channels": lambda: de.sum(axis=1), "db2_mean": lambda: de.mean(axis=0)}.get(
        slip, lambda: de.sum(axis=0))()
    return dz, dW1, dW2, db2


def rescale_backward(dout, x, s, slip=None):
    """out = x * s: (dx, ds) = (dout * s, sum over h, w of dout * x, kept (N, C, 1, 1))."""
    _check("rescale_backward", slip)
    dx = {"dx_missing_s": lambda: dout.copy(), "dx_times_x": lambda: dout * x}.get(slip, lambda: dout * s)()
    product = {"ds_missing_x": lambda: dout, "ds_times_s": lambda: dout * s}.get(slip, lambda: dout * x)()
    ds = {"ds_mean": lambda: product.mean(axis=(2, 3), keepdims=True), "ds_not_summed": lambda: product,
          "ds_keepdims_missing": lambda: product.sum(axis=(2, 3)),
          "ds_over_channels_too": lambda: product.sum(axis=(1, 2, 3), keepdims=True)}.get(
        slip, lambda: product.sum(axis=(2, 3), keepdims=True))()
    return dx, ds


def se_block_backward(dout, x, W1, W2, b2, slip=None):
    """dout: (N, C, H, W) -> (dx, dW1, dW2, db2); dx = dout * s + squeeze_backward(dz)."""
    _check("se_block_backward", slip)
    s, cache = excite(squeeze(x), W1, W2, b2)
    dx_direct, ds = rescale_backward(dout, x, s, slip if slip in _RESCALE_SLIPS else None)
    dz, dW1, dW2, db2 = excite_backward(ds, cache, W1, W2, slip if slip in _EXCITE_SLIPS else None)
    if slip == "ds_for_dz":
        dz = ds.reshape(dz.shape)
    squeeze_slip = {"through_s_not_divided": "no_division", "through_s_divided_twice": "divided_twice"}.get(slip)
    dx_through_s = squeeze_backward(dz, x.shape, squeeze_slip)
    dx = {"path_through_s_missing": dx_direct, "direct_path_missing": dx_through_s}.get(slip, dx_direct + dx_through_s)
    return dx, dW1, dW2, db2


def batch_norm_backward(dout, x, gamma, eps, slip=None):
    """BatchNorm2d in training mode. dout, x: (N, C, H, W), gamma: (C,) -> (dx, dgamma, dbeta):
    dx = gamma / std * (dout - mean(dout) - x_hat * mean(dout * x_hat)), means over (N, H, W)."""
    _check("batch_norm_backward", slip)
    xp = get_array_module(x)
    axes = (2, 3) if slip == "stats_per_sample" else (0, 2, 3)
    M = x.shape[2] * x.shape[3] * (1 if slip == "stats_per_sample" else x.shape[0])   # values per statistic
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).sum(axis=axes, keepdims=True) / (M - 1 if slip == "unbiased_variance" else M)
    std = {"eps_missing": lambda: xp.sqrt(var), "eps_outside_sqrt": lambda: xp.sqrt(var) + eps}.get(
        slip, lambda: xp.sqrt(var + eps))()
    x_hat = (x - mu) / std
    scale = (1 if slip == "gamma_missing" else gamma[None, :, None, None]) / std
    mean_path = 0 if slip in ("eval_formula", "mean_path_missing") else dout.mean(axis=axes, keepdims=True)
    var_path = 0 if slip in ("eval_formula", "var_path_missing") else x_hat * (dout * x_hat).mean(axis=axes, keepdims=True)
    dx = scale * (dout - mean_path - var_path)
    dgamma = {"dgamma_without_xhat": lambda: dout.sum(axis=(0, 2, 3)),
              "dgamma_from_x": lambda: (dout * x).sum(axis=(0, 2, 3)),
              "dgamma_mean": lambda: (dout * x_hat).mean(axis=(0, 2, 3))}.get(
        slip, lambda: (dout * x_hat).sum(axis=(0, 2, 3)))()
    dbeta = dout.sum(axis=0) if slip == "dbeta_over_batch_only" else dout.sum(axis=(0, 2, 3))
    return dx, dgamma, dbeta


def conv_backward(dout, x, weight, padding, slip=None):
    """Conv2d, stride 1. dout: (N, O, Ho, Wo), x: (N, C, H, W), weight: (O, C, kh, kw) ->
    (dx, dweight, dbias), one kernel offset (i, j) at a time: that offset read the input window
    x_pad[:, :, i:i+Ho, j:j+Wo] with the weights weight[:, :, i, j]."""
    _check("conv_backward", slip)
    xp = get_array_module(x)
    (N, C, H, W), (O, _, kh, kw), (Ho, Wo), p = x.shape, weight.shape, dout.shape[2:], padding
    x_pad = xp.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    dx_pad, dweight = xp.zeros_like(x_pad), xp.zeros_like(weight)
    for i in range(kh):
        for j in range(kw):
            window = (slice(None), slice(None), slice(i, i + Ho), slice(j, j + Wo))
            dweight[:, :, i, j] = xp.einsum("nohw,nchw->oc", dout, x_pad[window])
            w_ij = weight[:, :, kh - 1 - i, kw - 1 - j] if slip == "dx_kernel_not_flipped" else weight[:, :, i, j]
            dx_pad[window] += xp.einsum("nohw,oc->nchw", dout, w_ij)
    if slip == "dweight_flipped":
        dweight = dweight[:, :, ::-1, ::-1].copy()
    if slip == "dweight_mean":
        dweight = dweight / N
    dbias = {"dbias_mean": lambda: dout.mean(axis=(0, 2, 3)), "dbias_over_batch_only": lambda: dout.sum(axis=0)}.get(
        slip, lambda: dout.sum(axis=(0, 2, 3)))()
    crop = {"padding_not_cropped": dx_pad, "cropped_wrong_corner": dx_pad[:, :, :H, :W]}
    return crop.get(slip, dx_pad[:, :, p:p + H, p:p + W]), dweight, dbias


BLANKS = {"squeeze_backward": squeeze_backward, "max_squeeze_backward": max_squeeze_backward, "linear_backward": linear_backward,
          "relu_backward": relu_backward, "sigmoid_backward": sigmoid_backward,
          "excite_backward": excite_backward, "rescale_backward": rescale_backward,
          "se_block_backward": se_block_backward, "batch_norm_backward": batch_norm_backward,
          "conv_backward": conv_backward}

"""Hints in steps: ``hint(name)`` says one thing more at each call.

    1. which output is wrong (from the latest ``check`` of that blank),
    2. which path of the computation that output comes from, and where the lesson derives it,
    3. the formula of that output,
    4. where to see a whole answer: ``show_solution(name)``.

``hint(name, step)`` shows one step directly. The texts are per output of each blank.
"""
from .answers import QUESTIONS
from .checks import LAST, output_names
from .grading import CORRECT

PATHS = {
    "squeeze_backward": {
        "dx": "z[n, c] is the mean of the H*W pixels of channel c of sample n, so each of those pixels "
              "moved z[n, c] by the same amount (notebook 01, 'Backward: the gradient spreads evenly')."},
    "max_squeeze_backward": {
        "dx": "z[n, c] is the largest pixel of its map: moving any other pixel a little leaves z unchanged "
              "(notebook 01, Exercise 1.4's question)."},
    "linear_backward": {
        "dx": "x reaches every output feature through a row of W: the chain rule sums over the output features.",
        "dW": "W[o, i] multiplies x[n, i] in output o of every sample n: its gradient sums over the batch.",
        "db": "b[o] is added to output o of every sample: its gradient sums over the batch."},
    "relu_backward": {
        "dx": "max(x, 0) has slope 1 where x > 0 and 0 elsewhere (notebook 02, 'Backward, piece by piece')."},
    "sigmoid_backward": {
        "dx": "sigma' can be written with the sigmoid's output alone (notebook 02, Exercise 2.1 derives it)."},
    "excite_backward": {
        "dz": "dz is the end of the whole chain back through sigmoid, FC2, ReLU, FC1, in that order: check "
              "each step's backward (notebook 02, 'The whole excitation').",
        "dW1": "dW1 comes from the first FC: its output's gradient (after the ReLU's backward) and its input z.",
        "dW2": "dW2 comes from the second FC: its output's gradient (after the sigmoid's backward) and its input h.",
        "db2": "db2 comes from the second FC: its output's gradient after the sigmoid's backward, over the batch."},
    "rescale_backward": {
        "dx": "out = x * s is a product: x's gradient is the upstream gradient times the other factor "
              "(notebook 03, 'Backward: two paths').",
        "ds": "one gate s[n, c] multiplied all H*W pixels of its channel: their gradients reach it together "
              "(notebook 03, 'Backward: two paths')."},
    "se_block_backward": {
        "dx": "x reaches the output on two paths, as the factor of x * s and through s = excite(squeeze(x)): "
              "the two paths' gradients add (notebook 03, 'Backward: two paths').",
        "dW1": "the FC weights are reached only through s: rescale's ds, then the excitation's backward.",
        "dW2": "the FC weights are reached only through s: rescale's ds, then the excitation's backward.",
        "db2": "the FC bias is reached only through s: rescale's ds, then the excitation's backward."},
    "batch_norm_backward": {
        "dx": "in training, x reaches the output three ways: directly through x - mu, through the mean mu and "
              "through the variance var, both computed from the batch (notebook 09, 'BatchNorm's backward').",
        "dgamma": "gamma multiplies x_hat at every value of its channel: the gradients of all N*H*W values add up.",
        "dbeta": "beta is added at every value of its channel: the gradients of all N*H*W values add up."},
    "conv_backward": {
        "dx": "each kernel offset (i, j) read a window of the padded input with weight[:, :, i, j]: send "
              "dout back to that window through the same weights, then drop the padding (notebook 09, "
              "'The convolution's backward').",
        "dweight": "weight[o, c, i, j] multiplied the window x_pad[:, c, i:i+Ho, j:j+Wo] into output channel o.",
        "dbias": "bias[o] was added to every output pixel of channel o, in every sample."},
}

FORMULAS = {
    "squeeze_backward": {"dx": "dx[n, c, h, w] = dz[n, c] / (H * W), the same on every pixel of the channel."},
    "max_squeeze_backward": {"dx": "dx = zeros like x; dx[n, c] at the position of x[n, c]'s maximum = dz[n, c]"},
    "linear_backward": {"dx": "dx = dout @ W        (N, out) @ (out, in)",
                        "dW": "dW = dout.T @ x      (out, N) @ (N, in)",
                        "db": "db = dout.sum(axis=0)"},
    "relu_backward": {"dx": "dx = dout * (x > 0)"},
    "sigmoid_backward": {"dx": "dx = dout * out * (1 - out)"},
    "excite_backward": {
        "dz": "de = ds.reshape(N, C) * s * (1 - s);  dh = de @ W2;  da = dh * (a > 0);  dz = da @ W1",
        "dW1": "dW1 = da.T @ z,  with da = (de @ W2) * (a > 0)",
        "dW2": "dW2 = de.T @ h,  with de = ds.reshape(N, C) * s * (1 - s)",
        "db2": "db2 = de.sum(axis=0)"},
    "rescale_backward": {"dx": "dx = dout * s",
                         "ds": "ds = (dout * x).sum(axis=(2, 3), keepdims=True)"},
    "se_block_backward": {
        "dx": "dx_direct, ds = rescale_backward(dout, x, s);  dz, ... = excite_backward(ds, cache, W1, W2);  "
              "dx = dx_direct + squeeze_backward(dz, x.shape)",
        "dW1": "dW1, dW2, db2 are what excite_backward(ds, cache, W1, W2) returns, with ds from rescale_backward",
        "dW2": "dW1, dW2, db2 are what excite_backward(ds, cache, W1, W2) returns, with ds from rescale_backward",
        "db2": "dW1, dW2, db2 are what excite_backward(ds, cache, W1, W2) returns, with ds from rescale_backward"},
    "batch_norm_backward": {
        "dx": "dx = gamma / sqrt(var + eps) * (dout - mean(dout) - x_hat * mean(dout * x_hat)), means over (0, 2, 3)",
        "dgamma": "dgamma = (dout * x_hat).sum(axis=(0, 2, 3))",
        "dbeta": "dbeta = dout.sum(axis=(0, 2, 3))"},
    "conv_backward": {
        "dx": "for each (i, j): dx_pad[:, :, i:i+Ho, j:j+Wo] += einsum('nohw,oc->nchw', dout, weight[:, :, i, j]); "
              "dx = dx_pad[:, :, p:p+H, p:p+W]",
        "dweight": "for each (i, j): dweight[:, :, i, j] = einsum('nohw,nchw->oc', dout, x_pad[:, :, i:i+Ho, j:j+Wo])",
        "dbias": "dbias = dout.sum(axis=(0, 2, 3))"},
}

STEPS = 4
_taken = {}        # the hint steps already given, per blank


class Hint(str):
    """A hint's text; shown as plain text in a notebook."""

    def __repr__(self):
        return str(self)


def hint(name, step=None):
    """The next hint for blank ``name`` (or hint number ``step``, 1 to 4). For a numeric exercise
    of notebooks 01-04 ("2.2"): where the lesson derives it, then where the worked answer is."""
    if name in QUESTIONS:
        return Hint(f"Where it is derived: {QUESTIONS[name].hint}. A worked answer: exercises.show_solution({name!r})")
    if name not in PATHS:
        raise ValueError(f"hint: no exercise named {name!r}; the exercises are {list(PATHS) + list(QUESTIONS)}")
    if step is None:
        step = min(_taken.get(name, 0) + 1, STEPS)
    if step not in range(1, STEPS + 1):
        raise ValueError(f"hint: step must be 1 to {STEPS}, got {step!r}")
    feedback = LAST.get(name)
    if feedback is None:
        return Hint(f"Run exercises.check({name}) first: the first hint says which of its outputs is wrong.")
    _taken[name] = max(_taken.get(name, 0), step)
    if feedback is not None and feedback.status == CORRECT:
        return Hint(f"{name} is already correct: nothing to hint.")
    output = _first_wrong(name, feedback)
    text = {1: lambda: _which_output(name, feedback),
            2: lambda: f"Which path: {PATHS[name][output]}",
            3: lambda: f"The formula of {output}: {FORMULAS[name][output]}",
            4: lambda: f"A whole answer: exercises.show_solution({name!r})"}[step]()
    more = f"  (hint {step} of {STEPS}" + ("; call again for the next)" if step < STEPS else ")")
    return Hint(text + more)


def _first_wrong(name, feedback):
    wrong = feedback.wrong_outputs
    order = output_names(name)
    return next((o for o in order if o in wrong), order[0])


def _which_output(name, feedback):
    wrong = [o for o in output_names(name) if o in feedback.wrong_outputs]
    if not wrong:
        return f"The check found nothing to compare yet: {feedback.findings[0].message}"
    right = [o for o in output_names(name) if o not in wrong]
    return (f"Wrong: {', '.join(wrong)}" + (f"; right: {', '.join(right)}." if right else ".")
            + f" Start with {wrong[0]}.")

"""The worked answers to the exercises of notebooks 01-04, shown by ``show_solution("2.2")``.

They are kept here, out of the notebooks, so that no answer is in view while a learner works;
the checks (``answers.check_answer``) measure every value with minise itself."""

SOLUTIONS = {
    "1.1": r"""
`z` has shape `(N, C) = (8, 64)`: **512** numbers. Each is the mean of one channel's `H × W` map:
**256** inputs. The squeeze compresses the tensor by the factor `H·W`.
""",
    "1.2": r"""
`z_c` is the mean of 49 pixels, each with weight `1/49`, so it rises by `49 · 1/49 =` **1**. The
derivative `∂z_c/∂x_{c,h,w} = 1/(HW)` is the same for every pixel: that is the whole backward pass.
""",
    "1.3": r"""
`dx_{c,h,w} = dz_c / (HW) = 1 / 1024 =` **0.0009765625**, the same at every pixel of every channel.
""",
    "1.4": r"""
Only the largest pixel of each map moves `z_c`, with slope 1; every other pixel has slope 0. So
`dz_c` goes, whole, to the position of the maximum:

```python
def max_squeeze_backward(x, dz):
    N, C, H, W = x.shape
    flat = x.reshape(N, C, H * W)
    dx = np.zeros_like(flat)
    winner = flat.argmax(axis=2)                        # (N, C): where each map's maximum is
    np.put_along_axis(dx, winner[:, :, None], dz[:, :, None], axis=2)
    return dx.reshape(N, C, H, W)
```

Compare with the average squeeze: there every pixel gets `dz_c / (HW)`; here one pixel gets all
of `dz_c` and the others nothing.
""",
    "1.5": r"""
**0**. Batch norm makes every channel's mean over `(N, H, W)` equal to its `bias`, and the batch
mean of `z_c` is exactly that mean. So the squeeze of a batch-normed map carries no information
in its batch average: what the excitation can use is how each *image's* channel mean differs from
the batch's. (With one image, `N = 1`, every `z_c` is the bias itself.)
""",
    "2.1": r"""
`σ(v) = (1 + e^{−v})^{−1}`, so `σ′(v) = e^{−v} (1 + e^{−v})^{−2} = σ(v) · e^{−v}/(1 + e^{−v})
= σ(v)(1 − σ(v))`. A product `s(1 − s)` with `s ∈ (0, 1)` is largest at `s = 1/2`, i.e. at `v = 0`:
**0.25**. A gate that starts near 0.5 passes at most a quarter of its gradient; a saturated one
(`s` near 0 or 1) almost none.
""",
    "2.2": r"""
`C·(C/r)` weights and `C/r` biases in the first FC, `(C/r)·C` weights and `C` biases in the second:
`P = 2C²/r + C/r + C`. For `(64, 16)`: `256 + 4 + 256 + 64 =` **580**, four more than the 576 of
minise's default.
""",
    "2.3": r"""
`(2/16)(3·256² + 4·512² + 6·1024² + 3·2048²) = (1/8) · 20,119,552 =` **2,514,944**: the "∼2.5
million" of Section 4. With minise's default second-FC bias the count above was 2,530,048, so the
biases add 15,104 (0.6%).
""",
    "2.4": r"""
**(0, 0)**. The ReLU's mask `[u_j > 0]` is 0 for every sample, so `du_j = 0` and row `j` of
`dW₁ = duᵀz` is 0. Column `j` of `dW₂ = dvᵀa` multiplies `a_j = 0`: also 0. A unit that is off for
every image stops learning, the "dead ReLU"; with one or two hidden units (`C // 16` at `C = 16`
or `32`) that can switch off the whole excitation.
""",
    "3.1": r"""
Only the direct path is left: `dx = dout · s =` **0.25** everywhere. The path through `s` is
`squeeze_backward(excite_backward(ds))`, and with `W₁ = 0` the excitation's input gradient
`dz = du W₁` is exactly 0.
""",
    "3.2": r"""
About **0.5**. `|dx direct| = |g·s|` grows like `√(HW)` (one term per pixel). On the other path
`ds_c = Σ_hw g x` is a sum of `HW` products of random sign, which grows like `√(HW)`; the squeeze
spreads `dz_c / (HW)` over `HW` pixels, a norm of `|dz_c| / √(HW)`, so `|dx through s|` does not grow
at all. The ratio falls like `1/√(HW)`: four times the pixels halve it.
""",
    "3.3": r"""
About **1**: it stays the same. Now `g·x = s·x²` is positive at every pixel, so `ds_c` grows like
`HW`, not `√(HW)`, and after the squeeze `|dx through s|` grows like `√(HW)`, as the direct path does.
At `16 × 16` the ratio is already more than twenty times the one of Exercise 3.2 (`answers.path_ratio` measures both), and
it would not shrink on larger maps.
""",
    "3.4": r"""
**0** (to rounding): the direct path gives `dout · 1`, and the path through `s` is multiplied by
`σ′ = s(1 − s)`, which is 0 when `s` is 1 in floating point. Forward, `out = x`: "At the point at
which all activations take the value one, an SE block reduces to the identity operator" (the
paper, Section 7.2).
""",
    "3.5": r"""
```python
def my_rescale_backward(dout, x, s):
    dx_direct = dout * s                                # x as the factor: its partner s
    ds = (dout * x).sum(axis=(2, 3), keepdims=True)     # s_c multiplied every pixel of channel c
    return dx_direct, ds
```

`ds` sums over `h, w` because one `s_c` scaled all `H·W` pixels of its channel: a broadcast in the
forward pass is a sum in the backward pass.
""",
    "4.1": r"""
A block of width `C` with `h = C // 16` hidden units has `C·h + h·C + C` parameters: 48, 160 and
576 for `C = 16, 32, 64`. Three of each: `3 · (48 + 160 + 576) =` **2,352** (0.86% of ResNet-20's
272,474).
""",
    "4.2": r"""
`h = max(16 // 16, 4) = 4`: `16·4 + 4·16 + 16 =` **144**, against 48 without the floor.
""",
    "4.3": r"""
The FCs run once per image, not per pixel: `64·4 + 4·64 =` **512** mult-adds. The rescale multiplies
every element once: `64 · 8 · 8 =` **4,096** multiplications, eight times as many, yet both are tiny
next to one 3×3 convolution of 64 channels on that map (`9 · 64² · 64 = 2,359,296`). Answer as the
pair `(512, 4096)`.
""",
    "4.4": r"""
`0.5⁹ = 1/512 ≈` **0.00195**: the identity path, which is what makes deep residual networks easy to
train, starts nearly closed. The standard placement gates only the residual branch and leaves the
shortcut a true identity.
""",
    "4.5": r"""
Only the two blocks that widen the network differ: `layer2[0]` (16 → 32) and `layer3[0]`
(32 → 64) have SE blocks of 16 and 32 channels instead of 32 and 64. With 4 hidden units an SE
block of `C` channels has `9C` parameters, so the difference is `9·16 + 9·32 =` **432**.
""",
}

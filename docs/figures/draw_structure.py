"""Draw the structure figures the notebooks show (SVG, in this folder).

    se_block_shapes.svg      the SE block, stage by stage, with the tensor shape after each module
    se_gradient_paths.svg    the backward pass: the two paths of dx that meet at the rescale
    se_placements.svg        the four places of the SE block in a residual unit (the paper's Fig. 5)

Run from anywhere: ``python docs/figures/draw_structure.py``. Only matplotlib is needed.
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)
from matplotlib.patches import FancyBboxPatch  # noqa: E402

HERE = Path(__file__).parent
plt.rcParams.update({"font.size": 9, "svg.fonttype": "none", "svg.hashsalt": "minise"})

SQUEEZE, EXCITE, RESCALE, GRAD = "#cfe2f3", "#fce5cd", "#d9ead3", "#c0392b"


def box(ax, x, y, text, color, w=1.5, h=0.62, size=8):
    """A rounded box centred at (x, y)."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.03",
                                facecolor=color, edgecolor="0.3", linewidth=0.8))
    ax.text(x, y, text, ha="center", va="center", fontsize=size)


def arrow(ax, start, end, label=None, color="0.2", offset=(0, 0.16), **kw):
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>", color=color, lw=1.1,
                                                          shrinkA=0, shrinkB=0, **kw))
    if label:
        ax.text((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1], label,
                ha="center", va="bottom", fontsize=8, color=color)


def canvas(width, height, xlim, ylim):
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set(xlim=xlim, ylim=ylim, aspect="equal")
    ax.axis("off")
    return fig, ax


def se_block_shapes():
    """Forward: every module of SEBlock.sequence with its output shape (and an example)."""
    fig, ax = canvas(13, 3.4, (-1.2, 22.6), (-2.6, 2.3))
    step, width = 2.6, 2.1
    stages = [  # (module, output shape, example for N=1, C=64, r=16, 32x32, colour)
        ("AdaptiveAvgPool2d\n(1, 1)", "(N, C, 1, 1)", "(1, 64, 1, 1)", SQUEEZE),
        ("Flatten", "z: (N, C)", "(1, 64)", SQUEEZE),
        ("Linear\nC → C/r, no bias", "(N, C/r)", "(1, 4)", EXCITE),
        ("ReLU", "(N, C/r)", "(1, 4)", EXCITE),
        ("Linear\nC/r → C, bias", "(N, C)", "(1, 64)", EXCITE),
        ("Sigmoid", "(N, C)", "(1, 64)", EXCITE),
        ("Unflatten\n(C, 1, 1)", "s: (N, C, 1, 1)", "(1, 64, 1, 1)", EXCITE),
    ]
    ax.text(-0.2, 0, "x\n(N, C, H, W)\n(1, 64, 32, 32)", ha="center", va="center", fontsize=8)
    x, half = -0.2, 0.85
    for i, (module, shape, example, color) in enumerate(stages):
        centre = 2.2 + step * i
        arrow(ax, (x + half, 0), (centre - width / 2, 0))
        box(ax, centre, 0, module, color, w=width, h=0.8, size=7.5)
        ax.text(centre + step / 2, -0.55, f"{shape}\n{example}", ha="center", va="top", fontsize=7, color="0.25")
        x, half = centre, width / 2
    product = 2.2 + step * len(stages)
    arrow(ax, (x + half, 0), (product - 0.3, 0))
    ax.add_patch(plt.Circle((product, 0), 0.3, facecolor=RESCALE, edgecolor="0.3"))
    ax.text(product, 0, "×", ha="center", va="center", fontsize=13)
    arrow(ax, (product + 0.3, 0), (product + 1.0, 0))
    ax.text(product + 1.05, 0, "out\n(N, C, H, W)", ha="left", va="center")
    # x is used a second time, by the rescale
    ax.plot([-0.2, -0.2, product, product], [0.6, 1.55, 1.55, 0.3], color="0.2", lw=1.1)
    arrow(ax, (product, 0.45), (product, 0.3))
    ax.text(product / 2, 1.65, "x again: out = x · s, s broadcast over H × W", ha="center", va="bottom")
    for (a, b), label, color in [((1.2, 5.8), "squeeze: z = mean over H, W", SQUEEZE),
                                 ((6.4, 18.8), "excite: s = σ(W₂ ReLU(W₁ z) + b₂)", EXCITE)]:
        ax.plot([a, b], [-1.85, -1.85], color="0.3", lw=4, solid_capstyle="butt", alpha=0.35)
        ax.text((a + b) / 2, -2.05, label, ha="center", va="top")
    ax.text(product, -2.05, "rescale", ha="center", va="top")
    ax.set_title("The SE block, module by module: tensor shape after each step "
                 "(second line: N = 1, C = 64, r = 16, H = W = 32)", fontsize=10)
    return fig


def se_gradient_paths():
    """Backward: dout reaches x directly (dout · s) and through s (ds -> dz -> dz / HW); they add."""
    fig, ax = canvas(11, 4.2, (-0.5, 16.5), (-3.3, 2.6))
    box(ax, 15.2, 0, "dout\n(N, C, H, W)", RESCALE, w=1.9, h=0.8)
    box(ax, 0.9, 0, "dx\n(N, C, H, W)", "white", w=1.7, h=0.8)
    ax.add_patch(plt.Circle((3.0, 0), 0.3, facecolor="white", edgecolor=GRAD, lw=1.2))
    ax.text(3.0, 0, "+", ha="center", va="center", fontsize=14, color=GRAD)
    arrow(ax, (2.7, 0), (1.75, 0), color=GRAD)
    # the direct path
    ax.plot([14.25, 3.0], [1.5, 1.5], color=GRAD, lw=1.2)
    ax.plot([15.2, 15.2], [0.4, 1.5], color=GRAD, lw=1.2)
    ax.plot([14.25, 15.2], [1.5, 1.5], color=GRAD, lw=1.2)
    arrow(ax, (3.0, 1.5), (3.0, 0.3), color=GRAD)
    ax.text(8.6, 1.62, "direct path: dx = dout · s   (x as the factor in the product)",
            ha="center", va="bottom", color=GRAD)
    # the path through s
    steps = [(12.3, "ds = Σ_hw dout · x\n(N, C, 1, 1)", RESCALE),
             (8.7, "excite_backward\ndz: (N, C)", EXCITE),
             (5.1, "squeeze_backward\ndz / (H·W) on every pixel", SQUEEZE)]
    arrow(ax, (15.2, -0.4), (15.2, -1.6), color=GRAD)
    arrow(ax, (15.2, -1.6), (steps[0][0] + 1.45, -1.6), color=GRAD)
    for (x, text, color), nxt in zip(steps, steps[1:] + [None]):
        box(ax, x, -1.6, text, color, w=2.9, h=0.9)
        if nxt:
            arrow(ax, (x - 1.45, -1.6), (nxt[0] + 1.45, -1.6), color=GRAD)
    ax.plot([steps[-1][0] - 1.45, 3.0], [-1.6, -1.6], color=GRAD, lw=1.2)
    arrow(ax, (3.0, -1.6), (3.0, -0.3), color=GRAD)
    ax.text(8.6, -2.35, "path through s: s was computed from x, so the gradient reaching s flows back\n"
            "through the excitation (into W₁, W₂, b₂) and the squeeze, then spreads over H × W",
            ha="center", va="top", color=GRAD)
    ax.set_title("Backward through the SE block: x is used twice, so dx is the sum of two paths", fontsize=10)
    return fig


def residual_unit(ax, left, placement):
    """One residual unit with its SE block at ``placement`` (the paper's Fig. 5); x at the bottom."""
    trunk, side = left + 0.8, left + 3.0
    y_in, y_add, y_out = 0.0, 5.0, 6.6
    ax.text(trunk, y_in - 0.35, "x", ha="center", va="top")
    ax.plot([trunk, trunk], [y_in, 0.6], color="0.2", lw=1.1)
    ax.plot([trunk, side], [0.6, 0.6], color="0.2", lw=1.1)
    branch = ["SE", "F"] if placement == "pre" else ["F", "SE"]
    if placement not in ("pre", "standard"):
        branch = ["F"]
    ys = [1.7, 3.3] if len(branch) == 2 else [2.5]
    y = 0.6
    for text, yc in zip(branch, ys):
        arrow(ax, (side, y), (side, yc - 0.35))
        box(ax, side, yc, text, EXCITE if text == "SE" else "white", w=2.4, h=0.8)
        y = yc + 0.35
    arrow(ax, (side, y), (side, y_add))
    ax.plot([side, trunk + 0.25], [y_add, y_add], color="0.2", lw=1.1)
    if placement == "identity":
        arrow(ax, (trunk, 0.6), (trunk, 2.15))
        box(ax, trunk, 2.5, "SE", EXCITE, w=0.8, h=0.7)
        arrow(ax, (trunk, 2.85), (trunk, y_add - 0.25))
    else:
        arrow(ax, (trunk, 0.6), (trunk, y_add - 0.25))
    ax.add_patch(plt.Circle((trunk, y_add), 0.25, facecolor="white", edgecolor="0.3"))
    ax.text(trunk, y_add, "+", ha="center", va="center", fontsize=11)
    arrow(ax, (trunk, y_add + 0.25), (trunk, y_out - 0.3))
    box(ax, trunk, y_out, "ReLU", "white", w=0.9, h=0.55)
    top = y_out + 0.28
    if placement == "post":
        arrow(ax, (trunk, top), (trunk, 7.85))
        box(ax, trunk, 8.2, "SE", EXCITE, w=0.8, h=0.7)
        top = 8.55
    arrow(ax, (trunk, top), (trunk, 9.1))
    titles = {"standard": "standard SE\nrelu(x + SE(F(x)))", "pre": "SE-PRE\nrelu(x + F(SE(x)))",
              "post": "SE-POST\nSE(relu(x + F(x)))", "identity": "SE-Identity\nrelu(SE(x) + F(x))"}
    ax.text(left + 1.9, 9.3, titles[placement], ha="center", va="bottom")


def se_placements():
    fig, ax = canvas(11, 4.4, (-0.5, 19.5), (-0.8, 10.6))
    for i, placement in enumerate(("standard", "pre", "post", "identity")):
        residual_unit(ax, 5.0 * i, placement)
    ax.text(9.5, -0.75, "left line: the shortcut (identity); right: the residual branch F (conv-BN-ReLU-conv-BN). "
            "SE-POST and SE-Identity put the gate on the path from block to block.",
            ha="center", va="top", fontsize=8, color="0.25")
    return fig


if __name__ == "__main__":
    for name, draw in [("se_block_shapes", se_block_shapes), ("se_gradient_paths", se_gradient_paths),
                       ("se_placements", se_placements)]:
        figure = draw()
        figure.savefig(HERE / f"{name}.svg", bbox_inches="tight", metadata={"Date": None})
        plt.close(figure)
        print(f"wrote {HERE / name}.svg")

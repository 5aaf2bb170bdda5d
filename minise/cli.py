"""The ``minise`` command: ``minise train``, ``evaluate``, ``ablate``, ``gradcheck``, ``summary``."""
import argparse
import sys

from .training.options import int_tuple


def _summary(argv):
    from .budget import BudgetError, check_activations
    from .model_spec import ModelSpecError, build_model, fitting_input_size
    from .summary import summary

    parser = argparse.ArgumentParser(prog="minise summary", description="Print a model's layer table.")
    parser.add_argument("--model", required=True,
                        help="a layer or model of minise.nn and minise.models, alone or called with literal "
                             "arguments, e.g. 'SEBlock(64, 16)', 'SEBottleneck(64, 16, 16)' or 'se_resnet20'")
    parser.add_argument("--input-size", type=int_tuple("1,64,32,32"),
                        help="input shape, batch first (default: one input the model takes, e.g. 1,3,32,32 "
                             "for the ResNets, 1,C,32,32 for a layer of C channels)")
    parser.add_argument("--mult-adds", action="store_true", help="add the mult-adds column")
    parser.add_argument("--memory-budget", type=float, default=2.0, metavar="GB",
                        help="refuse, before building or running anything, a model whose parameters or whose "
                             "pass on the input could take more memory than this (default: 2 GB)")
    options = parser.parse_args(argv)
    if not 0 < options.memory_budget < float("inf"):
        parser.error(f"--memory-budget must be a positive number of GB, got {options.memory_budget}")
    budget = options.memory_budget * 1e9
    try:
        model = build_model(options.model, max_bytes=budget)
    except (ModelSpecError, BudgetError) as err:
        text = options.model if len(options.model) <= 80 else options.model[:77] + "..."
        parser.error(f"--model {text!r}: {err}")
    options.input_size = options.input_size or fitting_input_size(model)
    size = ",".join(map(str, options.input_size))
    columns = ("input_size", "output_size", "num_params") + (("mult_adds",) if options.mult_adds else ())
    try:
        check_activations(model, options.input_size, budget)
        summary(model, options.input_size, col_names=columns)
    except (ValueError, TypeError, MemoryError, OverflowError) as err:   # the model refuses that input
        message = f"{type(err).__name__}: out of memory" if isinstance(err, MemoryError) and not str(err) else err
        print(f"minise summary: error: --input-size {size}: {message}", file=sys.stderr)
        return 1
    return 0


COMMANDS = {
    "gradcheck": ("check every layer's backward pass against numeric gradients",
                  lambda argv: __import__("minise.gradcheck", fromlist=["main"]).main(argv)),
    "summary": ("print a model's layers, shapes and parameter counts", _summary),
    "train": ("train a CIFAR (SE-)ResNet and write metrics, curves and checkpoints",
              lambda argv: __import__("minise.training.train_command", fromlist=["main"]).main(argv)),
    "evaluate": ("test accuracy, per-class accuracy and a confusion matrix of a checkpoint",
                 lambda argv: __import__("minise.training.evaluate_command", fromlist=["main"]).main(argv)),
    "ablate": ("train a grid of SE settings x seeds, resumably, and tabulate mean ± std",
               lambda argv: __import__("minise.training.ablate", fromlist=["main"]).main(argv)),
}
EXAMPLES = """examples:
  minise train --epochs 5 --train-subset 2000 --test-subset 1000 --out runs/first
  minise evaluate runs/first/best.npz
  minise summary --model se_resnet20
  minise gradcheck --only SEBlock
  minise COMMAND --help            # a command's options, each with its default"""


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--version"]:
        from . import __version__
        print(f"minise {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            print(f"minise: unknown command {argv[0]!r}", file=sys.stderr)
        print("usage: minise COMMAND [options]\n\ncommands:")
        for name, (help_text, _) in COMMANDS.items():
            print(f"  {name:<12} {help_text}")
        print(f"\n{EXAMPLES}")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    return COMMANDS[argv[0]][1](argv[1:])


if __name__ == "__main__":
    sys.exit(main())

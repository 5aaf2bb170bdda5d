"""``minise train``: train a CIFAR (SE-)ResNet into a run folder (see ``loop`` and ``run_folder``)."""
import dataclasses
import os
import sys

from ..checkpoint import CheckpointError
from ..distributed import launch, world
from .config import FIELDS, TrainConfig, option_name
from . import run_folder
from .load import read_checkpoint
from .loop import TrainingError, train
from .options import SHARED_FIELDS, add_config_options, add_shared_options, given_options, parser

EXAMPLES = [
    "minise train --epochs 5 --train-subset 2000 --test-subset 1000 --out runs/first    # a first result",
    "minise train                                     # SE-ResNet-20, 10k images, 30 epochs, into runs/latest",
    "minise train --model resnet20 --train-subset 5000 --out runs/r20-5k",
    "minise train --resume runs/r20-5k                # continue from runs/r20-5k/last.npz",
    "minise train --device cuda --train-subset 0      # all 50k images on the GPU (needs CuPy)",
]
# With --resume the saved settings hold; these options still apply (how the run computes and shows).
RESUME_OPTIONS = {"resume", "no_progress", "threads", "workers"}


def build_parser():
    p = parser("minise train", "Train a CIFAR (SE-)ResNet and write metrics.csv, curves.png, config.json, "
                               "last.npz and best.npz into --out.", EXAMPLES)
    add_config_options(p, [f for f in FIELDS if f not in SHARED_FIELDS])
    add_shared_options(p)
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the run in DIR from DIR/last.npz, with the settings saved there")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out (its files are deleted)")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    p = build_parser()
    args = p.parse_args(argv)
    if args.resume and args.overwrite:
        p.error("--resume continues a run and --overwrite replaces it: give one of them")
    progress = not args.no_progress
    try:
        return launch.run_command("minise train", ["train", *argv], lambda: _run(args, argv, p, progress),
                                  args.workers, args.device, args.threads, before_launch=lambda: _check_out(args))
    except KeyboardInterrupt:
        return 130
    except (TrainingError, CheckpointError, ValueError, RuntimeError, OSError) as err:
        print(f"minise train: error: {err}", file=sys.stderr)
        return 1


def _check_out(args):
    """Before the workers start: a new run's --out must be free (the same check worker 0 makes)."""
    if not args.resume:
        run_folder.claim(args.out, resume=False, overwrite=args.overwrite)


def _run(args, argv, p, progress):
    """The command in this process: alone, or as one of the workers."""
    if args.resume:
        ignored = sorted(given_options(p, argv) - RESUME_OPTIONS)
        if ignored and world().rank == 0:
            print(f"minise train: warning: ignoring {', '.join(option_name(d) for d in ignored)}: a resumed run "
                  f"keeps the settings saved in {os.path.join(args.resume, 'last.npz')}", file=sys.stderr)
        saved = read_checkpoint(os.path.join(args.resume, "last.npz")).config
        # the saved settings, but this run's worker and thread counts (any count resumes any run)
        train(dataclasses.replace(saved, out=args.resume, threads=args.threads, workers=None), resume=True,
              progress=progress)
    else:
        fields = vars(args)
        train(TrainConfig(**{k: fields[k] for k in FIELDS}), progress=progress, overwrite=args.overwrite)
    return 0

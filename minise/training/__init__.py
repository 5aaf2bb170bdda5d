"""Training CIFAR (SE-)ResNets: the ``minise train``, ``minise evaluate`` and ``minise ablate`` commands.

    config.py            TrainConfig: every training option, declared once; build_model
    options.py           the commands' options, built from TrainConfig, and their help layout
    loop.py              train(config): the data, the optimiser, the epoch loop, the test pass
    run_folder.py        a run's folder: claiming it; config.json, metrics.csv, curves.png
    load.py              read_checkpoint(path), load_model(path): a model rebuilt from a checkpoint
    train_command.py     minise train
    evaluate_command.py  minise evaluate
    ablate.py            minise ablate: grids of settings x seeds, resumable, with summary tables
"""
from .config import TrainConfig, build_model, check_config
from .load import load_model, read_checkpoint
from .loop import TrainingError, evaluate, prepare_data, train

__all__ = ["TrainConfig", "build_model", "check_config", "load_model", "read_checkpoint", "TrainingError",
           "evaluate", "prepare_data", "train"]

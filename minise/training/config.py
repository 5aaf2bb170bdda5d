"""TrainConfig: every training option, declared once. ``minise train`` and ``minise ablate`` build
their command-line options from these fields (``options.add_config_options``), so their names,
types, choices, defaults and help cannot drift apart."""
import dataclasses
import math
import numbers

from .. import backend, models
from ..models.blocks import PLACEMENTS
from ..nn.se import EXCITATION_OPS, SQUEEZE_OPS

MODELS = ["resnet20", "resnet32", "resnet56", "se_resnet20", "se_resnet32", "se_resnet56"]
SCHEDULES = ["onecycle", "cosine", "step", "constant"]
DATASETS = ["cifar10", "cifar100"]


def option(default, help, **argparse_keywords):
    """A TrainConfig field with its command-line help (and argparse's choices, type or metavar)."""
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"help": help, **argparse_keywords})
    return dataclasses.field(default=default, metadata={"help": help, **argparse_keywords})


@dataclasses.dataclass
class TrainConfig:
    model: str = option("se_resnet20", "the network", choices=MODELS)
    reduction_ratio: int = option(16, "SE reduction ratio r: a block of C channels squeezes them into C // r")
    min_hidden: int = option(4, "floor on the SE hidden width, max(C // r, this) (0: the paper's C // r)")
    placement: str = option("standard", "where the SE block sits in a residual block (the paper's Fig. 5)",
                            choices=list(PLACEMENTS))
    se_stages: list = option([1, 2, 3], "the stages with SE blocks, e.g. 2,3", metavar="STAGES")
    squeeze: str = option("avg", "the SE squeeze: global average or max pooling", choices=list(SQUEEZE_OPS))
    excitation: str = option("sigmoid", "the SE gate", choices=list(EXCITATION_OPS))
    dataset: str = option("cifar10", "the dataset", choices=DATASETS)
    epochs: int = option(30, "training epochs")
    batch_size: int = option(128, "training batch size (the last partial batch is dropped)")
    lr: float = option(0.1, "max lr for onecycle, initial lr otherwise")
    momentum: float = option(0.9, "SGD momentum")
    nesterov: bool = option(True, "Nesterov momentum")
    weight_decay: float = option(5e-4, "SGD weight decay")
    schedule: str = option("onecycle", "lr schedule: onecycle (15% linear warm-up, then linear decay), "
                           "cosine, step (x0.1 at 1/2 and 3/4 of the steps) or constant", choices=SCHEDULES)
    train_subset: int = option(10000, "train on a balanced subset of this many images (0: all)")
    test_subset: int = option(0, "test on a balanced subset of this many images after every epoch (0: all)")
    data: str = option(None, "data source: the official archive, its folder, image folders or 'download' "
                             "(default: $MINISE_DATA, else download)")
    data_dir: str = option(None, "cache folder for downloads and decoded images "
                                 "(default: $XDG_CACHE_HOME/minise, else ~/.cache/minise)")
    seed: int = option(0, "seed of the initial weights, the shuffling and the augmentation")
    device: str = option("cpu", "cpu, or cuda (needs CuPy and an NVIDIA GPU)", choices=list(backend.DEVICES))
    cuda_graph: bool = option(True, "with --device cuda, record the training step once as a CUDA graph and replay it")
    workers: int = option(None, "worker processes, each training on its shard of every batch (default: "
                                "$MINISE_WORKERS, else every CPU this process may use; one on cuda)")
    threads: int = option(None, "CPU threads (default: $MINISE_NUM_THREADS, else every CPU this process may use)")
    out: str = option("runs/latest", "the run's folder; one that holds files is refused unless --resume or "
                                     "--overwrite is given")

    def __post_init__(self):
        self.se_stages = list(self.se_stages)    # a list, as it comes back from JSON


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
# (minimum, maximum or None) of the integer settings, from the command line or a checkpoint. The
# maxima bound the work a setting sizes: a batch of 1,024 SE-ResNet-20 images already holds
# gigabytes of activations for backward; CIFAR has 50,000 training and 10,000 test images.
INTEGER_RANGES = {"epochs": (1, None), "batch_size": (1, 1024), "reduction_ratio": (1, 1024), "min_hidden": (0, 1024),
                  "train_subset": (0, 50_000), "test_subset": (0, 10_000), "seed": (0, None), "threads": (1, 1024),
                  "workers": (1, 1024)}


def check_config(config):
    """Reject unknown names and bad numbers, naming the option, before any data is loaded."""
    for field, choices in (("model", MODELS), ("schedule", SCHEDULES), ("dataset", DATASETS),
                           ("device", backend.DEVICES), ("placement", PLACEMENTS),
                           ("squeeze", list(SQUEEZE_OPS)), ("excitation", list(EXCITATION_OPS))):
        if getattr(config, field) not in choices:
            raise ValueError(f"unknown {field} {getattr(config, field)!r}; choose from {list(choices)}")
    if config.data is not None and (not isinstance(config.data, str) or not config.data.strip()):
        raise ValueError(f"--data must name a data source (a path or 'download'), got {config.data!r}")
    if not set(config.se_stages) <= {1, 2, 3}:
        raise ValueError(f"se_stages must be drawn from 1, 2, 3; got {config.se_stages!r}")
    for field, (minimum, maximum) in INTEGER_RANGES.items():
        value = getattr(config, field)
        if field in ("threads", "workers") and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            raise ValueError(f"{option_name(field)} must be an integer >= {minimum}, got {value!r}")
        if maximum is not None and value > maximum:
            raise ValueError(f"{option_name(field)} must be at most {maximum:,}, got {value:,}")
    for field in ("lr", "momentum", "weight_decay"):
        value = getattr(config, field)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{option_name(field)} must be a finite number >= 0, got {value!r}")
    classes = num_classes(config)
    for field in ("train_subset", "test_subset"):
        if getattr(config, field) % classes:
            raise ValueError(f"{option_name(field)} must be a multiple of the {classes} classes (a balanced subset "
                             f"takes as many images of each; 0 takes all), got {getattr(config, field)}")


def option_name(field):
    """A config field as the command line spells it: batch_size -> --batch-size."""
    return "--" + field.replace("_", "-")


def num_classes(config):
    return 100 if config.dataset == "cifar100" else 10


def architecture(config):
    """The keyword arguments of ``minise.models.cifar_resnet`` that build ``config``'s model."""
    check_config(config)
    depth = int(config.model.rsplit("resnet", 1)[1])          # "se_resnet20" -> 20
    if not config.model.startswith("se_"):
        return {"depth": depth, "num_classes": num_classes(config)}
    return {"depth": depth, "num_classes": num_classes(config), "reduction_ratio": config.reduction_ratio,
            "min_hidden": config.min_hidden or None, "placement": config.placement,
            "se_stages": list(config.se_stages),
            "se_options": {"squeeze": config.squeeze, "excitation": config.excitation}}


def build_model(config):
    """The (SE-)ResNet that ``config`` describes, freshly initialised."""
    kwargs = architecture(config)
    if "se_stages" in kwargs:
        kwargs["se_stages"] = tuple(kwargs["se_stages"])
    return models.cifar_resnet(**kwargs)

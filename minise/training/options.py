"""Command-line options built from TrainConfig's fields, and the help layout of every command."""
import argparse
import dataclasses

from .config import FIELDS, option_name


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's help ends with its default, once (unless the help already names it); the
    description and the examples keep their line breaks."""

    def _get_help_string(self, action):
        text = action.help or ""
        is_flag = action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction)
        if "default" in text or is_flag or not action.option_strings or action.default is argparse.SUPPRESS:
            return text
        return f"{text} (default: {'none' if action.default is None else '%(default)s'})"


def parser(prog, description, examples):
    """An ArgumentParser with minise's help layout; ``examples``: lines shown at the end."""
    return argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter,
                                   allow_abbrev=False, epilog="examples:\n" + "\n".join(f"  {e}" for e in examples))


# The options every command that computes shares: TrainConfig's fields, and --no-progress.
SHARED_FIELDS = ("data", "device", "threads", "workers")


def add_shared_options(parser, helps=None, **defaults):
    """--data, --device, --threads, --workers (from TrainConfig's fields, see add_config_options)
    and --no-progress."""
    add_config_options(parser, SHARED_FIELDS, helps, **defaults)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_config_options(parser, names, helps=None, **defaults):
    """Add the option of each TrainConfig field in ``names`` (--batch-size for batch_size), with
    the field's help, type and choices; ``defaults`` overrides a field's default and ``helps``
    ({field: text}) its help, where a command gives the option another default."""
    for name in names:
        field = FIELDS[name]
        default = defaults.get(name, field.default_factory() if field.default_factory is not dataclasses.MISSING
                               else field.default)
        keywords = {k: v for k, v in field.metadata.items() if k != "help"}
        help_text = (helps or {}).get(name, field.metadata["help"]).replace("%", "%%")
        if field.type is bool:
            parser.add_argument(option_name(name), action=argparse.BooleanOptionalAction, default=default,
                                help=help_text)
        elif field.type is list:
            parser.add_argument(option_name(name), default=",".join(map(str, default)), type=int_tuple("1,2,3"),
                                help=help_text, **keywords)
        else:
            parser.add_argument(option_name(name), default=default, type=field.type, help=help_text, **keywords)


def given_options(parser, argv):
    """The destinations of the options that ``argv`` spells out (not those left at their default)."""
    return {action.dest for action in parser._actions for arg in argv
            if any(arg == flag or arg.startswith(flag + "=") for flag in action.option_strings)}


def int_tuple(example):
    """An argparse type for integers separated by commas: '1,64,32,32' -> (1, 64, 32, 32)."""
    def parse(text):
        try:
            return tuple(int(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected integers separated by commas, such as {example}; "
                                             f"got {text!r}") from None
    return parse

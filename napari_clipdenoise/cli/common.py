"""What every ``clipdenoise`` command shares: exit codes, the usage error, option errors in flag syntax."""

from __future__ import annotations

import re
import signal

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: Option names as the command line spells them.
FLAGS = {
    "tile_size": "--tile-size",
    "overlap": "--overlap",
    "batch_size": "--batch-size",
    "device": "--device",
    "precision": "--precision",
    "intensity_range": "--intensity-range",
    "output_dtype": "--output-dtype",
    "balance_tiles": "--tile-size",
    "pad_multiple": "--pad-multiple",
    "channels_last": "--channels-last",
    "units": "--units",
    "planes": "--planes",
    "tta": "--tta",
    "channels": "--channels",
    "max_pixels": "--max-pixels",
    "overwrite": "--overwrite",
    "axes": "--axes",
    "scheduler": "--scheduler",
}

_KEYWORD = re.compile(r"\b([a-z_]+)=(?:'([^']*)'|\"([^\"]*)\"|([\w.:,+-]+))")


_BARE = re.compile(r"\b([a-z_]+)=(?=[\s),;]|$)")


def cli_syntax(message: str) -> str:
    """A message from the library in command-line words: ``precision='fp32'`` -> ``--precision fp32``.

    Only the keyword spellings of options this command has (:data:`FLAGS`) are
    rewritten; ``overwrite=True`` becomes ``--overwrite``.
    """

    def flag(match: re.Match) -> str:
        name = match.group(1)
        if name not in FLAGS:
            return match.group(0)
        value = next(g for g in match.groups()[1:] if g is not None)
        if value == "True" and name in ("overwrite", "tta"):
            return FLAGS[name]
        return f"{FLAGS[name]} {value}"

    message = _KEYWORD.sub(flag, message)
    return _BARE.sub(lambda m: FLAGS.get(m.group(1), m.group(0)), message)


class CommandError(Exception):
    """A problem found before any work; printed as ``clipdenoise: error: ...`` with exit code 2."""


def option_error(exc) -> CommandError:
    """An :class:`~napari_clipdenoise.inference.options.OptionError` as a usage error naming the flag."""
    return CommandError(cli_syntax(exc.render(FLAGS)))


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (temporary outputs removed) but exiting with 128 + 15."""

    exit_code = 128 + signal.SIGTERM


def interrupt_on_sigterm() -> None:
    def handler(signum, frame):
        raise Terminated

    signal.signal(signal.SIGTERM, handler)


def positive(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def intensity_range_argument(text: str):
    """``--intensity-range``: ``auto``, ``percentile``, ``dtype`` or ``LOW,HIGH`` (argparse type)."""
    import argparse

    if text in ("auto", "percentile", "dtype"):
        return text
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be auto, percentile, dtype or LOW,HIGH (e.g. -1024,3072), got {text}"
        ) from None
    return (low, high)

"""The ``clipdenoise`` command: argument parsing and dispatch to one module per command.

The work is done by :mod:`napari_clipdenoise.batch`, :mod:`napari_clipdenoise.formats`
and the model core. torch is imported only after the arguments are checked and
only by the commands that need it, so mistakes and a missing model are reported
at once.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from . import adapt, denoise, info, models
from .common import EXIT_INTERRUPTED, EXIT_USAGE, CommandError, interrupt_on_sigterm

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipdenoise",
        description="Denoise images with a frozen-CLIP denoiser (Cheng et al., CVPR 2024); manage models.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (denoise, adapt, models, info):
        command.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``clipdenoise`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    interrupt_on_sigterm()
    try:
        return args.handler(args)
    except CommandError as exc:
        print(f"clipdenoise: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        print("interrupted", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_INTERRUPTED)

"""``--threads`` of ``dfxsdk run``, ``eval`` and ``quantize``: the threads of the native backend's sessions."""

from __future__ import annotations

import argparse

from ..errors import DfxInputError, DfxUnsupportedError
from ..plugins import get_manager

HELP = ("threads of the native backend's sessions (results are identical for every N); 0 (default): automatic, "
        "the environment variable DFX_THREADS (a count, or 'cores' for every online CPU), else 1. "
        "The numpy backend runs on one thread")


def add_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--threads N`` to a command's parser."""
    parser.add_argument("--threads", type=int, default=0, metavar="N", help=HELP)


def apply(args: argparse.Namespace) -> None:
    """Give ``args.threads`` to the native backend (when it is installed) before the command runs models."""
    if args.threads < 0:
        raise DfxInputError(f"--threads must be 0 (automatic) or a count >= 1, not {args.threads}")
    try:
        native = get_manager().backend("native")
    except DfxUnsupportedError:
        return
    native.threads = args.threads

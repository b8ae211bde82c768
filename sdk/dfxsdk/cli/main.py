"""The ``dfxsdk`` command: subcommands are the ``*_cmd`` modules of this package.

Each module exposes ``register(subparsers)``, which adds one subparser whose
``func(args) -> int`` does the work. Errors become one line on stderr and a
fixed exit code (see :mod:`dfxsdk.errors`); ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import traceback

from .._version import __version__
from ..errors import EXIT_BAD_INPUT, EXIT_INTERNAL, DfxError

_EPILOG = """exit codes:
  0  success
  1  internal error (a bug: please report it with --debug output)
  2  bad input: invalid or unreadable file, wrong arguments or data
  3  unsupported: valid input this installation cannot handle
  4  a plugin failed to load or broke its contract
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="dfxsdk",
        description="Import, quantize, inspect and run dynamic fixed point networks (.dfx files).",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"dfxsdk {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import __path__ as cli_path

    for info in sorted(pkgutil.iter_modules(cli_path), key=lambda m: m.name):
        if info.name.endswith("_cmd"):
            importlib.import_module(f"{__package__}.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(args.func(args) or 0)
    except DfxError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"dfxsdk {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"dfxsdk {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: one line, details with --debug
        if args.debug:
            traceback.print_exc()
        print(f"dfxsdk {args.command}: internal error: {type(exc).__name__}: {exc} "
              "(rerun with --debug and report it)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())

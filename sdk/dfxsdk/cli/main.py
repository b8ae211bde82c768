"""The ``dfxsdk`` command: subcommands are the ``*_cmd`` modules of this package.

Each module exposes ``register(subparsers)``, which adds one subparser whose
``func(args) -> int`` does the work. Errors become one line on stderr and a
fixed exit code (see :mod:`dfxsdk.errors`); ``--debug`` shows tracebacks.

Start-up stays light: ``--version`` is answered before anything else is
imported, and plugins load only for the commands that use them (see
:mod:`dfxsdk.cli._plugins`). ``-p no:NAME`` switches a plugin off before any
plugin loads.
"""

from __future__ import annotations

import argparse
import sys

from .._version import __version__
from ..errors import EXIT_BAD_INPUT, EXIT_INTERNAL, DfxError

_EPILOG = """plugins:
  Plugins (importers, quantizers, backends, custom operators) load only for the
  commands that use them. Switch plugins off with -p no:NAME (repeatable) or
  DFXSDK_DISABLE_PLUGINS=NAME1,NAME2 (NAME: entry point, plugin or package name;
  'all': every plugin not shipped with dfxsdk). 'dfxsdk plugins' lists them.

exit codes:
  0  success
  1  internal error (a bug: please report it with --debug output)
  2  bad input: invalid or unreadable file, wrong arguments or data
  3  unsupported: valid input this installation cannot handle
  4  a plugin failed to load or broke its contract
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    import importlib  # (here, not at the top: `dfxsdk --version` needs neither)
    import pkgutil

    parser = argparse.ArgumentParser(
        prog="dfxsdk",
        description="Import, quantize, inspect and run dynamic fixed point networks (.dfx files).",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"dfxsdk {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-p", dest="plugin_switches", metavar="no:NAME", action="append", default=[],
                        type=_plugin_switch, help="do not load the plugin NAME (repeatable; no:all for every "
                        "third-party plugin)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import __path__ as cli_path

    for info in sorted(pkgutil.iter_modules(cli_path), key=lambda m: m.name):
        if info.name.endswith("_cmd"):
            importlib.import_module(f"{__package__}.{info.name}").register(sub)
    return parser


def _plugin_switch(text: str) -> list[str]:
    """'no:NAME[,NAME...]' -> [NAME, ...]; argparse error otherwise."""
    if not text.startswith("no:") or not text[3:].strip(","):
        raise argparse.ArgumentTypeError(f"'{text}' is not no:NAME (the only -p form: switch a plugin off)")
    return [n for n in text[3:].split(",") if n]


def _prescan(argv: list[str]) -> tuple[str | None, list[str]]:
    """The command and the plugins switched off with -p, read before the parser is built."""
    off: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-p" or (arg.startswith("-p") and not arg.startswith("--")):
            value = argv[i + 1] if arg == "-p" and i + 1 < len(argv) else arg[2:].lstrip("=")
            i += 2 if arg == "-p" else 1
            try:
                off += _plugin_switch(value)
            except argparse.ArgumentTypeError:
                pass  # the parser reports it
        elif arg.startswith("-"):
            i += 1
        else:
            return arg, off
    return None, off


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command, off = _prescan(argv)
    if command is None and "--version" in argv and not any(a in ("-h", "--help") for a in argv):
        print(f"dfxsdk {__version__}")
        return 0
    from . import _plugins

    if off:
        from .. import plugins

        plugins.disable(off)
    _plugins.want_options_for(command)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return _run(args)
    finally:
        _plugins.report_failures(args.command)


def _run(args: argparse.Namespace) -> int:
    import traceback

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

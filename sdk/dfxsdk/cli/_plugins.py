"""How the CLI uses plugins: which commands load them, provider options, failure warnings.

Plugins load only when a command needs them: ``dfxsdk --version``, ``--help``
and ``inspect`` import none. ``convert`` and ``quantize`` add the options of
every importer (and quantizer) to their parser, so they load the plugins when
they are the command given (also for ``convert --help``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

from .. import plugins

#: The commands whose parser carries options of plugins.
_OPTION_COMMANDS = frozenset({"convert", "quantize"})
_wanted: set[str] = set()


def want_options_for(command: str | None) -> None:
    """Set the command whose parser gets plugin options (main() does, before building the parser)."""
    _wanted.clear()
    if command in _OPTION_COMMANDS:
        _wanted.add(command)


def wants_options(command: str) -> bool:
    """Whether ``command``'s parser is to carry the options of the installed plugins."""
    return command in _wanted


def add_provider_options(parser: argparse.ArgumentParser, providers: Iterable, kind: str) -> dict[str, list[str]]:
    """Give each provider an option group and let it add its options; return the dests by provider name.

    A provider whose ``add_arguments`` fails leaves none of its options
    behind (the ones it added before failing are removed) and a warning.
    """
    groups: dict[str, list[str]] = {}
    for provider in providers:
        group = parser.add_argument_group(f"{provider.name} {kind}")
        before = len(group._group_actions)
        try:
            with plugins.get_manager().guard(provider, "adding its command line options"):
                provider.add_arguments(group)
        except (argparse.ArgumentError, Exception) as exc:  # a broken plugin must not break the CLI
            for action in group._group_actions[before:]:
                parser._remove_action(action)
                for option in action.option_strings:
                    parser._option_string_actions.pop(option, None)
            del group._group_actions[before:]
            print(f"dfxsdk: warning: {kind} '{provider.name}' could not add its options, so it has none: {exc}",
                  file=sys.stderr)
        groups[provider.name] = [a.dest for a in group._group_actions[before:]]
    return groups


def report_failures(command: str | None) -> None:
    """One warning line per plugin that failed to load, if this command loaded the plugins."""
    pm = plugins.loaded_manager()
    if pm is None or command == "plugins":
        return
    for f in pm.failures:
        pkg = f" (package {f.package} {f.package_version})" if f.package else ""
        print(f"dfxsdk: warning: plugin '{f.name}'{pkg} is not used: {f.reason} "
              f"(see 'dfxsdk plugins'; switch it off with -p no:{f.name})", file=sys.stderr)

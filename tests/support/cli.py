"""The ``dfxsdk`` command line run in this process."""

from __future__ import annotations

import contextlib
import io
from typing import NamedTuple


class CliResult(NamedTuple):
    """Exit code and captured output of one ``dfxsdk`` run (unpacks as ``code, out, err``)."""

    code: int
    out: str
    err: str


def cli(*argv: object) -> CliResult:
    """Run ``dfxsdk ARGV`` in this process (with the current plugin registry); arguments go through str()."""
    from dfxsdk.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return CliResult(code, out.getvalue(), err.getvalue())

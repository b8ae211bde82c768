"""The dfxsdk exception hierarchy and the CLI exit codes it maps to.

Every error dfxsdk raises on purpose is a :class:`DfxError`. Its message names
where the problem is (file, layer, tensor, field) so that a one-line report is
enough to find it. The CLI turns each class into a fixed exit code:

====  =====================================================================
code  meaning
====  =====================================================================
0     success
1     internal error (a bug in dfxsdk or a plugin: please report it)
2     bad input: an invalid or unreadable file, wrong arguments or data
3     unsupported: valid input that this installation cannot handle
      (an operator a backend lacks, a missing plugin, a Ristretto mode)
4     a plugin failed to load or broke its contract
====  =====================================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_UNSUPPORTED = 3
EXIT_PLUGIN = 4


class DfxError(Exception):
    """Base class of every error dfxsdk raises on purpose.

    ``file``, ``layer``, ``tensor`` and ``field`` say where the problem is;
    they are prefixed to the message in that order.
    """

    exit_code = EXIT_BAD_INPUT

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        layer: str | None = None,
        tensor: str | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = None if file is None else str(file)
        self.layer = layer
        self.tensor = tensor
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.layer is not None:
            where.append(f"layer '{self.layer}'")
        if self.tensor is not None:
            where.append(f"tensor '{self.tensor}'")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        return ": ".join([*where, self.message])

    def with_file(self, file: str) -> DfxError:
        """Return this error with ``file`` filled in if it was not set."""
        if self.file is None:
            self.file = str(file)
            self.args = (str(self),)
        return self


class DfxFormatError(DfxError):
    """A .dfx file (or an in-memory model about to be saved) is invalid."""


class DfxImportError(DfxError):
    """A source model (Caffe, ONNX, ...) cannot be read or converted."""


class DfxInputError(DfxError):
    """Bad run-time input: arguments, data files, shapes, labels."""


class DfxUnsupportedError(DfxError):
    """Valid input that this installation does not support."""

    exit_code = EXIT_UNSUPPORTED


class DfxPluginError(DfxError):
    """A plugin failed to load, declared an incompatible API, or broke its contract."""

    exit_code = EXIT_PLUGIN

"""The custom operator npzgraph.Clamp: y = min(max(x, lo), hi), elementwise.

Options (opaque to dfxsdk): two little-endian float32 values, lo then hi. The
operator runs in float form (dfxsdk.providers.CustomOperator); its C
implementation for libdfx and compiled models is c/npzgraph_clamp.c.
"""

from __future__ import annotations

import struct

import numpy as np

from dfxsdk.errors import DfxFormatError
from dfxsdk.providers import CustomOperator

NAME = "npzgraph.Clamp"


def options(lo: float, hi: float) -> bytes:
    """The option bytes of a Clamp to [lo, hi]."""
    return struct.pack("<2f", lo, hi)


def bounds(opts: bytes) -> tuple[np.float32, np.float32]:
    if len(opts) != 8:
        raise DfxFormatError(f"{NAME} options must be 8 bytes (two float32), not {len(opts)}")
    lo, hi = struct.unpack("<2f", opts)
    return np.float32(lo), np.float32(hi)


class Clamp(CustomOperator):
    """Clamps every value to [lo, hi]."""

    name = NAME
    description = "y = min(max(x, lo), hi); options: float32 lo, hi"
    versions = (1,)

    def infer_shapes(self, input_shapes: list[tuple[int, ...]], options: bytes) -> list[tuple[int, ...]]:
        bounds(options)
        return [tuple(input_shapes[0])]

    def reference(self, inputs: list[np.ndarray], options: bytes) -> list[np.ndarray]:
        lo, hi = bounds(options)
        x = np.asarray(inputs[0], np.float32)
        return [np.minimum(np.maximum(x, lo), hi).astype(np.float32)]

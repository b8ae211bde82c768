"""What an ONNX value is during a conversion: a constant, or a dfx activation tensor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dfxsdk.formats import QFormat

Shape = tuple[int, ...]


@dataclass
class Const:
    """A value known at import time; ``codes``/``qformat`` when it is a dequantized integer constant."""

    value: np.ndarray
    codes: np.ndarray | None = None
    qformat: QFormat | None = None
    tensor: str | None = None

    @property
    def quantized(self) -> bool:
        return self.qformat is not None


@dataclass
class Act:
    """A value computed at run time: the dfx tensor that holds it."""

    tensor: str


Value = Const | Act

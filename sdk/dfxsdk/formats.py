"""Storage types, rounding modes and the dynamic fixed point format of a tensor."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

#: Inclusive range of a fractional length (spec/format.md, "Quantization").
FL_MIN, FL_MAX = -64, 64


#: The channel orders a graph input's preprocessing can declare (the schema's ChannelOrder).
CHANNEL_ORDERS = ["UNSPECIFIED", "RGB", "BGR", "GRAY"]


class DataType(enum.IntEnum):
    """How tensor elements are stored; values equal the schema's ``DataType``."""

    FLOAT32 = 0
    INT8 = 1
    INT16 = 2
    INT32 = 3
    INT4 = 4
    INT2 = 5

    @property
    def bits(self) -> int:
        """Bits per element in storage."""
        return _BITS[self]

    @property
    def is_integer(self) -> bool:
        return self is not DataType.FLOAT32

    @property
    def is_packed(self) -> bool:
        """True for the sub-byte types (several elements per byte)."""
        return self in (DataType.INT4, DataType.INT2)

    @property
    def numpy_dtype(self) -> np.dtype:
        """NumPy dtype of the unpacked values (int8 for the packed types)."""
        return np.dtype(_NUMPY[self])

    def storage_size(self, count: int) -> int:
        """Bytes needed to store ``count`` elements."""
        return (count * self.bits + 7) // 8

    @classmethod
    def for_bw(cls, bw: int, *, packed: bool = False) -> DataType:
        """The smallest type that holds ``bw`` bits (sub-byte only if ``packed``)."""
        if packed and bw <= 2:
            return cls.INT2
        if packed and bw <= 4:
            return cls.INT4
        for t in (cls.INT8, cls.INT16, cls.INT32):
            if bw <= t.bits:
                return t
        raise ValueError(f"bit width {bw} exceeds 32")


_BITS = {DataType.FLOAT32: 32, DataType.INT8: 8, DataType.INT16: 16,
         DataType.INT32: 32, DataType.INT4: 4, DataType.INT2: 2}
_NUMPY = {DataType.FLOAT32: "<f4", DataType.INT8: "i1", DataType.INT16: "<i2",
          DataType.INT32: "<i4", DataType.INT4: "i1", DataType.INT2: "i1"}


class Rounding(enum.IntEnum):
    """Tie-breaking rule when rounding to the integer grid (schema ``Rounding``)."""

    HALF_AWAY_FROM_ZERO = 0
    HALF_TO_EVEN = 1
    HALF_UP = 2
    FLOOR = 3


@dataclass(frozen=True)
class QFormat:
    """A dynamic fixed point format: an integer q stands for q * 2**-fl.

    ``channel_fl``, when given, holds one fractional length per index of
    ``channel_axis`` and replaces ``fl`` (which is then 0).
    """

    bw: int
    fl: int = 0
    rounding: Rounding = Rounding.HALF_AWAY_FROM_ZERO
    channel_fl: tuple[int, ...] | None = None
    channel_axis: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "rounding", Rounding(self.rounding))
        if self.channel_fl is not None:
            object.__setattr__(self, "channel_fl", tuple(int(v) for v in self.channel_fl))
            object.__setattr__(self, "fl", 0)

    @property
    def qmin(self) -> int:
        return -(1 << (self.bw - 1))

    @property
    def qmax(self) -> int:
        return (1 << (self.bw - 1)) - 1

    @property
    def per_channel(self) -> bool:
        return self.channel_fl is not None

    def fl_array(self, ndim: int) -> np.ndarray:
        """Fractional lengths broadcastable against a tensor of rank ``ndim``."""
        if self.channel_fl is None:
            return np.array(self.fl, dtype=np.int64)
        shape = [1] * ndim
        shape[self.channel_axis] = len(self.channel_fl)
        return np.array(self.channel_fl, dtype=np.int64).reshape(shape)

    def describe(self) -> str:
        """Short human form: ``8/-3`` or ``8/[5..7]`` (bw/fl)."""
        if self.channel_fl is None:
            return f"{self.bw}/{self.fl}"
        return f"{self.bw}/[{min(self.channel_fl)}..{max(self.channel_fl)}]"

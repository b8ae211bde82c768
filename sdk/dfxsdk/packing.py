"""Packing of sub-byte integers (INT4, INT2) to and from bytes.

Element i of a b-bit tensor sits in byte (i*b)//8 at bit offset (i*b)%8, lowest
bits first, in two's complement; unused high bits of the last byte are zero.
"""

from __future__ import annotations

import numpy as np

from .formats import DataType


def pack(values: np.ndarray, dtype: DataType) -> bytes:
    """Return the storage bytes of ``values`` (any integer array) as ``dtype``."""
    flat = np.ascontiguousarray(values).reshape(-1)
    if not dtype.is_packed:
        return flat.astype(dtype.numpy_dtype.newbyteorder("<"), copy=False).tobytes()
    bits = dtype.bits
    per_byte = 8 // bits
    mask = (1 << bits) - 1
    codes = (flat.astype(np.int64) & mask).astype(np.uint8)
    pad = (-codes.size) % per_byte
    if pad:
        codes = np.concatenate([codes, np.zeros(pad, np.uint8)])
    codes = codes.reshape(-1, per_byte)
    out = np.zeros(codes.shape[0], np.uint8)
    for k in range(per_byte):
        out |= codes[:, k] << np.uint8(k * bits)
    return out.tobytes()


def unpack(raw, dtype: DataType, count: int) -> np.ndarray:
    """Decode ``count`` sub-byte elements from ``raw`` into an int8 array."""
    bits = dtype.bits
    per_byte = 8 // bits
    mask = np.uint8((1 << bits) - 1)
    data = np.frombuffer(raw, dtype=np.uint8, count=dtype.storage_size(count))
    fields = np.stack([(data >> np.uint8(k * bits)) & mask for k in range(per_byte)], axis=1)
    codes = fields.reshape(-1)[:count].astype(np.int8)
    sign = np.int8(1 << (bits - 1))
    return np.where(codes >= sign, codes - np.int8(1 << bits), codes).astype(np.int8)

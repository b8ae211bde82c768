"""Image and .npz helpers of the CLI input tests (not a test module): a PNG encoder without Pillow, and
``dfxsdk run`` with its output read back."""

from __future__ import annotations

import struct
import zlib

import numpy as np

from tests.support.cli import cli


def png_bytes(img: np.ndarray) -> bytes:
    """Encode H,W,C uint8 (C = 1, 3 or 4) as PNG, cycling through all five row filters."""
    h, w, c = img.shape
    ctype = {1: 0, 3: 2, 4: 6}[c]
    raw = bytearray()
    prev = [0] * (w * c)
    for y in range(h):
        row = [int(v) for v in img[y].reshape(-1)]
        kind = y % 5
        out = []
        for i, v in enumerate(row):
            a = row[i - c] if i >= c else 0
            b_, cc = prev[i], (prev[i - c] if i >= c else 0)
            if kind == 0:
                pred = 0
            elif kind == 1:
                pred = a
            elif kind == 2:
                pred = b_
            elif kind == 3:
                pred = (a + b_) // 2
            else:
                p = a + b_ - cc
                pa, pb, pc = abs(p - a), abs(p - b_), abs(p - cc)
                pred = a if pa <= pb and pa <= pc else b_ if pb <= pc else cc
            out.append((v - pred) & 255)
        raw += bytes([kind] + out)
        prev = row

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b""))


def run_output(model_path, out, *args, name: str = "score") -> np.ndarray:
    """``dfxsdk run MODEL ARGS -o OUT`` (which must succeed), and its output ``name`` read back from the .npz."""
    code, _, err = cli("run", model_path, *args, "-o", out)
    assert code == 0, err
    with np.load(out) as z:
        return z[name]

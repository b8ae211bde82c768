"""Image files as H,W,C uint8 arrays: JPEG, PNG, BMP and PGM/PPM, recognised by content.

The format is read from the file's first bytes (its signature), not from its
name. With Pillow installed (``pip install 'dfxsdk[images]'``) Pillow decodes
every format; without it, 8-bit PNG (gray, gray+alpha, RGB, RGBA; not
interlaced) and binary PGM/PPM (P5/P6, maxval <= 255) are decoded here and the
other formats are refused with DfxUnsupportedError (exit code 3) naming the
extra. An empty, truncated or corrupt file is a DfxInputError (exit code 2)
naming the file and what was expected.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np

from ..atomic import check_input_file
from ..errors import DfxInputError, DfxUnsupportedError

#: File names an image folder is searched for (single files are recognised by content).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".pnm")
#: What an image input may be, for messages.
EXPECTED = "an image (JPEG, PNG, BMP or PGM/PPM)"
_EXTRA_HINT = "install the images extra: pip install 'dfxsdk[images]' (Pillow)"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def image_kind(head: bytes) -> str | None:
    """'jpeg', 'png', 'bmp' or 'pnm' from a file's first bytes; None for anything else."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(_PNG_SIGNATURE):
        return "png"
    if head.startswith(b"BM") and len(head) >= 14:
        return "bmp"
    if len(head) >= 3 and head[:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace():
        return "pnm"
    return None


def read_image(path: Path) -> np.ndarray:
    """An image file as H,W,C uint8 (C = 1 or 3, RGB order)."""
    check_input_file(path, EXPECTED)  # a regular file: never open a FIFO or a device
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DfxInputError(f"cannot read the file ({exc.strerror}), expected {EXPECTED}", file=str(path)) from None
    if not data:
        raise DfxInputError(f"the file is empty, expected {EXPECTED}", file=str(path))
    kind = image_kind(data[:16])
    if kind is None:
        raise DfxInputError(f"unrecognised content (no known image signature), expected {EXPECTED}",
                            file=str(path))
    pil = _pillow()
    if pil is not None:
        return _decode_pillow(pil, data, kind, path)
    if kind == "png":
        return read_png(data, path)
    if kind == "pnm" and data[:2] in (b"P5", b"P6"):
        return read_pnm(data, path)
    raise DfxUnsupportedError(f"reading {kind.upper()} images needs Pillow; {_EXTRA_HINT}", file=str(path))


def _pillow():
    """PIL.Image, or None when Pillow is not installed."""
    try:
        from PIL import Image
    except ImportError:
        return None
    return Image


def _decode_pillow(image_module, data: bytes, kind: str, path: Path) -> np.ndarray:
    errors = (OSError, SyntaxError, ValueError, EOFError, struct.error, image_module.DecompressionBombError)
    try:
        with image_module.open(io.BytesIO(data)) as img:
            img.load()
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                raise DfxUnsupportedError(f"{kind.upper()} image with {img.mode} pixels: only 8-bit images "
                                          "are read", file=str(path))
            gray = img.mode in ("1", "L", "LA", "La")
            arr = np.asarray(img.convert("L" if gray else "RGB"), np.uint8)
    except errors as exc:
        raise DfxInputError(f"cannot decode the {kind.upper()} image ({exc}), expected {EXPECTED}",
                            file=str(path)) from None
    return arr[:, :, None] if arr.ndim == 2 else arr


# -- the decoders used without Pillow -------------------------------------------------

def read_png(data: bytes, path: Path) -> np.ndarray:
    """Decode an 8-bit, non-interlaced PNG to an H,W,C uint8 array (alpha dropped)."""
    if data[:8] != _PNG_SIGNATURE:
        raise DfxInputError("not a PNG file", file=str(path))
    pos, idat, header = 8, [], None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            if len(body) != 13:
                raise DfxInputError("corrupt PNG header (IHDR)", file=str(path))
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise DfxInputError("PNG without IHDR chunk (truncated or corrupt)", file=str(path))
    w, h, depth, ctype, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(ctype)
    if depth != 8 or channels is None or interlace:
        raise DfxUnsupportedError(f"PNG with bit depth {depth}, color type {ctype}, interlace {interlace}: "
                                  f"without Pillow only 8-bit gray/RGB(A) without interlacing is read; "
                                  f"{_EXTRA_HINT}", file=str(path))
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as exc:
        raise DfxInputError(f"corrupt PNG data ({exc})", file=str(path)) from None
    stride = w * channels
    if len(raw) < h * (stride + 1):
        raise DfxInputError("truncated PNG data", file=str(path))
    rows = np.frombuffer(raw, np.uint8, h * (stride + 1)).reshape(h, stride + 1)
    out = np.zeros((h, stride), np.uint8)
    prev = np.zeros(stride, np.int32)
    for y in range(h):
        out[y] = prev = _unfilter(rows[y, 0], rows[y, 1:].astype(np.int32), prev, channels, path)
    img = out.reshape(h, w, channels)
    return img[:, :, :1] if channels == 2 else img[:, :, :3] if channels == 4 else img


def _unfilter(kind: int, line: np.ndarray, prev: np.ndarray, bpp: int, path: Path) -> np.ndarray:
    if kind == 0:
        return line
    if kind == 2:
        return (line + prev) & 255
    if kind == 1:
        cur = line.reshape(-1, bpp)
        return (np.cumsum(cur, axis=0) & 255).reshape(-1)
    if kind not in (3, 4):
        raise DfxInputError(f"bad PNG filter type {kind}", file=str(path))
    cur = line.copy()
    for i in range(len(cur)):
        a = cur[i - bpp] if i >= bpp else 0
        b = prev[i]
        if kind == 3:
            cur[i] = (cur[i] + ((a + b) >> 1)) & 255
        else:
            c = prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
            cur[i] = (cur[i] + pred) & 255
    return cur


def read_pnm(data: bytes, path: Path) -> np.ndarray:
    """Binary PGM (P5) or PPM (P6) with maxval <= 255, as H,W,C uint8."""
    if data[:2] not in (b"P5", b"P6"):
        raise DfxInputError("not a binary PGM/PPM file (P5/P6)", file=str(path))
    tokens, pos = [], 2
    try:
        while len(tokens) < 3:
            while pos < len(data) and data[pos:pos + 1].isspace():
                pos += 1
            if data[pos:pos + 1] == b"#":
                pos = data.index(b"\n", pos)
                continue
            start = pos
            while pos < len(data) and not data[pos:pos + 1].isspace():
                pos += 1
            tokens.append(int(data[start:pos]))
    except ValueError:
        raise DfxInputError("corrupt or truncated PGM/PPM header", file=str(path)) from None
    w, h, maxval = tokens
    c = 1 if data[:2] == b"P5" else 3
    if maxval > 255:
        raise DfxUnsupportedError(f"PGM/PPM with maxval {maxval}: without Pillow only 8-bit files are read; "
                                  f"{_EXTRA_HINT}", file=str(path))
    if w < 1 or h < 1 or len(data) < pos + 1 + w * h * c:
        raise DfxInputError(f"truncated PGM/PPM: {w}x{h}x{c} pixels do not fit in the file", file=str(path))
    return np.frombuffer(data, np.uint8, w * h * c, pos + 1).reshape(h, w, c)

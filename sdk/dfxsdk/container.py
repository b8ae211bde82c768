"""The fixed 64-byte header at the front of every .dfx file (spec/format.md).

Layout, all fields little-endian::

    offset size  field
     0      8    magic            89 44 46 58 0D 0A 1A 0A  ("\\x89DFX\\r\\n\\x1a\\n")
     8      2    version_major    u16
    10      2    version_minor    u16
    12      4    header_size      u32, 64
    16      8    graph_offset     u64, 64
    24      8    graph_length     u64, bytes of the FlatBuffer (root: dfx.Model)
    32      8    data_offset      u64, multiple of 64, >= graph_offset + graph_length
    40      8    data_length      u64; file size == data_offset + data_length
    48      4    graph_crc32      u32, CRC-32 of the graph bytes
    52      4    flags            u32, must be 0 in format 1.x
    56      4    data_alignment   u32, 64
    60      4    header_crc32     u32, CRC-32 of bytes 0..59
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from .errors import DfxFormatError

MAGIC = b"\x89DFX\r\n\x1a\n"
HEADER_SIZE = 64
ALIGNMENT = 64
#: The newest format version this dfxsdk reads and writes (a file gets the lowest
#: minor version whose features it uses: spec/format.md, versioning).
FORMAT_VERSION = (1, 1)
_LAYOUT = struct.Struct("<8sHHIQQQQIII")
assert _LAYOUT.size == 60


@dataclass(frozen=True)
class Header:
    """The decoded header."""

    version_major: int
    version_minor: int
    graph_offset: int
    graph_length: int
    data_offset: int
    data_length: int
    graph_crc32: int
    flags: int = 0
    data_alignment: int = ALIGNMENT

    def pack(self) -> bytes:
        body = _LAYOUT.pack(MAGIC, self.version_major, self.version_minor, HEADER_SIZE,
                            self.graph_offset, self.graph_length, self.data_offset,
                            self.data_length, self.graph_crc32, self.flags, self.data_alignment)
        return body + struct.pack("<I", zlib.crc32(body))

    @property
    def file_size(self) -> int:
        return self.data_offset + self.data_length


def unpack_header(buf: bytes | memoryview, file_size: int, path: str | None = None) -> Header:
    """Decode and check the header of a file of ``file_size`` bytes.

    Raises DfxFormatError naming the field for any inconsistency, including a
    truncated file and an unsupported major version.
    """

    def fail(msg: str, fld: str | None = None) -> DfxFormatError:
        return DfxFormatError(msg, file=path, field=fld)

    if file_size < HEADER_SIZE or len(buf) < HEADER_SIZE:
        if file_size >= 8 and bytes(buf[:8]) != MAGIC:
            raise fail("not a .dfx file (wrong magic bytes)", "magic")
        raise fail(f"file is truncated: {file_size} bytes, shorter than the {HEADER_SIZE}-byte "
                   "header", "header")
    (magic, major, minor, header_size, g_off, g_len, d_off, d_len,
     g_crc, flags, align) = _LAYOUT.unpack_from(buf, 0)
    if magic != MAGIC:
        raise fail("not a .dfx file (wrong magic bytes)", "magic")
    (stored_crc,) = struct.unpack_from("<I", buf, 60)
    if zlib.crc32(bytes(buf[:60])) != stored_crc:
        raise fail("header checksum mismatch: the header is corrupted", "header_crc32")
    if major != FORMAT_VERSION[0]:
        raise fail(f"format version {major}.{minor} is not supported: this reader "
                   f"implements {FORMAT_VERSION[0]}.x (up to {FORMAT_VERSION[0]}.{FORMAT_VERSION[1]})",
                   "version_major")
    if header_size != HEADER_SIZE:
        raise fail(f"header_size is {header_size}, expected {HEADER_SIZE}", "header_size")
    if flags != 0:
        raise fail(f"unknown feature flags 0x{flags:08x}", "flags")
    if align != ALIGNMENT:
        raise fail(f"data_alignment is {align}, expected {ALIGNMENT}", "data_alignment")
    # The header is intact (CRC): a larger size than the file's means it was cut.
    # (Python integers cannot overflow; a C reader compares d_len with
    # file_size - d_off after checking d_off <= file_size.)
    if d_off + d_len > file_size:
        region = ("graph" if file_size < g_off + g_len else "padding" if file_size < d_off
                  else "data section")
        raise fail(f"file is truncated: the header says {d_off + d_len} bytes, the file has "
                   f"{file_size} (cut inside the {region})", "data_length")
    if g_off != HEADER_SIZE:
        raise fail(f"graph_offset is {g_off}, expected {HEADER_SIZE}", "graph_offset")
    if g_len < 8:
        raise fail(f"graph_length {g_len} is shorter than a FlatBuffer (8 bytes)", "graph_length")
    if d_off % ALIGNMENT or d_off < g_off + g_len:
        raise fail(f"data_offset {d_off} is not a multiple of {ALIGNMENT} at or after the graph's "
                   f"end ({g_off + g_len})", "data_offset")
    if d_off + d_len != file_size:
        raise fail(f"file is followed by extra bytes: the header says {d_off + d_len} bytes, "
                   f"the file has {file_size}", "data_length")
    return Header(major, minor, g_off, g_len, d_off, d_len, g_crc, flags, align)

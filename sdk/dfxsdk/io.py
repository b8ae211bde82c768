"""Reading and writing .dfx files: :func:`load` (mmap, zero copy) and :func:`save` (atomic)."""

from __future__ import annotations

import mmap
import os
import zlib

import numpy as np

from ._fbverify import verify_graph
from .atomic import atomic_write, check_input_file
from .container import ALIGNMENT, FORMAT_VERSION, HEADER_SIZE, Header, unpack_header
from .errors import DfxError, DfxFormatError, DfxInputError
from .fixedpoint import align_up
from .graph import Model, Tensor, lazy_unpacked
from .packing import pack
from .serialize import build_graph, parse_graph
from .validate import check_values, validate_model

_CHUNK = 1 << 24


def load(path: str | os.PathLike, *, verify_checksums: bool = False) -> Model:
    """Open a .dfx file, validate it and return its model.

    The file is memory-mapped; each constant's ``data`` is a read-only NumPy
    view into the mapping (sub-byte types are unpacked on first access). The
    header, the graph (its CRC included) and every structural rule of
    spec/format.md are always checked, which costs time proportional to the
    graph, not to the weights. ``verify_checksums=True`` also checks every
    tensor's CRC-32 and that every stored value lies in its bit width, which
    reads all the data. Any problem raises :class:`DfxFormatError`.
    """
    path = os.fspath(path)
    try:
        check_input_file(path, "a .dfx file")
    except DfxInputError as exc:  # a FIFO would block, a device would be read without end
        raise DfxFormatError(exc.message, file=path) from None
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise DfxFormatError("file is empty", file=path)
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise DfxFormatError(f"cannot open: {exc.strerror or exc}", file=path) from None
    except ValueError as exc:  # the file became empty between fstat and mmap
        raise DfxFormatError(f"cannot map: {exc}", file=path) from None
    try:
        return _load_mapped(mm, size, path, verify_checksums)
    except DfxError as exc:
        raise exc.with_file(path)


def _newer_hint(header: Header) -> str:
    """Note appended to errors in files newer than this reader (spec: versioning)."""
    if header.version_minor <= FORMAT_VERSION[1]:
        return ""
    return (f" (the file is format {header.version_major}.{header.version_minor}, newer than "
            f"the {FORMAT_VERSION[0]}.{FORMAT_VERSION[1]} this dfxsdk implements: a newer "
            "dfxsdk may read it)")


def _load_mapped(mm: mmap.mmap, size: int, path: str, verify_checksums: bool) -> Model:
    view = memoryview(mm)
    header = unpack_header(view[:HEADER_SIZE], size, path)
    graph = bytes(view[header.graph_offset: header.graph_offset + header.graph_length])
    if zlib.crc32(graph) != header.graph_crc32:
        raise DfxFormatError("graph checksum mismatch: the graph region is corrupted",
                             file=path, field="graph_crc32")
    try:
        verify_graph(graph, path)
    except DfxFormatError as exc:
        exc.message += _newer_hint(header)
        exc.args = (str(exc),)
        raise
    data = view[header.data_offset: header.data_offset + header.data_length]
    refs: list[tuple[int, int, str]] = []

    def attach(tensor_t, tensor: Tensor) -> None:
        ref = tensor_t.data
        off, length = int(ref.offset), int(ref.length)
        where = dict(file=path, tensor=tensor.name, field="data")
        if off % ALIGNMENT:
            raise DfxFormatError(f"data offset {off} is not a multiple of {ALIGNMENT}", **where)
        if off > header.data_length or length > header.data_length - off:
            raise DfxFormatError(f"data [{off}, +{length}) lies outside the "
                                 f"{header.data_length}-byte data section", **where)
        expected = tensor.dtype.storage_size(tensor.size)
        if length != expected:
            raise DfxFormatError(f"data length {length} != {expected} bytes for shape "
                                 f"{list(tensor.shape)} of {tensor.dtype.name}", **where)
        refs.append((off, length, tensor.name))
        tensor.raw = data[off: off + length]
        _bind_data(tensor)
        tensor.crc32 = int(ref.crc32)

    try:
        model = parse_graph(graph, path, attach)
        _check_overlaps(refs, path)
        validate_model(model)
    except DfxFormatError as exc:
        exc.message += _newer_hint(header)
        exc.args = (str(exc),)
        raise
    if verify_checksums:
        _check_padding(view, header, refs, path)
        verify_data(model)
    model.format_version = (header.version_major, header.version_minor)
    return model


def _check_overlaps(refs: list[tuple[int, int, str]], path: str) -> None:
    end, prev = 0, None
    for off, length, name in sorted(refs):
        if off < end:
            raise DfxFormatError(f"data overlaps tensor '{prev}'", file=path, tensor=name, field="data")
        end, prev = off + length, name


def _check_padding(view: memoryview, header: Header, refs: list[tuple[int, int, str]],
                   path: str) -> None:
    """Every byte outside the header, the graph and the tensors' data must be zero.

    With the CRCs this makes ``verify_checksums`` cover every byte of the file.
    """
    gaps = [(header.graph_offset + header.graph_length, header.data_offset)]
    pos = header.data_offset
    for off, length, _ in sorted(refs):
        gaps.append((pos, header.data_offset + off))
        pos = max(pos, header.data_offset + off + length)
    gaps.append((pos, header.file_size))
    for start, end in gaps:
        for chunk in range(start, end, _CHUNK):
            piece = view[chunk: min(end, chunk + _CHUNK)]
            if np.frombuffer(piece, np.uint8).any():
                raise DfxFormatError(f"padding bytes in [{start}, {end}) are not zero",
                                     file=path, field="padding")


def _bind_data(tensor: Tensor) -> None:
    raw = tensor.raw
    if tensor.dtype.is_packed:
        tensor._loader = lazy_unpacked(tensor.dtype, raw, tensor.shape)
    else:  # a read-only view: the mapping is ACCESS_READ
        tensor._data = np.frombuffer(raw, dtype=tensor.dtype.numpy_dtype,
                                     count=tensor.size).reshape(tensor.shape)


def tensor_crc_ok(tensor: Tensor) -> bool:
    """True unless ``tensor`` was loaded and its bytes do not match the stored CRC-32."""
    return tensor.raw is None or tensor.crc32 is None or zlib.crc32(tensor.raw) == tensor.crc32


def verify_data(model: Model) -> None:
    """Check every constant's CRC-32 and value range (reads all data)."""
    for tensor in model.constants():
        if not tensor_crc_ok(tensor):
            raise DfxFormatError("data checksum mismatch: the tensor's bytes are corrupted",
                                 file=model.source, tensor=tensor.name, field="data.crc32")
        check_values(tensor, model.source)


def _stored_bytes(tensor: Tensor) -> bytes | memoryview:
    if tensor.raw is not None:
        return tensor.raw
    return pack(np.asarray(tensor.data), tensor.dtype)


def save(model: Model, path: str | os.PathLike) -> int:
    """Validate ``model`` and write it to ``path`` atomically; return the file size.

    The bytes go to a temporary file in the same folder, which is flushed,
    fsync'ed and then renamed over ``path``: an existing file is replaced
    whole or not at all. The same model always gives the same bytes.
    """
    path = os.fspath(path)
    validate_model(model)
    for tensor in model.constants():
        check_values(tensor, path)
    blobs: list[tuple[Tensor, bytes | memoryview]] = []
    refs: dict[str, tuple[int, int, int]] = {}
    offset = 0
    for tensor in model.tensors.values():
        if not tensor.is_constant:
            continue
        blob = _stored_bytes(tensor)
        refs[tensor.name] = (offset, len(blob), zlib.crc32(blob))
        blobs.append((tensor, blob))
        offset = align_up(offset + len(blob))
    data_length = offset if not blobs else refs[blobs[-1][0].name][0] + len(blobs[-1][1])
    graph = build_graph(model, refs)
    data_offset = align_up(HEADER_SIZE + len(graph))
    minor = max((layer.op.FORMAT_MINOR for layer in model.layers), default=0)
    header = Header(FORMAT_VERSION[0], minor, HEADER_SIZE, len(graph),
                    data_offset, data_length, zlib.crc32(graph))
    with atomic_write(path) as f:
        f.write(header.pack())
        f.write(graph)
        f.write(b"\0" * (data_offset - HEADER_SIZE - len(graph)))
        written = 0
        for tensor, blob in blobs:
            start = refs[tensor.name][0]
            f.write(b"\0" * (start - written))
            mv = memoryview(blob).cast("B")
            for i in range(0, len(mv), _CHUNK):
                f.write(mv[i:i + _CHUNK])
            written = start + len(mv)
    return header.file_size



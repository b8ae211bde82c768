"""Damaged and hostile .dfx files: every one must give a DfxFormatError whose
message names the file and where the problem is; never another exception, a
hang or a large allocation (spec/format.md, "Reading a .dfx file safely")."""

from __future__ import annotations

import random
import struct
import tracemalloc
import zlib

import numpy as np
import pytest

import dfxsdk
from dfxsdk import DfxFormatError
from dfxsdk._generated import dfx_generated as fb

from tests.support.format_models import fix_crcs, full_model, read_header, rebuild


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("valid") / "valid.dfx"
    dfxsdk.save(full_model(), path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def layout(valid) -> dict:
    h = read_header(valid)
    graph = valid[64: 64 + h["graph_length"]]
    root = fb.Model.GetRootAs(graph, 0)
    tensors = {}
    for i in range(root.TensorsLength()):
        t = root.Tensors(i)
        if t.Data() is not None:
            tensors[t.Name().decode()] = (h["data_offset"] + t.Data().Offset(), t.Data().Length())
    return {"header": h, "graph_end": 64 + h["graph_length"], "tensors": tensors, "root": root,
            "graph": graph}


def load_error(tmp_path, blob: bytes, *needles: str, verify: bool = False,
               name: str = "bad.dfx") -> str:
    """Write ``blob``, load it, and return the DfxFormatError message (which must
    name the file and contain every needle)."""
    path = tmp_path / name
    path.write_bytes(blob)
    with pytest.raises(DfxFormatError) as info:
        dfxsdk.load(path, verify_checksums=verify)
    msg = str(info.value)
    assert str(path) in msg, msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


def patch_header(blob: bytes, fmt: str, offset: int, value) -> bytes:
    out = bytearray(blob)
    struct.pack_into(fmt, out, offset, value)
    struct.pack_into("<I", out, 60, zlib.crc32(out[:60]))
    return bytes(out)


# -- truncation ---------------------------------------------------------------

def _boundaries(valid, layout) -> list[int]:
    h = layout["header"]
    points = {0, 1, 7, 8, 12, 32, 59, 60, 63, 64, 65, 68,
              64 + h["graph_length"] // 2, layout["graph_end"] - 1, layout["graph_end"],
              h["data_offset"] - 1, h["data_offset"], h["data_offset"] + 1, len(valid) - 1}
    for start, length in layout["tensors"].values():
        points |= {start, start + length // 2, start + length}
    return sorted(p for p in points if p < len(valid))


def test_truncation_at_every_region_boundary(tmp_path, valid, layout):
    points = _boundaries(valid, layout)
    assert len(points) > 40
    for cut in points:
        expected = "empty" if cut == 0 else "truncated"
        msg = load_error(tmp_path, valid[:cut], expected)
        if cut >= 64:
            assert "data_length" in msg


def test_truncation_at_random_points(tmp_path, valid):
    rng = random.Random(1)
    for cut in sorted(rng.sample(range(1, len(valid)), 150)):
        load_error(tmp_path, valid[:cut], "truncated")


def test_region_named_in_truncation_message(tmp_path, valid, layout):
    load_error(tmp_path, valid[:40], "header")
    load_error(tmp_path, valid[:100], "inside the graph")
    load_error(tmp_path, valid[:layout["header"]["data_offset"] + 3], "inside the data section")


def test_extra_bytes_after_data(tmp_path, valid):
    load_error(tmp_path, valid + b"\0", "followed by extra bytes", "data_length")


# -- flipped bytes --------------------------------------------------------------

def test_every_header_byte_flip_is_caught(tmp_path, valid):
    for pos in range(64):
        blob = bytearray(valid)
        blob[pos] ^= 0x10
        needle = "magic" if pos < 8 else "header_crc32"
        load_error(tmp_path, bytes(blob), needle)


def test_graph_byte_flips_are_caught(tmp_path, valid, layout):
    rng = random.Random(2)
    end = layout["graph_end"]
    for pos in sorted({64, end - 1, *rng.sample(range(64, end), 300)}):
        blob = bytearray(valid)
        blob[pos] ^= 1 << rng.randrange(8)
        load_error(tmp_path, bytes(blob), "graph checksum mismatch", "graph_crc32")


def test_data_byte_flips_are_caught_with_checksums(tmp_path, valid, layout):
    rng = random.Random(3)
    h = layout["header"]
    owner = {}
    for name, (start, length) in layout["tensors"].items():
        owner.update({p: name for p in range(start, start + length)})
    positions = set(rng.sample(range(h["data_offset"], len(valid)), 120))
    positions |= {start for start, length in layout["tensors"].values() if length}
    positions |= set(range(layout["graph_end"], h["data_offset"]))  # graph padding
    for pos in sorted(positions):
        blob = bytearray(valid)
        blob[pos] ^= 0x01
        if pos in owner:
            load_error(tmp_path, bytes(blob), f"tensor '{owner[pos]}'", "checksum", verify=True)
        else:
            load_error(tmp_path, bytes(blob), "padding", verify=True)
    # Without verify_checksums the data is not read: the same file opens.
    start = next(iter(layout["tensors"].values()))[0]
    blob = bytearray(valid)
    blob[start] ^= 0x01
    path = tmp_path / "flip.dfx"
    path.write_bytes(bytes(blob))
    dfxsdk.load(path)


def test_value_out_of_bw_range_is_caught_with_checksums(tmp_path, valid, layout):
    # b_conv is INT32 with bw 24: a value of 2**30 is in range of the storage
    # type but not of the format. Fix the tensor CRC so only the range check fires.
    start, length = layout["tensors"]["b_conv"]
    blob = bytearray(valid)
    struct.pack_into("<i", blob, start, 1 << 30)
    crc_old = zlib.crc32(valid[start:start + length])
    crc_new = zlib.crc32(blob[start:start + length])
    graph = bytearray(blob[64:layout["graph_end"]])
    at = graph.find(struct.pack("<I", crc_old))
    assert at > 0
    struct.pack_into("<I", graph, at, crc_new)
    blob[64:layout["graph_end"]] = graph
    load_error(tmp_path, fix_crcs(blob), "tensor 'b_conv'", "exceed bw 24", verify=True)


# -- header fields ----------------------------------------------------------------

@pytest.mark.parametrize("fmt,offset,value,needles", [
    ("<8s", 0, b"\x89PNG\r\n\x1a\n", ["wrong magic", "magic"]),
    ("<H", 8, 2, ["format version 2.1 is not supported", "version_major"]),
    ("<H", 8, 0, ["format version 0.1 is not supported"]),
    ("<I", 12, 128, ["header_size"]),
    ("<Q", 16, 128, ["graph_offset"]),
    ("<Q", 24, 2**64 - 1, ["data_offset"]),
    ("<Q", 24, 4, ["graph_length"]),
    ("<Q", 32, 2**64 - 64, ["truncated", "data_length"]),
    ("<Q", 32, 0, ["data_offset"]),
    ("<Q", 32, 65, ["data_offset"]),
    ("<Q", 40, 2**64 - 1, ["truncated", "data_length"]),
    ("<Q", 40, 0, ["extra bytes", "data_length"]),
    ("<I", 48, 0, ["graph checksum", "graph_crc32"]),
    ("<I", 52, 1, ["flags"]),
    ("<I", 56, 16, ["data_alignment"]),
])
def test_bad_header_fields(tmp_path, valid, fmt, offset, value, needles):
    load_error(tmp_path, patch_header(valid, fmt, offset, value), *needles)


def test_not_a_dfx_file(tmp_path, valid):
    load_error(tmp_path, b"", "empty")
    load_error(tmp_path, b"hello", "truncated")
    load_error(tmp_path, b"PK\x03\x04" + bytes(100), "wrong magic")
    load_error(tmp_path, valid[64:], "wrong magic")  # a bare FlatBuffer
    with pytest.raises(DfxFormatError, match="no such file"):
        dfxsdk.load(tmp_path / "missing.dfx")
    with pytest.raises(DfxFormatError, match="is a folder, expected a .dfx file"):
        dfxsdk.load(tmp_path)


def test_wrong_flatbuffer_identifier(tmp_path, valid):
    blob = bytearray(valid)
    blob[68:72] = b"TFL3"
    load_error(tmp_path, fix_crcs(blob), "file identifier", "TFL3", "field 'graph'")


def test_future_minor_version_without_new_features_loads(tmp_path, valid):
    path = tmp_path / "newer.dfx"
    path.write_bytes(patch_header(valid, "<H", 10, 7))
    model = dfxsdk.load(path, verify_checksums=True)
    assert model == full_model() and model.format_version == (1, 7)


def _union_type_position(layout, layer_name: str) -> int:
    root = layout["root"]
    for i in range(root.LayersLength()):
        layer = root.Layers(i)
        if layer.Name().decode() == layer_name:
            return 64 + layer._tab.Pos + layer._tab.Offset(6)  # slot 1: op_type
    raise KeyError(layer_name)


def test_future_minor_version_with_unknown_operator(tmp_path, valid, layout):
    blob = bytearray(valid)
    pos = _union_type_position(layout, "pool")
    assert blob[pos] == dfxsdk.ops.Pool2D.CODE
    blob[pos] = 200
    blob = bytearray(fix_crcs(blob))
    struct.pack_into("<H", blob, 10, 2)
    blob = fix_crcs(blob)
    load_error(tmp_path, blob, "layer 'pool'", "unknown operator type 200", "newer dfxsdk",
               "format 1.2", "op_type")


def test_future_minor_version_with_unknown_enum_value(tmp_path, valid):
    def mutate(root):
        next(t for t in root.tensors if t.name == b"w_fc").type = 6

    blob = patch_header(rebuild(valid, mutate), "<H", 10, 2)
    load_error(tmp_path, blob, "tensor 'w_fc'", "unknown data type 6", "format 1.2", "newer")


def test_union_type_none(tmp_path, valid, layout):
    blob = bytearray(valid)
    blob[_union_type_position(layout, "relu")] = 0
    load_error(tmp_path, fix_crcs(blob), "layer 'relu'", "no type")


# -- huge and out-of-range offsets and lengths ------------------------------------

def _dataref_position(valid, layout, tensor: str) -> int:
    """File position of a tensor's DataRef struct (offset, length, crc32)."""
    start, length = layout["tensors"][tensor]
    h = layout["header"]
    crc = zlib.crc32(valid[start:start + length])
    needle = struct.pack("<QQI", start - h["data_offset"], length, crc)
    at = valid.find(needle, 64, layout["graph_end"])
    assert at > 0 and valid.count(needle, 64, layout["graph_end"]) == 1
    return at


def _small_allocation(fn) -> None:
    tracemalloc.start()
    try:
        fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"peak allocation {peak} bytes"


@pytest.mark.parametrize("field_offset,value,needles", [
    (8, 2**64 - 1, ["outside"]),          # length near 2**64
    (8, 2**63, ["outside"]),
    (8, 2**64 - 1 - 640, ["outside"]),    # offset + length wraps around 2**64
    (0, 2**64 - 64, ["outside"]),         # offset near 2**64
    (0, 1 << 40, ["outside"]),            # offset past the end
    (0, 1, ["not a multiple of 64"]),
    (8, 0, ["data length 0 !="]),
    (8, 111, ["data length 111 !="]),
])
def test_patched_dataref(tmp_path, valid, layout, field_offset, value, needles):
    at = _dataref_position(valid, layout, "w_fc")
    blob = bytearray(valid)
    struct.pack_into("<Q", blob, at + field_offset, value)
    blob = fix_crcs(blob)
    _small_allocation(lambda: load_error(tmp_path, blob, "tensor 'w_fc'", "field 'data'",
                                         *needles))


def _t(root, name):
    return next(t for t in root.tensors if t.name == name.encode())


def _l(root, name):
    return next(x for x in root.layers if x.name == name.encode())


# Edits of a decoded graph, re-encoded with correct CRCs so that the structural
# and semantic checks (not the checksums) must find them.
SEMANTIC = {
    "overlap": (lambda r: setattr(_t(r, "w_fc").data, "offset", _t(r, "w_conv").data.offset),
                ["tensor 'w_fc'", "overlaps"]),
    "rank": (lambda r: setattr(_t(r, "w_dw"), "shape", [2**31 - 1] * 100_000),
             ["tensor 'w_dw'", "100000 dimensions"]),
    "rank9": (lambda r: setattr(_t(r, "dw"), "shape", [1] * 9), ["tensor 'dw'", "shape"]),
    "negative_dims": (lambda r: setattr(_t(r, "w_dw"), "shape", [-2, -27]),
                      ["tensor 'w_dw'", "shape", "negative dimension"]),
    "negative_dim_empty": (lambda r: setattr(_t(r, "empty"), "shape", [0, -1]),
                           ["tensor 'empty'", "negative dimension"]),
    "negative_dim_activation": (lambda r: setattr(_t(r, "dw"), "shape", [-1, -6, 8, 15]),
                                ["tensor 'dw'", "negative dimension"]),
    "too_many_elements": (lambda r: setattr(_t(r, "dw"), "shape", [2**31 - 1] * 8),
                          ["tensor 'dw'", "2**40"]),
    "dtype": (lambda r: setattr(_t(r, "w_fc"), "type", 99), ["tensor 'w_fc'", "unknown data type"]),
    "rounding": (lambda r: setattr(_t(r, "w_fc").quantization, "rounding", 9),
                 ["tensor 'w_fc'", "rounding"]),
    "no_quant": (lambda r: setattr(_t(r, "w_fc"), "quantization", None),
                 ["tensor 'w_fc'", "no quantization"]),
    "float_quant": (lambda r: setattr(_t(r, "nscale"), "quantization", _t(r, "w_fc").quantization),
                    ["tensor 'nscale'", "FLOAT32 tensor has a quantization"]),
    "bw0": (lambda r: setattr(_t(r, "w_fc").quantization, "bw", 0), ["tensor 'w_fc'", "bw 0"]),
    "bw_int4": (lambda r: setattr(_t(r, "w_conv").quantization, "bw", 5),
                ["tensor 'w_conv'", "bw 5 does not fit INT4"]),
    "fl": (lambda r: setattr(_t(r, "w_fc").quantization, "fl", 65), ["tensor 'w_fc'", "fl 65"]),
    "channel_fl": (lambda r: setattr(_t(r, "w_conv").quantization, "channelFl", [1, 2]),
                   ["tensor 'w_conv'", "channel_fl"]),
    "channel_fl_range": (lambda r: setattr(_t(r, "w_conv").quantization, "channelFl",
                                           np.array([0, 0, 0, 0, 0, -65], np.int8)),
                         ["tensor 'w_conv'", "fl -65"]),
    "channel_axis": (lambda r: setattr(_t(r, "w_conv").quantization, "channelAxis", 2**31 - 1),
                     ["tensor 'w_conv'", "channel_axis"]),
    "per_channel_activation": (lambda r: setattr(_t(r, "q").quantization, "channelFl", [1]),
                               ["tensor 'q'", "only allowed for constants"]),
    "packed_activation": (lambda r: (setattr(_t(r, "q"), "type", 4),
                                     setattr(_t(r, "q").quantization, "bw", 4)),
                          ["tensor 'q'", "INT4 is only allowed for constants"]),
    "empty_tensor_name": (lambda r: setattr(_t(r, "w_fc"), "name", b""), ["empty name"]),
    "bad_utf8": (lambda r: setattr(_t(r, "w_fc"), "name", b"\xff\xfe"), ["UTF-8", "tensors["]),
    "duplicate_tensor": (lambda r: setattr(_t(r, "w_fc"), "name", b"w_conv"),
                         ["tensor 'w_conv'", "duplicate"]),
    "duplicate_layer": (lambda r: setattr(_l(r, "relu"), "name", b"conv"),
                        ["layer 'conv'", "duplicate layer name"]),
    "tensor_index": (lambda r: setattr(_l(r, "conv"), "inputs", [1, 2, 10**9]),
                     ["layers[1].inputs", "out of range"]),
    "missing_required_input": (lambda r: setattr(_l(r, "conv"), "inputs", [1, -1]),
                               ["layer 'conv'", "input 1 is required"]),
    "arity": (lambda r: setattr(_l(r, "relu"), "inputs", []), ["layer 'relu'", "inputs"]),
    "op_version": (lambda r: setattr(_l(r, "conv"), "version", 2),
                   ["layer 'conv'", "version 2 is not implemented"]),
    "order": (lambda r: r.layers.insert(0, r.layers.pop(3)),
              ["layer 'relu'", "not computed before this layer"]),
    "two_writers": (lambda r: setattr(_l(r, "relu"), "outputs", list(_l(r, "dwconv").outputs)),
                    ["layer 'relu'", "also written by layer 'dwconv'"]),
    "writes_constant": (lambda r: setattr(_l(r, "relu"), "outputs", [2]),
                        ["layer 'relu'", "constant or graph input"]),
    "orphan_activation": (lambda r: (setattr(r, "layers", r.layers[:-1]),
                                     setattr(r, "outputs", r.outputs[:2])),
                          ["neither a graph input nor written"]),
    "input_twice": (lambda r: setattr(r, "inputs", [0] * 50_000), ["listed twice"]),
    "graph_input_const": (lambda r: setattr(r, "inputs", [*r.inputs, 2]),
                          ["graph input is a constant"]),
    "output_index": (lambda r: setattr(r, "outputs", [-1]), ["field 'outputs'", "out of range"]),
    "shape_mismatch": (lambda r: setattr(_t(r, "c"), "shape", [1, 6, 8, 16]),
                       ["layer 'conv'", "tensor 'c'", "!= [1, 6, 8, 15]"]),
    "pool_ceil": (lambda r: setattr(_l(r, "pool").op, "ceilMode", False),
                  ["layer 'pool'", "tensor 'p'"]),
    "layout_only_format": (lambda r: setattr(_t(r, "pm").quantization, "fl", 2),
                           ["layer 'perm'", "format must equal"]),
    "accumulator": (lambda r: (setattr(_t(r, "b_conv").quantization, "fl", -64),
                               setattr(_t(r, "w_conv").quantization, "channelFl", [64] * 6)),
                    ["layer 'conv'", "accumulator may need"]),
    "coefficient": (lambda r: setattr(_l(r, "eltwise").op, "coefficients", [0.1, 1.0]),
                    ["layer 'eltwise'", "not m*2^-e"]),
    "coefficient_nan": (lambda r: setattr(_l(r, "eltwise").op, "coefficients",
                                          [float("nan"), 1.0]), ["layer 'eltwise'", "NaN"]),
    "coefficient_inf": (lambda r: setattr(_l(r, "eltwise").op, "coefficients",
                                          [float("inf"), 1.0]), ["layer 'eltwise'", "inf"]),
    "stride0": (lambda r: setattr(_l(r, "conv").op, "strideH", 0), ["layer 'conv'", "stride_h"]),
    "group0": (lambda r: setattr(_l(r, "deconv").op, "group", 0), ["layer 'deconv'", "group"]),
    "pool_type": (lambda r: setattr(_l(r, "pool").op, "type", 9), ["layer 'pool'", "pool type"]),
    "slice_points": (lambda r: setattr(_l(r, "slice").op, "points", [5, 1]), ["layer 'slice'"]),
    "permute": (lambda r: setattr(_l(r, "perm").op, "order", [0, 1, 1, 9]), ["layer 'perm'"]),
    "axis": (lambda r: setattr(_l(r, "smax").op, "axis", -2**31), ["layer 'smax'", "axis"]),
    "lrn": (lambda r: setattr(_l(r, "lrn").op, "localSize", 4), ["layer 'lrn'", "local_size"]),
    "priorbox_ratios": (lambda r: setattr(_l(r, "prior").op, "aspectRatios",
                                          np.arange(1, 20_001, dtype=np.float32)),
                        ["layer 'prior'", "aspect_ratios"]),
    "priorbox_zero_ratio": (lambda r: setattr(_l(r, "prior").op, "aspectRatios", [0.0]),
                            ["layer 'prior'"]),
    "nan_option": (lambda r: setattr(_l(r, "prior").op, "minSizes", [float("nan")]),
                   ["layer 'prior'", "NaN"]),
    "det_code": (lambda r: setattr(_l(r, "det").op, "codeType", 9), ["layer 'det'", "code_type"]),
    "custom_name": (lambda r: setattr(_l(r, "custom").op, "name", b""), ["layer 'custom'", "name"]),
    "preprocessing_target": (lambda r: setattr(r.preprocessing[0], "input", 1),
                             ["preprocessing", "not a graph input"]),
    "preprocessing_twice": (lambda r: r.preprocessing.append(r.preprocessing[0]),
                            ["preprocessing", "two preprocessing entries"]),
    "channel_order": (lambda r: setattr(r.preprocessing[0], "channelOrder", 9), ["channel order"]),
    "mean_count": (lambda r: setattr(r.preprocessing[0], "mean", [1.0, 2.0]),
                   ["preprocessing.mean", "2 values for 3 channels"]),
    "metadata_order": (lambda r: r.metadata.reverse(), ["metadata", "sorted"]),
    "metadata_duplicate": (lambda r: r.metadata.insert(1, r.metadata[1]), ["metadata", "unique"]),
}


@pytest.mark.parametrize("case", list(SEMANTIC))
def test_semantic_corruption(tmp_path, valid, case):
    mutate, needles = SEMANTIC[case]
    blob = rebuild(valid, mutate)
    _small_allocation(lambda: load_error(tmp_path, blob, *needles))


def test_rebuild_without_edit_is_identity(valid):
    assert rebuild(valid, lambda root: None) == valid


# -- random mutation of the graph region ------------------------------------------

def _mutate(blob: bytearray, rng: random.Random, start: int, end: int) -> None:
    for _ in range(rng.choice([1, 1, 2, 3, 8])):
        pos = rng.randrange(start, end)
        roll = rng.random()
        if roll < 0.4:
            blob[pos] ^= 1 << rng.randrange(8)
        elif roll < 0.7:
            blob[pos] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        else:  # a whole 32-bit word: offsets, lengths, counts
            pos -= pos % 4
            if pos + 4 <= end:
                old = struct.unpack_from("<I", blob, pos)[0]
                new = rng.choice([0, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, rng.getrandbits(32),
                                  (old + rng.randrange(-64, 65)) & 0xFFFFFFFF])
                struct.pack_into("<I", blob, pos, new)


def test_graph_mutation_fuzz(tmp_path, valid, layout):
    """Seeded, bounded: with the CRCs fixed up, the verifier and validator are all
    that stand between a mutated graph and the decoder."""
    rng = random.Random(20240611)
    path = tmp_path / "fuzz.dfx"
    outcomes = {"error": 0, "loaded": 0}
    for _ in range(3000):
        blob = bytearray(valid)
        _mutate(blob, rng, 64, layout["graph_end"])
        path.write_bytes(fix_crcs(blob))
        try:
            dfxsdk.load(path, verify_checksums=True)
            outcomes["loaded"] += 1
        except DfxFormatError as exc:
            assert str(path) in str(exc)
            outcomes["error"] += 1
    assert outcomes["error"] > 1000


def test_whole_file_mutation_fuzz(tmp_path, valid):
    """Mutations anywhere, CRCs left alone: always a clean error or a clean load."""
    rng = random.Random(7)
    path = tmp_path / "fuzz.dfx"
    for _ in range(500):
        blob = bytearray(valid)
        _mutate(blob, rng, 0, len(blob))
        if rng.random() < 0.2:
            blob = blob[: rng.randrange(len(blob))]
        path.write_bytes(bytes(blob))
        try:
            dfxsdk.load(path, verify_checksums=True)
        except DfxFormatError:
            pass

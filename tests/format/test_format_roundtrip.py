"""Round trips through the .dfx format (spec/format.md): equality, byte-for-byte
determinism, alignment, zero-copy loading and sub-byte packing."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import dfxsdk
from dfxsdk import DataType, ops
from dfxsdk._generated import dfx_generated as fb
from dfxsdk.packing import pack, unpack

from tests.support.format_models import full_model, read_header


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("rt") / "full.dfx"
    model = full_model()
    size = dfxsdk.save(model, path)
    return model, path, size


def test_model_uses_every_type_and_operator(saved):
    model, _, _ = saved
    assert {t.dtype for t in model.tensors.values()} == set(DataType)
    assert {layer.type for layer in model.layers} == set(ops.OPS)
    assert any(t.qformat is not None and t.qformat.per_channel for t in model.tensors.values())
    assert model.preprocessing and model.metadata


def test_roundtrip_equal(saved):
    model, path, size = saved
    assert path.stat().st_size == size
    loaded = dfxsdk.load(path, verify_checksums=True)
    assert loaded == model
    # Model.__eq__ covers these; spell out the parts most likely to drift.
    assert [layer.op for layer in loaded.layers] == [layer.op for layer in model.layers]
    assert loaded.metadata == model.metadata and list(loaded.metadata) == sorted(model.metadata)
    assert loaded.preprocessing == model.preprocessing
    assert loaded.format_version == (1, 1)          # it uses Exp and Minifloat, operators of format 1.1
    assert loaded.layer("conv").origin == "conv_caffe"
    assert loaded.tensors["w_conv"].qformat.channel_fl == (1, 2, 3, -1, 0, 5)


def test_save_is_deterministic(saved, tmp_path):
    model, path, _ = saved
    again = tmp_path / "again.dfx"
    dfxsdk.save(full_model(), again)
    assert again.read_bytes() == path.read_bytes()
    resaved = tmp_path / "resaved.dfx"
    dfxsdk.save(dfxsdk.load(path), resaved)
    assert resaved.read_bytes() == path.read_bytes()
    # Metadata order in the dict does not matter: keys are written sorted.
    shuffled = full_model()
    shuffled.metadata = dict(reversed(list(shuffled.metadata.items())))
    dfxsdk.save(shuffled, again)
    assert again.read_bytes() == path.read_bytes()


def _data_refs(blob: bytes) -> dict[str, tuple[int, int, int]]:
    """(offset, length, crc32) of every constant, read with the generated code."""
    h = read_header(blob)
    graph = blob[h["graph_offset"]: h["graph_offset"] + h["graph_length"]]
    assert fb.Model.ModelBufferHasIdentifier(graph, 0)
    root = fb.Model.GetRootAs(graph, 0)
    refs = {}
    for i in range(root.TensorsLength()):
        t = root.Tensors(i)
        ref = t.Data()
        if ref is not None:
            refs[t.Name().decode()] = (ref.Offset(), ref.Length(), ref.Crc32())
    return refs


def test_layout_alignment_and_checksums(saved):
    model, path, _ = saved
    blob = path.read_bytes()
    h = read_header(blob)
    assert h["magic"] == b"\x89DFX\r\n\x1a\n" and (h["major"], h["minor"]) == (1, 1)
    assert h["header_size"] == 64 and h["graph_offset"] == 64 and h["data_alignment"] == 64
    assert h["flags"] == 0
    assert h["header_crc32"] == zlib.crc32(blob[:60])
    graph = blob[64: 64 + h["graph_length"]]
    assert graph[4:8] == b"DFXG" and h["graph_crc32"] == zlib.crc32(graph)
    assert h["data_offset"] % 64 == 0
    assert h["data_offset"] == (64 + h["graph_length"] + 63) // 64 * 64
    assert h["data_offset"] + h["data_length"] == len(blob)
    assert not any(blob[64 + h["graph_length"]: h["data_offset"]])  # zero padding
    refs = _data_refs(blob)
    constants = [t for t in model.tensors.values() if t.is_constant]
    assert list(refs) == [t.name for t in constants]  # data in tensor order
    data = blob[h["data_offset"]:]
    end = 0
    for t in constants:
        off, length, crc = refs[t.name]
        assert off % 64 == 0 and (h["data_offset"] + off) % 64 == 0
        assert length == t.dtype.storage_size(t.size)
        assert off >= end and not any(data[end:off])  # in order, no overlap, zero gaps
        assert crc == zlib.crc32(data[off: off + length])
        assert data[off: off + length] == pack(np.asarray(t.data), t.dtype)
        end = off + length
    assert end == h["data_length"]


def test_loaded_arrays_are_read_only_views_of_the_mapping(saved):
    _, path, _ = saved
    loaded = dfxsdk.load(path)
    blob = path.read_bytes()
    h = read_header(blob)
    refs = _data_refs(blob)
    for t in loaded.constants():
        off, length, _ = refs[t.name]
        raw = np.frombuffer(t.raw, np.uint8)
        assert raw.nbytes == length
        assert raw.tobytes() == blob[h["data_offset"] + off: h["data_offset"] + off + length]
        data = t.data
        if not t.dtype.is_packed and t.size:
            assert np.shares_memory(data, raw)
            # The mapping starts on a page boundary: base + data_offset + offset.
            assert data.ctypes.data % 64 == 0
        assert not data.flags.writeable
        with pytest.raises(ValueError):
            data[...] = 0
        with pytest.raises(ValueError):
            data.reshape(-1)[:1] = 1


def test_empty_model_roundtrip(tmp_path):
    model = dfxsdk.Model(name="nothing")
    path = tmp_path / "empty.dfx"
    size = dfxsdk.save(model, path)
    h = read_header(path.read_bytes())
    assert h["data_length"] == 0 and size == h["data_offset"]
    assert dfxsdk.load(path, verify_checksums=True) == model


def test_known_bit_layout():
    assert pack(np.array([1, -1, -8, 7]), DataType.INT4) == bytes([0xF1, 0x78])
    assert pack(np.array([1, -2, 0, -1, 1]), DataType.INT2) == bytes([0b11_00_10_01, 0b01])
    assert pack(np.array([-2, 300]), DataType.INT16) == b"\xfe\xff\x2c\x01"


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([DataType.INT4, DataType.INT2]), st.data())
def test_subbyte_pack_roundtrip(dtype, data):
    lo, hi = -(1 << (dtype.bits - 1)), (1 << (dtype.bits - 1)) - 1
    values = np.array(data.draw(st.lists(st.integers(lo, hi), max_size=67)), dtype=np.int8)
    raw = pack(values, dtype)
    assert len(raw) == dtype.storage_size(values.size)
    per_byte = 8 // dtype.bits
    if values.size % per_byte:  # unused high bits of the last byte are zero
        assert raw[-1] >> (dtype.bits * (values.size % per_byte)) == 0
    out = unpack(raw, dtype, values.size)
    assert out.dtype == np.int8 and np.array_equal(out, values)


@pytest.mark.parametrize("dtype", [DataType.INT4, DataType.INT2])
def test_subbyte_every_byte_unpacks_and_repacks(dtype):
    raw = bytes(range(256))
    count = 256 * (8 // dtype.bits)
    values = unpack(raw, dtype, count)
    assert values.min() == -(1 << (dtype.bits - 1)) and values.max() == (1 << (dtype.bits - 1)) - 1
    assert pack(values, dtype) == raw


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([DataType.INT4, DataType.INT2, DataType.INT8, DataType.INT16,
                        DataType.INT32]),
       st.integers(1, 4), st.integers(-64, 64), st.integers(0, 40), st.data())
def test_constant_roundtrip_through_file(tmp_path_factory, dtype, bw_cut, fl, n, data):
    bw = max(1, dtype.bits - bw_cut)
    lo, hi = -(1 << (bw - 1)), (1 << (bw - 1)) - 1
    values = np.array(data.draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n)),
                      dtype=dtype.numpy_dtype)
    model = dfxsdk.Model(name="c")
    model.add_tensor(dfxsdk.Tensor("k", (n,), dtype, dfxsdk.QFormat(bw, fl), _data=values))
    path = tmp_path_factory.mktemp("c") / "c.dfx"
    dfxsdk.save(model, path)
    loaded = dfxsdk.load(path, verify_checksums=True)
    assert loaded == model
    assert np.array_equal(loaded.tensors["k"].data, values)


def test_a_file_gets_the_lowest_minor_version_it_needs(tmp_path):
    from tests.support.builder import Builder

    b = Builder("v")
    x = b.input((1, 4), name="x")
    m = b.output(b.add(ops.Tanh(), [x], None, outputs=["y"]))
    dfxsdk.save(m, tmp_path / "a.dfx")
    assert dfxsdk.load(tmp_path / "a.dfx").format_version == (1, 0)
    m.layers[0].op = ops.Exp()
    dfxsdk.save(m, tmp_path / "b.dfx")
    assert dfxsdk.load(tmp_path / "b.dfx").format_version == (1, 1)

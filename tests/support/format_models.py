"""Models shared by the format tests: one that exercises every part of the schema."""

from __future__ import annotations

import struct

import numpy as np

from dfxsdk import DataType, Layer, Model, Preprocessing, QFormat, Rounding, Tensor, ops

HEADER = struct.Struct("<8sHHIQQQQIII")


class _Builder:
    """Adds layers whose output tensors get the shapes ``infer_shapes`` computes."""

    def __init__(self, model: Model, rng: np.random.Generator) -> None:
        self.m = model
        self.rng = rng

    def act(self, name: str, shape, dtype=DataType.FLOAT32, q: QFormat | None = None) -> str:
        self.m.add_tensor(Tensor(name, tuple(shape), dtype, q))
        return name

    def const(self, name: str, shape, dtype=DataType.FLOAT32, q: QFormat | None = None) -> str:
        shape = tuple(shape)
        if dtype is DataType.FLOAT32:
            data = self.rng.standard_normal(shape).astype(np.float32)
        else:
            data = self.rng.integers(q.qmin, q.qmax + 1, shape).astype(dtype.numpy_dtype)
        self.m.add_tensor(Tensor(name, shape, dtype, q, _data=data))
        return name

    def layer(self, name: str, op: ops.Op, inputs, outputs, dtype=DataType.FLOAT32,
              q: QFormat | None = None, origin: str | None = None) -> list[str]:
        """Add a layer; outputs given as names get inferred shapes and (dtype, q)."""
        shapes = [None if n is None else self.m.tensors[n].shape for n in inputs]
        inferred = op.infer_shapes(shapes)
        if len(inferred) == 1:
            inferred = inferred * len(outputs)
        for out, shape in zip(outputs, inferred):
            if out not in self.m.tensors:
                assert shape is not None, f"give {out} explicitly"
                self.act(out, shape, dtype, q)
        self.m.add_layer(Layer(name, op, list(inputs), list(outputs), origin))
        return list(outputs)


def full_model(seed: int = 0) -> Model:
    """A model using every storage type, every operator (with non-default
    options), a per-channel tensor, a scalar and an empty constant,
    preprocessing and metadata."""
    m = Model(name="everything", producer_name="dfxsdk-tests", producer_version="9.9")
    b = _Builder(m, np.random.default_rng(seed))
    i8 = lambda fl, r=Rounding.HALF_AWAY_FROM_ZERO: QFormat(8, fl, r)  # noqa: E731
    I8, I16, I32, I4, I2 = DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT4, DataType.INT2

    b.act("data", (1, 3, 16, 16))
    m.inputs = ["data"]
    # -- integer trunk ----------------------------------------------------
    b.layer("quant", ops.Requantize(), ["data"], ["q"], I8, i8(4, Rounding.HALF_TO_EVEN))
    b.const("w_conv", (6, 3, 3, 3), I4, QFormat(4, 0, channel_fl=(1, 2, 3, -1, 0, 5)))
    b.const("b_conv", (6,), I32, QFormat(24, 7))
    conv = ops.Conv2D(kernel_h=3, kernel_w=3, stride_h=2, stride_w=1, pad_top=1, pad_left=2,
                      pad_bottom=0, pad_right=1, dilation_h=1, dilation_w=2, group=1)
    b.layer("conv", conv, ["q", "w_conv", "b_conv"], ["c"], I16, QFormat(12, 5, Rounding.HALF_UP),
            origin="conv_caffe")
    b.const("w_dw", (6, 1, 3, 3), I2, QFormat(2, 1))
    dw = ops.Conv2D(kernel_h=3, kernel_w=3, pad_top=1, pad_left=1, pad_bottom=1, pad_right=1,
                    group=6)
    b.layer("dwconv", dw, ["c", "w_dw", None], ["dw"], I8, i8(3, Rounding.FLOOR))
    b.layer("relu", ops.Relu(), ["dw"], ["r"], I8, i8(3))
    b.layer("clip", ops.Clip(min=-1.0, max=6.0), ["r"], ["cl"], I8, i8(3))
    b.const("slope", (6,), I8, i8(7))
    b.layer("prelu", ops.PRelu(), ["cl", "slope"], ["pr"], I8, i8(3))
    pool = ops.Pool2D(type=ops.POOL_AVERAGE, kernel_h=3, kernel_w=2, stride_h=2, stride_w=2,
                      pad_top=1, pad_left=1, pad_bottom=1, pad_right=0, ceil_mode=True,
                      divisor=ops.DIVISOR_VALID_ONLY)
    b.layer("pool", pool, ["pr"], ["p"], I8, i8(3))
    b.const("w_de", (6, 2, 2, 2), I8, i8(6))
    b.const("b_de", (4,), I16, QFormat(16, 9))
    deconv = ops.Deconv2D(kernel_h=2, kernel_w=2, stride_h=2, stride_w=2, pad_top=1, pad_left=0,
                          pad_bottom=0, pad_right=1, dilation_h=1, dilation_w=1, group=2,
                          output_pad_h=1, output_pad_w=0)
    b.layer("deconv", deconv, ["p", "w_de", "b_de"], ["de"], I8, i8(2))
    b.layer("slice", ops.Slice(axis=1, points=[1, 3]), ["de"], ["s0", "s1", "s2"], I8, i8(2))
    b.layer("concat", ops.Concat(axis=1), ["s2", "s0"], ["cat"], I8, i8(2))
    b.layer("eltwise", ops.Eltwise(operation=ops.ELTWISE_SUM, coefficients=[0.5, -1.25]),
            ["cat", "s1"], ["el"], I8, i8(1))
    b.layer("emax", ops.Eltwise(operation=ops.ELTWISE_MAX), ["el", "el"], ["em"], I8, i8(1))
    b.layer("pad", ops.Pad(pads=[0, 0, 1, 2, 0, 1, 0, 3], value=0.5), ["em"], ["pd"], I8, i8(1))
    b.layer("up", ops.Upsample(scale_h=2, scale_w=3), ["pd"], ["upd"], I8, i8(1))
    b.layer("perm", ops.Permute(order=[0, 2, 3, 1]), ["upd"], ["pm"], I8, i8(1))
    b.const("sc", (m.tensors["pm"].shape[1],), I8, i8(5))
    b.const("sb", (m.tensors["pm"].shape[1],), I32, QFormat(20, 6))
    b.layer("scale", ops.Scale(axis=1, num_axes=1), ["pm", "sc", "sb"], ["scd"], I8, i8(1))
    b.layer("flatten", ops.Flatten(axis=2, end_axis=3), ["scd"], ["fl"], I8, i8(1))
    n, c, hw = m.tensors["fl"].shape
    b.act("rs", (n, hw, c), I8, i8(1))
    b.layer("reshape", ops.Reshape(), ["fl"], ["rs"])
    b.const("w_fc", (5, c), I8, i8(4))
    b.const("b_fc", (5,), I32, QFormat(32, 5))
    b.layer("fc", ops.FullyConnected(axis=2), ["rs", "w_fc", "b_fc"], ["fc_out"], I16, QFormat(16, 3))
    b.layer("deq", ops.Requantize(), ["fc_out"], ["fc_f"], origin="fc")
    # -- float branch -------------------------------------------------------
    b.layer("sig", ops.Sigmoid(), ["data"], ["sg"])
    b.layer("tanh", ops.Tanh(), ["sg"], ["th"])
    b.layer("lrn", ops.Lrn(local_size=3, alpha=0.5, beta=0.25, k=2.0, region=ops.LRN_WITHIN_CHANNEL),
            ["th"], ["ln"])
    b.const("nscale", (3,))
    b.layer("norm", ops.Normalize(across_spatial=False, channel_shared=False, eps=1e-6),
            ["ln", "nscale"], ["nm"])
    b.layer("power", ops.Power(power=2.0, scale=0.5, shift=-1.0), ["nm"], ["pw"])
    b.layer("exp", ops.Exp(), ["pw"], ["ex"])
    b.layer("minifloat", ops.Minifloat(mant_bits=3, exp_bits=4), ["ex"], ["mf"])
    b.layer("smax", ops.Softmax(axis=-1), ["mf"], ["sm"])
    pool2 = ops.Pool2D(type=ops.POOL_MAX, global_=True, ceil_mode=False)
    b.layer("gpool", pool2, ["sm"], ["gp"])
    feat = b.layer("fpool", ops.Pool2D(kernel_h=8, kernel_w=8, stride_h=8, stride_w=8,
                                       ceil_mode=False), ["sm"], ["feat"])[0]
    prior = ops.PriorBox(min_sizes=[4.0], max_sizes=[8.0], aspect_ratios=[2.0], flip=True,
                         clip=True, variances=[0.1, 0.1, 0.2, 0.2], img_h=16, img_w=16,
                         step_h=8.0, step_w=8.0, offset=0.25)
    b.layer("prior", prior, [feat, "data"], ["pb"])
    npri = m.tensors["pb"].shape[2] // 4
    b.act("loc", (1, npri * 4))
    b.act("conf", (1, npri * 3))
    m.inputs = ["data", "loc", "conf"]
    det = ops.DetectionOutput(num_classes=3, share_location=True, background_label_id=1,
                              nms_threshold=0.45, top_k=10, eta=0.9, keep_top_k=4,
                              confidence_threshold=0.01, code_type=ops.CODE_CENTER_SIZE,
                              variance_encoded_in_target=True, clip=True)
    b.layer("det", det, ["loc", "conf", "pb"], ["dets"])
    # -- a plugin operator with two outputs ------------------------------------
    b.act("cu0", (1, 2))
    b.act("cu1", (3,), I32, QFormat(32, -3))
    b.layer("custom", ops.Custom(name="acme.Thing", version=3, options=b"\x00\x01\xfe\xff"),
            ["fc_f", None, "dets"], ["cu0", "cu1"])
    # -- unused constants: a float scalar, an empty tensor, odd packed sizes ---
    b.const("scalar", ())
    m.add_tensor(Tensor("empty", (0, 4), I8, i8(0), _data=np.zeros((0, 4), np.int8)))
    b.const("odd4", (7,), I4, QFormat(3, -2, Rounding.HALF_UP))
    b.const("odd2", (5,), I2, QFormat(1, 64))
    b.const("pc16", (2, 3), I16, QFormat(16, 0, channel_fl=(-64, 64, 0), channel_axis=1))
    m.outputs = ["fc_f", "gp", "cu0", "cu1"]
    m.preprocessing["data"] = Preprocessing(mean=[104.0, 117.0, 123.0], scale=[0.017],
                                            channel_order="BGR")
    m.preprocessing["conf"] = Preprocessing(scale=[2.0])
    m.metadata = {"zeta": "last", "alpha": "first", "unicode": "f\u00fc\u00dfe \u2713", "": "empty key"}
    return m


def small_model(weight_bytes: int = 4096, seed: int = 0) -> Model:
    """Input -> Requantize -> FullyConnected(INT8 weights) -> output."""
    rng = np.random.default_rng(seed)
    k = 256
    out = max(1, weight_bytes // k)
    m = Model(name="small")
    m.add_tensor(Tensor("x", (1, k)))
    m.add_tensor(Tensor("xq", (1, k), DataType.INT8, QFormat(8, 4)))
    m.add_tensor(Tensor("w", (out, k), DataType.INT8, QFormat(8, 7),
                        _data=rng.integers(-128, 128, (out, k), dtype=np.int8)))
    m.add_tensor(Tensor("b", (out,), DataType.INT32, QFormat(16, 11),
                        _data=rng.integers(-1000, 1000, out).astype(np.int32)))
    m.add_tensor(Tensor("y", (1, out), DataType.INT8, QFormat(8, 2)))
    m.add_layer(Layer("quant", ops.Requantize(), ["x"], ["xq"]))
    m.add_layer(Layer("fc", ops.FullyConnected(), ["xq", "w", "b"], ["y"]))
    m.inputs, m.outputs = ["x"], ["y"]
    return m


def read_header(blob: bytes) -> dict:
    """Decode the 64-byte header without any checks."""
    names = ("magic", "major", "minor", "header_size", "graph_offset", "graph_length",
             "data_offset", "data_length", "graph_crc32", "flags", "data_alignment")
    fields = dict(zip(names, HEADER.unpack_from(blob, 0)))
    fields["header_crc32"] = struct.unpack_from("<I", blob, 60)[0]
    return fields


def rebuild(blob: bytes, mutate) -> bytes:
    """Decode the graph of a valid file with the generated object API, let
    ``mutate(model_t)`` edit it, and reassemble a file with consistent header,
    offsets and CRCs (no validation), so the reader's later checks are reached."""

    import flatbuffers

    from dfxsdk._generated import dfx_generated as fb

    h = read_header(blob)
    graph = blob[h["graph_offset"]: h["graph_offset"] + h["graph_length"]]
    data = blob[h["data_offset"]:]
    root = fb.ModelT.InitFromPackedBuf(bytearray(graph), 0)
    mutate(root)
    builder = flatbuffers.Builder(1024)
    builder.ForceDefaults(True)
    builder.Finish(root.Pack(builder), file_identifier=b"DFXG")
    return assemble(bytes(builder.Output()), data, h["major"], h["minor"])


def assemble(graph: bytes, data: bytes, major: int = 1, minor: int = 0) -> bytes:
    """A file from graph and data-section bytes with a correct header."""
    import zlib

    data_offset = (64 + len(graph) + 63) // 64 * 64
    body = HEADER.pack(b"\x89DFX\r\n\x1a\n", major, minor, 64, 64, len(graph), data_offset,
                       len(data), zlib.crc32(graph), 0, 64)
    head = body + struct.pack("<I", zlib.crc32(body))
    return head + graph + b"\0" * (data_offset - 64 - len(graph)) + data


def fix_crcs(blob: bytes | bytearray) -> bytes:
    """Recompute the graph and header CRCs of a (patched) file."""
    import zlib

    blob = bytearray(blob)
    h = read_header(blob)
    g0, gl = h["graph_offset"], h["graph_length"]
    if g0 + gl <= len(blob):
        struct.pack_into("<I", blob, 48, zlib.crc32(blob[g0:g0 + gl]))
    struct.pack_into("<I", blob, 60, zlib.crc32(blob[:60]))
    return bytes(blob)

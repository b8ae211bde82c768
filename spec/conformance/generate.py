"""Generate the conformance vectors of spec/arithmetic.md from the NumPy reference.

Usage: python spec/conformance/generate.py [OUTPUT_DIR]   (default: this folder)

Each vector is <name>.dfx (a small model) and <name>.npz with the arrays
``in/<tensor>`` (graph inputs: int32 codes for integer inputs, float32 values
for float inputs)
and ``out/<tensor>`` (expected outputs: int32 codes for integer tensors,
float32 values for float tensors). Everything is seeded, and the .npz files
are written with fixed zip timestamps, so a rerun reproduces the files.
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np

from dfxsdk import DataType, Layer, Model, QFormat, Rounding, Tensor, ops, save
from dfxsdk.fixedpoint import quantize

MODES = {"away": Rounding.HALF_AWAY_FROM_ZERO, "even": Rounding.HALF_TO_EVEN,
         "up": Rounding.HALF_UP, "floor": Rounding.FLOOR}


def F(bw: int, fl: int = 0, r: Rounding = Rounding.HALF_AWAY_FROM_ZERO, ch=None, axis: int = 0) -> QFormat:
    return QFormat(bw, 0, r, tuple(ch), axis) if ch is not None else QFormat(bw, fl, r)


class Net:
    """A tiny graph builder with explicit shapes inferred by the operators."""

    def __init__(self, name: str, seed: int) -> None:
        self.m = Model(name=name, producer_name="dfxsdk-conformance", producer_version="1")
        self.rng = np.random.default_rng(seed)
        self.feeds: dict[str, np.ndarray] = {}
        self.n = 0

    def _t(self, name, shape, q, data=None, packed=False):
        dt = DataType.FLOAT32 if q is None else DataType.for_bw(q.bw, packed=packed)
        t = Tensor(name, tuple(shape), dt, q)
        if data is not None:
            t.data = np.asarray(data).astype(dt.numpy_dtype)
        self.m.add_tensor(t)
        return name

    def input(self, shape, q=None, scale=4.0, codes=None):
        name = f"x{len(self.m.inputs)}"
        self._t(name, shape, q)
        self.m.inputs.append(name)
        if q is None:
            self.feeds[name] = (self.rng.standard_normal(shape) * scale).astype(np.float32)
        else:
            c = codes if codes is not None else self.rng.integers(q.qmin, q.qmax + 1, shape)
            self.feeds[name] = np.asarray(c, np.int32)
        return name

    def const(self, shape=None, q=None, values=None, packed=False, scale=1.0):
        self.n += 1
        name = f"c{self.n}"
        if values is None:
            values = (self.rng.integers(q.qmin, q.qmax + 1, shape) if q is not None
                      else self.rng.standard_normal(shape) * scale)
        values = np.asarray(values)
        return self._t(name, values.shape, q, values, packed)

    def add(self, op, inputs, q=None, shapes=None, nout=None):
        self.n += 1
        in_shapes = [None if i is None else self.m.tensors[i].shape for i in inputs]
        shapes = shapes or op.infer_shapes(in_shapes)
        qs = q if isinstance(q, list) else [q] * len(shapes)
        outs = [self._t(f"t{self.n}_{k}", s, qq) for k, (s, qq) in enumerate(zip(shapes, qs))]
        self.m.add_layer(Layer(f"{op.TYPE.lower()}{self.n}", op, list(inputs), outs))
        return outs[0] if len(outs) == 1 else outs

    def out(self, *names):
        self.m.outputs.extend(names)
        return self


def minifloat_probe(rng: np.random.Generator, shape) -> np.ndarray:
    """Float32 values around every case of the minifloat rule: zeros, denormals, underflow and
    saturation edges, exact mantissa halves, huge values and infinities, then random magnitudes."""
    special = [0.0, -0.0, 1e-40, -1e-45, 2.0 ** -126, 2.0 ** -7, 2.0 ** -8, 2.0 ** -15, 1.0, -1.0, 1.5, 1.0625,
               1.03125, -1.09375, 1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, 255.9, 256.0, 480.0, 65504.0, 65520.0,
               1e30, -3e38, float("inf"), float("-inf"), 3.0, 2.5, 0.1, -0.3, 7.0, 1.875, 1.9375]
    values = np.sign(rng.standard_normal(shape)) * 10.0 ** rng.uniform(-42, 38, shape)
    flat = values.reshape(-1)
    flat[:len(special)] = special
    return flat.reshape(shape).astype(np.float32)


def conv_op(k=3, s=1, p=0, d=1, g=1, **kw):
    return ops.Conv2D(kernel_h=k, kernel_w=k, stride_h=s, stride_w=s, pad_top=p, pad_left=p, pad_bottom=p,
                      pad_right=p, dilation_h=d, dilation_w=d, group=g, **kw)


def vectors():
    """Yield every conformance Net."""
    # rounding of the final shift, with many ties (shift 1 and 2)
    for i, (mode, r) in enumerate(MODES.items()):
        n = Net(f"conv_round_{mode}", 100 + i)
        x = n.input((2, 2, 5, 5), F(6, 2))
        w = n.const((3, 2, 3, 3), F(3, 1))
        b = n.const((3,), F(8, 3))
        n.out(n.add(conv_op(p=1), [x, w, b], F(8, 4, r)))
        yield n
        n = Net(f"fc_round_{mode}", 200 + i)
        x = n.input((4, 16), F(8, 3))
        n.out(n.add(ops.FullyConnected(), [x, n.const((5, 16), F(4, 2))], F(6, 4, r)))
        yield n
    n = Net("conv_group_stride_dilation_pad", 1)
    x = n.input((2, 6, 9, 8), F(8, 5))
    n.out(n.add(conv_op(k=3, s=2, p=2, d=2, g=3), [x, n.const((6, 2, 3, 3), F(8, 7)), n.const((6,), F(16, 10))],
                F(8, 3, Rounding.HALF_TO_EVEN)))
    yield n
    n = Net("conv_depthwise_asym_pad", 2)
    x = n.input((1, 4, 6, 7), F(8, 4))
    op = ops.Conv2D(kernel_h=3, kernel_w=2, stride_h=1, stride_w=2, pad_top=1, pad_left=0, pad_bottom=2,
                    pad_right=1, group=4)
    n.out(n.add(op, [x, n.const((4, 1, 3, 2), F(8, 6))], F(8, 4, Rounding.HALF_UP)))
    yield n
    n = Net("conv_per_channel", 3)
    x = n.input((2, 3, 5, 5), F(8, 4))
    w = n.const((4, 3, 3, 3), F(8, ch=[5, 7, 9, 3], axis=0))
    b = n.const((4,), F(16, ch=[12, 4, 9, 2], axis=0))
    n.out(n.add(conv_op(p=1), [x, w, b], F(8, 3)),
          n.add(ops.FullyConnected(), [n.add(ops.Flatten(), [x], F(8, 4)), n.const(q=F(8, ch=[9, 2], axis=0), shape=(2, 75))], F(8, 1)))
    yield n
    n = Net("conv_int4_int2_weights", 4)
    x = n.input((2, 2, 6, 6), F(4, 2))
    c1 = n.add(conv_op(), [x, n.const((3, 2, 3, 3), F(4, 3), packed=True), n.const((3,), F(4, 3), packed=True)],
               F(4, 1))
    n.out(n.add(conv_op(k=1), [c1, n.const((5, 3, 1, 1), F(2, 1), packed=True)], F(4, 0)))
    yield n
    n = Net("fc_negative_fl_saturation", 5)
    x = n.input((3, 20), F(8, -2))
    w = n.const((6, 20), F(8, 2))
    n.out(n.add(ops.FullyConnected(), [x, w, n.const((6,), F(8, -3))], F(6, -4)),
          n.add(ops.FullyConnected(), [x, w], F(4, 0)))
    yield n
    n = Net("bias_finer_than_products", 6)
    x = n.input((2, 8), F(8, 1))
    n.out(n.add(ops.FullyConnected(), [x, n.const((3, 8), F(8, 1)), n.const((3,), F(16, 12))], F(8, 2)))
    yield n
    n = Net("deconv", 7)
    x = n.input((2, 4, 3, 4), F(8, 3))
    op = ops.Deconv2D(kernel_h=3, kernel_w=3, stride_h=2, stride_w=2, pad_top=1, pad_left=1, pad_bottom=1,
                      pad_right=1, group=2, output_pad_h=1)
    n.out(n.add(op, [x, n.const((4, 3, 3, 3), F(8, 6)), n.const((6,), F(8, 4))], F(8, 2)))
    yield n
    # shifts of 0 and 31 and left shifts, every mode, edge codes
    edge = np.array([[-2**31, -2**31 + 1, -3 * 2**29, -2**30 - 1, -2**30, -2**30 + 1, -3, -2, -1, 0, 1, 2, 3,
                      2**30 - 1, 2**30, 2**30 + 1, 3 * 2**29, 2**31 - 1]], np.int64)
    for name, fl_in, fl_out in (("requant_shift0", 5, 5), ("requant_shift31", 31, 0), ("requant_shift1", 1, 0),
                                ("requant_left_shift", 0, 3)):
        n = Net(name, 8)
        x = n.input(edge.shape, F(32, fl_in), codes=edge)
        n.out(*[n.add(ops.Requantize(), [x], F(8 if fl_in == fl_out else 32, fl_out, r)) for r in MODES.values()])
        yield n
    n = Net("quantize_float_ties", 9)
    x = n.input((1, 12))
    n.feeds[x] = np.array([[0.25, 0.75, -0.25, -0.75, 1.25, -1.25, 100.0, -100.0, 0.1, -0.1, 0.0, 63.75]],
                          np.float32)
    outs = [n.add(ops.Requantize(), [x], F(8, 1, r)) for r in MODES.values()]
    n.out(*outs, n.add(ops.Requantize(), [outs[0]], None))
    yield n
    # pooling
    pools = {"pool_max": dict(type=ops.POOL_MAX, kernel_h=3, kernel_w=3, stride_h=2, stride_w=2, pad_top=1,
                              pad_left=1, pad_bottom=1, pad_right=1),
             "pool_avg_caffe_ceil": dict(type=ops.POOL_AVERAGE, kernel_h=3, kernel_w=3, stride_h=2, stride_w=2,
                                         pad_top=1, pad_left=1, pad_bottom=1, pad_right=1),
             "pool_avg_valid_only": dict(type=ops.POOL_AVERAGE, kernel_h=3, kernel_w=2, stride_h=2, stride_w=2,
                                         pad_top=1, pad_left=1, pad_bottom=2, pad_right=0,
                                         divisor=ops.DIVISOR_VALID_ONLY),
             "pool_avg_floor_mode": dict(type=ops.POOL_AVERAGE, kernel_h=2, kernel_w=2, stride_h=2, stride_w=2,
                                         ceil_mode=False),
             "pool_avg_global": dict(type=ops.POOL_AVERAGE, global_=True)}
    for i, (name, kw) in enumerate(pools.items()):
        n = Net(name, 20 + i)
        x = n.input((2, 3, 7, 6), F(8, 3))
        n.out(*[n.add(ops.Pool2D(**kw), [x], F(8, fl, r)) for fl, r in
                ((3, Rounding.HALF_AWAY_FROM_ZERO), (5, Rounding.HALF_TO_EVEN), (1, Rounding.HALF_UP),
                 (-1, Rounding.FLOOR))])
        yield n
    n = Net("activations", 30)
    x = n.input((2, 3, 4, 4), F(8, 4))
    relu = n.add(ops.Relu(), [x], F(6, 2))
    clip = n.add(ops.Clip(min=-1.3, max=2.7), [x], F(8, 5))
    leaky = n.add(ops.PRelu(), [x, n.const(values=np.array([13]), q=F(8, 7))], F(8, 4))
    prelu = n.add(ops.PRelu(), [x, n.const(values=np.array([3, -5, 9]), q=F(6, ch=[2, 4, -1], axis=0))], F(8, 3))
    n.out(relu, clip, leaky, prelu)
    yield n
    n = Net("scale_bias", 31)
    x = n.input((2, 3, 3, 3), F(8, 4))
    n.out(n.add(ops.Scale(), [x, n.const((3,), F(8, 6)), n.const((3,), F(16, 8))], F(8, 3)))
    yield n
    n = Net("eltwise", 32)
    a = n.input((2, 3, 4, 4), F(8, 3))
    b = n.input((2, 3, 4, 4), F(8, 6, ch=None))
    bc = n.const(q=F(8, 2), values=n.rng.integers(-128, 128, (1, 3, 1, 1)))
    n.out(n.add(ops.Eltwise(operation=ops.ELTWISE_SUM), [a, b], F(8, 4)),
          n.add(ops.Eltwise(operation=ops.ELTWISE_SUM, coefficients=[0.5, -1.25]), [a, b], F(8, 4, Rounding.HALF_UP)),
          n.add(ops.Eltwise(operation=ops.ELTWISE_PROD), [a, b], F(8, 6)),
          n.add(ops.Eltwise(operation=ops.ELTWISE_MAX), [a, b, bc], F(8, 5)))
    yield n
    n = Net("concat_mixed_fl", 33)
    a = n.input((2, 2, 3, 3), F(8, 2))
    b = n.input((2, 3, 3, 3), F(6, 5))
    n.out(n.add(ops.Concat(axis=1), [a, b], F(8, 3, Rounding.HALF_TO_EVEN)),
          n.add(ops.Concat(axis=1), [a, b], F(6, 6, Rounding.FLOOR)))
    yield n
    n = Net("layout", 34)
    x = n.input((2, 3, 4, 2), F(8, 3))
    q = F(8, 3)
    n.out(n.add(ops.Flatten(), [x], q),
          n.add(ops.Reshape(), [x], q, shapes=[(2, 6, 4)]),
          n.add(ops.Permute(order=[0, 2, 3, 1]), [x], q),
          *n.add(ops.Slice(axis=1, points=[1]), [x], q),
          n.add(ops.Pad(pads=[0, 0, 1, 0, 0, 0, 2, 1], value=0.3), [x], q),
          n.add(ops.Upsample(scale_h=2, scale_w=3), [x], q))
    yield n
    # float operators (float32, compared within 1e-5)
    n = Net("float_ops", 40)
    x = n.input((2, 6, 5, 5), F(8, 4))
    xf = n.add(ops.Requantize(), [x], None)
    n.out(n.add(ops.Sigmoid(), [xf]), n.add(ops.Tanh(), [xf]), n.add(ops.Softmax(axis=1), [xf]),
          n.add(ops.Lrn(local_size=3, alpha=0.1, beta=0.75, k=2.0), [xf]),
          n.add(ops.Lrn(local_size=3, alpha=0.1, beta=0.75, k=1.0, region=ops.LRN_WITHIN_CHANNEL), [xf]),
          n.add(ops.Power(power=2.0, scale=0.5, shift=1.0), [xf]),
          n.add(ops.Normalize(across_spatial=False, channel_shared=False), [xf, n.const((6,), None, scale=5)]),
          n.add(ops.Sigmoid(), [x], F(8, 7)))
    yield n
    # format 1.1: Exp, and Ristretto's minifloat trimming (compared exactly: bit patterns decide)
    n = Net("minifloat_exp", 43)
    x = n.input((4, 64))
    n.feeds[x] = minifloat_probe(n.rng, (4, 64))
    e = n.input((4, 8), scale=3.0)
    n.out(*(n.add(ops.Minifloat(mant_bits=m, exp_bits=k), [x])
            for m, k in ((3, 4), (10, 5), (0, 2), (23, 8), (7, 8), (2, 1))),
          n.add(ops.Exp(), [e]))
    yield n
    n = Net("float_form_of_integer_op", 41)
    x = n.input((2, 3, 5, 5), F(8, 4))
    n.out(n.add(conv_op(p=1), [x, n.const((2, 3, 3, 3), None, scale=0.3)], F(8, 3)),
          n.add(conv_op(), [x, n.const((2, 3, 3, 3), F(8, 6))], None))
    yield n
    n = Net("ssd_head", 42)
    feat = n.input((1, 4, 3, 3))
    img = n.input((1, 3, 30, 30))
    pb = ops.PriorBox(min_sizes=[8.0], max_sizes=[16.0], aspect_ratios=[2.0], flip=True, clip=True,
                      variances=[0.1, 0.1, 0.2, 0.2])
    priors = n.add(pb, [feat, img])
    p = pb.num_priors() * 9
    loc = n.input((1, p * 4), scale=0.5)
    conf = n.add(ops.Softmax(axis=2), [n.input((1, p, 3), scale=2.0)])
    flat = n.add(ops.Flatten(), [conf])
    det = ops.DetectionOutput(num_classes=3, nms_threshold=0.45, top_k=20, keep_top_k=10,
                              confidence_threshold=0.2, code_type=ops.CODE_CENTER_SIZE)
    n.out(priors, n.add(det, [loc, flat, priors]))
    yield n


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz archive with fixed timestamps (reproducible bytes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for key in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            z.writestr(zipfile.ZipInfo(key + ".npy", date_time=(2020, 1, 1, 0, 0, 0)), member.getvalue())
    return buf.getvalue()


def generate(folder: Path) -> list[str]:
    """Write every vector into ``folder``; return the names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for net in vectors():
        model = net.m
        results = model.run(net.feeds, backend="numpy")
        arrays = {f"in/{k}": v for k, v in net.feeds.items()}
        arrays.update({f"out/{k}": v for k, v in results.items()})
        save(model, folder / f"{model.name}.dfx")
        (folder / f"{model.name}.npz").write_bytes(npz_bytes(arrays))
        names.append(model.name)
    return names


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    for name in generate(out):
        print(name)

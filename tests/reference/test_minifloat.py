"""Ristretto's MINIFLOAT: the trimming rule, its numpy and C kernels, and LeNet against its simulation.

Two references independent of :mod:`dfxsdk.minifloat` (which works on bit fields with
integer shifts): a per-element transcription of Trim2MiniFloat_cpu on the float32 bit
pattern with Python floats, and a vectorised one through ``np.frexp``. The LeNet
simulation is Ristretto's TEST-phase CPU forward pass (input trimmed in place, weights
and bias trimmed, the layer in float32, the output trimmed after the bias add), built
from the reference backend's float kernels and the ``frexp`` reference.
"""

from __future__ import annotations

import math
import re
import struct

import numpy as np
import pytest

from dfxsdk import minifloat, ops

FORMATS = [(3, 4), (10, 5), (0, 2), (23, 8), (7, 8), (2, 1), (5, 3)]


def trim_scalar(v: float, mant: int, exp: int) -> float:
    """Trim2MiniFloat_cpu for one value, written after Ristretto's C code."""
    (u,) = struct.unpack("<I", struct.pack("<f", v))
    sign, e8, m = u >> 31, (u >> 23) & 0xFF, u & 0x7FFFFF
    bias = 2 ** (exp - 1) - 1
    e = e8 - 127 + bias
    if e8 == 0 or e < 0:
        return 0.0
    if e > 2 ** exp - 1:
        e, mant_val = 2 ** exp - 1, 2 ** mant - 1
    else:
        mant_val = math.floor(m / 2 ** (23 - mant) + 0.5)   # round() of a non-negative value
    r = (-1) ** sign * ((mant_val + 2 ** mant) / 2 ** mant) * 2.0 ** (e - bias)
    try:
        return struct.unpack("<f", struct.pack("<f", r))[0]
    except OverflowError:
        return math.copysign(math.inf, r)


def trim_frexp(x: np.ndarray, mant: int, exp: int) -> np.ndarray:
    """The same rule through frexp on float64 values of the float32 inputs."""
    x = np.asarray(x, np.float32).astype(np.float64)
    a = np.abs(x)
    f, k = np.frexp(np.where(np.isinf(a), 1.0, a))
    big = np.isinf(a)
    e = np.where(big, 128, k - 1) + 2 ** (exp - 1) - 1
    frac = np.where(big, 0.0, (2 * f - 1) * 2.0 ** mant)
    m = np.floor(frac + 0.5)
    sat = e > 2 ** exp - 1
    e, m = np.where(sat, 2 ** exp - 1, e), np.where(sat, 2 ** mant - 1, m)
    r = np.sign(x) * (1 + m / 2.0 ** mant) * np.exp2((e - (2 ** (exp - 1) - 1)).astype(np.float64))
    with np.errstate(over="ignore"):
        return np.where((a < 2.0 ** -126) | (e < 0), 0.0, r).astype(np.float32)


def probe(n: int = 4000, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2 ** 32, n, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    x = x[np.isfinite(x)]
    edges = np.array([0.0, -0.0, 1e-40, 2.0 ** -126, 1.0625, 1.03125, 65504.0, 65520.0, 3e38, np.inf, -np.inf,
                      2.0 ** -7, 2.0 ** -8, 480.0, 496.0, 1.9375, 1.96875], np.float32)
    return np.concatenate([edges, x, (rng.standard_normal(n) * 10).astype(np.float32)])


@pytest.mark.parametrize("mant,exp", FORMATS)
def test_trim_equals_both_references(mant, exp):
    x = probe()
    got = minifloat.trim(x, mant, exp)
    assert got.dtype == np.float32
    scalar = np.array([trim_scalar(float(v), mant, exp) for v in x], np.float32)
    np.testing.assert_array_equal(got, scalar)
    np.testing.assert_array_equal(got, trim_frexp(x, mant, exp))


def test_trim_rules_by_example():
    t = lambda v: float(minifloat.trim(np.array([v], np.float32), 3, 4)[0])  # noqa: E731  8-bit: bias 7
    assert t(2.0 ** -7) == 2.0 ** -7 and t(2.0 ** -8) == 0.0       # biased exponent 0 is a normal number
    assert t(1.0625) == 1.125 and t(-1.0625) == -1.125              # a mantissa half rounds away from zero
    assert t(1e30) == 480.0 == (2 - 2 ** -3) * 2.0 ** (15 - 7)      # saturation: all-ones exponent, max mantissa
    assert t(1.96875) == 2.0                                        # a carry out of the mantissa
    half = lambda v: float(minifloat.trim(np.array([v], np.float32), 10, 5)[0])  # noqa: E731
    assert half(65520.0) == 65536.0                                 # the carry is not saturated again


def test_minifloat_operator_checks_its_widths():
    for bad in (ops.Minifloat(mant_bits=24), ops.Minifloat(exp_bits=0), ops.Minifloat(exp_bits=9)):
        with pytest.raises(ops.ShapeError):
            bad.check()


def test_numpy_and_native_kernels_agree_bit_for_bit(tmp_path_factory):
    from tests.support.builder import Builder
    from tests.support.native import native_backend

    x = probe(2000, seed=9)
    b = Builder("mf")
    inp = b.input((1, x.size), name="x")
    outs = [b.add(ops.Minifloat(mant_bits=m, exp_bits=e), [inp], None, outputs=[f"m{m}_{e}"]) for m, e in FORMATS]
    model = b.output(*outs)
    native = native_backend(tmp_path_factory).run(model, {"x": x[None]})
    for name in outs:
        ref = model.run({"x": x[None]})[name]
        np.testing.assert_array_equal(native[name], ref, err_msg=name)


# -- LeNet in MINIFLOAT ---------------------------------------------------------------

MINIFLOAT_BLOCK = "quantization_param {\n    precision: MINIFLOAT\n    mant_bits: 3\n    exp_bits: 4\n  }"


@pytest.fixture(scope="module")
def lenet_minifloat(tmp_path_factory):
    from tests.support.testdata import LENET, require_testdata

    require_testdata(LENET)
    from dfx_caffe.plugin import import_caffe

    from tests.support.quantize import lenet_float

    text = re.sub(r"quantization_param\s*\{.*?\}", MINIFLOAT_BLOCK, (LENET / "lenet_quantized.prototxt").read_text(),
                  flags=re.S)
    path = tmp_path_factory.mktemp("mf") / "lenet_minifloat.prototxt"
    path.write_text(text)
    model = import_caffe([LENET / "lenet.prototxt", LENET / "lenet_iter_10000.caffemodel"], ristretto_path=path)
    model.preprocessing["data"] = lenet_float().preprocessing["data"]
    return model


def simulate(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Ristretto's forward pass of the float LeNet with every Ristretto layer in MINIFLOAT 3/4 (every
    value by tensor name of the float LeNet, and ``logits``: ip2's trimmed output)."""
    from dfx_numpy.float_ops import KERNELS, Ctx

    from tests.support.quantize import lenet_float

    model = lenet_float()
    values = {k: v.astype(np.float32) for k, v in feed.items()}
    trimmed = {"conv1", "conv2", "ip1", "ip2"}
    for layer in model.layers:
        ins = []
        for i, name in enumerate(layer.inputs):
            t = model.tensors[name]
            v = None if name is None else (t.data.astype(np.float32) if t.is_constant else values[name])
            if layer.name in trimmed and v is not None:
                v = trim_frexp(v, 3, 4)           # input (in place), weights and bias
                if i == 0:
                    values[name] = v
            ins.append(v)
        batch = ins[0].shape[0]
        ctx = Ctx(layer.name, np.dtype(np.float32), [(batch,) + model.tensors[o].shape[1:] for o in layer.outputs])
        outs = KERNELS[layer.type](layer.op, ins, ctx)
        for name, v in zip(layer.outputs, outs):
            values[name] = trim_frexp(v, 3, 4) if layer.name in trimmed else v.astype(np.float32)
    values["logits"] = values[model.layer("ip2").outputs[0]]
    return values


def test_lenet_minifloat_layers(lenet_minifloat):
    types = [(l.name, l.type) for l in lenet_minifloat.layers]
    assert ("conv1/trim_in", "Minifloat") in types and ("ip2/trim_out", "Minifloat") in types
    for layer in lenet_minifloat.layers:
        if layer.type in ("Conv2D", "FullyConnected"):
            for name in layer.inputs[1:]:
                t = lenet_minifloat.tensors[name]
                assert t.qformat is None and np.array_equal(t.data, trim_frexp(t.data, 3, 4)), name


def test_lenet_minifloat_equals_its_simulation(lenet_minifloat, tmp_path_factory):
    from tests.support.native import native_backend
    from tests.support.quantize import batches, spread

    x, y = spread(200)
    native = native_backend(tmp_path_factory)
    logits = lenet_minifloat.layer("ip2/trim_out").outputs[0]
    wanted = ["prob", logits]
    hits = agree = total = 0
    for feed, labels in zip(batches(lenet_minifloat, x), np.split(y, 2)):
        sim = simulate(feed)
        got = lenet_minifloat.run(feed, outputs=wanted)
        np.testing.assert_array_equal(got["prob"], sim["prob"])   # the reference backend: exactly the simulation
        np.testing.assert_array_equal(got[logits], sim["logits"])
        nat = native.run(lenet_minifloat, feed, outputs=wanted)
        np.testing.assert_allclose(nat["prob"], sim["prob"], rtol=0, atol=1e-6)  # C's expf and float32 sums
        agree += int(np.sum(nat[logits] == sim["logits"]))
        total += nat[logits].size
        hits += int(np.sum(sim["prob"].argmax(1) == labels))
    assert hits >= 190                                       # 3-bit mantissa LeNet still classifies
    print(f"native: {agree} of {total} trimmed logits bit-identical to the simulation")
    assert agree / total > 0.99

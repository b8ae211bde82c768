"""Native float Conv2D / FullyConnected (the vectorised float path, kernels/src/ops/fast_f32.c) vs NumPy.

On a CPU with AVX2 and FMA a library session packs the weights of every float Conv2D and FC once and
runs them as an im2col (none for 1x1 stride-1 unpadded convolutions) + GEMM with 6 x 16 register
tiles, K blocks of 256 and column blocks of clamp(131072 // K rounded down to 16, 16, 256), the bias
fused into the GEMM; depthwise convolutions run their own kernel (8-column vectors where every tap
lies inside the row, per-tap checks near the padding). Elsewhere the scalar loops of ops/conv.c and
ops/fc.c run. Either way the float results must keep spec/arithmetic.md §3.1: 1e-5 relative
(absolute 1e-6, scaled here to the tensor's magnitude, as tests/native/test_native_models.py does).

The shapes below put m (output channels per group), n (columns) and k (reduction) off the block
sizes, use groups, strides, dilations and asymmetric padding, and run at batch 1 and 3; a batch-3 run
must equal the three batch-1 runs stacked.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

pytest.importorskip("dfx_native", reason="the native backend plugin (dfx_native) is not installed")

from dfxsdk import ops  # noqa: E402

from tests.support.builder import Builder  # noqa: E402


@pytest.fixture(scope="module")
def reference():
    from dfxsdk.plugins import get_manager

    return get_manager().backend("numpy")


def _conv(c_in, o, k=3, s=1, p=0, d=1, g=1, bias=True):
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    (kh, kw), (sh, sw), (dh, dw) = pair(k), pair(s), pair(d)
    p = (p,) * 4 if isinstance(p, int) else tuple(p)
    op = ops.Conv2D(kernel_h=kh, kernel_w=kw, stride_h=sh, stride_w=sw, pad_top=p[0], pad_left=p[1],
                    pad_bottom=p[2], pad_right=p[3], dilation_h=dh, dilation_w=dw, group=g)
    return op, (o, c_in // g, kh, kw), bias


# id, input shape (C, H, W), layers: (out channels, conv options) applied in turn
CONV_CASES = [
    ("1x1-direct-m7-n45", (5, 9, 5), [(7, dict(k=1))]),
    ("1x1-direct-long-k", (300, 4, 5), [(13, dict(k=1))]),            # K > 256: two K blocks
    ("1x1-stride2", (6, 9, 9), [(8, dict(k=1, s=2))]),
    ("1x1-padded", (4, 5, 6), [(5, dict(k=1, p=1, bias=False))]),
    ("3x3-pad1-m6", (3, 17, 19), [(6, dict(p=1))]),
    ("3x3-s2-asym-pad", (4, 15, 12), [(11, dict(s=2, p=(0, 1, 1, 0)))]),
    ("5x3-dilated", (3, 14, 13), [(9, dict(k=(5, 3), d=(2, 3), p=2))]),
    ("k-over-256", (40, 10, 9), [(14, dict(p=1))]),                    # K = 360
    ("many-cols", (3, 40, 37), [(17, dict(p=1))]),                     # several column blocks, mid-row starts
    ("wide-m", (8, 6, 7), [(80, dict(p=1))]),                          # more rows than one block of 72
    ("groups-3", (6, 11, 10), [(9, dict(g=3, p=1))]),
    ("groups-2-1x1", (8, 7, 7), [(6, dict(k=1, g=2))]),
    ("dw-3x3-s1", (5, 21, 19), [(5, dict(g=5, p=1))]),
    ("dw-3x3-s2", (4, 33, 35), [(4, dict(g=4, s=2, p=1))]),
    ("dw-3x3-s2-nopad", (3, 40, 41), [(3, dict(g=3, s=2))]),
    ("dw-5x5-s3-dil", (2, 30, 29), [(2, dict(k=5, g=2, s=3, d=2, p=(3, 1, 2, 4)))]),
    ("dw-narrow-planes", (3, 2, 3), [(3, dict(g=3, p=2, bias=False))]),
    ("dw-then-pw", (6, 19, 18), [(6, dict(g=6, p=1)), (10, dict(k=1))]),
]


def _build_conv(case):
    name, (c, h, w), layers = case
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    b = Builder(name.replace("-", "_"))
    cur = b.input((1, c, h, w), name="x")
    for o, kw in layers:
        op, wshape, bias = _conv(b.model.tensors[cur].shape[1], o, **kw)
        ins = [cur, b.const(rng.standard_normal(wshape) / np.sqrt(np.prod(wshape[1:])))]
        if bias:
            ins.append(b.const(rng.standard_normal(o)))
        cur = b.add(op, ins)
    return b.output(cur)


def _build_fc(k, o, bias=True):
    rng = np.random.default_rng(k * 1000 + o)
    b = Builder(f"fc_{k}_{o}")
    x = b.input((1, k), name="x")
    ins = [x, b.const(rng.standard_normal((o, k)) / np.sqrt(k))]
    if bias:
        ins.append(b.const(rng.standard_normal(o)))
    return b.output(b.add(ops.FullyConnected(axis=1), ins))


def _inputs(model, batch, seed=3):
    shape = (batch,) + tuple(model.tensors["x"].shape[1:])
    return {"x": np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)}


def _assert_close(native, reference, model, batch):
    feeds = _inputs(model, batch)
    names = [n for layer in model.layers for n in layer.outputs]
    got = native.run(model, feeds, outputs=names)
    want = reference.run(model, feeds, outputs=names)
    for n in names:
        assert got[n].dtype == np.float32 and got[n].shape == want[n].shape, n
        scale = float(np.abs(want[n]).max()) or 1.0
        np.testing.assert_allclose(got[n], want[n], rtol=1e-5, atol=1e-6 * scale, err_msg=f"{model.name} {n}")
    return feeds, got[model.outputs[0]]


def _assert_batch_stacks(native, model, batch, feeds, out):
    """A batch-N run equals the N batch-1 runs stacked (bit for bit: same kernels, same order)."""
    one = [native.run(model, {"x": feeds["x"][i:i + 1]})[model.outputs[0]] for i in range(batch)]
    assert np.array_equal(out, np.concatenate(one)), f"{model.name}: batch {batch} differs from batch-1 runs"


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("case", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_float_conv_matches_numpy(native, reference, case, batch):
    model = _build_conv(case)
    feeds, out = _assert_close(native, reference, model, batch)
    if batch > 1:
        _assert_batch_stacks(native, model, batch, feeds, out)


@pytest.mark.parametrize("batch", [1, 2, 7, 20])
@pytest.mark.parametrize("k,o,bias", [(1, 1, True), (17, 5, True), (300, 13, False), (800, 70, True)])
def test_float_fc_matches_numpy(native, reference, k, o, bias, batch):
    model = _build_fc(k, o, bias)
    feeds, out = _assert_close(native, reference, model, batch)
    if batch > 1:
        _assert_batch_stacks(native, model, batch, feeds, out)


@pytest.mark.parametrize("axis", [1, 2])
def test_softmax_matches_numpy_with_extremes(native, reference, axis):
    """Softmax (libdfx's vectorised exponential, ops/fexp.h) against NumPy: rows of every scale, contiguous
    (axis 2) and strided (axis 1), with -inf logits (probability 0), a NaN (its row NaN, as in NumPy) and
    values below exp's float range."""
    b = Builder(f"softmax{axis}")
    x = b.input((1, 21, 40), name="x")
    model = b.output(b.add(ops.Softmax(axis=axis), [x]))
    rng = np.random.default_rng(7)
    v = (rng.standard_normal((1, 21, 40)) * rng.choice([0.1, 1, 10, 100], (1, 21, 40))).astype(np.float32)
    v[0, 3, 5] = -np.inf
    v[0, 4, :] = -np.inf
    v[0, 4, 7] = 0.0
    v[0, 6, 9] = np.nan
    v[0, 8, :3] = -200.0
    got = native.run(model, {"x": v})[model.outputs[0]]
    want = reference.run(model, {"x": v})[model.outputs[0]]
    assert np.array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    if axis == 2:  # a row of -inf but one 0: probability 1 there, exactly
        assert got[0, 4, 7] == want[0, 4, 7] == 1.0


@pytest.mark.slow
def test_mobilenet_ssd_float_model_within_tolerance(native, caffe, reference, tmp_path):
    """A float model end to end: MobileNet-SSD 300x300 unquantized (generated weights), batch 2, every tensor up
    to the detection heads within the float tolerance of NumPy's (DetectionOutput keeps boxes by thresholds and
    NMS, which a tolerance-sized difference may flip, so it is left out), and batch 2 equals the batch-1 runs."""
    import warnings

    from dfx_caffe.synth import random_caffemodel

    from tests.support.testdata import ONLY, require_testdata

    proto = ONLY / "MobileNetSSD_deploy.prototxt"
    require_testdata(proto)
    random_caffemodel(proto, tmp_path / "w.caffemodel", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = caffe.import_caffe([proto, tmp_path / "w.caffemodel"])
    x = next(iter(model.inputs))
    feeds = {x: np.random.default_rng(0).uniform(-1, 1, (2,) + tuple(model.tensors[x].shape[1:])).astype(np.float32)}
    names = [n for layer in model.layers if layer.type != "DetectionOutput" for n in layer.outputs]
    got = native.run(model, feeds, outputs=names)
    want = reference.run(model, feeds, outputs=names)
    for n in names:
        scale = float(np.abs(want[n]).max()) or 1.0
        np.testing.assert_allclose(got[n], want[n], rtol=1e-5, atol=1e-6 * scale, err_msg=n)
    last = names[-1]
    one = [native.run(model, {x: feeds[x][i:i + 1]}, outputs=[last])[last] for i in range(2)]
    assert np.array_equal(got[last], np.concatenate(one))

"""Property tests: the integer mode equals the exact simulation (spec 3.2).

For random shapes, bit widths, fractional lengths (negative ones included),
per-channel formats and rounding modes, the integer codes of the reference
backend, dequantized, equal the simulation mode's float64 values exactly.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from dfxsdk import Rounding, ops
from dfxsdk.fixedpoint import dequantize

from tests.support.builder import Builder, fmt

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
roundings = st.sampled_from(list(Rounding))


@st.composite
def qformats(draw, bw=(2, 12), fl=(-4, 10), channels: int | None = None, axis: int = 0):
    b = draw(st.integers(*bw))
    r = draw(roundings)
    if channels and draw(st.booleans()):
        return fmt(b, rounding=r, channel_fl=draw(st.lists(st.integers(*fl), min_size=channels,
                                                           max_size=channels)), channel_axis=axis)
    return fmt(b, draw(st.integers(*fl)), r)


def codes(draw, q, shape):
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).integers(q.qmin, q.qmax + 1, size=shape)


def real_input(draw, shape, scale=8.0):
    seed = draw(st.integers(0, 2**32 - 1))
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def assert_int_equals_sim(model, feeds):
    got = model.run(feeds, mode="integer")
    sim = model.run(feeds, mode="simulate")
    for name in model.outputs:
        q = model.tensors[name].qformat
        assert got[name].dtype == np.int32
        assert np.array_equal(dequantize(got[name], q, dtype=np.float64), sim[name]), name


@SETTINGS
@given(st.data())
def test_conv2d(data):
    d = data.draw
    g = d(st.integers(1, 3))
    cg, og = d(st.integers(1, 3)), d(st.integers(1, 3))
    c, o = g * cg, g * og
    kh, kw = d(st.integers(1, 3)), d(st.integers(1, 3))
    op = ops.Conv2D(kernel_h=kh, kernel_w=kw, stride_h=d(st.integers(1, 3)), stride_w=d(st.integers(1, 3)),
                    pad_top=d(st.integers(0, 2)), pad_left=d(st.integers(0, 2)),
                    pad_bottom=d(st.integers(0, 2)), pad_right=d(st.integers(0, 2)),
                    dilation_h=d(st.integers(1, 2)), dilation_w=d(st.integers(1, 2)), group=g)
    h = d(st.integers(op.dilation_h * (kh - 1) + 1, 9))
    w = d(st.integers(op.dilation_w * (kw - 1) + 1, 9))
    fx, fw = d(qformats(channels=c, axis=1)), d(qformats(bw=(2, 8), channels=o))
    fy = d(qformats(bw=(2, 16), channels=o, axis=1))
    b = Builder()
    x = b.input((2, c, h, w), fx)
    ins = [x, b.const(codes(d, fw, (o, cg, kh, kw)), fw)]
    if d(st.booleans()):
        fb = d(qformats(bw=(2, 16), fl=(-4, 16), channels=o))
        ins.append(b.const(codes(d, fb, (o,)), fb))
    y = b.add(op, ins, fy)
    assert_int_equals_sim(b.output(y), {x: real_input(d, (2, c, h, w))})


@SETTINGS
@given(st.data())
def test_deconv2d(data):
    d = data.draw
    g = d(st.integers(1, 2))
    cg, og = d(st.integers(1, 3)), d(st.integers(1, 3))
    kh, kw = d(st.integers(1, 3)), d(st.integers(1, 3))
    op = ops.Deconv2D(kernel_h=kh, kernel_w=kw, stride_h=d(st.integers(1, 3)), stride_w=d(st.integers(1, 2)),
                      pad_top=d(st.integers(0, 1)), pad_left=d(st.integers(0, 1)),
                      dilation_h=d(st.integers(1, 2)), group=g, output_pad_h=d(st.integers(0, 1)))
    fx, fw, fy = d(qformats()), d(qformats(bw=(2, 8))), d(qformats(bw=(2, 16)))
    b = Builder()
    x = b.input((2, g * cg, 3, 4), fx)
    fb = d(qformats(bw=(2, 16)))
    y = b.add(op, [x, b.const(codes(d, fw, (g * cg, og, kh, kw)), fw), b.const(codes(d, fb, (g * og,)), fb)], fy)
    assert_int_equals_sim(b.output(y), {x: real_input(d, (2, g * cg, 3, 4))})


@SETTINGS
@given(st.data())
def test_fully_connected(data):
    d = data.draw
    k, o = d(st.integers(1, 40)), d(st.integers(1, 6))
    fx, fw = d(qformats(channels=k, axis=1)), d(qformats(bw=(1, 8), channels=o))
    fy = d(qformats(bw=(2, 16), channels=o, axis=1))
    b = Builder()
    x = b.input((3, k), fx)
    ins = [x, b.const(codes(d, fw, (o, k)), fw)]
    if d(st.booleans()):
        fb = d(qformats(bw=(2, 20), fl=(-4, 18)))
        ins.append(b.const(codes(d, fb, (o,)), fb))
    y = b.add(ops.FullyConnected(), ins, fy)
    assert_int_equals_sim(b.output(y), {x: real_input(d, (3, k))})


@SETTINGS
@given(st.data())
def test_pool2d(data):
    d = data.draw
    glob = d(st.booleans())
    kh, kw = d(st.integers(1, 4)), d(st.integers(1, 4))
    op = ops.Pool2D(type=d(st.sampled_from([ops.POOL_MAX, ops.POOL_AVERAGE])), kernel_h=kh, kernel_w=kw,
                    stride_h=d(st.integers(1, 3)), stride_w=d(st.integers(1, 3)),
                    pad_top=d(st.integers(0, kh - 1)), pad_left=d(st.integers(0, kw - 1)),
                    pad_bottom=d(st.integers(0, kh - 1)), pad_right=d(st.integers(0, kw - 1)),
                    global_=glob, ceil_mode=d(st.booleans()),
                    divisor=d(st.sampled_from([ops.DIVISOR_PADDED_WINDOW, ops.DIVISOR_VALID_ONLY])))
    h, w = d(st.integers(kh, 9)), d(st.integers(kw, 9))
    c = d(st.integers(1, 3))
    fx = d(qformats(bw=(2, 16), channels=c, axis=1))
    fy = d(qformats(bw=(2, 16), fl=(-4, 14), channels=c, axis=1))
    b = Builder()
    x = b.input((2, c, h, w), fx)
    y = b.add(op, [x], fy)
    assert_int_equals_sim(b.output(y), {x: real_input(d, (2, c, h, w))})


@SETTINGS
@given(st.data())
def test_eltwise(data):
    d = data.draw
    n = d(st.integers(2, 4))
    operation = d(st.sampled_from([ops.ELTWISE_SUM, ops.ELTWISE_PROD, ops.ELTWISE_MAX]))
    coeffs = []
    if operation == ops.ELTWISE_SUM and d(st.booleans()):
        coeffs = [d(st.integers(-300, 300)) / 2 ** d(st.integers(0, 8)) for _ in range(n)]
    bw = (2, 6) if operation == ops.ELTWISE_PROD else (2, 16)
    shape = (2, 3, 4, 5)
    b = Builder()
    names, feeds = [], {}
    for i in range(n):
        q = d(qformats(bw=bw))
        if i == 0 or not d(st.booleans()):
            name = b.input(shape, q)
            feeds[name] = real_input(d, shape)
        else:  # a constant operand that broadcasts
            name = b.const(codes(d, q, d(st.sampled_from([(1, 3, 1, 1), (4, 5), (1,)]))), q)
        names.append(name)
    y = b.add(ops.Eltwise(operation=operation, coefficients=coeffs), names, d(qformats(bw=(2, 24))))
    assert_int_equals_sim(b.output(y), feeds)


@SETTINGS
@given(st.data())
def test_concat(data):
    d = data.draw
    n = d(st.integers(1, 4))
    axis = d(st.integers(0, 3))
    b = Builder()
    names, feeds = [], {}
    for _ in range(n):
        s = [2, 3, 2, 2]
        s[axis] = d(st.integers(1, 3))
        if axis == 0:
            s[0] = 2
        name = b.input(tuple(s), d(qformats(bw=(2, 16))))
        names.append(name)
        feeds[name] = real_input(d, tuple(s))
    total = sum(b.model.tensors[nm].shape[1] for nm in names)
    fy = d(qformats(bw=(2, 16), channels=total if axis == 1 else None, axis=1))
    y = b.add(ops.Concat(axis=axis if axis else 1), names, fy)
    assert_int_equals_sim(b.output(y), feeds)


@SETTINGS
@given(st.data())
def test_activations_scale_requantize(data):
    d = data.draw
    c = d(st.integers(1, 4))
    b = Builder()
    x = b.input((2, c, 3, 3), d(qformats(bw=(2, 16), channels=c, axis=1)))
    r = b.add(ops.Relu(), [x], d(qformats(bw=(2, 16))))
    fs = d(qformats(bw=(2, 8), fl=(-2, 10)))
    p = b.add(ops.PRelu(), [r if d(st.booleans()) else x, b.const(codes(d, fs, (c,)), fs)], d(qformats(bw=(2, 16))))
    fsc, fb = d(qformats(bw=(2, 8))), d(qformats(bw=(2, 16)))
    s = b.add(ops.Scale(), [p, b.const(codes(d, fsc, (c,)), fsc), b.const(codes(d, fb, (c,)), fb)],
              d(qformats(bw=(2, 16))))
    q = b.add(ops.Requantize(), [s], d(qformats(bw=(1, 32), fl=(-8, 30))))
    u = b.add(ops.Upsample(scale_h=2, scale_w=1), [q], b.model.tensors[q].qformat)
    assert_int_equals_sim(b.output(r, p, s, q, u), {x: real_input(d, (2, c, 3, 3))})

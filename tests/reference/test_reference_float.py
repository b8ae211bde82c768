"""Float mode against an independent NumPy implementation of Caffe's layers.

The reference kernels here follow Caffe's own loops (pixel by pixel, in
float64) and share no code with the backend.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dfxsdk import ops

from tests.support.builder import Builder

RTOL = 1e-5
rng = np.random.default_rng(1234)


def caffe_conv(x, w, b, stride, pad, dil, group):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    oh = (h + 2 * pad - (dil * (kh - 1) + 1)) // stride + 1
    ow = (wd + 2 * pad - (dil * (kw - 1) + 1)) // stride + 1
    y = np.zeros((n, o, oh, ow))
    og = o // group
    for oc in range(o):
        g = oc // og
        for i in range(oh):
            for j in range(ow):
                acc = np.zeros(n)
                for ci in range(cg):
                    for ki in range(kh):
                        for kj in range(kw):
                            r, s = i * stride - pad + ki * dil, j * stride - pad + kj * dil
                            if 0 <= r < h and 0 <= s < wd:
                                acc += x[:, g * cg + ci, r, s] * w[oc, ci, ki, kj]
                y[:, oc, i, j] = acc + b[oc]
    return y


def caffe_deconv(x, w, b, stride, pad):
    n, c, h, wd = x.shape
    _, o, kh, kw = w.shape
    oh, ow = stride * (h - 1) + kh - 2 * pad, stride * (wd - 1) + kw - 2 * pad
    y = np.zeros((n, o, oh + 2 * pad, ow + 2 * pad))
    for ci in range(c):
        for i in range(h):
            for j in range(wd):
                y[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw] += \
                    x[:, ci, i, j][:, None, None, None] * w[ci][None]
    return y[:, :, pad:pad + oh, pad:pad + ow] + b[None, :, None, None]


def caffe_pool(x, k, stride, pad, ave):
    n, c, h, w = x.shape
    oh = int(math.ceil((h + 2 * pad - k) / stride)) + 1
    ow = int(math.ceil((w + 2 * pad - k) / stride)) + 1
    if pad:
        oh -= (oh - 1) * stride >= h + pad
        ow -= (ow - 1) * stride >= w + pad
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * stride - pad, j * stride - pad
            he, we = min(hs + k, h + pad), min(ws + k, w + pad)
            size = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            win = x[:, :, hs:he, ws:we]
            y[:, :, i, j] = win.sum(axis=(2, 3)) / size if ave else win.max(axis=(2, 3))
    return y


def caffe_lrn_across(x, size, alpha, beta, k):
    n, c, h, w = x.shape
    y = np.zeros_like(x)
    for ch in range(c):
        lo, hi = max(0, ch - (size - 1) // 2), min(c, ch + (size - 1) // 2 + 1)
        scale = k + alpha / size * (x[:, lo:hi] ** 2).sum(axis=1)
        y[:, ch] = x[:, ch] * scale ** -beta
    return y


def caffe_lrn_within(x, size, alpha, beta):
    n, c, h, w = x.shape
    half = (size - 1) // 2
    sq = np.pad(x ** 2, ((0, 0), (0, 0), (half, half), (half, half)))
    y = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            s = sq[:, :, i:i + size, j:j + size].sum(axis=(2, 3))
            y[:, :, i, j] = x[:, :, i, j] * (1 + alpha / (size * size) * s) ** -beta
    return y


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def run_float(b, y, feeds):
    model = b.output(y)
    return model.run(feeds, mode="float")[y]


def close(got, want):
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-6 * max(1.0, np.abs(want).max()))


@pytest.mark.parametrize("stride,pad,dil,group", [(1, 0, 1, 1), (2, 1, 1, 2), (1, 2, 2, 3), (3, 1, 1, 6)])
def test_convolution(stride, pad, dil, group):
    x = rng.standard_normal((2, 6, 9, 8)).astype(np.float32)
    w = rng.standard_normal((6, 6 // group, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(6).astype(np.float32)
    b = Builder()
    xi = b.input(x.shape)
    y = b.add(ops.Conv2D(kernel_h=3, kernel_w=3, stride_h=stride, stride_w=stride, pad_top=pad,
                         pad_left=pad, pad_bottom=pad, pad_right=pad, dilation_h=dil, dilation_w=dil,
                         group=group), [xi, b.const(w), b.const(bias)])
    close(run_float(b, y, {xi: x}), caffe_conv(x.astype(np.float64), w, bias, stride, pad, dil, group))


@pytest.mark.parametrize("stride,pad", [(1, 0), (2, 1), (3, 0)])
def test_deconvolution(stride, pad):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    w = rng.standard_normal((3, 4, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    b = Builder()
    xi = b.input(x.shape)
    y = b.add(ops.Deconv2D(kernel_h=3, kernel_w=3, stride_h=stride, stride_w=stride, pad_top=pad,
                           pad_left=pad, pad_bottom=pad, pad_right=pad), [xi, b.const(w), b.const(bias)])
    close(run_float(b, y, {xi: x}), caffe_deconv(x.astype(np.float64), w, bias, stride, pad))


def test_inner_product():
    x = rng.standard_normal((4, 3, 2, 5)).astype(np.float32)
    w = rng.standard_normal((7, 30)).astype(np.float32)
    bias = rng.standard_normal(7).astype(np.float32)
    b = Builder()
    xi = b.input(x.shape)
    y = b.add(ops.FullyConnected(), [xi, b.const(w), b.const(bias)])
    close(run_float(b, y, {xi: x}), x.reshape(4, -1).astype(np.float64) @ w.T.astype(np.float64) + bias)


@pytest.mark.parametrize("k,stride,pad,ave", [(2, 2, 0, False), (3, 2, 0, True), (3, 2, 1, True),
                                              (3, 2, 1, False), (2, 3, 1, True)])
def test_pooling(k, stride, pad, ave):
    x = rng.standard_normal((2, 3, 7, 8)).astype(np.float32)
    b = Builder()
    xi = b.input(x.shape)
    y = b.add(ops.Pool2D(type=int(ave), kernel_h=k, kernel_w=k, stride_h=stride, stride_w=stride,
                         pad_top=pad, pad_left=pad, pad_bottom=pad, pad_right=pad), [xi])
    close(run_float(b, y, {xi: x}), caffe_pool(x.astype(np.float64), k, stride, pad, ave))


def test_global_pooling():
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    b = Builder()
    xi = b.input(x.shape)
    y = b.add(ops.Pool2D(type=ops.POOL_AVERAGE, global_=True), [xi])
    close(run_float(b, y, {xi: x}), x.astype(np.float64).mean(axis=(2, 3), keepdims=True))


@pytest.mark.parametrize("region", [ops.LRN_ACROSS_CHANNELS, ops.LRN_WITHIN_CHANNEL])
def test_lrn(region):
    x = rng.standard_normal((2, 7, 5, 5)).astype(np.float32) * 3
    b = Builder()
    xi = b.input(x.shape)
    y = b.add(ops.Lrn(local_size=3 if region else 5, alpha=1e-2, beta=0.75, k=1.0, region=region), [xi])
    xd = x.astype(np.float64)
    want = caffe_lrn_within(xd, 3, 1e-2, 0.75) if region else caffe_lrn_across(xd, 5, 1e-2, 0.75, 1.0)
    close(run_float(b, y, {xi: x}), want)


def test_elementwise_chain():
    x = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    slope = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    sc, sh = rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    b = Builder()
    xi = b.input(x.shape)
    r = b.add(ops.Relu(), [xi])
    p = b.add(ops.PRelu(), [xi, b.const(slope)])
    e = b.add(ops.Eltwise(operation=ops.ELTWISE_SUM, coefficients=[0.5, -1.5]), [r, p])
    m = b.add(ops.Eltwise(operation=ops.ELTWISE_MAX), [e, p])
    s = b.add(ops.Scale(), [m, b.const(sc), b.const(sh)])
    sig = b.add(ops.Sigmoid(), [s])
    t = b.add(ops.Tanh(), [s])
    c = b.add(ops.Concat(axis=1), [sig, t])
    pw = b.add(ops.Power(power=2.0, scale=0.5, shift=1.0), [c])
    sm = b.add(ops.Softmax(axis=1), [pw])
    xd = x.astype(np.float64)
    rr = np.maximum(xd, 0)
    pp = np.where(xd > 0, xd, xd * slope[None, :, None, None])
    ss = np.maximum(0.5 * rr - 1.5 * pp, pp) * sc[None, :, None, None] + sh[None, :, None, None]
    cc = np.concatenate([1 / (1 + np.exp(-ss)), np.tanh(ss)], axis=1)
    close(run_float(b, sm, {xi: x}), softmax((1 + 0.5 * cc) ** 2, 1))


def test_normalize():
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    scale = np.array([2.0, 3.0, 4.0], np.float32)
    b = Builder()
    xi = b.input(x.shape)
    y = b.add(ops.Normalize(across_spatial=False, channel_shared=False), [xi, b.const(scale)])
    xd = x.astype(np.float64)
    want = xd / np.sqrt((xd ** 2).sum(axis=1, keepdims=True) + 1e-10) * scale[None, :, None, None]
    close(run_float(b, y, {xi: x}), want)


def test_float_mode_dequantizes_weights():
    """A quantized model in float mode uses the dequantized weights and no rounding."""
    from tests.support.builder import fmt
    x = rng.standard_normal((2, 5)).astype(np.float32)
    b = Builder()
    xi = b.input(x.shape)
    xq = b.add(ops.Requantize(), [xi], fmt(4, 1))
    w = np.array([[3, -2, 1, 0, 7]], np.int64)
    y = b.add(ops.FullyConnected(), [xq, b.const(w, fmt(4, 2))], fmt(8, 0))
    got = b.output(y).run({xi: x}, mode="float")[y]
    close(got, x.astype(np.float64) @ (w.T / 4.0))

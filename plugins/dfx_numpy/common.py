"""Layout helpers shared by the integer and the float kernels.

Everything here only moves values or sums products in the dtype it is given
(int64 for the integer kernels, float32/float64 for the float ones), so the
same code serves both arithmetics.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from dfxsdk import ops

#: Integer sums below these magnitudes are exact in float32 / float64 (24 / 53-bit significands).
_FLOAT32_EXACT = 1 << 24
_FLOAT64_EXACT = 1 << 53


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched a @ b; integer arrays give the exact int64 result.

    When every partial sum is bounded by max|a| * max|b| * K < 2**53, each is an
    integer that float64 represents exactly, whatever the summation order, so
    BLAS float64 gives the exact result (much faster; float32 below 2**24);
    otherwise int64 einsum.
    """
    if a.dtype.kind in "iu":
        k = a.shape[-1]
        amax = int(np.abs(a).max()) if a.size else 0
        bmax = int(np.abs(b).max()) if b.size else 0
        if amax * bmax * k < _FLOAT32_EXACT:
            return (a.astype(np.float32) @ b.astype(np.float32)).astype(np.int64)
        if amax * bmax * k < _FLOAT64_EXACT:
            return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
        return np.einsum("...mk,...kn->...mn", a, b)
    return a @ b


def pad_spatial(x: np.ndarray, top: int, bottom: int, left: int, right: int, value=0) -> np.ndarray:
    """Pad (or crop, for negative amounts) the last two axes of an N,C,H,W array."""
    if min(top, bottom, left, right) < 0:
        h, w = x.shape[2], x.shape[3]
        x = x[:, :, max(-top, 0):h - max(-bottom, 0), max(-left, 0):w - max(-right, 0)]
        top, bottom, left, right = (max(v, 0) for v in (top, bottom, left, right))
    if top == bottom == left == right == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def windows(x: np.ndarray, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int,
            oh: int, ow: int) -> np.ndarray:
    """View of the (already padded) N,C,H,W input as N,C,OH,OW,KH,KW windows."""
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    v = sliding_window_view(x, (eh, ew), axis=(2, 3))
    return v[:, :, ::sh, ::sw, ::dh, ::dw][:, :, :oh, :ow]


def conv2d_sum(x: np.ndarray, w: np.ndarray, op: ops.Conv2D) -> np.ndarray:
    """sum_{c,kh,kw} x * w for every output position, without bias: (N,O,OH,OW)."""
    n, c, h, wd = x.shape
    o = w.shape[0]
    g = op.group
    oh = ops.conv_out_size(h, op.kernel_h, op.stride_h, op.pad_top, op.pad_bottom, op.dilation_h)
    ow = ops.conv_out_size(wd, op.kernel_w, op.stride_w, op.pad_left, op.pad_right, op.dilation_w)
    xp = pad_spatial(x, op.pad_top, op.pad_bottom, op.pad_left, op.pad_right)
    win = windows(xp, op.kernel_h, op.kernel_w, op.stride_h, op.stride_w,
                  op.dilation_h, op.dilation_w, oh, ow)              # N,C,OH,OW,KH,KW
    cg, og = c // g, o // g
    cols = win.reshape(n, g, cg, oh, ow, op.kernel_h, op.kernel_w)
    cols = cols.transpose(1, 0, 3, 4, 2, 5, 6).reshape(g, n * oh * ow, -1)
    wm = w.reshape(g, og, -1).transpose(0, 2, 1)                    # G, K, OG
    out = matmul(cols, wm)                                          # G, N*OH*OW, OG
    return out.reshape(g, n, oh, ow, og).transpose(1, 0, 4, 2, 3).reshape(n, o, oh, ow)


def deconv2d_sum(x: np.ndarray, w: np.ndarray, op: ops.Deconv2D) -> np.ndarray:
    """Transposed convolution without bias: (N,O,OH,OW); loops only over kernel taps."""
    n, c, h, wd = x.shape
    g = op.group
    cg, og = c // g, w.shape[1]
    kh, kw = op.kernel_h, op.kernel_w
    xm = x.reshape(n, g, cg, h * wd).transpose(1, 0, 3, 2).reshape(g, n * h * wd, cg)
    wm = w.reshape(g, cg, og * kh * kw)
    cols = matmul(xm, wm).reshape(g, n, h, wd, og, kh, kw)
    cols = cols.transpose(1, 0, 4, 5, 6, 2, 3)                      # N,G,OG,KH,KW,H,W
    full_h = op.stride_h * (h - 1) + op.dilation_h * (kh - 1) + 1
    full_w = op.stride_w * (wd - 1) + op.dilation_w * (kw - 1) + 1
    oh = full_h - op.pad_top - op.pad_bottom + op.output_pad_h
    ow = full_w - op.pad_left - op.pad_right + op.output_pad_w
    buf = np.zeros((n, g, og, max(full_h, op.pad_top + oh), max(full_w, op.pad_left + ow)), x.dtype)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * op.dilation_h, j * op.dilation_w
            buf[:, :, :, r0:r0 + op.stride_h * (h - 1) + 1:op.stride_h,
                c0:c0 + op.stride_w * (wd - 1) + 1:op.stride_w] += cols[:, :, :, i, j]
    out = buf[:, :, :, op.pad_top:op.pad_top + oh, op.pad_left:op.pad_left + ow]
    return np.ascontiguousarray(out).reshape(n, g * og, oh, ow)


def fc_sum(x: np.ndarray, w: np.ndarray, op: ops.FullyConnected) -> np.ndarray:
    """x flattened from ``axis`` times w^T: shape x.shape[:axis] + (OUT,)."""
    lead = x.shape[:op.axis]
    xm = x.reshape(int(np.prod(lead)), -1)
    return matmul(xm, w.T).reshape(*lead, w.shape[0])


def channel_shape(ndim: int, axis: int) -> list[int]:
    """Broadcast shape [1,..,-1,..,1] for a per-channel vector on ``axis``."""
    shape = [1] * ndim
    shape[axis] = -1
    return shape


# -- pooling geometry ----------------------------------------------------------

def pool_geometry(op: ops.Pool2D, h: int, w: int):
    """(kh, kw, sh, sw, pt, pl, pb, pr, oh, ow) of a pooling on an h x w plane."""
    kh, kw, sh, sw, pt, pl, pb, pr = op.window(h, w)
    oh = ops.pool_out_size(h, kh, sh, pt, pb, op.ceil_mode)
    ow = ops.pool_out_size(w, kw, sw, pl, pr, op.ceil_mode)
    return kh, kw, sh, sw, pt, pl, pb, pr, oh, ow


def pool_windows(x: np.ndarray, op: ops.Pool2D, fill) -> np.ndarray:
    """N,C,OH,OW,KH,KW windows; positions outside the real input hold ``fill``."""
    h, w = x.shape[2], x.shape[3]
    kh, kw, sh, sw, pt, pl, _, _, oh, ow = pool_geometry(op, h, w)
    bottom = (oh - 1) * sh + kh - pt - h
    right = (ow - 1) * sw + kw - pl - w
    xp = pad_spatial(x, pt, bottom, pl, right, value=fill)
    return windows(xp, kh, kw, sh, sw, 1, 1, oh, ow)


def pool_divisor(op: ops.Pool2D, h: int, w: int) -> np.ndarray:
    """Average-pool divisor D for every output position, shape (OH, OW), int64."""
    kh, kw, sh, sw, pt, pl, pb, pr, oh, ow = pool_geometry(op, h, w)

    def counts(size, k, s, p0, p1, out):
        start = np.arange(out, dtype=np.int64) * s - p0
        if op.divisor == ops.DIVISOR_PADDED_WINDOW:
            return np.minimum(start + k, size + p1) - start
        return np.minimum(start + k, size) - np.maximum(start, 0)

    return counts(h, kh, sh, pt, pb, oh)[:, None] * counts(w, kw, sw, pl, pr, ow)[None, :]


def flatten_shape(shape: tuple[int, ...], op: ops.Flatten) -> tuple[int, ...]:
    return op.infer_shapes([shape])[0]


def slice_bounds(size: int, op: ops.Slice) -> list[tuple[int, int]]:
    b = [0, *op.points, size]
    return list(zip(b, b[1:]))

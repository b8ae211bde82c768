"""Native fast integer path vs the NumPy reference on seeded random integer models.

libdfx runs integer Conv2D / FullyConnected through a fast path (kernels/src/ops/fast.c):
im2col (none for 1x1 stride-1 unpadded convolutions) + int8 GEMM with int32
accumulators, weights packed once per session, sub-byte weights unpacked in row
blocks, columns in blocks of nb = clamp(131072 // K rounded down to a multiple
of 16, 64, 1024) pixels (so blocks may start mid-row), K blocks of 256, GEMM
panels of 6 rows x 16 columns, a matrix-vector path for fewer than 4 columns,
and its own depthwise kernel. It is taken when the accumulator fits int32
(spec/arithmetic.md §3.3: bw_x + bw_w + ceil(log2 K) + 1 <= 31, the bias aligned
by at most 31 bits, per-tensor input, weights per-channel along axis 0 only);
the generic kernels (ops/conv.c / ops/fc.c) run everything else.

Every case below is one model (one linear layer, or a chain of two or three),
built from a seed derived from its id, run at batch 1 and 3 (FC at 1, 2, 3 and 7)
by both backends on the same float inputs, and by the native backend once more
on the reference's input codes (so that a difference in the layers shows apart
from one in input quantization); every integer tensor must hold the same codes.
Where the library can describe its plan (dfx_model_describe), each case also
checks that the layer takes the path it was written for (fast direct / im2col /
depthwise / FC, or generic) and, where stated, that column or row blocks are
really used, so that the table cannot silently stop covering what it claims.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import math
import os
import zlib
from dataclasses import dataclass, replace

import numpy as np
import pytest

pytest.importorskip("dfx_native", reason="the native backend plugin (dfx_native) is not installed")

from dfxsdk import QFormat, Rounding, ops  # noqa: E402

from tests.support.builder import Builder  # noqa: E402

ROUNDINGS = list(Rounding)
SHORT = {Rounding.HALF_AWAY_FROM_ZERO: "away", Rounding.HALF_TO_EVEN: "even",
         Rounding.HALF_UP: "up", Rounding.FLOOR: "floor"}


@pytest.fixture(scope="module")
def reference():
    from dfxsdk.plugins import get_manager

    return get_manager().backend("numpy")


# -- the cases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lin:
    """One Conv2D or FullyConnected layer of a case.

    bias: None (no bias), an int d (bias fl = product fl + d for every channel)
    or "mixed" (per-channel bias fl, d drawn in -6..6 per output channel).
    bias_on_product_grid: bias codes that are multiples of 2^d (d > 0), so that
    the aligned accumulator keeps the ties of the products (the tie rules of a
    requantization with a large left shift then matter).
    per_channel: None, "out" (weights' channel_fl along axis 0, fl_w +-1) or
    "in" (along axis 1: within the reduction, which the fast path leaves to the
    generic kernels). shift: the final right shift of the products (fl of the
    products minus fl_y; negative: left shift); None picks one for ~1% saturation.
    path: the path the layer must take: "direct", "im2col", "dw", "fc" (fast)
    or "generic". relu: put a ReLU (same format) in front of the layer, so that
    its input is never negative (libdfx then packs the weights for unsigned x
    signed products on x86-64). blocks: "cols" (several column blocks, one starting mid-row),
    "rows" (several row blocks of sub-byte weights), "fcrows" (FC rows in
    several blocks of nb).
    """

    kind: str
    o: int
    k: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)   # top, left, bottom, right
    dil: tuple[int, int] = (1, 1)
    group: int = 1
    axis: int = 1
    wbits: int = 8
    per_channel: str | None = None
    bias: int | str | None = None
    ybw: int = 8
    rounding: Rounding | None = None                 # None: the case's rounding
    shift: int | None = None
    bias_on_product_grid: bool = False
    path: str = "im2col"
    blocks: str | None = None
    relu: bool = False                               # a ReLU in front: the input is never negative


def conv(o, k=3, s=1, p=0, d=1, g=1, **kw) -> Lin:
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    if isinstance(p, int):
        p = (p, p, p, p)
    elif len(p) == 2:
        p = (p[0], p[1], p[0], p[1])
    return Lin("conv", o, pair(k), pair(s), tuple(p), pair(d), g, **kw)


def fc(o, axis=1, **kw) -> Lin:
    return Lin("fc", o, axis=axis, path=kw.pop("path", "fc"), **kw)


@dataclass(frozen=True)
class Case:
    id: str
    shape: tuple[int, ...]            # input shape without the batch
    layers: tuple[Lin, ...]
    x_bw: int = 8
    xmode: str = "full"               # full | extreme (see _input)
    rounding: Rounding = Rounding.HALF_AWAY_FROM_ZERO
    batches: tuple[int, ...] = (1, 3)
    seed_key: str | None = None       # seed from this instead of the id


def _cases(table, batches=(1, 3)):
    """Case objects from (id, shape, layers[, case options]); roundings cycle over the table."""
    out = []
    for i, row in enumerate(table):
        name, shape, layers = row[:3]
        opts = dict(row[3]) if len(row) > 3 else {}
        layers = layers if isinstance(layers, tuple) else (layers,)
        r = opts.pop("rounding", ROUNDINGS[i % len(ROUNDINGS)])
        out.append(Case(f"{name}-{SHORT[r]}", tuple(shape), layers, rounding=r,
                        batches=opts.pop("batches", batches), **opts))
    return out


K4 = dict(wbits=4)
K2 = dict(wbits=2)

CONV_CASES = _cases([
    # 1x1 stride 1 unpadded: no im2col, the GEMM reads the input planes
    ("k1x1_direct_o13", (16, 6, 7), conv(13, k=1, path="direct")),
    ("k1x1_direct_int4_o50", (20, 5, 9), conv(50, k=1, path="direct", bias=3, **K4)),
    ("k1x1_direct_int2_o70_oddK5", (5, 4, 6), conv(70, k=1, path="direct", bias=-4, blocks="rows", **K2)),
    ("k1x1_direct_wide200", (8, 2, 200), conv(13, k=1, path="direct", bias=0)),
    ("k1x1_stride2", (8, 7, 9), conv(13, k=1, s=2, bias=2)),
    ("k1x1_pad1", (8, 5, 6), conv(6, k=1, p=1)),
    ("k1x1_pad_bottom_right", (6, 5, 6), conv(7, k=1, p=(0, 0, 1, 2), **K4)),
    # 3x3
    ("k3x3_p1_s1_o16", (8, 9, 11), conv(16, p=1, bias=5)),
    ("k3x3_p1_s2_o13", (8, 10, 13), conv(13, p=1, s=2)),
    ("k3x3_p1_s2_int4_o50", (8, 9, 12), conv(50, p=1, s=2, bias=-3, **K4)),
    ("k3x3_p1_s2x1", (6, 11, 9), conv(12, p=1, s=(2, 1), bias=1)),
    ("k3x3_p1_s1x2", (6, 9, 11), conv(12, p=1, s=(1, 2), **K2)),
    ("k3x3_p1_int2_o70", (6, 7, 8), conv(70, p=1, bias=3, blocks="rows", **K2)),
    ("k3x3_p1_int4_o100", (4, 6, 7), conv(100, p=1, blocks="rows", **K4)),
    ("k3x3_p1_ybw16", (8, 7, 9), conv(13, p=1, ybw=16, bias=-2)),
    ("k3x3_oddK27_o6", (3, 8, 9), conv(6)),
    # larger and asymmetric kernels, dilation
    ("k5x5_nopad_K75", (3, 12, 12), conv(6, k=5, bias=4)),
    ("k5x5_nopad_int4_o13", (4, 11, 13), conv(13, k=5, **K4)),
    ("k7x1_pad3_0_1_0", (4, 14, 9), conv(8, k=(7, 1), p=(3, 0, 1, 0), bias=2)),
    ("k1x7_s1x2_pad0_3_1_2", (4, 9, 20), conv(8, k=(1, 7), s=(1, 2), p=(0, 3, 1, 2), **K4)),
    ("k3x3_dil2_pad2", (5, 11, 12), conv(7, p=2, d=2, bias=-1)),
    ("k3x3_dil2x1_s1x2_pad2_1", (5, 12, 13), conv(9, p=(2, 1), d=(2, 1), s=(1, 2), **K2)),
    ("k3x5_dil1x3_pad1_6_0_4", (3, 8, 17), conv(5, k=(3, 5), d=(1, 3), p=(1, 6, 0, 4), bias=6)),
    # groups (not depthwise): out channels per group 5, 7, 50 and 70 (row blocks per group)
    ("grouped_g3_og5", (6, 8, 9), conv(15, p=1, g=3, bias=2)),
    ("grouped_g2_og7_s2_int4", (8, 9, 10), conv(14, p=1, s=2, g=2, **K4)),
    ("grouped_g2_og50_int4", (8, 6, 7), conv(100, p=1, g=2, bias=-2, **K4)),
    ("grouped_g2_og70_int2", (6, 6, 6), conv(140, p=1, g=2, blocks="rows", **K2)),
    ("grouped_g4_og5_1x1", (8, 5, 6), conv(20, k=1, g=4, path="direct", bias=1)),
    ("depthwise_mult2_g6_og2", (6, 8, 9), conv(12, p=1, g=6)),
    # depthwise (group == in channels == out channels): its own kernel
    ("dw_3x3_p1_s1", (12, 10, 21), conv(12, p=1, g=12, path="dw", bias=3)),
    ("dw_3x3_p1_s2", (8, 11, 35), conv(8, p=1, s=2, g=8, path="dw")),
    ("dw_3x3_p1_s2x1", (4, 11, 19), conv(4, p=1, s=(2, 1), g=4, path="dw", bias=-2)),
    ("dw_5x5_p2_int4", (6, 9, 19), conv(6, k=5, p=2, g=6, path="dw", **K4)),
    ("dw_3x3_dil2_p2_int2", (5, 12, 13), conv(5, p=2, d=2, g=5, path="dw", bias=2, **K2)),
    ("dw_3x3_dil4x1_p4_1", (4, 14, 18), conv(4, p=(4, 1), d=(4, 1), g=4, path="dw")),
    ("dw_3x3_p1_wide150", (4, 5, 150), conv(4, p=1, g=4, path="dw", bias=1)),
    ("dw_3x3_p1_wide150_s2", (3, 4, 150), conv(3, p=1, s=2, g=3, path="dw", **K4)),
    ("dw_11x11_p5", (3, 14, 14), conv(3, k=11, p=5, g=3, path="dw", ybw=16)),
    ("dw_7x1_s2x1_p3_0", (4, 12, 20), conv(4, k=(7, 1), s=(2, 1), p=(3, 0, 3, 0), g=4, path="dw", **K2)),
    ("dw_1x7_p0_3", (4, 6, 23), conv(4, k=(1, 7), p=(0, 3), g=4, path="dw", bias=-3)),
    ("dw_3x3_s3", (4, 13, 17), conv(4, s=3, g=4, path="dw")),
    ("dw_1x1", (8, 5, 5), conv(8, k=1, g=8, path="dw", bias=0)),
    ("dw_3x3_p1_ybw16", (6, 7, 17), conv(6, p=1, g=6, path="dw", ybw=16, bias=4)),
    ("dw_3x3_perchannel_mixedbias", (6, 8, 9), conv(6, p=1, g=6, path="dw", per_channel="out", bias="mixed")),
    # K > 256 (K blocks of 256) and column blocks of nb pixels
    # (stride 1 blocks are whole output rows up to 1024 columns: mid-row starts need wider rows)
    ("K576_c64_3x3_o20_w1100_cols", (64, 2, 1100), conv(20, p=1, bias=2, blocks="cols")),
    ("K576_c64_3x3_o20_whole_rows", (64, 20, 28), conv(20, p=1)),
    ("K576_c64_3x3_s2x1_w1100_cols", (64, 4, 1100), conv(13, p=1, s=(2, 1), blocks="cols", **K4)),
    ("K576_c64_3x3_int4_o50", (64, 6, 7), conv(50, p=1, bias=-3, **K4)),
    ("K4096_c256_4x4_4x1030_midrow", (256, 4, 1030), conv(13, k=4, bias=1, blocks="cols")),
    ("K4096_c256_4x4_int4_o50_w1028", (256, 4, 1028), conv(50, k=4, blocks="cols", **K4)),
    ("K4096_c256_4x4_int2_o70_ybw16", (256, 5, 19), conv(70, k=4, ybw=16, blocks="rows", **K2)),
    ("K256_c256_1x1_direct", (256, 3, 7), conv(13, k=1, path="direct", bias=1)),
    ("K257_c257_1x1_direct_int4", (257, 3, 7), conv(20, k=1, path="direct", **K4)),
    ("K261_c29_3x3_odd_tail", (29, 6, 7), conv(13, p=1, bias=-2)),
    ("K512_c512_1x1_int2_o49", (512, 2, 9), conv(49, k=1, path="direct", **K2)),
    ("K16384_c1024_4x4_at_bound", (1024, 5, 8), conv(7, k=4, bias=3)),
    ("K18432_c2048_3x3_over_bound", (2048, 3, 4), conv(5, path="generic")),
    # output width: < 16 above; > 128 here
    ("cols17_1x17", (4, 1, 17), conv(7, k=1, path="direct", bias=2)),
    ("cols128_1x128", (4, 1, 128), conv(7, k=1, path="direct")),
    ("cols129_1x129_int4_o49", (4, 1, 129), conv(49, k=1, path="direct", **K4)),
    ("wide_3x140_p1_o13", (4, 3, 140), conv(13, p=1, bias=-1)),
    ("wide_2x300_1x3_p0_1_int4", (3, 2, 300), conv(50, k=(1, 3), p=(0, 1), **K4)),
    # output 1x1 .. 1x3: fewer than 4 GEMM columns (matrix-vector); 2x2: the smallest GEMM
    ("out1x1_c16_3x3", (16, 3, 3), conv(13, bias=2)),
    ("out1x1_c16_5x5_int4_o50", (16, 5, 5), conv(50, k=5, **K4)),
    ("out1x1_K576_int2_o70", (64, 3, 3), conv(70, bias=-2, **K2)),
    ("out1x3_c8_3x3_int2_o70", (8, 3, 5), conv(70, **K2)),
    ("out1x1_1x1conv_direct", (32, 1, 1), conv(13, k=1, path="direct", **K4)),
    ("out2x2_c8_3x3_gemm4", (8, 4, 4), conv(13, bias=1)),
    # per-channel weights
    ("perchannel_int8_3x3_mixedbias", (8, 7, 9), conv(16, p=1, per_channel="out", bias="mixed")),
    ("perchannel_int4_o50_nobias", (8, 6, 7), conv(50, p=1, per_channel="out", **K4)),
    ("perchannel_int2_o13_bias+3", (8, 6, 7), conv(13, p=1, per_channel="out", bias=3, **K2)),
    ("perchannel_in_axis1_generic", (6, 6, 7), conv(9, p=1, per_channel="in", path="generic", bias=1)),
    # bias: absent, same fl, finer (fl_b > fl_x + fl_w), coarser, and too fine for the fast path
    ("bias_none", (8, 7, 8), conv(13, p=1)),
    ("bias_same_fl", (8, 7, 8), conv(13, p=1, bias=0)),
    ("bias_finer_by3", (8, 7, 8), conv(13, p=1, bias=3)),
    ("bias_finer_by24", (8, 7, 8), conv(13, p=1, bias=24, ybw=16)),
    ("bias_finer_by31_at_limit", (8, 7, 8), conv(13, p=1, bias=31)),
    ("bias_coarser_by5", (8, 7, 8), conv(13, p=1, bias=-5, **K4)),
    ("bias_coarser_by12", (8, 7, 8), conv(13, p=1, bias=-12)),
    ("bias_finer_by32_generic", (8, 7, 8), conv(13, p=1, bias=32, path="generic")),
    # the final shift: exact left shift, no shift, large right shift
    ("shift_left2_int2_ybw16", (1, 5, 6), conv(5, k=1, shift=-2, ybw=16, path="direct", **K2)),
    ("shift_0_ybw16", (2, 5, 6), conv(5, k=1, shift=0, ybw=16, path="direct", **K4)),
    ("shift_right_22_bias_finer12", (8, 6, 7), conv(13, p=1, bias=12)),
    # input bit widths below 8 (int8 storage) and extreme codes everywhere
    ("x_bw6_k3x3", (8, 7, 9), conv(13, p=1, bias=2), dict(x_bw=6)),
    ("x_bw5_dw", (6, 7, 17), conv(6, p=1, g=6, path="dw"), dict(x_bw=5)),
    ("x_bw16_generic", (8, 7, 9), conv(13, p=1, ybw=16, path="generic"), dict(x_bw=16)),
    ("extreme_K576_all_min", (64, 5, 6), conv(13, p=1, ybw=16, bias=3), dict(xmode="extreme")),
    ("extreme_K16384_all_min_1x1out", (1024, 4, 4), conv(7, k=4, ybw=16), dict(xmode="extreme")),
    ("extreme_dw_all_min", (4, 7, 9), conv(4, k=5, p=2, g=4, path="dw", ybw=16), dict(xmode="extreme")),
    # chains: conv -> conv (-> conv), int8 in between
    ("chain_3x3_1x1", (8, 9, 10), (conv(16, p=1, bias=2), conv(13, k=1, path="direct", ybw=16))),
    ("chain_3x3s2_int4_dw_int2", (6, 11, 12), (conv(12, p=1, s=2, **K4),
                                               conv(12, p=1, g=12, path="dw", bias=-1, **K2))),
    ("chain_K576_matvec_int4", (64, 5, 5), (conv(32, bias=1), conv(50, **K4))),
    ("chain_dw_1x1_int2_o70", (8, 6, 7), (conv(8, p=1, g=8, path="dw"), conv(70, k=1, path="direct", bias=2, **K2))),
    ("chain_3_layers_grouped", (6, 8, 9), (conv(12, p=1, g=3, per_channel="out"), conv(12, p=1, g=12, path="dw"),
                                           conv(13, k=1, path="direct", bias="mixed"))),
    # after a ReLU: unsigned x signed products on x86-64 (K not a multiple of 4, partial panels, blocks)
    ("relu_1x1_direct_o70", (9, 6, 7), conv(70, k=1, path="direct", bias=2, relu=True)),
    ("relu_3x3_K27_o13", (3, 9, 11), conv(13, p=1, relu=True)),
    ("relu_3x3s2_K261_int4", (29, 9, 10), conv(50, p=1, s=2, relu=True, **K4)),
    ("relu_K576_w1100_cols_mid_row", (64, 2, 1100), conv(13, p=1, bias=1, relu=True, blocks="cols")),
    ("relu_grouped_o70_int2_rows", (10, 5, 6), conv(140, k=1, g=2, path="direct", relu=True, blocks="rows", **K2)),
    ("relu_1x1_w300", (5, 3, 100), conv(17, k=1, path="direct", relu=True)),
    ("relu_matvec_1x1out", (32, 3, 3), conv(20, relu=True)),
    ("relu_chain_3x3_1x1_1x1", (8, 9, 10), (conv(16, p=1, bias=2), conv(24, k=1, path="direct", relu=True),
                                            conv(13, k=1, path="direct", ybw=16, relu=True))),
    ("relu_extreme_K576", (64, 5, 6), conv(13, p=1, ybw=16, bias=3, relu=True), dict(xmode="extreme")),
    # int8 outputs after a ReLU: per-channel shifts and mixed biases per row, outputs narrower than 8 bits,
    # k around 1024, a left shift of the products (bias finer), no shift at all
    ("relu_rq_perchannel_mixedbias_o70", (24, 5, 7), conv(70, k=1, path="direct", per_channel="out",
                                                          bias="mixed", relu=True)),
    ("relu_rq_ybw5_o13", (16, 6, 9), conv(13, k=1, path="direct", ybw=5, bias=1, relu=True)),
    ("relu_rq_K1024_o9", (1024, 3, 5), conv(9, k=1, path="direct", bias=2, relu=True)),
    ("relu_rq_K1028_o9", (1028, 3, 5), conv(9, k=1, path="direct", bias=2, relu=True)),
    ("relu_rq_bias_finer_by6_o13", (8, 5, 6), conv(13, k=1, path="direct", bias=6, relu=True)),
    ("relu_rq_shift_0_int2_o13", (8, 5, 6), conv(13, k=1, path="direct", shift=0, relu=True, **K2), dict(x_bw=4)),
])

FC_CASES = _cases([
    ("k1_o13", (1,), fc(13, bias=2)),
    ("relu_k33_o100", (33,), fc(100, bias=1, relu=True), dict(batches=(1, 7))),
    ("relu_k257_o49_int4", (257,), fc(49, bias=1, relu=True, **K4), dict(batches=(1, 7))),
    ("k15_o6", (15,), fc(6, bias=-1)),
    ("k16_o7_int4", (16,), fc(7, **K4)),
    ("k17_o12_int2", (17,), fc(12, bias=2, **K2)),
    ("k256_o48_int4", (256,), fc(48, **K4)),
    ("k257_o49_int4", (257,), fc(49, bias=1, **K4)),
    ("k200_o97_int2", (200,), fc(97, blocks="rows", **K2)),
    ("k7_o13_bias+3", (7,), fc(13, bias=3)),
    ("k33_o100_int4_nobias", (33,), fc(100, blocks="rows", **K4)),
    ("k33_o100_int2_bias-2", (33,), fc(100, bias=-2, blocks="rows", **K2)),
    ("k257_o13_int2_bias-5", (257,), fc(13, bias=-5, **K2)),
    ("k300_o100_int8_bias+24_ybw16", (300,), fc(100, bias=24, ybw=16)),
    ("k301_o50_int4_bias0", (301,), fc(50, bias=0, **K4)),
    ("k999_o70_int2_perchannel_mixed", (999,), fc(70, per_channel="out", bias="mixed", blocks="rows", **K2)),
    ("k64_o13_perchannel_int8", (64,), fc(13, per_channel="out", bias=1)),
    ("k45_4d_input_axis1_int4_o50", (5, 3, 3), fc(50, bias=2, **K4)),
    ("k4096_axis2_rows100_int4_o50", (100, 4096), fc(50, axis=2, blocks="fcrows", **K4)),
    ("k512_axis2_rows300_o13", (300, 512), fc(13, axis=2, bias=-1, blocks="fcrows")),
    ("k16384_o7_at_bound", (16384,), fc(7, bias=1)),
    ("k16385_o7_over_bound", (16385,), fc(7, path="generic")),
    ("k40_o13_perchannel_in_generic", (40,), fc(13, per_channel="in", path="generic")),
    ("k128_o20_bias_finer32_generic", (128,), fc(20, bias=32, path="generic")),
    ("k128_o20_bias_coarser12", (128,), fc(20, bias=-12, **K4)),
    ("k9_o13_shift_left1_ybw16", (9,), fc(13, shift=-1, ybw=16, **K2)),
    ("k16384_extreme_all_min", (16384,), fc(7, ybw=16, bias=2), dict(xmode="extreme")),
    ("k100_x_bw4", (100,), fc(30, **K4), dict(x_bw=4)),
], batches=(1, 2, 3, 7))


# -- building and running ----------------------------------------------------------------------


def _seed(key: str) -> int:
    return zlib.crc32(key.encode())


def _std_uniform(bits: int) -> float:
    """Standard deviation of codes uniform over a bits-bit range."""
    return math.sqrt(((1 << bits) ** 2 - 1) / 12)


def _linear(b: Builder, rng: np.random.Generator, x: str, fl_x: int, std_x: float, lin: Lin, case: Case):
    """Append one layer; returns (output name, its fl, typical |code| of its output)."""
    if lin.relu:
        x = b.add(ops.Relu(), [x], b.model.tensors[x].qformat)
    xt = b.model.tensors[x]
    rnd = lin.rounding if lin.rounding is not None else case.rounding
    extreme = case.xmode == "extreme"
    if lin.kind == "conv":
        c = xt.shape[1]
        kh, kw = lin.k
        cg = c // lin.group
        wshape, k = (lin.o, cg, kh, kw), cg * kh * kw
        op = ops.Conv2D(kernel_h=kh, kernel_w=kw, stride_h=lin.stride[0], stride_w=lin.stride[1],
                        pad_top=lin.pad[0], pad_left=lin.pad[1], pad_bottom=lin.pad[2], pad_right=lin.pad[3],
                        dilation_h=lin.dil[0], dilation_w=lin.dil[1], group=lin.group)
    else:
        k = math.prod(xt.shape[lin.axis:])
        wshape = (lin.o, k)
        op = ops.FullyConnected(axis=lin.axis)
    wq0 = QFormat(lin.wbits)
    w = rng.integers(wq0.qmin, wq0.qmax + 1, wshape)
    flat = w.reshape(lin.o, -1)
    flat[:, 0] = wq0.qmin                     # the minimum code in every row
    flat[0, -1] = wq0.qmax
    if lin.o >= 3:
        flat[1] = wq0.qmin                    # one output channel entirely at the minimum
    if extreme:
        w[...] = wq0.qmin
    fl_w = int(rng.integers(-2, 8))
    if lin.per_channel == "out":
        ch = fl_w + rng.integers(-1, 2, lin.o)
        wq = QFormat(lin.wbits, 0, rnd, tuple(int(v) for v in ch), 0)
        fw = ch.astype(np.int64)
    elif lin.per_channel == "in":
        ch = fl_w + rng.integers(-1, 2, wshape[1])
        wq = QFormat(lin.wbits, 0, rnd, tuple(int(v) for v in ch), 1)
        fw = np.full(lin.o, int(ch.max()), np.int64)    # aligned to the largest within the reduction
    else:
        wq = QFormat(lin.wbits, fl_w, rnd)
        fw = np.full(lin.o, fl_w, np.int64)
    ins = [x, b.const(w, wq, packed=lin.wbits < 8)]
    fp = fl_x + fw                            # fl of the products, per output channel

    std_p = k * abs(QFormat(xt.qformat.bw).qmin) * abs(wq0.qmin) if extreme \
        else math.sqrt(k) * std_x * _std_uniform(lin.wbits)
    if lin.bias is not None:
        d = rng.integers(-6, 7, lin.o) if lin.bias == "mixed" else np.full(lin.o, lin.bias)
        real = rng.normal(0.0, std_p, lin.o)                 # in units of 2^-fp
        codes = np.round(real * np.exp2(d.astype(np.float64)))
        if lin.bias_on_product_grid:        # multiples of 2^d that fit 32 bits
            dd = np.maximum(d, 0).astype(np.float64)
            lim = np.exp2(31 - dd) - 1
            codes = np.clip(np.round(real), -lim, lim) * np.exp2(dd)
        bw_b = int(min(32, max(2, int(np.abs(codes).max()).bit_length() + 1)))
        bq0 = QFormat(bw_b)
        codes = np.clip(codes, bq0.qmin, bq0.qmax).astype(np.int64)
        if not lin.bias_on_product_grid:
            codes[0] = bq0.qmin
        if lin.o > 1 and not lin.bias_on_product_grid:
            codes[-1] = bq0.qmax
        flb = fp + d
        if np.all(flb == flb[0]):
            bq = QFormat(bw_b, int(flb[0]), rnd)
        else:
            bq = QFormat(bw_b, 0, rnd, tuple(int(v) for v in flb), 0)
        ins.append(b.const(codes, bq))

    qy = QFormat(lin.ybw)
    target = qy.qmax / (2 if extreme else 3)
    shift = lin.shift if lin.shift is not None else max(0, math.ceil(math.log2(std_p / target)))
    fl_y = int(round(float(np.mean(fp)))) - shift
    y = b.add(op, ins, QFormat(lin.ybw, fl_y, rnd))
    return y, fl_y, min(target, std_p / 2.0 ** shift)


def build(case: Case):
    """The case's model, seeded by its id (input "x", one output)."""
    rng = np.random.default_rng(_seed(case.seed_key or case.id))
    b = Builder(case.id.replace("-", "_"))
    fl_x = int(rng.integers(-2, 7))
    x = b.input((1,) + case.shape, QFormat(case.x_bw, fl_x, case.rounding), name="x")
    cur, fl, std = x, fl_x, _std_uniform(case.x_bw)
    for lin in case.layers:
        cur, fl, std = _linear(b, rng, cur, fl, std, lin, case)
    return b.output(cur)


def _input(case: Case, model, batch: int) -> dict[str, np.ndarray]:
    """Float inputs (both backends quantize them with the input's format).

    full: codes uniform over the whole range (both ends present), 3% pushed
    far out of range (saturating), 3% exactly half way between two codes
    (a tie for the input's rounding mode); extreme: every code at the minimum.
    """
    t = model.tensors["x"]
    q = t.qformat
    rng = np.random.default_rng(_seed(f"{case.seed_key or case.id}/x/{batch}"))
    shape = (batch,) + t.shape[1:]
    if case.xmode == "extreme":
        codes = np.full(shape, q.qmin, np.float64)
    else:
        codes = rng.integers(q.qmin, q.qmax + 1, shape).astype(np.float64)
        flat = codes.reshape(-1)
        flat[:2] = (q.qmin, q.qmax)[:flat.size]
        u = rng.random(flat.shape)
        sat = u < 0.03
        m = int(sat.sum())
        flat[sat] = np.sign(rng.standard_normal(m)) * rng.uniform(1.1, 4.0, m) * 2.0 ** (q.bw - 1)
        tie = (u >= 0.03) & (u < 0.06)
        flat[tie] = np.clip(flat[tie], q.qmin, q.qmax - 1) + 0.5
    return {"x": (codes * 2.0 ** -q.fl).astype(np.float32)}


def _describe(native, model, batch: int) -> dict | None:
    """libdfx's plan of the model (None when the library cannot describe it)."""
    nm = native.native(model)
    fn = getattr(nm.lib, "dfx_model_describe", None)
    if fn is None:
        return None
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint, ctypes.c_char_p, ctypes.c_size_t,
                   ctypes.POINTER(ctypes.c_size_t)]
    n = ctypes.c_size_t()
    assert fn(nm.handle, batch, 0, None, 0, ctypes.byref(n)) == 0, nm.lib.dfx_last_error()
    buf = ctypes.create_string_buffer(n.value + 1)
    assert fn(nm.handle, batch, 0, buf, n.value + 1, ctypes.byref(n)) == 0, nm.lib.dfx_last_error()
    return json.loads(buf.value)


def _check_paths(native, case: Case, model, batch: int) -> None:
    plan = _describe(native, model, batch)
    if plan is None:
        return
    linear = [layer for layer in plan["layers"] if layer["type"] in ("Conv2D", "FullyConnected")]
    assert len(linear) == len(case.layers)
    for lin, layer in zip(case.layers, linear):
        lp = layer.get("lin") or {"fast": 0}
        got = "generic" if not (layer["native"] and lp["fast"]) else \
            "dw" if lp["dw"] else "direct" if lp["direct"] else "fc" if lin.kind == "fc" else "im2col"
        where = f"{case.id}, layer {layer['name']}: the case no longer covers what it was written for"
        assert got == lin.path, f"{where}: path {got}, expected {lin.path}"
        t = model.tensors[model.layer(layer["name"]).outputs[0]]
        if lin.blocks == "cols":      # several column blocks, one starting inside an output row
            cols, ow = t.shape[2] * t.shape[3], t.shape[3]
            assert lp["nb"] < cols and lp["nb"] % ow, f"{where}: nb {lp['nb']}, {cols} columns of {ow}"
        elif lin.blocks == "rows":    # sub-byte weights in several row blocks
            og = lin.o // lin.group
            assert not lp["w_in_place"] and lp["ob"] < og, f"{where}: ob {lp['ob']} for {og} rows"
        elif lin.blocks == "fcrows":  # FC rows (batch x leading dims) in several blocks of nb
            assert lp["nb"] < batch * math.prod(t.shape[1:-1]), f"{where}: nb {lp['nb']}"


def _first_diffs(a: np.ndarray, b: np.ndarray, n: int = 5) -> str:
    idx = np.argwhere(a != b)[:n]
    return ", ".join(f"{tuple(int(v) for v in i)}: native {int(a[tuple(i)])} numpy {int(b[tuple(i)])}" for i in idx)


def _compare(native, reference, model, feeds, label: str) -> dict[str, np.ndarray]:
    """Both backends on the float inputs (the input tensor itself compared too), then native
    again on the reference's input codes, so that a difference in the layers shows apart from
    one in the quantization of the inputs."""
    names = ["x"] + [n for layer in model.layers for n in layer.outputs]
    want = reference.run(model, feeds, outputs=names)
    runs = [("float inputs", native.run(model, feeds, outputs=names)),
            ("input codes", native.run_codes(model, {"x": want["x"]}, outputs=names[1:]))]
    for how, got in runs:
        for n in names:
            if n not in got:
                continue
            a, b = got[n], want[n]
            assert b.dtype == np.int32, f"{label} {n}: the reference did not run in integer form"
            assert a.dtype == np.int32 and a.shape == b.shape, f"{label} {n}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
            if not np.array_equal(a, b):
                pytest.fail(f"{label}, {how}, tensor {n}: {int(np.sum(a != b))} of {a.size} codes differ; first: "
                            f"{_first_diffs(a, b)}")
    return want


def _assert_informative(case: Case, model, out: np.ndarray) -> None:
    """The reference output is not degenerate (mostly saturated or constant)."""
    if case.xmode == "extreme":
        return
    q = model.tensors[model.outputs[0]].qformat
    sat = float(np.mean((out == q.qmin) | (out == q.qmax)))
    assert sat < 0.5 and np.unique(out).size > 2, f"{case.id}: degenerate output ({sat:.0%} saturated)"


def _run_case(native, reference, case: Case, batch: int):
    model = build(case)
    _check_paths(native, case, model, batch)
    want = _compare(native, reference, model, _input(case, model, batch), f"{case.id} batch {batch}")
    _assert_informative(case, model, want[model.outputs[0]])
    return want


# -- the tests ---------------------------------------------------------------------------------


def _params(cases):
    return [pytest.param(c, n, id=f"{c.id}-b{n}") for c in cases for n in c.batches]


@pytest.mark.parametrize("case,batch", _params(CONV_CASES))
def test_conv2d(native, reference, case, batch):
    _run_case(native, reference, case, batch)


@pytest.mark.parametrize("case,batch", _params(FC_CASES))
def test_fully_connected(native, reference, case, batch):
    _run_case(native, reference, case, batch)


# Rounding: every mode, output bw 8 and 16, on layers whose products are shifted right by only
# 1 to 5 bits (so that many accumulators are ties): int8 weights for bw 16, int2 weights for
# bw 8 (small products). The last three add a bias on the products' grid, aligned by a left shift.
ROUND_KINDS = {
    "conv3x3_p1": ((6, 7, 9), conv(8, p=1, bias=-1), 3),
    "conv1x1_direct": ((5, 6, 7), conv(7, k=1, path="direct"), 3),
    "dw3x3_p1": ((8, 9, 19), conv(8, p=1, g=8, path="dw", bias=0), 3),
    "conv_out1x1_o50": ((8, 3, 3), conv(50), 3),
    "fc_matvec_b1_o100": ((37,), fc(100, bias=-2), 1),
    "fc_gemm_b7_o40": ((37,), fc(40), 7),
    # bias finer by 3 / 24 on the product grid: left shifts 3 / 24, the latter beyond int32
    "conv3x3_bias_finer3": ((6, 7, 9), conv(8, p=1, bias=3, bias_on_product_grid=True), 3),
    "conv3x3_bias_finer24": ((6, 7, 9), conv(8, p=1, bias=24, bias_on_product_grid=True), 3),
    "fc_b3_bias_finer24": ((37,), fc(40, bias=24, bias_on_product_grid=True), 3),
}


def _round_case(kind: str, ybw: int, rounding: Rounding) -> tuple[Case, int]:
    shape, lin, batch = ROUND_KINDS[kind]
    lin = replace(lin, ybw=ybw, wbits=8 if ybw == 16 else 2)
    return Case(f"round_{kind}_ybw{ybw}-{SHORT[rounding]}", shape, (lin,), rounding=rounding,
                seed_key=f"round_{kind}_ybw{ybw}"), batch


@pytest.mark.parametrize("rounding", ROUNDINGS, ids=[SHORT[r] for r in ROUNDINGS])
@pytest.mark.parametrize("ybw", [8, 16], ids=["ybw8", "ybw16"])
@pytest.mark.parametrize("kind", sorted(ROUND_KINDS))
def test_rounding_modes(native, reference, kind, ybw, rounding):
    case, batch = _round_case(kind, ybw, rounding)
    _run_case(native, reference, case, batch)


@pytest.mark.parametrize("ybw", [8, 16], ids=["ybw8", "ybw16"])
@pytest.mark.parametrize("kind", sorted(ROUND_KINDS))
def test_rounding_cases_tell_the_modes_apart(reference, kind, ybw):
    """Guard on the test above: its models hit enough ties that all four modes give different codes."""
    outs = []
    for r in ROUNDINGS:
        case, batch = _round_case(kind, ybw, r)
        model = build(case)
        outs.append(reference.run(model, _input(case, model, batch))[model.outputs[0]])
    for (i, a), (j, b) in itertools.combinations(enumerate(outs), 2):
        assert not np.array_equal(a, b), f"{kind} ybw{ybw}: {ROUNDINGS[i].name} and {ROUNDINGS[j].name} agree"


def test_loaded_library_is_the_requested_one(native):
    """DFX_NATIVE_LIB, when set, is the library under test (the loader would fall back silently)."""
    from dfx_native import _lib

    lib = _lib.load()
    want = os.environ.get("DFX_NATIVE_LIB")
    if want:
        assert os.path.realpath(lib._name) == os.path.realpath(want)
    assert lib.dfx_kernels_name()


def test_case_ids_are_unique():
    ids = [c.id for c in CONV_CASES + FC_CASES]
    assert len(ids) == len(set(ids))

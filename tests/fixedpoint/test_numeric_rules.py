"""The numeric rules of dfxsdk.fixedpoint and of kernels/src/fixedpoint.h agree on one table.

Each rule is defined once per language: dyadic/fp_dyadic, clog2/fp_clog2, align_up/fp_align64,
accumulator_bits/fp_acc_bits, and Python's own // and int.bit_length for fp_floordiv and
fp_bitlen. The table below gives the expected value of every case; the Python functions are
checked against it here, the C helpers by a small program built with the host compiler.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from dfxsdk.fixedpoint import ACC_LIMIT_BITS, COEFF_BITS, accumulator_bits, align_up, clog2, dyadic

from tests.support.paths import KERNELS

NAN, INF = float("nan"), float("inf")
#: value -> (m, e) or None
DYADIC = [
    (0.0, (0, 0)), (-0.0, (0, 0)), (1.0, (1, 0)), (-1.0, (-1, 0)), (0.5, (1, 1)), (-0.75, (-3, 2)),
    (4.0, (4, 0)), (2.0**-15, (1, 15)), (-(2.0**-15), (-1, 15)), (2.0**-16, None), (2.0**-20, None),
    (3 * 2.0**-16, None), (1.5 * 2.0**-15, None), (32767.0, (32767, 0)), (-32767.0, (-32767, 0)),
    (32768.0, None), (-32768.0, None), (40000.0, None), (16383.5, (32767, 1)), (16384.5, None),
    (0.1, None), (1e-30, None), (1e30, None), (INF, None), (-INF, None), (NAN, None),
    (float(np.float32(2.0**-149)), None),
]
#: k -> ceil(log2 k)
CLOG2 = [(0, 0), (1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (8, 3), (9, 4), (1023, 10), (1024, 10), (1025, 11),
         (1 << 40, 40), ((1 << 40) + 1, 41), (1 << 62, 62)]
#: v -> bit length
BITLEN = [(0, 0), (1, 1), (2, 2), (3, 2), (255, 8), (256, 9), ((1 << 62) - 1, 62), (1 << 62, 63), ((1 << 64) - 1, 64)]
#: (a, b) -> floor(a / b)
FLOORDIV = [((7, 2), 3), ((-7, 2), -4), ((7, -2), -4), ((-7, -2), 3), ((6, 3), 2), ((-6, 3), -2), ((0, 5), 0),
            ((-1, 64), -1), ((1, 64), 0), ((-(1 << 62), 3), -1537228672809129302),
            (((1 << 62) + 1, -7), -658812288346769701)]
#: v -> multiple of 64
ALIGN64 = [(0, 0), (1, 64), (63, 64), (64, 64), (65, 128), (1000, 1024), ((1 << 40) + 1, (1 << 40) + 64)]
#: (x_bits, w_bits, k, align_p, bias_bits or None, align_b) -> acc_bits (spec/arithmetic.md 3.3)
ACC = [
    ((8, 8, 1, 0, None, 0), 16), ((8, 8, 0, 0, None, 0), 16), ((8, 8, 3, 0, None, 0), 17),
    ((8, 8, 4, 0, None, 0), 18), ((8, 8, 4, 2, None, 0), 20), ((8, 8, 9, 0, 32, 0), 33),
    ((8, 8, 9, 0, 16, 3), 20), ((16, 16, 1 << 20, 9, None, 0), 61), ((16, 16, 1 << 20, 10, None, 0), 62),
    ((16, 16, 1 << 20, 9, 32, 29), 62), ((16, 16, 1 << 20, 9, 32, 30), 63), ((32, 32, 2, 0, 8, 70), 79),
]


@pytest.mark.parametrize("value,want", DYADIC, ids=[repr(v) for v, _ in DYADIC])
def test_dyadic(value, want):
    assert dyadic(value) == want
    if want is not None:
        m, e = want
        assert m * 2.0**-e == value and abs(m) < 1 << COEFF_BITS


def test_dyadic_max_exp():
    assert dyadic(2.0**-20) is None
    assert dyadic(2.0**-20, max_exp=64) == (1, 20)
    assert dyadic(3 * 2.0**-40, max_exp=64) == (3, 40)


def test_integer_rules():
    assert [clog2(k) for k, _ in CLOG2] == [w for _, w in CLOG2]
    assert [v.bit_length() for v, _ in BITLEN] == [w for _, w in BITLEN]
    assert [a // b for (a, b), _ in FLOORDIV] == [w for _, w in FLOORDIV]
    assert [align_up(v) for v, _ in ALIGN64] == [w for _, w in ALIGN64]
    assert [accumulator_bits(*args) for args, _ in ACC] == [w for _, w in ACC]


def test_accumulator_bits_bounds_the_worst_case():
    """|acc| < 2**(acc_bits - 1) at the extreme codes, and the bound is reached within a factor 2."""
    for x_bits, w_bits, k, align_p, bias_bits, align_b in [a for a, _ in ACC if a[2] <= 1 << 20]:
        prod = (1 << (x_bits - 1)) * (1 << (w_bits - 1)) * max(k, 1) << align_p    # (-2^(bx-1)) * (-2^(bw-1))
        acc = prod + ((1 << (bias_bits - 1)) << align_b if bias_bits is not None else 0)
        bits = accumulator_bits(x_bits, w_bits, k, align_p, bias_bits, align_b)
        assert acc < 1 << (bits - 1)
        assert acc >= 1 << (bits - 3)


def _c_literal(v: float) -> str:
    if v != v:
        return "NAN"
    if v in (INF, -INF):
        return "INFINITY" if v > 0 else "-INFINITY"
    return float(v).hex()


def _c_program() -> str:
    """A C program printing every C helper's result on the table, one line per case."""
    lines = ["#include <stdio.h>", "#include <inttypes.h>", '#include "fixedpoint.h"', "int main(void)", "{",
             "    int m, e, ok;"]
    for v, _ in DYADIC:
        lines.append(f"    m = e = -99; ok = fp_dyadic({_c_literal(v)}, &m, &e); "
                     'printf("%d %d %d\\n", ok, ok ? m : 0, ok ? e : 0);')
    for k, _ in CLOG2:
        lines.append(f'    printf("%d\\n", fp_clog2(INT64_C({k})));')
    for v, _ in BITLEN:
        lines.append(f'    printf("%d\\n", fp_bitlen(UINT64_C({v})));')
    for (a, b), _ in FLOORDIV:
        lines.append(f'    printf("%" PRId64 "\\n", fp_floordiv(INT64_C({a}), INT64_C({b})));')
    for v, _ in ALIGN64:
        lines.append(f'    printf("%" PRIu64 "\\n", (uint64_t)fp_align64((size_t)UINT64_C({v})));')
    for (xb, wb, k, ap, bb, ab), _ in ACC:
        bias = -1 if bb is None else bb
        lines.append(f'    printf("%d\\n", fp_acc_bits({xb}, {wb}, INT64_C({k}), {ap}, {bias}, {ab}));')
    lines.append('    printf("%d %d\\n", FP_COEFF_BITS, FP_ACC_LIMIT_BITS);')
    lines += ["    return 0;", "}"]
    return "\n".join(lines) + "\n"


def test_c_helpers_agree_with_the_table(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no host C compiler (cc or gcc)")
    src, exe = tmp_path / "rules.c", tmp_path / "rules"
    src.write_text(_c_program())
    cmd = [cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(KERNELS / "include"),
           "-I", str(KERNELS / "src"), str(src), "-o", str(exe), "-lm"]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    out = iter(subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.splitlines())
    for v, want in DYADIC:
        ok, m, e = map(int, next(out).split())
        assert (ok, (m, e) if ok else None) == (want is not None, want), v
    for table in (CLOG2, BITLEN, FLOORDIV, ALIGN64, ACC):
        for args, want in table:
            assert int(next(out)) == want, args
    assert next(out).split() == [str(COEFF_BITS), str(ACC_LIMIT_BITS)]
    assert next(out, None) is None

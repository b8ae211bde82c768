"""The numeric rules of dfxsdk.fixedpoint and of kernels/src/fixedpoint.h agree on one table.

Each rule is defined once per language: dyadic/fp_dyadic, clog2/fp_clog2, align_up/fp_align64,
and Python's own // and int.bit_length for fp_floordiv and fp_bitlen (the width bounds of
dfxsdk.bounds, built on them, have their own agreement tests). The table below gives the
expected value of every case; the Python functions are checked against it here, the C helpers
by a small program built with the host compiler.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from dfxsdk.fixedpoint import COEFF_BITS, align_up, clog2, dyadic

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
    lines.append('    printf("%d\\n", FP_COEFF_BITS);')
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
    for table in (CLOG2, BITLEN, FLOORDIV, ALIGN64):
        for args, want in table:
            assert int(next(out)) == want, args
    assert int(next(out)) == COEFF_BITS
    assert next(out, None) is None

/* Exact dynamic fixed point primitives (spec/arithmetic.md; sdk/dfxsdk/fixedpoint.py). */
#ifndef DFX_FIXEDPOINT_H
#define DFX_FIXEDPOINT_H

#include <math.h>
#include <stdint.h>

#include "dfx_internal.h"

#define FP_MAX_RIGHT_SHIFT 62
#define FP_LEFT_SHIFT_CAP 31
#define FP_LEFT_VALUE_CAP ((int64_t)0xFFFFFFFF)

static inline int64_t fp_saturate(int64_t q, int bw)
{
    int64_t hi = ((int64_t)1 << (bw - 1)) - 1, lo = -((int64_t)1 << (bw - 1));
    return q < lo ? lo : (q > hi ? hi : q);
}

/* Round q / 2^s, 0 <= s <= 62, with the given tie rule. */
static inline int64_t fp_round_right(int64_t q, int s, int rounding)
{
    if (s == 0) return q;
    int64_t fl = q >> s; /* arithmetic shift (gcc, clang, msvc) */
    if (rounding == RND_FLOOR) return fl;
    int64_t rem = q - (int64_t)((uint64_t)fl << s);
    int64_t half = (int64_t)1 << (s - 1);
    int up;
    if (rem > half) up = 1;
    else if (rem < half) up = 0;
    else if (rounding == RND_HALF_UP) up = 1;
    else if (rounding == RND_HALF_AWAY) up = q >= 0;
    else up = (int)(fl & 1);
    return fl + up;
}

/* Exact round(q * 2^-shift); negative shift is a left shift, capped so that
 * the result still saturates correctly for bw <= 32. */
static inline int64_t fp_round_shift(int64_t q, int64_t shift, int rounding)
{
    if (shift >= 0) return fp_round_right(q, shift > FP_MAX_RIGHT_SHIFT ? FP_MAX_RIGHT_SHIFT : (int)shift, rounding);
    int64_t l = -shift > FP_LEFT_SHIFT_CAP ? FP_LEFT_SHIFT_CAP : -shift;
    int64_t c = q > FP_LEFT_VALUE_CAP ? FP_LEFT_VALUE_CAP : (q < -FP_LEFT_VALUE_CAP ? -FP_LEFT_VALUE_CAP : q);
    return (int64_t)((uint64_t)c << l);
}

/* requant: round codes at fl_from into (fl, bw, rounding). */
static inline int32_t fp_requant(int64_t q, int fl_from, int fl_to, int bw, int rounding)
{ return (int32_t)fp_saturate(fp_round_shift(q, (int64_t)fl_from - fl_to, rounding), bw); }

/* Exact left shift for alignment (callers guarantee no overflow). */
static inline int64_t fp_shl(int64_t q, int s) { return (int64_t)((uint64_t)q << s); }

/* Round a real value (double) to an integer (as double) with the tie rule. */
static inline double fp_round_real(double v, int rounding)
{
    double f;
    switch (rounding) {
        case RND_FLOOR: return floor(v);
        case RND_HALF_EVEN: return nearbyint(v);
        case RND_HALF_UP: f = floor(v); return f + ((v - f) >= 0.5 ? 1.0 : 0.0);
        default: {
            double a = fabs(v);
            f = floor(a);
            return copysign(f + ((a - f) >= 0.5 ? 1.0 : 0.0), v);
        }
    }
}

/* quantize: saturate(round(x * 2^fl)); NaN -> 0, infinities saturate. */
static inline int32_t fp_quantize(double x, int fl, int bw, int rounding)
{
    double s = ldexp(x, fl);
    if (s != s) s = 0.0;
    if (s > 1099511627776.0) s = 1099511627776.0;
    if (s < -1099511627776.0) s = -1099511627776.0;
    return (int32_t)fp_saturate((int64_t)fp_round_real(s, rounding), bw);
}

/* fp_quantize of n values into esz-byte codes (1, 2 or 4). For |fl| <= 800,
 * x * 2^fl is computed as a product with the exact power of two, which equals
 * ldexp(x, fl) for every float x (no overflow, no subnormal result). The
 * product is clamped to the code range before rounding, which changes no
 * result (rounding is monotonic and the bounds are integers), and the rounding
 * uses truncating conversions, not floor() (a library call on the baseline
 * x86-64 ISA): with s = m * 2^q (m < 2^24, |s| <= 2^31), |s| + 0.5 is exact
 * whenever |s| >= 2^-30, and below that it truncates to 0 as it should. */
/* floor of |v| <= 2^32 as an integer, without a library call */
static inline int64_t fp_floor_small(double v)
{
    int64_t t = (int64_t)v;
    return t - (v < (double)t);
}

#define FP_QROW(T, ROUND)                                 \
    for (int64_t i = 0; i < n; i++) {                     \
        double s = (double)x[i] * sc;                     \
        s = s > lo ? s : lo; /* NaN -> lo, fixed below */ \
        s = s < hi ? s : hi;                              \
        s = x[i] != x[i] ? 0.0 : s;                       \
        ((T *)out)[i] = (T)(int32_t)(ROUND);              \
    }
#define FP_QROW_SIZES(ROUND)    \
    if (esz == 1) {             \
        FP_QROW(int8_t, ROUND)  \
    } else if (esz == 2) {      \
        FP_QROW(int16_t, ROUND) \
    } else {                    \
        FP_QROW(int32_t, ROUND) \
    }

static inline void fp_quantize_row(const float *x, int64_t n, int fl, int bw, int rounding, void *out, int esz)
{
    if (fl < -800 || fl > 800) {
        for (int64_t i = 0; i < n; i++) {
            int32_t q = fp_quantize((double)x[i], fl, bw, rounding);
            if (esz == 1) ((int8_t *)out)[i] = (int8_t)q;
            else if (esz == 2) ((int16_t *)out)[i] = (int16_t)q;
            else ((int32_t *)out)[i] = q;
        }
        return;
    }
    const double sc = ldexp(1.0, fl), hi = (double)(((int64_t)1 << (bw - 1)) - 1), lo = -hi - 1.0;
    switch (rounding) {
        case RND_FLOOR: FP_QROW_SIZES(fp_floor_small(s)) break;
        case RND_HALF_EVEN: FP_QROW_SIZES(nearbyint(s)) break;
        case RND_HALF_UP: FP_QROW_SIZES(fp_floor_small(s + 0.5)) break;
        default: FP_QROW_SIZES((int64_t)copysign(fabs(s) + 0.5, s)) break; /* truncation toward zero */
    }
}
#undef FP_QROW_SIZES
#undef FP_QROW

/* dequantize: q * 2^-fl as float32 (computed in double, then rounded). When 2^-fl is a normal double the
 * product by it is ldexp's result (both are the exact value correctly rounded), without a call. */
static inline float fp_dequantize(int64_t q, int fl)
{
    if (fl >= -1023 && fl <= 1022) {
        union {
            uint64_t u;
            double d;
        } p = {(uint64_t)(1023 - fl) << 52};
        return (float)((double)q * p.d);
    }
    return (float)ldexp((double)q, -fl);
}

/* -- Numeric rules, each defined once for C; sdk/dfxsdk/fixedpoint.py holds the same rules for Python
 * (clog2, align_up, dyadic, COEFF_BITS; Python's // and int.bit_length for fp_floordiv and fp_bitlen).
 * tests/fixedpoint/test_numeric_rules.py checks both against one table. */

#define FP_COEFF_BITS 15 /* Eltwise SUM coefficients: m * 2^-e, |m| < 2^15, 0 <= e <= 15 */

/* Number of bits of v: 0 for 0, floor(log2 v) + 1 otherwise. */
static inline int fp_bitlen(uint64_t v)
{
    int n = 0;
    while (v) {
        n++;
        v >>= 1;
    }
    return n;
}

/* ceil(log2 k) for k >= 1 (0 for k <= 1): the bits that index k items. */
static inline int fp_clog2(int64_t k) { return k > 1 ? fp_bitlen((uint64_t)(k - 1)) : 0; }

/* floor(a / b) for b != 0 (C's / truncates toward zero). */
static inline int64_t fp_floordiv(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
    return q;
}

/* Smallest multiple of 64 >= v (arena and scratch blocks). */
static inline size_t fp_align64(size_t v) { return (v + 63) & ~(size_t)63; }

/* c == m * 2^-e with |m| < 2^15, 0 <= e <= 15 and e minimal: 1 and (m, e); 0 if there is none
 * (infinities and NaN included). */
static inline int fp_dyadic(double c, int *m_out, int *e_out)
{
    for (int e = 0; e <= FP_COEFF_BITS; e++) {
        double v = ldexp(c, e);
        if (v == floor(v) && fabs(v) < (double)(1 << FP_COEFF_BITS)) {
            *m_out = (int)v;
            *e_out = e;
            return 1;
        }
    }
    return 0;
}

#endif

/* e^x in float32 without a library call, branch-free so that loops over it
 * vectorise (the Softmax rows of an SSD head are 40,000 exponentials a run).
 * Within 2 units in the last place of expf for x in [-87.3, 88.7] (the
 * largest error over every float there: 8.3e-8 relative); below, 0 (expf
 * gives a denormal there, below 2^-126), above, e^88.72; NaN gives NaN.
 * Float operators are not bit-exact across libraries (spec/arithmetic.md). */
#ifndef DFX_OPS_FEXP_H
#define DFX_OPS_FEXP_H

#include <stdint.h>
#include <string.h>

#include "../arch/x86/x86.h" /* DFX_X86_SIMD, dfx_x86_avx2, DFX_NO_TRAPPING_MATH */

DFX_NO_TRAPPING_MATH static inline float dfx_expf(float x0)
{
    float x = x0 > -87.33654f ? x0 : -87.33654f; /* NaN: the bound (the result is x0 itself, below) */
    x = x < 88.72283f ? x : 88.72283f;
    /* x = n ln2 + r, |r| <= ln2 / 2: n rounded to nearest by adding 1.5 * 2^23 */
    const float magic = 12582912.0f;
    float t = x * 1.44269504088896341f + magic, n = t - magic;
    float r = x - n * 0.693359375f; /* ln2 in two parts: the first exact in n * it */
    r = r + n * 2.12194440e-4f;
    /* e^r: the Cephes expf polynomial */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* times 2^n = 2^(n - hi) * 2^hi, n in -126..128 (hi = 1 for 128 only), each factor from its exponent bits */
    int32_t ti, hi, b1, b2;
    memcpy(&ti, &t, sizeof ti);
    ti -= 0x4B400000; /* the bits of magic: t's low mantissa bits hold n */
    hi = (127 - ti) >> 31 & 1;
    b1 = (ti - hi + 127) << 23;
    b2 = (hi + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    float e = x0 < -87.33654f ? 0.0f : p * s1 * s2;
    return x0 == x0 ? e : x0;
}

#if DFX_X86_SIMD
/* x86-64: the contiguous loop also compiled for AVX2 (8 lanes), chosen at run time */
__attribute__((target("avx2"))) DFX_NO_TRAPPING_MATH static void dfx_expf_row_avx2(float *y, int64_t n)
{
    for (int64_t k = 0; k < n; k++) y[k] = dfx_expf(y[k]);
}
#endif

/* y[k * stride] = e^y[k * stride] for k < n. */
DFX_NO_TRAPPING_MATH static inline void dfx_expf_inplace(float *y, int64_t n, int64_t stride)
{
#if DFX_X86_SIMD
    if (stride == 1 && dfx_x86_avx2()) {
        dfx_expf_row_avx2(y, n);
        return;
    }
#endif
    if (stride == 1) /* contiguous: a loop the compiler vectorises */
        for (int64_t k = 0; k < n; k++) y[k] = dfx_expf(y[k]);
    else
        for (int64_t k = 0; k < n; k++) y[k * stride] = dfx_expf(y[k * stride]);
}

#endif

/* Depthwise (one channel) convolution for ARMv7 NEON (dispatch.h, dwconv_s8).
 *
 * The 3x3 kernel with stride 1 or 2 (dilation 1, no weight -128: MobileNet's)
 * is unrolled with its weights in registers and reads zero-padded copies of
 * the input rows, so that every output column, edges included, takes the
 * vector code, 16 (then 8) at a time. Products are VMULL.S8 (exact in int16);
 * two taps share an int16 lane (VMLAL.S8: |w*x + v*y| <= 2 * 127 * 128 < 2^15)
 * before VADDL/VADDW widen them into the int32 sums. Other kernels go to the
 * portable set.
 * Sums are exact in int32 by the dispatch contract. */
#include <arm_neon.h>
#include <string.h>

#include "neon32.h"

/* 8 inputs of output columns ox.. at tap offset p (stride 1 or 2, a compile-time constant) */
#define LD8(p, S) ((S) == 1 ? vld1_s8(p) : vld2_s8(p).val[0])
#define LD16(p, S) ((S) == 1 ? vld1q_s8(p) : vld2q_s8(p).val[0])

static inline void store16(int32_t *o, int32x4_t a0, int32x4_t a1, int32x4_t a2, int32x4_t a3)
{
    vst1q_s32(o, a0);
    vst1q_s32(o + 4, a1);
    vst1q_s32(o + 8, a2);
    vst1q_s32(o + 12, a3);
}

/* the sum of int16 pair sums p01..p8 (8 lanes) widened: 4 + 4 instructions */
#define WIDEN5(A0, A1, P0, P1, P2, P3, P4)                                                                           \
    A0 = vaddw_s16(                                                                                                  \
        vaddw_s16(vaddw_s16(vaddl_s16(vget_low_s16(P0), vget_low_s16(P1)), vget_low_s16(P2)), vget_low_s16(P3)),     \
        vget_low_s16(P4));                                                                                           \
    A1 = vaddw_s16(                                                                                                  \
        vaddw_s16(vaddw_s16(vaddl_s16(vget_high_s16(P0), vget_high_s16(P1)), vget_high_s16(P2)), vget_high_s16(P3)), \
        vget_high_s16(P4))

/* 3x3 with its 9 weights in registers (no weight -128): 16 or 8 outputs from column ox of the rows r0..r2 */
struct w3x3 {
    int8x8_t w0, w1, w2, w3, w4, w5, w6, w7, w8;
};

static inline __attribute__((always_inline)) void block16(int S, const struct w3x3 *w, const int8_t *r0,
                                                          const int8_t *r1, const int8_t *r2, int32_t *o)
{
    int8x16_t x0 = LD16(r0, S), x1 = LD16(r0 + 1, S), x2 = LD16(r0 + 2, S);
    int8x16_t x3 = LD16(r1, S), x4 = LD16(r1 + 1, S), x5 = LD16(r1 + 2, S);
    int8x16_t x6 = LD16(r2, S), x7 = LD16(r2 + 1, S), x8 = LD16(r2 + 2, S);
    int32x4_t a0, a1, a2, a3;
    {
        int16x8_t q0 = vmlal_s8(vmull_s8(vget_low_s8(x0), w->w0), vget_low_s8(x1), w->w1);
        int16x8_t q1 = vmlal_s8(vmull_s8(vget_low_s8(x2), w->w2), vget_low_s8(x3), w->w3);
        int16x8_t q2 = vmlal_s8(vmull_s8(vget_low_s8(x4), w->w4), vget_low_s8(x5), w->w5);
        int16x8_t q3 = vmlal_s8(vmull_s8(vget_low_s8(x6), w->w6), vget_low_s8(x7), w->w7);
        int16x8_t q4 = vmull_s8(vget_low_s8(x8), w->w8);
        WIDEN5(a0, a1, q0, q1, q2, q3, q4);
    }
    {
        int16x8_t q0 = vmlal_s8(vmull_s8(vget_high_s8(x0), w->w0), vget_high_s8(x1), w->w1);
        int16x8_t q1 = vmlal_s8(vmull_s8(vget_high_s8(x2), w->w2), vget_high_s8(x3), w->w3);
        int16x8_t q2 = vmlal_s8(vmull_s8(vget_high_s8(x4), w->w4), vget_high_s8(x5), w->w5);
        int16x8_t q3 = vmlal_s8(vmull_s8(vget_high_s8(x6), w->w6), vget_high_s8(x7), w->w7);
        int16x8_t q4 = vmull_s8(vget_high_s8(x8), w->w8);
        WIDEN5(a2, a3, q0, q1, q2, q3, q4);
    }
    store16(o, a0, a1, a2, a3);
}

static inline __attribute__((always_inline)) void block8(int S, const struct w3x3 *w, const int8_t *r0,
                                                         const int8_t *r1, const int8_t *r2, int32_t *o)
{
    int16x8_t q0 = vmlal_s8(vmull_s8(LD8(r0, S), w->w0), LD8(r0 + 1, S), w->w1);
    int16x8_t q1 = vmlal_s8(vmull_s8(LD8(r0 + 2, S), w->w2), LD8(r1, S), w->w3);
    int16x8_t q2 = vmlal_s8(vmull_s8(LD8(r1 + 1, S), w->w4), LD8(r1 + 2, S), w->w5);
    int16x8_t q3 = vmlal_s8(vmull_s8(LD8(r2, S), w->w6), LD8(r2 + 1, S), w->w7);
    int16x8_t q4 = vmull_s8(LD8(r2 + 2, S), w->w8);
    int32x4_t a0, a1;
    WIDEN5(a0, a1, q0, q1, q2, q3, q4);
    vst1q_s32(o, a0);
    vst1q_s32(o + 4, a1);
}

/* A whole output row of ow >= 8 columns from zero-padded rows r0..r2 (column 0 of the row = padded column
 * 0): blocks of 16, then 8, the last block overlapping the previous one (it stores the same values). */
static inline __attribute__((always_inline)) void row_3x3(int S, const struct w3x3 *w, const int8_t *r0,
                                                          const int8_t *r1, const int8_t *r2, int32_t *o, int ow)
{
    int ox = 0;
    for (; ox + 16 <= ow; ox += 16) block16(S, w, r0 + S * ox, r1 + S * ox, r2 + S * ox, o + ox);
    for (; ox + 8 <= ow; ox += 8) block8(S, w, r0 + S * ox, r1 + S * ox, r2 + S * ox, o + ox);
    if (ox < ow) {
        ox = ow - 8;
        block8(S, w, r0 + S * ox, r1 + S * ox, r2 + S * ox, o + ox);
    }
}

/* d[0..n) = s[0..n): 16 bytes at a time, the last block overlapping */
static inline void copy_row(int8_t *d, const int8_t *s, int n)
{
    int t = 0;
    if (n >= 16) {
        for (; t + 16 <= n; t += 16) vst1q_s8(d + t, vld1q_s8(s + t));
        if (t < n) vst1q_s8(d + n - 16, vld1q_s8(s + n - 16));
    } else if (n >= 8) {
        vst1_s8(d, vld1_s8(s));
        vst1_s8(d + n - 8, vld1_s8(s + n - 8));
    } else {
        for (; t < n; t++) d[t] = s[t];
    }
}

/* The 3x3 kernel with stride 1 or 2, dilation 1 and no weight -128, through zero-padded copies of the input
 * rows (a ring of three, each input row copied once; rows outside the plane read a zero row), so that every
 * output column takes the vector blocks. Returns 0 (nothing done) when the rows do not fit the buffers. */
#define DW_ROW 4096

static int dwconv_3x3(const int8_t *x, int h, int w, const int8_t *k, int sh, int sw, int pt, int pl, int32_t *out,
                      int oh, int ow)
{
    int len = sw * ow + 2 + 32; /* padded columns read (the VLD2 of 16 outputs reads 32 bytes) */
    if (ow < 8 || len > DW_ROW || w + pl > DW_ROW) return 0;
    int8_t ring[3][DW_ROW] __attribute__((aligned(16))), zero[DW_ROW] __attribute__((aligned(16)));
    int tag[3] = {-1, -1, -1};
    memset(zero, 0, (size_t)len);
    int in_lo = pl < len ? pl : len, in_hi = w + pl < len ? w + pl : len; /* padded columns holding input */
    for (int i = 0; i < 3; i++) {
        memset(ring[i], 0, (size_t)in_lo);
        memset(ring[i] + in_hi, 0, (size_t)(len - in_hi));
    }
    struct w3x3 wt = {vdup_n_s8(k[0]), vdup_n_s8(k[1]), vdup_n_s8(k[2]), vdup_n_s8(k[3]), vdup_n_s8(k[4]),
                      vdup_n_s8(k[5]), vdup_n_s8(k[6]), vdup_n_s8(k[7]), vdup_n_s8(k[8])};
    for (int oy = 0; oy < oh; oy++) {
        const int8_t *r[3];
        for (int i = 0; i < 3; i++) {
            int iy = oy * sh - pt + i;
            if (iy < 0 || iy >= h) {
                r[i] = zero;
                continue;
            }
            int8_t *d = ring[iy % 3];
            if (tag[iy % 3] != iy) { /* the padding columns of the ring rows stay zero */
                tag[iy % 3] = iy;
                copy_row(d + in_lo, x + (size_t)iy * w + (in_lo - pl), in_hi - in_lo);
            }
            r[i] = d;
        }
        if (sw == 1) row_3x3(1, &wt, r[0], r[1], r[2], out + (size_t)oy * ow, ow);
        else row_3x3(2, &wt, r[0], r[1], r[2], out + (size_t)oy * ow, ow);
    }
    return 1;
}

void dfx_neon32_dwconv_s8(const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int sh, int sw, int pt,
                          int pl, int dh, int dw, int32_t *out, int oh, int ow)
{
    int pairs = kh == 3 && kw == 3;
    for (int t = 0; t < kh * kw && pairs; t++) pairs = k[t] != -128;
    if (pairs && dh == 1 && dw == 1 && (sw == 1 || sw == 2) && dwconv_3x3(x, h, w, k, sh, sw, pt, pl, out, oh, ow))
        return;
    dfx_kernels_portable.dwconv_s8(x, h, w, k, kh, kw, sh, sw, pt, pl, dh, dw, out, oh, ow);
}

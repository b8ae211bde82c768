/* Element-wise NEON kernels: ReLU and max pooling of int8 codes (dispatch.h),
 * and building blocks for pooling and Eltwise rows (neon.h). */
#include <arm_neon.h>
#include <math.h>

#include "../../fixedpoint.h"
#include "neon.h"

void dfx_neon_relu_s8(const int8_t *x, int8_t *y, int n)
{
    int i = 0;
    int8x16_t z = vdupq_n_s8(0);
    for (; i + 64 <= n; i += 64) {
        int8x16x4_t v = vld1q_s8_x4(x + i);
        v.val[0] = vmaxq_s8(v.val[0], z);
        v.val[1] = vmaxq_s8(v.val[1], z);
        v.val[2] = vmaxq_s8(v.val[2], z);
        v.val[3] = vmaxq_s8(v.val[3], z);
        vst1q_s8_x4(y + i, v);
    }
    for (; i + 16 <= n; i += 16) vst1q_s8(y + i, vmaxq_s8(vld1q_s8(x + i), z));
    for (; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0;
}

void dfx_neon_maxpool_row_s8(const int8_t *const *rows, int r, int stride, int8_t *y, int n)
{
    int i = 0;
    if (stride == 1)
        for (; i + 16 <= n; i += 16) {
            int8x16_t m = vld1q_s8(rows[0] + i);
            for (int t = 1; t < r; t++) m = vmaxq_s8(m, vld1q_s8(rows[t] + i));
            vst1q_s8(y + i, m);
        }
    else if (stride == 2)
        for (; i + 16 <= n; i += 16) { /* reads 2 * i + 31: the caller guarantees 2 * n columns */
            int8x16_t m = vld2q_s8(rows[0] + 2 * i).val[0];
            for (int t = 1; t < r; t++) m = vmaxq_s8(m, vld2q_s8(rows[t] + 2 * i).val[0]);
            vst1q_s8(y + i, m);
        }
    for (; i < n; i++) {
        int8_t m = rows[0][i * stride];
        for (int t = 1; t < r; t++) m = rows[t][i * stride] > m ? rows[t][i * stride] : m;
        y[i] = m;
    }
}

void dfx_neon_sumpool_row_s8(const int8_t *const *rows, int r, int stride, int32_t *acc, int n)
{
    int i = 0;
    if (stride == 1 || stride == 2)
        for (; i + 8 <= n; i += 8) {
            int16x8_t s = vdupq_n_s16(0); /* at most 255 rows of int8 fit int16 */
            for (int t = 0; t < r; t++) {
                int8x8_t v = stride == 1 ? vld1_s8(rows[t] + i) : vld2_s8(rows[t] + 2 * i).val[0];
                s = vaddw_s8(s, v);
                if ((t & 127) == 127 && t + 1 < r) { /* flush before int16 could overflow */
                    vst1q_s32(acc + i, vaddw_s16(vld1q_s32(acc + i), vget_low_s16(s)));
                    vst1q_s32(acc + i + 4, vaddw_high_s16(vld1q_s32(acc + i + 4), s));
                    s = vdupq_n_s16(0);
                }
            }
            vst1q_s32(acc + i, vaddw_s16(vld1q_s32(acc + i), vget_low_s16(s)));
            vst1q_s32(acc + i + 4, vaddw_high_s16(vld1q_s32(acc + i + 4), s));
        }
    for (; i < n; i++)
        for (int t = 0; t < r; t++) acc[i] += rows[t][i * stride];
}

void dfx_neon_add_s8(const int8_t *a, int la, const int8_t *b, int lb, int shift, int rounding, int bw, int8_t *y,
                     int n)
{
    /* |(a << la) + (b << lb)| <= 2^31 - 2^7... fits int32 for la, lb <= 23; rounding as in requant.c, int32 lanes */
    const int32_t hi = (1 << (bw - 1)) - 1, lo = -hi - 1;
    int32x4_t vla = vdupq_n_s32(la), vlb = vdupq_n_s32(lb), sh = vdupq_n_s32(-shift), one = vdupq_n_s32(1);
    int32x4_t vhi = vdupq_n_s32(hi), vlo = vdupq_n_s32(lo);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        int16x8_t a16 = vmovl_s8(vld1_s8(a + i)), b16 = vmovl_s8(vld1_s8(b + i));
        int32x4_t v[2];
        v[0] = vaddq_s32(vshlq_s32(vmovl_s16(vget_low_s16(a16)), vla), vshlq_s32(vmovl_s16(vget_low_s16(b16)), vlb));
        v[1] = vaddq_s32(vshlq_s32(vmovl_high_s16(a16), vla), vshlq_s32(vmovl_high_s16(b16), vlb));
        for (int h = 0; h < 2; h++) {
            int32x4_t q = v[h];
            if (shift > 0) {
                if (rounding == RND_FLOOR) q = vshlq_s32(q, sh);
                else if (rounding == RND_HALF_UP) q = vrshlq_s32(q, sh);
                else if (rounding == RND_HALF_AWAY) q = vrshlq_s32(vqaddq_s32(q, vshrq_n_s32(q, 31)), sh);
                else q = vrshlq_s32(vqaddq_s32(q, vsubq_s32(vandq_s32(vshlq_s32(q, sh), one), one)), sh);
            }
            v[h] = vmaxq_s32(vminq_s32(q, vhi), vlo);
        }
        vst1_s8(y + i, vmovn_s16(vcombine_s16(vmovn_s32(v[0]), vmovn_s32(v[1]))));
    }
    for (; i < n; i++) {
        int64_t v = ((int64_t)a[i] << la) + ((int64_t)b[i] << lb);
        y[i] = (int8_t)fp_saturate(fp_round_shift(v, shift, rounding), bw);
    }
}

/* Max pooling of one plane (dispatch.h, maxpool_s8): the output columns whose
 * taps all lie inside the row (and, for stride 2, one more column, which the
 * LD2 loads read) go through dfx_neon_maxpool_row_s8 with one row pointer per
 * tap; edge columns, other strides and large windows take the scalar loop. */
#define POOL_TAPS 64

static int8_t pool_one(const int8_t *x, int h, int w, int kh, int kw, int sh, int sw, int pt, int pl, int oy, int ox,
                       int8_t empty)
{
    int y0 = oy * sh - pt, ya = y0 < 0 ? 0 : y0, yb = y0 + kh > h ? h : y0 + kh;
    int x0 = ox * sw - pl, xa = x0 < 0 ? 0 : x0, xb = x0 + kw > w ? w : x0 + kw;
    int m = -1000;
    for (int iy = ya; iy < yb; iy++)
        for (int ix = xa; ix < xb; ix++) m = x[(size_t)iy * w + ix] > m ? x[(size_t)iy * w + ix] : m;
    return m == -1000 ? empty : (int8_t)m;
}

void dfx_neon_maxpool_s8(const int8_t *x, int h, int w, int kh, int kw, int sh, int sw, int pt, int pl, int8_t *out,
                         int oh, int ow, int8_t empty)
{
    int vec = (sw == 1 || sw == 2) && kh * kw <= POOL_TAPS;
    int span = kw - 1 + (sw == 2 ? 1 : 0);
    int xlo = (pl + sw - 1) / sw, xhi = 0;
    if (w - 1 - span + pl >= 0) xhi = (w - 1 - span + pl) / sw + 1;
    if (xhi > ow) xhi = ow;
    if (xlo > xhi || !vec) xlo = xhi = 0;
    const int8_t *rows[POOL_TAPS];
    for (int oy = 0; oy < oh; oy++) {
        int8_t *o = out + (size_t)oy * ow;
        int ox = 0;
        for (; ox < xlo; ox++) o[ox] = pool_one(x, h, w, kh, kw, sh, sw, pt, pl, oy, ox, empty);
        int taps = 0;
        for (int i = 0; i < kh && xlo < xhi; i++) {
            int iy = oy * sh - pt + i;
            if (iy < 0 || iy >= h) continue;
            for (int j = 0; j < kw; j++) rows[taps++] = x + (size_t)iy * w + (size_t)(xlo * sw - pl + j);
        }
        if (taps > 0) {
            dfx_neon_maxpool_row_s8(rows, taps, sw, o + xlo, xhi - xlo);
            ox = xhi;
        }
        for (; ox < ow; ox++) o[ox] = pool_one(x, h, w, kh, kw, sh, sw, pt, pl, oy, ox, empty);
    }
}

/* Quantization of float32 values (dispatch.h quantize_f32), in float64 lanes like fp_quantize_row:
 * s = x * 2^fl is exact in double for |fl| <= 800; FRINTM / FRINTN / FRINTA round it as floor, nearbyint
 * (to even) and half away from zero do, and HALF_UP is FRINTM(s + 0.5) (exact in double); clamping after
 * rounding equals clamping before (the bounds are integers), and NaN stays NaN through FMAX/FMIN and
 * converts to 0 (FCVTZS). Int8 and int16 outputs with bw <= 16; other widths take fp_quantize_row. */
static inline float64x2_t round_f64(float64x2_t s, int rounding)
{
    switch (rounding) {
        case RND_FLOOR: return vrndmq_f64(s);
        case RND_HALF_EVEN: return vrndnq_f64(s);
        case RND_HALF_UP: return vrndmq_f64(vaddq_f64(s, vdupq_n_f64(0.5)));
        default: return vrndaq_f64(s);
    }
}

static inline int32x4_t quant4(const float *x, float64x2_t sc, float64x2_t lo, float64x2_t hi, int rounding)
{
    float32x4_t v = vld1q_f32(x);
    float64x2_t a = vmulq_f64(vcvt_f64_f32(vget_low_f32(v)), sc), b = vmulq_f64(vcvt_high_f64_f32(v), sc);
    a = vminq_f64(vmaxq_f64(round_f64(a, rounding), lo), hi);
    b = vminq_f64(vmaxq_f64(round_f64(b, rounding), lo), hi);
    return vcombine_s32(vmovn_s64(vcvtq_s64_f64(a)), vmovn_s64(vcvtq_s64_f64(b)));
}

#define QLOOP(R)                                                                                                \
    for (; i + 8 <= n; i += 8) {                                                                                \
        int16x8_t q =                                                                                           \
            vcombine_s16(vmovn_s32(quant4(x + i, sc, lo, hi, R)), vmovn_s32(quant4(x + i + 4, sc, lo, hi, R))); \
        if (out_bytes == 1) vst1_s8((int8_t *)out + i, vmovn_s16(q));                                           \
        else vst1q_s16((int16_t *)out + i, q);                                                                  \
    }

/* The same in float32 lanes, four times as many per instruction, for 0 <= fl <= 100: s = x * 2^fl is then
 * exact in float (an overflow to infinity clamps as the true value does), and so is s + 0.5 below 2^23 in
 * magnitude (larger values of HALF_UP clamp either way when bw <= 16); FCVTZS saturates and NaN gives 0. */
static inline float32x4_t round_f32(float32x4_t s, int rounding)
{
    switch (rounding) {
        case RND_FLOOR: return vrndmq_f32(s);
        case RND_HALF_EVEN: return vrndnq_f32(s);
        case RND_HALF_UP: return vrndmq_f32(vaddq_f32(s, vdupq_n_f32(0.5f)));
        default: return vrndaq_f32(s);
    }
}

static inline int16x8_t quant8_f32(const float *x, float32x4_t sc, int32x4_t lo, int32x4_t hi, int rounding)
{
    int32x4_t a = vcvtq_s32_f32(round_f32(vmulq_f32(vld1q_f32(x), sc), rounding));
    int32x4_t b = vcvtq_s32_f32(round_f32(vmulq_f32(vld1q_f32(x + 4), sc), rounding));
    a = vminq_s32(vmaxq_s32(a, lo), hi);
    b = vminq_s32(vmaxq_s32(b, lo), hi);
    return vcombine_s16(vmovn_s32(a), vmovn_s32(b));
}

#define QLOOP32(R)                                                                                             \
    for (; i + 16 <= n; i += 16) {                                                                             \
        int16x8_t q0 = quant8_f32(x + i, sc, lo, hi, R), q1 = quant8_f32(x + i + 8, sc, lo, hi, R);            \
        if (out_bytes == 1) vst1q_s8((int8_t *)out + i, vcombine_s8(vmovn_s16(q0), vmovn_s16(q1)));           \
        else {                                                                                                 \
            vst1q_s16((int16_t *)out + i, q0);                                                                 \
            vst1q_s16((int16_t *)out + i + 8, q1);                                                             \
        }                                                                                                      \
    }

void dfx_neon_quantize_f32(const float *x, int64_t n, int fl, int bw, int rounding, void *out, int out_bytes)
{
    int64_t i = 0;
    if (bw <= 16 && out_bytes <= 2 && fl >= 0 && fl <= 100) {
        float32x4_t sc = vdupq_n_f32(ldexpf(1.0f, fl));
        int32x4_t hi = vdupq_n_s32((1 << (bw - 1)) - 1), lo = vdupq_n_s32(-(1 << (bw - 1)));
        switch (rounding) {
            case RND_FLOOR: QLOOP32(RND_FLOOR) break;
            case RND_HALF_EVEN: QLOOP32(RND_HALF_EVEN) break;
            case RND_HALF_UP: QLOOP32(RND_HALF_UP) break;
            default: QLOOP32(RND_HALF_AWAY) break;
        }
    }
    if (bw <= 16 && out_bytes <= 2) {
        float64x2_t sc = vdupq_n_f64(ldexp(1.0, fl)), hi = vdupq_n_f64((double)((1 << (bw - 1)) - 1)),
                    lo = vdupq_n_f64((double)-(1 << (bw - 1)));
        switch (rounding) {
            case RND_FLOOR: QLOOP(RND_FLOOR) break;
            case RND_HALF_EVEN: QLOOP(RND_HALF_EVEN) break;
            case RND_HALF_UP: QLOOP(RND_HALF_UP) break;
            default: QLOOP(RND_HALF_AWAY) break;
        }
    }
    if (i < n) fp_quantize_row(x + i, n - i, fl, bw, rounding, (char *)out + i * out_bytes, out_bytes);
}

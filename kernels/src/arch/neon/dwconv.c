/* Depthwise (one channel) convolution (dispatch.h, dwconv_s8).
 *
 * Per output row, the columns whose taps all lie inside the plane are
 * computed 16 (then 8) at a time with every tap accumulated in registers:
 * SMULL of 8 inputs by the tap (exact int16 products) and SADDW into four
 * int32x4 accumulators; stride 2 reads with LD2 (even columns). Edge columns
 * and other strides take the scalar path. Sums are exact in int32 by the
 * dispatch contract. */
#include <arm_neon.h>

#include "neon.h"

#define MAX_TAPS 64

static int32_t one_output(const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int oy, int ox, int sh,
                          int sw, int pt, int pl, int dh, int dw)
{
    int32_t s = 0;
    for (int i = 0; i < kh; i++) {
        int iy = oy * sh - pt + i * dh;
        if (iy < 0 || iy >= h) continue;
        for (int j = 0; j < kw; j++) {
            int ix = ox * sw - pl + j * dw;
            if (ix >= 0 && ix < w) s += k[i * kw + j] * x[(size_t)iy * w + ix];
        }
    }
    return s;
}

void dfx_neon_dwconv_s8(const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int sh, int sw, int pt, int pl,
                        int dh, int dw, int32_t *out, int oh, int ow)
{
    int vec = (sw == 1 || sw == 2) && kh * kw <= MAX_TAPS;
    /* columns [xlo, xhi) have every tap inside [0, w); with stride 2 the
     * loads also read the odd column after the last even one, so one more
     * column must exist. */
    int span = (kw - 1) * dw + (sw == 2 ? 1 : 0);
    int xlo = (pl + sw - 1) / sw, xhi = 0;
    if (w - 1 - span + pl >= 0) xhi = (w - 1 - span + pl) / sw + 1;
    if (xhi > ow) xhi = ow;
    if (xlo > xhi || !vec) xlo = xhi = 0;
    int8x8_t wv[MAX_TAPS];
    const int8_t *rows[MAX_TAPS];
    int taps = 0;
    for (int oy = 0; oy < oh; oy++) {
        int32_t *o = out + (size_t)oy * ow;
        int ox = 0;
        for (; ox < xlo; ox++) o[ox] = one_output(x, h, w, k, kh, kw, oy, ox, sh, sw, pt, pl, dh, dw);
        if (xlo < xhi) {
            taps = 0;
            for (int i = 0; i < kh; i++) {
                int iy = oy * sh - pt + i * dh;
                if (iy < 0 || iy >= h) continue;
                for (int j = 0; j < kw; j++) {
                    if (!k[i * kw + j]) continue;
                    wv[taps] = vdup_n_s8(k[i * kw + j]);
                    rows[taps++] = x + (size_t)iy * w + j * dw - pl;
                }
            }
        }
        if (sw == 1) {
            for (; ox + 16 <= xhi; ox += 16) {
                int32x4_t a0 = vdupq_n_s32(0), a1 = a0, a2 = a0, a3 = a0;
                for (int t = 0; t < taps; t++) {
                    int8x16_t v = vld1q_s8(rows[t] + ox);
                    int16x8_t p0 = vmull_s8(vget_low_s8(v), wv[t]), p1 = vmull_s8(vget_high_s8(v), wv[t]);
                    a0 = vaddw_s16(a0, vget_low_s16(p0));
                    a1 = vaddw_high_s16(a1, p0);
                    a2 = vaddw_s16(a2, vget_low_s16(p1));
                    a3 = vaddw_high_s16(a3, p1);
                }
                vst1q_s32(o + ox, a0);
                vst1q_s32(o + ox + 4, a1);
                vst1q_s32(o + ox + 8, a2);
                vst1q_s32(o + ox + 12, a3);
            }
            for (; ox + 8 <= xhi; ox += 8) {
                int32x4_t a0 = vdupq_n_s32(0), a1 = a0;
                for (int t = 0; t < taps; t++) {
                    int16x8_t p = vmull_s8(vld1_s8(rows[t] + ox), wv[t]);
                    a0 = vaddw_s16(a0, vget_low_s16(p));
                    a1 = vaddw_high_s16(a1, p);
                }
                vst1q_s32(o + ox, a0);
                vst1q_s32(o + ox + 4, a1);
            }
        } else if (sw == 2) {
            for (; ox + 16 <= xhi; ox += 16) {
                int32x4_t a0 = vdupq_n_s32(0), a1 = a0, a2 = a0, a3 = a0;
                for (int t = 0; t < taps; t++) {
                    int8x16_t v = vld2q_s8(rows[t] + 2 * ox).val[0];
                    int16x8_t p0 = vmull_s8(vget_low_s8(v), wv[t]), p1 = vmull_s8(vget_high_s8(v), wv[t]);
                    a0 = vaddw_s16(a0, vget_low_s16(p0));
                    a1 = vaddw_high_s16(a1, p0);
                    a2 = vaddw_s16(a2, vget_low_s16(p1));
                    a3 = vaddw_high_s16(a3, p1);
                }
                vst1q_s32(o + ox, a0);
                vst1q_s32(o + ox + 4, a1);
                vst1q_s32(o + ox + 8, a2);
                vst1q_s32(o + ox + 12, a3);
            }
            for (; ox + 8 <= xhi; ox += 8) {
                int32x4_t a0 = vdupq_n_s32(0), a1 = a0;
                for (int t = 0; t < taps; t++) {
                    int16x8_t p = vmull_s8(vld2_s8(rows[t] + 2 * ox).val[0], wv[t]);
                    a0 = vaddw_s16(a0, vget_low_s16(p));
                    a1 = vaddw_high_s16(a1, p);
                }
                vst1q_s32(o + ox, a0);
                vst1q_s32(o + ox + 4, a1);
            }
        }
        for (; ox < xhi; ox++) {
            int32_t s = 0;
            for (int t = 0; t < taps; t++) s += vget_lane_s8(wv[t], 0) * rows[t][ox * sw];
            o[ox] = s;
        }
        for (; ox < ow; ox++) o[ox] = one_output(x, h, w, k, kh, kw, oy, ox, sh, sw, pt, pl, dh, dw);
    }
}

/* Depthwise (one channel) convolution (dispatch.h, dwconv_s8).
 *
 * Per output row, the columns whose taps all lie inside the plane are
 * computed 16 (then 8) at a time with every tap accumulated in registers:
 * SMULL of 8 inputs by the tap (exact int16 products) and SADDW into four
 * int32x4 accumulators; stride 2 reads with LD2 (even columns). Edge columns
 * and other strides take the scalar path. Sums are exact in int32 by the
 * dispatch contract.
 *
 * 3 x 3 kernels with stride 1 or 2 (no dilation), the depthwise layers of
 * MobileNets, have their own path: strips of output rows read a zero-padded
 * copy of the input rows they need (on the stack), so every output is a
 * vector output, 16 per step, with no edge cases. Two taps share an int16
 * product sum (SMULL + SMLAL, then SADDW into int32): |w*x + w'*x'| <= 32640
 * unless both weights are -128; a kernel with two or more -128 weights adds
 * every tap on its own. */
#include <arm_neon.h>
#include <string.h>

#include "neon.h"

#if defined(__GNUC__) && !defined(__clang__) /* short row loops stay inline, not memset/memcpy calls */
#pragma GCC optimize("no-tree-loop-distribute-patterns")
#endif

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

#define PAD_BYTES 32768 /* the padded strip on the stack */

/* Taps j = 0, 1, 2 of 16 outputs from ox on (stride S) of one padded row. */
#define INLINE static inline __attribute__((always_inline))

INLINE void taps3(const int8_t *r, int ox, int S, int8x16_t *t)
{
    if (S == 1) {
        t[0] = vld1q_s8(r + ox);
        t[1] = vld1q_s8(r + ox + 1);
        t[2] = vld1q_s8(r + ox + 2);
    } else {
        int8x16x2_t d = vld2q_s8(r + 2 * ox);
        t[0] = d.val[0];
        t[1] = d.val[1];
        t[2] = vld2q_s8(r + 2 * ox + 2).val[0];
    }
}

/* 16 outputs of the padded 3 x 3 kernel, rows r0..r2 (stride S); 8 taps in pairs (PAIRED) or one by one.
 * HALF: only the first 8 outputs (a0, a1). wv: the taps, each in all 16 lanes. */
INLINE void out16(const int8_t *r0, const int8_t *r1, const int8_t *r2, int ox, int S, const int8x16_t *wv, int paired,
                  int half, int32x4_t *a0, int32x4_t *a1, int32x4_t *a2, int32x4_t *a3)
{
    int8x16_t t[9];
    taps3(r0, ox, S, t);
    taps3(r1, ox, S, t + 3);
    taps3(r2, ox, S, t + 6);
    int16x8_t p0 = vmull_s8(vget_low_s8(t[8]), vget_low_s8(wv[8])), p1;
    int32x4_t b0 = vmovl_s16(vget_low_s16(p0)), b1 = vmovl_high_s16(p0), b2 = b0, b3 = b1;
    if (!half) {
        p1 = vmull_high_s8(t[8], wv[8]);
        b2 = vmovl_s16(vget_low_s16(p1));
        b3 = vmovl_high_s16(p1);
    }
#pragma GCC unroll 8
    for (int q = 0; q < 8; q += 1 + paired) {
        p0 = vmull_s8(vget_low_s8(t[q]), vget_low_s8(wv[q]));
        if (paired) p0 = vmlal_s8(p0, vget_low_s8(t[q + 1]), vget_low_s8(wv[q + 1]));
        b0 = vaddw_s16(b0, vget_low_s16(p0));
        b1 = vaddw_high_s16(b1, p0);
        if (half) continue;
        p1 = vmull_high_s8(t[q], wv[q]);
        if (paired) p1 = vmlal_high_s8(p1, t[q + 1], wv[q + 1]);
        b2 = vaddw_s16(b2, vget_low_s16(p1));
        b3 = vaddw_high_s16(b3, p1);
    }
    *a0 = b0;
    *a1 = b1;
    *a2 = b2;
    *a3 = b3;
}

/* dst[0..n) = src[0..n) without a library call (n >= 16: overlapping 16-byte moves). */
INLINE void copy_row(int8_t *dst, const int8_t *src, int n)
{
    if (n < 16) {
        for (int j = 0; j < n; j++) dst[j] = src[j];
        return;
    }
    int j = 0;
    for (; j + 16 <= n; j += 16) vst1q_s8(dst + j, vld1q_s8(src + j));
    if (j < n) vst1q_s8(dst + n - 16, vld1q_s8(src + n - 16));
}

/* Output rows of one strip from the padded rows buf (row stride wp): stride S; a last block of at most 8
 * outputs computes 8, a longer one 16. */
INLINE void strip3x3(const int8_t *buf, int wp, int rows, int S, const int8x16_t *wv, int paired, int32_t *out, int ow)
{
    for (int y = 0; y < rows; y++, out += ow) {
        const int8_t *r0 = buf + (size_t)y * S * wp, *r1 = r0 + wp, *r2 = r1 + wp;
        int32x4_t a0, a1, a2, a3;
        int ox = 0;
        for (; ox + 16 <= ow; ox += 16) {
            out16(r0, r1, r2, ox, S, wv, paired, 0, &a0, &a1, &a2, &a3);
            vst1q_s32(out + ox, a0);
            vst1q_s32(out + ox + 4, a1);
            vst1q_s32(out + ox + 8, a2);
            vst1q_s32(out + ox + 12, a3);
        }
        if (ox == ow) continue;
        int n = ow - ox; /* 1..15 */
        int32_t t[16];
        out16(r0, r1, r2, ox, S, wv, paired, n <= 8, &a0, &a1, &a2, &a3);
        vst1q_s32(t, a0);
        vst1q_s32(t + 4, a1);
        vst1q_s32(t + 8, a2);
        vst1q_s32(t + 12, a3);
        for (int j = 0; j < n; j++) out[ox + j] = t[j];
    }
}

/* dst[0..n) = 0 (16-byte stores; may write up to 15 bytes more). */
INLINE void zero_bytes(int8_t *dst, int n)
{
    for (int j = 0; j < n; j += 16) vst1q_s8(dst + j, vdupq_n_s8(0));
}

/* Whole blocks of 16 flattened outputs: out[p..p+16) for p + 16 <= P; returns the first p not done. */
INLINE int flat_blocks(const int8_t *r0, const int8_t *r1, const int8_t *r2, int P, const int8x16_t *wv, int paired,
                       int32_t *out)
{
    int32x4_t a0, a1, a2, a3;
    int p = 0;
    for (; p + 16 <= P; p += 16) {
        out16(r0, r1, r2, p, 1, wv, paired, 0, &a0, &a1, &a2, &a3);
        vst1q_s32(out + p, a0);
        vst1q_s32(out + p + 4, a1);
        vst1q_s32(out + p + 8, a2);
        vst1q_s32(out + p + 12, a3);
    }
    return p;
}

/* Stride 1 with one zero of padding on every side (oh = h, ow = w), on the flattened plane: output p = y*w + x
 * is sum_ij k[i][j] * c[p + (i - 1)*w + j - 1] where c is the plane between zero margins, computed 16 outputs at
 * a time over the whole plane. That is exact except that tap column 0 of output column 0 reads the previous
 * row's last element, and tap column 2 of column w - 1 the next row's first; those products are subtracted
 * afterwards. Returns 0 when the plane does not fit the buffer. */
static int dw3x3_s1_flat(const int8_t *x, int h, int w, const int8_t *k, const int8x16_t *wv, int paired, int32_t *out)
{
    int P = h * w, z = w + 16, tail = ((P + 15) & ~15) - P + w + 32;
    if (z + P + tail > PAD_BYTES) return 0;
    int8_t buf[PAD_BYTES + 16];
    int8_t *c = buf + z;
    zero_bytes(buf, z);
    copy_row(c, x, P);
    zero_bytes(c + P, tail);
    const int8_t *r0 = c - w - 1, *r1 = c - 1, *r2 = c + w - 1;
    int32x4_t a0, a1, a2, a3;
    int p = paired ? flat_blocks(r0, r1, r2, P, wv, 1, out) : flat_blocks(r0, r1, r2, P, wv, 0, out);
    if (p < P) {
        int32_t t[16];
        out16(r0, r1, r2, p, 1, wv, paired, 0, &a0, &a1, &a2, &a3);
        vst1q_s32(t, a0);
        vst1q_s32(t + 4, a1);
        vst1q_s32(t + 8, a2);
        vst1q_s32(t + 12, a3);
        for (int j = 0; p + j < P; j++) out[p + j] = t[j];
    }
    for (int y = 0; y < h; y++) { /* the wrapped taps of the first and the last column */
        const int8_t *q = c + (size_t)y * w;
        out[(size_t)y * w] -= k[0] * q[-w - 1] + k[3] * q[-1] + k[6] * q[w - 1];
        out[(size_t)y * w + w - 1] -= k[2] * q[0] + k[5] * q[w] + k[8] * q[2 * w];
    }
    return 1;
}

void dfx_neon_pad_rows(const int8_t *x, int h, int w, int iy0, int rows, int pl, int wp, int8_t *buf)
{
    int8x16_t z = vdupq_n_s8(0);
    for (int r = 0; r < rows; r++) { /* zero left pad, the row, zero right pad (16-byte stores) */
        int8_t *d = buf + (size_t)r * wp;
        int iy = iy0 + r, c = 0;
        if (iy >= 0 && iy < h) {
            vst1q_s8(d, z);
            copy_row(d + pl, x + (size_t)iy * w, w);
            c = pl + w;
        }
        for (; c < wp; c += 16) vst1q_s8(d + c, z);
    }
}

/* The 3 x 3, stride 1 or 2 path; returns 0 (nothing done) when a padded row does not fit the strip buffer. */
static int dw3x3(const int8_t *x, int h, int w, const int8_t *k, int s, int pt, int pl, int32_t *out, int oh, int ow)
{
    int ob = (ow + 15) & ~15;                /* outputs computed per row */
    int wp = (ob - 1) * s + 3 + 16 * s + 16; /* padded row: every load in bounds */
    if (wp < pl + w) wp = pl + w;
    int rows = (PAD_BYTES / wp - 2) / s; /* output rows per strip */
    if (rows < 1) return 0;
    int8_t buf[PAD_BYTES + 16]; /* + 16: the last zero store of a row may pass wp */
    int8x16_t wv[9];
    int m128 = 0;
    for (int t = 0; t < 9; t++) {
        wv[t] = vdupq_n_s8(k[t]);
        m128 += k[t] == -128;
    }
    if (s == 1 && pt == 1 && pl == 1 && oh == h && ow == w && dw3x3_s1_flat(x, h, w, k, wv, m128 < 2, out)) return 1;
    for (int oy0 = 0; oy0 < oh; oy0 += rows) {
        int nr = oh - oy0 < rows ? oh - oy0 : rows, need = (nr - 1) * s + 3;
        dfx_neon_pad_rows(x, h, w, oy0 * s - pt, need, pl, wp, buf);
        int32_t *o = out + (size_t)oy0 * ow;
        if (s == 1) {
            if (m128 < 2) strip3x3(buf, wp, nr, 1, wv, 1, o, ow);
            else strip3x3(buf, wp, nr, 1, wv, 0, o, ow);
        } else if (m128 < 2) strip3x3(buf, wp, nr, 2, wv, 1, o, ow);
        else strip3x3(buf, wp, nr, 2, wv, 0, o, ow);
    }
    return 1;
}

void dfx_neon_dwconv_s8(const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int sh, int sw, int pt, int pl,
                        int dh, int dw, int32_t *out, int oh, int ow)
{
    if (kh == 3 && kw == 3 && sh == sw && (sh == 1 || sh == 2) && dh == 1 && dw == 1 && pl >= 0 && pt >= 0 && pl <= 2 &&
        pt <= 2 && dw3x3(x, h, w, k, sh, pt, pl, out, oh, ow))
        return;
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

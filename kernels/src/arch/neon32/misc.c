/* Requantization, ReLU and max pooling for ARMv7 NEON (dispatch.h). */
#include <arm_neon.h>

#include "../../fixedpoint.h"
#include "neon32.h"

/* The int32 form of requant_s32, 8 values at a time, under portable.c's conditions for it (lshift <= 29,
 * |bias| <= 2^29, shift >= 0, shift + bw <= 29) but with saturating steps instead of its clamp of acc: a value
 * (acc << lshift) + bias outside int32 becomes +-(2^31 - 1) or -2^31, still beyond +-2^(bw - 1 + shift) + 2^29,
 * so it saturates the same. The tie rules are VRSHL (half up) of a corrected value: half away from zero
 * v - 1 for v < 0, half to even v - 1 + bit_shift(v). Other arguments, and the last n % 8 values, go to the
 * portable set. */
enum { M_ZERO, M_FLOOR, M_UP, M_AWAY, M_EVEN };

static inline __attribute__((always_inline)) int32x4_t rq4(int mode, int lsh, int32x4_t a, int32x4_t ls, int32x4_t bias,
                                                           int32x4_t sh, int32x4_t one)
{
    int32x4_t v = vqaddq_s32(lsh ? vqshlq_s32(a, ls) : a, bias);
    switch (mode) {
        case M_ZERO: return v;
        case M_FLOOR: return vshlq_s32(v, sh);
        case M_UP: return vrshlq_s32(v, sh);
        case M_AWAY: return vrshlq_s32(vqaddq_s32(v, vshrq_n_s32(v, 31)), sh);
        default: return vrshlq_s32(vqaddq_s32(v, vsubq_s32(vandq_s32(vshlq_s32(v, sh), one), one)), sh);
    }
}

static inline __attribute__((always_inline)) int rq_loop(int mode, int lsh, const int32_t *acc, int n, int32_t bias,
                                                         int lshift, int shift, int bw, void *out, int out_bytes)
{
    const int32_t hi = (int32_t)(((int64_t)1 << (bw - 1)) - 1);
    int32x4_t ls = vdupq_n_s32(lshift), vb = vdupq_n_s32(bias), sh = vdupq_n_s32(-shift), one = vdupq_n_s32(1);
    int32x4_t vhi = vdupq_n_s32(hi), vlo = vdupq_n_s32(-hi - 1);
    int sat = bw == 8 * out_bytes; /* the saturating narrowing is the clamp */
    int i = 0;
    if (out_bytes == 1 && sat && mode == M_AWAY && !lsh && n >= 16) { /* the common case, in assembly */
        int blocks = n / 16;
        const int32_t *ap = acc;
        int8_t *op = (int8_t *)out;
        __asm__ volatile("1:\n\t"
                         "vld1.32 {d16-d19}, [%[a]]!\n\t"
                         "vld1.32 {d20-d23}, [%[a]]!\n\t"
                         "vqadd.s32 q8, q8, %q[vb]\n\t"
                         "vqadd.s32 q9, q9, %q[vb]\n\t"
                         "vqadd.s32 q10, q10, %q[vb]\n\t"
                         "vqadd.s32 q11, q11, %q[vb]\n\t"
                         "vshr.s32 q12, q8, #31\n\t"
                         "vshr.s32 q13, q9, #31\n\t"
                         "vshr.s32 q14, q10, #31\n\t"
                         "vshr.s32 q15, q11, #31\n\t"
                         "vqadd.s32 q8, q8, q12\n\t"
                         "vqadd.s32 q9, q9, q13\n\t"
                         "vqadd.s32 q10, q10, q14\n\t"
                         "vqadd.s32 q11, q11, q15\n\t"
                         "vrshl.s32 q8, q8, %q[sh]\n\t"
                         "vrshl.s32 q9, q9, %q[sh]\n\t"
                         "vrshl.s32 q10, q10, %q[sh]\n\t"
                         "vrshl.s32 q11, q11, %q[sh]\n\t"
                         "vqmovn.s32 d24, q8\n\t"
                         "vqmovn.s32 d25, q9\n\t"
                         "vqmovn.s32 d26, q10\n\t"
                         "vqmovn.s32 d27, q11\n\t"
                         "vqmovn.s16 d16, q12\n\t"
                         "vqmovn.s16 d17, q13\n\t"
                         "subs %[n], %[n], #1\n\t"
                         "vst1.8 {d16-d17}, [%[o]]!\n\t"
                         "bne 1b\n\t"
                         : [a] "+r"(ap), [o] "+r"(op), [n] "+r"(blocks)
                         : [vb] "w"(vb), [sh] "w"(sh)
                         : "cc", "memory", "d16", "d17", "d18", "d19", "d20", "d21", "d22", "d23", "d24", "d25", "d26",
                           "d27", "d28", "d29", "d30", "d31");
        i = n / 16 * 16;
    }
    if (out_bytes == 1 && sat) /* the common case, 16 at a time */
        for (; i + 16 <= n; i += 16) {
            int32x4_t r0 = rq4(mode, lsh, vld1q_s32(acc + i), ls, vb, sh, one);
            int32x4_t r1 = rq4(mode, lsh, vld1q_s32(acc + i + 4), ls, vb, sh, one);
            int32x4_t r2 = rq4(mode, lsh, vld1q_s32(acc + i + 8), ls, vb, sh, one);
            int32x4_t r3 = rq4(mode, lsh, vld1q_s32(acc + i + 12), ls, vb, sh, one);
            int16x8_t h0 = vcombine_s16(vqmovn_s32(r0), vqmovn_s32(r1)),
                      h1 = vcombine_s16(vqmovn_s32(r2), vqmovn_s32(r3));
            vst1q_s8((int8_t *)out + i, vcombine_s8(vqmovn_s16(h0), vqmovn_s16(h1)));
        }
    for (; i + 8 <= n; i += 8) {
        int32x4_t r0 = rq4(mode, lsh, vld1q_s32(acc + i), ls, vb, sh, one);
        int32x4_t r1 = rq4(mode, lsh, vld1q_s32(acc + i + 4), ls, vb, sh, one);
        if (!sat || out_bytes == 4) {
            r0 = vmaxq_s32(vminq_s32(r0, vhi), vlo);
            r1 = vmaxq_s32(vminq_s32(r1, vhi), vlo);
        }
        if (out_bytes == 1) {
            vst1_s8((int8_t *)out + i, vqmovn_s16(vcombine_s16(vqmovn_s32(r0), vqmovn_s32(r1))));
        } else if (out_bytes == 2) {
            vst1q_s16((int16_t *)out + i, vcombine_s16(vqmovn_s32(r0), vqmovn_s32(r1)));
        } else {
            vst1q_s32((int32_t *)out + i, r0);
            vst1q_s32((int32_t *)out + i + 4, r1);
        }
    }
    return i;
}

#define RQ_MODES(LSH)                                                                                           \
    if (shift == 0) i = rq_loop(M_ZERO, LSH, acc, n, b, lshift, shift, bw, out, out_bytes);                     \
    else if (rounding == RND_FLOOR) i = rq_loop(M_FLOOR, LSH, acc, n, b, lshift, shift, bw, out, out_bytes);    \
    else if (rounding == RND_HALF_UP) i = rq_loop(M_UP, LSH, acc, n, b, lshift, shift, bw, out, out_bytes);     \
    else if (rounding == RND_HALF_AWAY) i = rq_loop(M_AWAY, LSH, acc, n, b, lshift, shift, bw, out, out_bytes); \
    else i = rq_loop(M_EVEN, LSH, acc, n, b, lshift, shift, bw, out, out_bytes);

void dfx_neon32_requant_s32(const int32_t *acc, int n, int64_t bias, int lshift, int shift, int rounding, int bw,
                            void *out, int out_bytes)
{
    int i = 0;
    if (lshift <= 29 && bias >= -((int64_t)1 << 29) && bias <= ((int64_t)1 << 29) && shift >= 0 && shift + bw <= 29) {
        int32_t b = (int32_t)bias;
        if (lshift) {
            RQ_MODES(1)
        } else {
            RQ_MODES(0)
        }
    }
    if (i < n)
        dfx_kernels_portable.requant_s32(acc + i, n - i, bias, lshift, shift, rounding, bw,
                                         (char *)out + (size_t)i * out_bytes, out_bytes);
}

void dfx_neon32_relu_s8(const int8_t *x, int8_t *y, int n)
{
    int8x16_t z = vdupq_n_s8(0);
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        int8x16_t a = vld1q_s8(x + i), b = vld1q_s8(x + i + 16);
        vst1q_s8(y + i, vmaxq_s8(a, z));
        vst1q_s8(y + i + 16, vmaxq_s8(b, z));
    }
    for (; i + 16 <= n; i += 16) vst1q_s8(y + i, vmaxq_s8(vld1q_s8(x + i), z));
    for (; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0;
}

/* Max pooling of one plane whose windows all lie inside it (no padding taps, stride 1 or 2, at most
 * POOL_TAPS taps, LeNet's and VGG's): VMAX over the taps 16 output columns at a time, where the loads stay in
 * the row (stride 2: VLD2 reads one column beyond the last tap), the last columns one at a time. Other
 * geometries go to the portable set. */
#define POOL_TAPS 64

void dfx_neon32_maxpool_s8(const int8_t *x, int h, int w, int kh, int kw, int sh, int sw, int pt, int pl, int8_t *out,
                           int oh, int ow, int8_t empty)
{
    if ((sw != 1 && sw != 2) || kh * kw > POOL_TAPS || pt != 0 || pl != 0 || (oh - 1) * sh + kh > h ||
        (ow - 1) * sw + kw > w) {
        dfx_kernels_portable.maxpool_s8(x, h, w, kh, kw, sh, sw, pt, pl, out, oh, ow, empty);
        return;
    }
    /* columns [0, xv) read at most column w - 1 with 16-wide loads */
    int xv = sw == 1 ? w - kw + 1 : (w - kw - 1) / 2 + 1;
    if (xv > ow) xv = ow;
    const int8_t *rows[POOL_TAPS];
    for (int oy = 0; oy < oh; oy++) {
        int8_t *o = out + (size_t)oy * ow;
        int ox = 0, taps = 0;
        for (int i = 0; i < kh; i++)
            for (int j = 0; j < kw; j++) rows[taps++] = x + (size_t)(oy * sh + i) * w + j;
        if (sw == 1)
            for (; ox + 16 <= xv; ox += 16) {
                int8x16_t m = vld1q_s8(rows[0] + ox);
                for (int t = 1; t < taps; t++) m = vmaxq_s8(m, vld1q_s8(rows[t] + ox));
                vst1q_s8(o + ox, m);
            }
        else
            for (; ox + 16 <= xv; ox += 16) {
                int8x16_t m = vld2q_s8(rows[0] + 2 * ox).val[0];
                for (int t = 1; t < taps; t++) m = vmaxq_s8(m, vld2q_s8(rows[t] + 2 * ox).val[0]);
                vst1q_s8(o + ox, m);
            }
        for (; ox < ow; ox++) {
            int8_t m = rows[0][ox * sw];
            for (int t = 1; t < taps; t++) m = rows[t][ox * sw] > m ? rows[t][ox * sw] : m;
            o[ox] = m;
        }
    }
}

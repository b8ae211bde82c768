/* The SDOT (ARMv8.2 dot product) kernels: the micro-kernels of the int8 GEMM
 * (the packing and blocking of the unpacked form are gemm.c's), the packed-
 * weights GEMM with and without requantization fused into its store, and the
 * 3 x 3 depthwise convolution with fused requantization. This file alone is compiled with
 * -march=armv8.2-a+dotprod; its functions run only after the run-time check
 * (dfx_neon_has_dotprod). One SDOT (by element) adds 4 products to each of 4
 * int32 lanes: 16 exact multiply-adds per instruction. */
#include <arm_neon.h>
#include <string.h>

#include "../../fixedpoint.h"
#include "neon.h"

#if defined(__GNUC__) && !defined(__clang__) /* short row loops stay inline, not memset/memcpy calls */
#pragma GCC optimize("no-tree-loop-distribute-patterns")
#endif
#include "store_row.h"

#if !defined(__ARM_FEATURE_DOTPROD)
#error "gemm_dot.c must be compiled with -march=armv8.2-a+dotprod (or a CPU that has it)"
#endif

/* 8 x 8 tile: group g of the A panel = rows 0..7 x 4 k, of the B panel = columns 0..7 x 4 k. */
void dfx_neon_tile_dot(int kg, const int8_t *ap, const int8_t *bp, int32_t *c, int ldc, int mr, int nr, int accumulate)
{
    int32x4_t z = vdupq_n_s32(0);
    int32x4_t c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z, c40 = z, c41 = z, c50 = z,
              c51 = z, c60 = z, c61 = z, c70 = z, c71 = z;
    for (int g = 0; g < kg; g++, ap += 32, bp += 32) {
        int8x16_t b0 = vld1q_s8(bp), b1 = vld1q_s8(bp + 16), a0 = vld1q_s8(ap), a1 = vld1q_s8(ap + 16);
        c00 = vdotq_laneq_s32(c00, b0, a0, 0);
        c01 = vdotq_laneq_s32(c01, b1, a0, 0);
        c10 = vdotq_laneq_s32(c10, b0, a0, 1);
        c11 = vdotq_laneq_s32(c11, b1, a0, 1);
        c20 = vdotq_laneq_s32(c20, b0, a0, 2);
        c21 = vdotq_laneq_s32(c21, b1, a0, 2);
        c30 = vdotq_laneq_s32(c30, b0, a0, 3);
        c31 = vdotq_laneq_s32(c31, b1, a0, 3);
        c40 = vdotq_laneq_s32(c40, b0, a1, 0);
        c41 = vdotq_laneq_s32(c41, b1, a1, 0);
        c50 = vdotq_laneq_s32(c50, b0, a1, 1);
        c51 = vdotq_laneq_s32(c51, b1, a1, 1);
        c60 = vdotq_laneq_s32(c60, b0, a1, 2);
        c61 = vdotq_laneq_s32(c61, b1, a1, 2);
        c70 = vdotq_laneq_s32(c70, b0, a1, 3);
        c71 = vdotq_laneq_s32(c71, b1, a1, 3);
    }
    size_t l = (size_t)ldc;
    dfx_neon_store_row(c, c00, c01, nr, accumulate);
    if (mr > 1) dfx_neon_store_row(c + l, c10, c11, nr, accumulate);
    if (mr > 2) dfx_neon_store_row(c + 2 * l, c20, c21, nr, accumulate);
    if (mr > 3) dfx_neon_store_row(c + 3 * l, c30, c31, nr, accumulate);
    if (mr > 4) dfx_neon_store_row(c + 4 * l, c40, c41, nr, accumulate);
    if (mr > 5) dfx_neon_store_row(c + 5 * l, c50, c51, nr, accumulate);
    if (mr > 6) dfx_neon_store_row(c + 6 * l, c60, c61, nr, accumulate);
    if (mr > 7) dfx_neon_store_row(c + 7 * l, c70, c71, nr, accumulate);
}

void dfx_neon_gemv_dot(int m, int k, const int8_t *a, int lda, const int8_t *x, int32_t *c, int ldc, int accumulate)
{
    int i = 0;
    for (; i + 4 <= m; i += 4) {
        const int8_t *a0 = a + (size_t)i * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
        int32x4_t s0 = vdupq_n_s32(0), s1 = s0, s2 = s0, s3 = s0;
        int p = 0;
        for (; p + 16 <= k; p += 16) {
            int8x16_t xv = vld1q_s8(x + p);
            s0 = vdotq_s32(s0, vld1q_s8(a0 + p), xv);
            s1 = vdotq_s32(s1, vld1q_s8(a1 + p), xv);
            s2 = vdotq_s32(s2, vld1q_s8(a2 + p), xv);
            s3 = vdotq_s32(s3, vld1q_s8(a3 + p), xv);
        }
        int32_t r0 = vaddvq_s32(s0), r1 = vaddvq_s32(s1), r2 = vaddvq_s32(s2), r3 = vaddvq_s32(s3);
        for (; p < k; p++) {
            r0 += a0[p] * x[p];
            r1 += a1[p] * x[p];
            r2 += a2[p] * x[p];
            r3 += a3[p] * x[p];
        }
        int32_t *cp = c + (size_t)i * ldc;
        size_t l = (size_t)ldc;
        if (accumulate) {
            r0 += cp[0];
            r1 += cp[l];
            r2 += cp[2 * l];
            r3 += cp[3 * l];
        }
        cp[0] = r0;
        cp[l] = r1;
        cp[2 * l] = r2;
        cp[3 * l] = r3;
    }
    for (; i < m; i++) {
        const int8_t *ar = a + (size_t)i * lda;
        int32x4_t s = vdupq_n_s32(0);
        int p = 0;
        for (; p + 16 <= k; p += 16) s = vdotq_s32(s, vld1q_s8(ar + p), vld1q_s8(x + p));
        int32_t r = vaddvq_s32(s);
        for (; p < k; p++) r += ar[p] * x[p];
        c[(size_t)i * ldc] = accumulate ? c[(size_t)i * ldc] + r : r;
    }
}

void dfx_neon_gemm_s8_dot(int m, int n, int k, const int8_t *a, int lda, const int8_t *b, int ldb, int32_t *c, int ldc)
{ dfx_neon_gemm_driver(m, n, k, a, lda, b, ldb, c, ldc, dfx_neon_tile_dot, dfx_neon_gemv_dot); }

/* ---- Packed weights (dispatch.h): A in 8-row panels of 4-deep groups ([panel][group][8 rows][4 k], the
 * layout of dfx_neon_tile_dot), packed once per session; B packed per call in blocks of PD_KC x PD_NC into
 * 8-column panels of the same groups (ZIP1/ZIP2 of 4 rows at a time), once for all rows of A. The 8 x 8
 * micro-kernel is written in assembly (v16..v31: the tile, row R in v(16 + 2R), v(17 + 2R); four groups per
 * loop iteration); a full tile that overwrites C is stored straight into C. */
#define PD_KC 2048 /* multiple of 4 */
#define PD_NC 16   /* multiple of 16 */

static int imin(int a, int b) { return a < b ? a : b; }

size_t dfx_dot_packed_a_bytes(int m, int k, int b_nonneg)
{
    (void)b_nonneg;
    return (size_t)((m + 7) / 8) * 8 * (size_t)((k + 3) / 4) * 4;
}

void dfx_dot_pack_a(int m, int k, const int8_t *a, int lda, void *dst, int b_nonneg)
{
    (void)b_nonneg;
    dfx_neon_pack_panels(m, k, a, lda, (int8_t *)dst, 8, 4);
}

/* B rows [0, kc) x columns [0, nc) -> 8-column panels of kg groups ([group][8 cols][4 k]), zero padded. */
/* Rows r0..r3 (k = 4g..4g+3) of 16 columns -> group g of two 8-column panels (d0: columns 0..7, d1: 8..15). */
static inline void pack_group16(int8x16_t r0, int8x16_t r1, int8x16_t r2, int8x16_t r3, int8_t *d0, int8_t *d1)
{
    int16x8_t z01l = vreinterpretq_s16_s8(vzip1q_s8(r0, r1)), z01h = vreinterpretq_s16_s8(vzip2q_s8(r0, r1));
    int16x8_t z23l = vreinterpretq_s16_s8(vzip1q_s8(r2, r3)), z23h = vreinterpretq_s16_s8(vzip2q_s8(r2, r3));
    vst1q_s8(d0, vreinterpretq_s8_s16(vzip1q_s16(z01l, z23l)));      /* columns 0..3 */
    vst1q_s8(d0 + 16, vreinterpretq_s8_s16(vzip2q_s16(z01l, z23l))); /* 4..7 */
    vst1q_s8(d1, vreinterpretq_s8_s16(vzip1q_s16(z01h, z23h)));      /* 8..11 */
    vst1q_s8(d1 + 16, vreinterpretq_s8_s16(vzip2q_s16(z01h, z23h))); /* 12..15 */
}

/* B rows [0, kc) x columns [0, nc) -> 8-column panels of kg groups ([group][8 cols][4 k]), zero padded. */
static void pack_b_dot(const int8_t *b, int ldb, int kc, int nc, int8_t *dst)
{
    int kg = (kc + 3) / 4, full = kc / 4, j0 = 0;
    size_t panel = (size_t)kg * 32, l = (size_t)ldb;
    int8x16_t z = vdupq_n_s8(0);
    for (; j0 + 16 <= nc; j0 += 16) {
        int8_t *d0 = dst + (size_t)(j0 / 8) * panel, *d1 = d0 + panel;
        const int8_t *s = b + j0;
        for (int g = 0; g < full; g++, d0 += 32, d1 += 32, s += 4 * l)
            pack_group16(vld1q_s8(s), vld1q_s8(s + l), vld1q_s8(s + 2 * l), vld1q_s8(s + 3 * l), d0, d1);
        if (full < kg) { /* the last group, 1..3 rows */
            int rows = kc - full * 4;
            pack_group16(vld1q_s8(s), rows > 1 ? vld1q_s8(s + l) : z, rows > 2 ? vld1q_s8(s + 2 * l) : z, z, d0, d1);
        }
    }
    if (j0 < nc) { /* the last 1..15 columns as a block of 16: the columns past nc only reach C columns that
                    * are never stored, so they may hold any bytes that lie inside B (a row's 16-byte load
                    * that would pass B's last byte goes through a buffer) */
        int8_t *d0 = dst + (size_t)(j0 / 8) * panel, *d1 = d0 + panel;
        const int8_t *s = b + j0;
        size_t last = (size_t)(kc - 1) * l + (size_t)nc; /* B's bytes from b on */
        for (int g = 0; g < kg; g++, d0 += 32, d1 += 32, s += 4 * l) {
            int8x16_t r[4];
            for (int t = 0; t < 4; t++) {
                size_t at = (size_t)(g * 4 + t) * l + (size_t)j0;
                if (g * 4 + t >= kc) r[t] = z;
                else if (at + 16 <= last) r[t] = vld1q_s8(s + t * l);
                else {
                    int8_t tmp[16] = {0};
                    memcpy(tmp, s + t * l, (size_t)(nc - j0));
                    r[t] = vld1q_s8(tmp);
                }
            }
            pack_group16(r[0], r[1], r[2], r[3], d0, d1);
        }
    }
}

/* 8 x 8 tile of C over kg >= 1 groups, four groups per loop iteration. */
/* the 16 SDOTs of one group: A rows in VA (rows 0..3) and VA + 1 (4..7), B columns in VB (0..3), VB + 1 (4..7) */
// clang-format off
#define DOT_PAIR(C0, C1, A, L, B0, B1) \
    "sdot v" #C0 ".4s, v" #B0 ".16b, v" #A ".4b[" #L "]\n\t" \
    "sdot v" #C1 ".4s, v" #B1 ".16b, v" #A ".4b[" #L "]\n\t"
#define DOT_GROUP(A0, A1, B0, B1) \
    DOT_PAIR(16, 17, A0, 0, B0, B1) DOT_PAIR(18, 19, A0, 1, B0, B1) \
    DOT_PAIR(20, 21, A0, 2, B0, B1) DOT_PAIR(22, 23, A0, 3, B0, B1) \
    DOT_PAIR(24, 25, A1, 0, B0, B1) DOT_PAIR(26, 27, A1, 1, B0, B1) \
    DOT_PAIR(28, 29, A1, 2, B0, B1) DOT_PAIR(30, 31, A1, 3, B0, B1)
/* INIT, one group when kg is odd, two when bit 1 is set, then four per loop iteration (v0..v15: A and B of
 * four groups), then STORES */
#define DOT_TILE_FROM(INIT, STORES) \
    INIT \
    "tbz %w[n], #0, 1f\n\t" \
    "ld1 {v0.16b, v1.16b}, [%[a]], #32\n\t" \
    "ld1 {v4.16b, v5.16b}, [%[b]], #32\n\t" \
    DOT_GROUP(0, 1, 4, 5) \
    "1:\n\t" \
    "tbz %w[n], #1, 2f\n\t" \
    "ld1 {v0.16b-v3.16b}, [%[a]], #64\n\t" \
    "ld1 {v4.16b-v7.16b}, [%[b]], #64\n\t" \
    DOT_GROUP(0, 1, 4, 5) \
    DOT_GROUP(2, 3, 6, 7) \
    "2:\n\t" \
    "lsr %w[n], %w[n], #2\n\t" \
    "cbz %w[n], 3f\n\t" \
    "4:\n\t" \
    "ld1 {v0.16b-v3.16b}, [%[a]], #64\n\t" \
    "ld1 {v4.16b-v7.16b}, [%[b]], #64\n\t" \
    "ld1 {v8.16b-v11.16b}, [%[a]], #64\n\t" \
    "ld1 {v12.16b-v15.16b}, [%[b]], #64\n\t" \
    DOT_GROUP(0, 1, 4, 5) \
    DOT_GROUP(2, 3, 6, 7) \
    DOT_GROUP(8, 9, 12, 13) \
    DOT_GROUP(10, 11, 14, 15) \
    "subs %w[n], %w[n], #1\n\t" \
    "b.ne 4b\n\t" \
    "3:\n\t" \
    STORES
#define DOT_TILE(STORES) DOT_TILE_FROM(DFX_NEON_ZERO_V16_V31, STORES)
#define DOT_CLOBBERS \
    "cc", "memory", "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12", "v13", "v14", \
    "v15", "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v23", "v24", "v25", "v26", "v27", "v28", "v29", "v30", \
    "v31"
#define DOT_OPERANDS : [a] "+r"(ap), [b] "+r"(bp), [n] "+r"(kg), [r] "+r"(r) : [ldc] "r"(l4) : DOT_CLOBBERS
/* rows straight into C (row stride ldc bytes) */
#define DOT_STORE_C \
    "st1 {v16.4s, v17.4s}, [%[r]], %[ldc]\n\tst1 {v18.4s, v19.4s}, [%[r]], %[ldc]\n\t" \
    "st1 {v20.4s, v21.4s}, [%[r]], %[ldc]\n\tst1 {v22.4s, v23.4s}, [%[r]], %[ldc]\n\t" \
    "st1 {v24.4s, v25.4s}, [%[r]], %[ldc]\n\tst1 {v26.4s, v27.4s}, [%[r]], %[ldc]\n\t" \
    "st1 {v28.4s, v29.4s}, [%[r]], %[ldc]\n\tst1 {v30.4s, v31.4s}, [%[r]], %[ldc]\n\t"
/* the 64 values into the buffer r */
#define DOT_STORE_BUF \
    "st1 {v16.4s-v19.4s}, [%[r]], #64\n\tst1 {v20.4s-v23.4s}, [%[r]], #64\n\t" \
    "st1 {v24.4s-v27.4s}, [%[r]], #64\n\tst1 {v28.4s-v31.4s}, [%[r]]\n\t"
// clang-format on

static void tile8x8_packed(int kg, const int8_t *ap, const int8_t *bp, int32_t *c, int ldc, int mr, int nr, int acc)
{
    if (mr == 8 && nr == 8 && !acc) {
        int32_t *r = c;
        size_t l4 = (size_t)ldc * 4;
        __asm__ volatile(DOT_TILE(DOT_STORE_C) DOT_OPERANDS);
        return;
    }
    int32_t t[64] __attribute__((aligned(16)));
    int32_t *r = t;
    size_t l4 = 0;
    __asm__ volatile(DOT_TILE(DOT_STORE_BUF) DOT_OPERANDS);
    for (int i = 0; i < mr; i++)
        dfx_neon_store_row(c + (size_t)i * ldc, vld1q_s32(t + 8 * i), vld1q_s32(t + 8 * i + 4), nr, acc);
}

void dfx_dot_gemm_s8_packed(int m, int n, int k, const void *ap, const int8_t *b, int ldb, int32_t *c, int ldc,
                            int b_nonneg)
{
    (void)b_nonneg;
    int8_t bbuf[PD_NC * PD_KC] __attribute__((aligned(16)));
    int kga = (k + 3) / 4; /* groups of a packed A panel */
    const int8_t *A = (const int8_t *)ap;
    for (int k0 = 0; k0 < k; k0 += PD_KC) {
        int kc = imin(PD_KC, k - k0), kg = (kc + 3) / 4;
        for (int j0 = 0; j0 < n; j0 += PD_NC) {
            int nc = imin(PD_NC, n - j0);
            pack_b_dot(b + (size_t)k0 * ldb + j0, ldb, kc, nc, bbuf);
            for (int i0 = 0; i0 < m; i0 += 8) {
                const int8_t *pa = A + (size_t)(i0 / 8) * kga * 32 + (size_t)(k0 / 4) * 32;
                for (int q0 = 0; q0 < nc; q0 += 8)
                    tile8x8_packed(kg, pa, bbuf + (size_t)(q0 / 8) * kg * 32, c + (size_t)i0 * ldc + j0 + q0, ldc,
                                   imin(8, m - i0), imin(8, nc - q0), k0 > 0);
            }
        }
    }
}

/* ---- Requantization fused into the kernel (dispatch.h dwconv_requant_s8, gemm_s8_packed_requant).
 *
 * An accumulator is at most 2^28 in magnitude (the accumulator bound of dispatch.h with int8 operands), so
 * with |bias| <= 2^30 the sum v = acc + bias is exact in an int32 lane, and the rounding shift by s runs on
 * int32 lanes: SRSHL by -s is HALF_UP (it rounds without intermediate overflow); HALF_AWAY_FROM_ZERO is
 * HALF_UP of v - 1 for v < 0 (SSRA by 31 adds the sign); HALF_TO_EVEN is HALF_UP of v - 1 + bit_s(v); FLOOR
 * is SSHL by -s. With s = 0 every mode is v itself (SRSHL by 0). Narrowing saturates to int8 (SQXTN twice),
 * which is bw 8. Other cases (bw < 8, lshift, shifts beyond 31, |bias| > 2^30) are not handled: the
 * functions return 0 and the caller runs the two steps. */
enum { FQ_UP, FQ_AWAY, FQ_FLOOR, FQ_EVEN };

/* The mode for (shift, rounding), or -1 when the parameters are outside the fused case. */
static int fq_mode(int64_t bias, int lshift, int shift, int rounding)
{
    if (lshift != 0 || shift < 0 || shift > 31 || bias < -((int64_t)1 << 30) || bias > ((int64_t)1 << 30)) return -1;
    if (shift == 0 || rounding == RND_HALF_UP) return FQ_UP;
    if (rounding == RND_HALF_AWAY) return FQ_AWAY;
    if (rounding == RND_FLOOR) return FQ_FLOOR;
    return FQ_EVEN;
}

#define INLINE static inline __attribute__((always_inline))

/* v rounded and shifted (sh: -s in every lane). */
INLINE int32x4_t fq_round(int32x4_t v, int mode, int32x4_t sh)
{
    switch (mode) {
        case FQ_UP: return vrshlq_s32(v, sh);
        case FQ_AWAY: return vrshlq_s32(vsraq_n_s32(v, v, 31), sh);
        case FQ_FLOOR: return vshlq_s32(v, sh);
        default: {
            int32x4_t one = vdupq_n_s32(1), odd = vandq_s32(vshlq_s32(v, sh), one);
            return vrshlq_s32(vaddq_s32(v, vsubq_s32(odd, one)), sh);
        }
    }
}

/* Four rounded vectors (16 values) -> 16 saturated int8 codes in order. */
INLINE int8x16_t fq_narrow16(int32x4_t a0, int32x4_t a1, int32x4_t a2, int32x4_t a3)
{ return vqmovn_high_s16(vqmovn_s16(vqmovn_high_s32(vqmovn_s32(a0), a1)), vqmovn_high_s32(vqmovn_s32(a2), a3)); }

/* ---- 3 x 3 depthwise convolution, stride 1 or 2, with SDOT.
 *
 * Strips of output rows read a zero-padded copy of the input rows they need (on the stack), so every
 * output is a vector output. One SDOT multiplies 4 windows of 4 input bytes by the tap row (w0, w1, w2, 0):
 * a 16-byte load at column c gives the outputs whose windows start at c, c + 4, c + 8, c + 12. Four loads
 * per tap row (offsets 0, 1, 2, 3 at stride 1; 0, 2, 16, 18 at stride 2) give 16 outputs in four int32
 * vectors, which start from the bias and are requantized before one table lookup puts the 16 codes in
 * order. Products are exact in int32, -128 * -128 included. */
#define DQ_PAD 32768

/* 16 requantized outputs from the padded rows r0..r2 (at the first output's first tap), stride S. */
INLINE int8x16_t dq16(const int8_t *r0, const int8_t *r1, const int8_t *r2, int S, const int8x16_t *wv, int32x4_t vb,
                      int mode, int32x4_t sh, uint8x16_t order)
{
    const int o1 = S == 1 ? 1 : 2, o2 = S == 1 ? 2 : 16, o3 = S == 1 ? 3 : 18;
    int32x4_t a0 = vb, a1 = vb, a2 = vb, a3 = vb;
    const int8_t *r[3] = {r0, r1, r2};
    for (int i = 0; i < 3; i++) {
        a0 = vdotq_s32(a0, vld1q_s8(r[i]), wv[i]);
        a1 = vdotq_s32(a1, vld1q_s8(r[i] + o1), wv[i]);
        a2 = vdotq_s32(a2, vld1q_s8(r[i] + o2), wv[i]);
        a3 = vdotq_s32(a3, vld1q_s8(r[i] + o3), wv[i]);
    }
    int8x16_t q =
        fq_narrow16(fq_round(a0, mode, sh), fq_round(a1, mode, sh), fq_round(a2, mode, sh), fq_round(a3, mode, sh));
    return vqtbl1q_s8(q, order);
}

/* The output rows of one strip (padded rows buf, row stride wp); a row of ow >= 16 outputs ends with a block
 * that overlaps the one before, a shorter row goes through a buffer. */
INLINE void dq_strip(const int8_t *buf, int wp, int rows, int S, const int8x16_t *wv, int32x4_t vb, int mode,
                     int32x4_t sh, uint8x16_t order, int8_t *out, int ow)
{
    for (int y = 0; y < rows; y++, out += ow) {
        const int8_t *r0 = buf + (size_t)y * S * wp, *r1 = r0 + wp, *r2 = r1 + wp;
        if (ow < 16) {
            int8_t t[16];
            int8x16_t q = dq16(r0, r1, r2, S, wv, vb, mode, sh, order);
            vst1q_s8(t, q);
            for (int j = 0; j < ow; j++) out[j] = t[j];
            continue;
        }
        for (int ox = 0;; ox += 16) {
            if (ox + 16 > ow) ox = ow - 16;
            int8x16_t q = dq16(r0 + ox * S, r1 + ox * S, r2 + ox * S, S, wv, vb, mode, sh, order);
            vst1q_s8(out + ox, q);
            if (ox + 16 == ow) break;
        }
    }
}

/* dst[0..n) = src[0..n) with 16- or 8-byte moves (overlapping at the end) and nothing written past n. */
INLINE void dq_copy(int8_t *dst, const int8_t *src, int n)
{
    if (n >= 16) {
        int j = 0;
        for (; j + 16 <= n; j += 16) vst1q_s8(dst + j, vld1q_s8(src + j));
        if (j < n) vst1q_s8(dst + n - 16, vld1q_s8(src + n - 16));
    } else if (n >= 8) {
        vst1_s8(dst, vld1_s8(src));
        vst1_s8(dst + n - 8, vld1_s8(src + n - 8));
    } else
        for (int j = 0; j < n; j++) dst[j] = src[j];
}

/* The blocks of dq_flat: 16 codes from every 16 positions of the padded plane buf (row stride W2) into res. */
INLINE void dq_flat_blocks(const int8_t *buf, int W2, int P2, const int8x16_t *wv, int32x4_t vb, int mode, int32x4_t sh,
                           uint8x16_t order, int8_t *res)
{
    for (int q = 0; q < P2; q += 16) {
        int8x16_t v = dq16(buf + q, buf + q + W2, buf + q + 2 * W2, 1, wv, vb, mode, sh, order);
        vst1q_s8(res + q, v);
    }
}

/* Stride 1 with one zero of padding on every side (oh = h, ow = w), on the flattened padded plane: the rows
 * are copied w + 2 apart between zero columns and zero rows (into buf, DQ_PAD bytes), so a block of 16
 * outputs may run across rows and every block is whole; the h x (w + 2) codes go to a buffer, whose rows of
 * w codes are then copied out. Returns 0 when the plane does not fit the buffers. */
static int dq_flat(const int8_t *x, int h, int w, const int8x16_t *wv, int32x4_t vb, int mode, int32x4_t sh,
                   uint8x16_t order, int8_t *buf, int8_t *out)
{
    int W2 = w + 2, P2 = h * W2, end = (h + 2) * W2 + 48; /* + 48: the loads of the last block */
    if (end > DQ_PAD) return 0;
    int8_t res[DQ_PAD + 16] __attribute__((aligned(16)));
    int8x16_t z = vdupq_n_s8(0);
    for (int j = 0; j < W2 + 1; j += 16) vst1q_s8(buf + j, z); /* the zero row above, and the first zero column */
    for (int y = 0; y < h; y++) {
        int8_t *d = buf + (size_t)(y + 1) * W2;
        dq_copy(d + 1, x + (size_t)y * w, w);
        d[w + 1] = 0; /* the zero columns between this row and the next */
        d[W2] = 0;
    }
    for (int j = (h + 1) * W2; j < end; j += 16) vst1q_s8(buf + j, z); /* the zero row below, and the tail */
    switch (mode) {
        case FQ_UP: dq_flat_blocks(buf, W2, P2, wv, vb, FQ_UP, sh, order, res); break;
        case FQ_AWAY: dq_flat_blocks(buf, W2, P2, wv, vb, FQ_AWAY, sh, order, res); break;
        case FQ_FLOOR: dq_flat_blocks(buf, W2, P2, wv, vb, FQ_FLOOR, sh, order, res); break;
        default: dq_flat_blocks(buf, W2, P2, wv, vb, FQ_EVEN, sh, order, res); break;
    }
    for (int y = 0; y < h; y++) dq_copy(out + (size_t)y * w, res + (size_t)y * W2, w);
    return 1;
}

/* One mode and stride, as constants after inlining. */
#define DQ_CASES(S)                                                                         \
    switch (mode) {                                                                         \
        case FQ_UP: dq_strip(buf, wp, nr, S, wv, vb, FQ_UP, sh, order, o, ow); break;       \
        case FQ_AWAY: dq_strip(buf, wp, nr, S, wv, vb, FQ_AWAY, sh, order, o, ow); break;   \
        case FQ_FLOOR: dq_strip(buf, wp, nr, S, wv, vb, FQ_FLOOR, sh, order, o, ow); break; \
        default: dq_strip(buf, wp, nr, S, wv, vb, FQ_EVEN, sh, order, o, ow); break;        \
    }

int dfx_dot_dwconv_requant_s8(const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int sh_, int sw, int pt,
                              int pl, int dh, int dw, int64_t bias, int lshift, int shift, int rounding, int bw,
                              int relu, int8_t *out, int oh, int ow, int32_t *work)
{
    (void)work; /* the sums stay in registers */
    int mode = fq_mode(bias, lshift, shift, rounding);
    if (mode < 0 || bw != 8 || kh != 3 || kw != 3 || sh_ != sw || (sw != 1 && sw != 2) || dh != 1 || dw != 1 ||
        pt < 0 || pl < 0 || pt > 2 || pl > 2)
        return 0;
    int s = sw, ob = ow < 16 ? 16 : ow;
    int wp = ob * s + 4 > pl + w ? ob * s + 4 : pl + w; /* every load of a block in bounds */
    wp = (wp + 15) & ~15;
    if (DQ_PAD / wp < 3) return 0;
    int rows = (DQ_PAD / wp - 3) / s + 1; /* output rows per strip */
    int8_t buf[DQ_PAD + 16] __attribute__((aligned(16)));
    /* tap row i as (k[3i], k[3i + 1], k[3i + 2], 0) x 4: a table lookup of the 9 taps (index 16: zero) */
    int8_t t9[16] = {0};
    memcpy(t9, k, 9);
    static const uint8_t rowidx[3][16] = {{0, 1, 2, 16, 0, 1, 2, 16, 0, 1, 2, 16, 0, 1, 2, 16},
                                          {3, 4, 5, 16, 3, 4, 5, 16, 3, 4, 5, 16, 3, 4, 5, 16},
                                          {6, 7, 8, 16, 6, 7, 8, 16, 6, 7, 8, 16, 6, 7, 8, 16}};
    int8x16_t taps = vld1q_s8(t9);
    const int8x16_t wv[3] = {vqtbl1q_s8(taps, vld1q_u8(rowidx[0])), vqtbl1q_s8(taps, vld1q_u8(rowidx[1])),
                             vqtbl1q_s8(taps, vld1q_u8(rowidx[2]))};
    static const uint8_t ord1[16] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};
    static const uint8_t ord2[16] = {0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15};
    uint8x16_t order = vld1q_u8(s == 1 ? ord1 : ord2);
    int32x4_t vb = vdupq_n_s32((int32_t)bias), sh = vdupq_n_s32(-shift);
    if (s == 1 && pt == 1 && pl == 1 && oh == h && ow == w && dq_flat(x, h, w, wv, vb, mode, sh, order, buf, out)) {
        if (relu) dfx_neon_relu_s8(out, out, oh * ow); /* the plane just written, while in cache */
        return 1;
    }
    for (int oy0 = 0; oy0 < oh; oy0 += rows) {
        int nr = oh - oy0 < rows ? oh - oy0 : rows, need = (nr - 1) * s + 3;
        dfx_neon_pad_rows(x, h, w, oy0 * s - pt, need, pl, wp, buf);
        int8_t *o = out + (size_t)oy0 * ow;
        if (s == 1) DQ_CASES(1)
        else DQ_CASES(2)
        if (relu) dfx_neon_relu_s8(o, o, nr * ow); /* the strip just written */
    }
    return 1;
}

/* ---- The packed-weights GEMM with requantization fused into the tile store: the tile's rows start from
 * their bias instead of zero, and a full tile is rounded, narrowed and stored as int8 codes by the
 * assembly (one output channel per tile row: its shift is loaded once per row). Edge tiles go through a
 * buffer. One K block only (k <= PD_KC), int8 outputs of bw 8. */
#define FQ_MAX_ROWS 2048
// clang-format off
#define BIAS_ROW(A, B) "ld1r {v" #A ".4s}, [%[bias]], #4\n\tmov v" #B ".16b, v" #A ".16b\n\t"
#define BIAS_INIT \
    BIAS_ROW(16, 17) BIAS_ROW(18, 19) BIAS_ROW(20, 21) BIAS_ROW(22, 23) \
    BIAS_ROW(24, 25) BIAS_ROW(26, 27) BIAS_ROW(28, 29) BIAS_ROW(30, 31)
#define RQ_UP(A, B) "srshl v" #A ".4s, v" #A ".4s, v0.4s\n\tsrshl v" #B ".4s, v" #B ".4s, v0.4s\n\t"
#define RQ_AWAY(A, B) "ssra v" #A ".4s, v" #A ".4s, #31\n\tssra v" #B ".4s, v" #B ".4s, #31\n\t" RQ_UP(A, B)
#define RQ_FLOOR(A, B) "sshl v" #A ".4s, v" #A ".4s, v0.4s\n\tsshl v" #B ".4s, v" #B ".4s, v0.4s\n\t"
/* row R: its shift (SHIFT: loaded per row, or nothing when all rows share v0), rounding, narrowing, store */
#define RQ_ROW(SHIFT, OP, A, B) \
    SHIFT OP(A, B) \
    "sqxtn v1.4h, v" #A ".4s\n\tsqxtn2 v1.8h, v" #B ".4s\n\tsqxtn v1.8b, v1.8h\n\tst1 {v1.8b}, [%[r]], %[ldo]\n\t"
#define RQ_ROWS(SHIFT, OP) \
    RQ_ROW(SHIFT, OP, 16, 17) RQ_ROW(SHIFT, OP, 18, 19) RQ_ROW(SHIFT, OP, 20, 21) RQ_ROW(SHIFT, OP, 22, 23) \
    RQ_ROW(SHIFT, OP, 24, 25) RQ_ROW(SHIFT, OP, 26, 27) RQ_ROW(SHIFT, OP, 28, 29) RQ_ROW(SHIFT, OP, 30, 31)
#define RQ_STORE(OP) RQ_ROWS("ld1r {v0.4s}, [%[sh]], #4\n\t", OP)
#define RQ_STORE_SAME(OP) "ld1r {v0.4s}, [%[sh]]\n\t" RQ_ROWS("", OP) /* one shift for the tile */
#define RQ_OPERANDS \
    : [a] "+r"(ap), [b] "+r"(bp), [n] "+r"(kg), [r] "+r"(r), [bias] "+r"(b32), [sh] "+r"(s32) \
    : [ldo] "r"(l1) : DOT_CLOBBERS
// clang-format on

/* One 8 x 8 tile of requantized codes: rows of out (stride ldo), b32 / s32: the rows' biases and -shifts
 * (same: all rows have the same shift). */
static void tile8x8_rq(int kg, const int8_t *ap, const int8_t *bp, const int32_t *b32, const int32_t *s32, int8_t *out,
                       int ldo, int mr, int nr, int mode, int same)
{
    if (mr == 8 && nr == 8) {
        int8_t *r = out;
        size_t l1 = (size_t)ldo;
        if (same) { /* every row has the same shift */
            if (mode == FQ_AWAY) __asm__ volatile(DOT_TILE_FROM(BIAS_INIT, RQ_STORE_SAME(RQ_AWAY)) RQ_OPERANDS);
            else if (mode == FQ_UP) __asm__ volatile(DOT_TILE_FROM(BIAS_INIT, RQ_STORE_SAME(RQ_UP)) RQ_OPERANDS);
            else __asm__ volatile(DOT_TILE_FROM(BIAS_INIT, RQ_STORE_SAME(RQ_FLOOR)) RQ_OPERANDS);
        } else if (mode == FQ_AWAY) __asm__ volatile(DOT_TILE_FROM(BIAS_INIT, RQ_STORE(RQ_AWAY)) RQ_OPERANDS);
        else if (mode == FQ_UP) __asm__ volatile(DOT_TILE_FROM(BIAS_INIT, RQ_STORE(RQ_UP)) RQ_OPERANDS);
        else __asm__ volatile(DOT_TILE_FROM(BIAS_INIT, RQ_STORE(RQ_FLOOR)) RQ_OPERANDS);
        return;
    }
    int32_t t[64] __attribute__((aligned(16)));
    int32_t *r = t;
    size_t l4 = 0;
    __asm__ volatile(DOT_TILE(DOT_STORE_BUF) DOT_OPERANDS);
    for (int i = 0; i < mr; i++) {
        int32x4_t vb = vdupq_n_s32(b32[i]), sh = vdupq_n_s32(s32[i]);
        int32x4_t lo = vaddq_s32(vld1q_s32(t + 8 * i), vb), hi = vaddq_s32(vld1q_s32(t + 8 * i + 4), vb);
        if (mode == FQ_AWAY) {
            lo = fq_round(lo, FQ_AWAY, sh);
            hi = fq_round(hi, FQ_AWAY, sh);
        } else if (mode == FQ_UP) {
            lo = fq_round(lo, FQ_UP, sh);
            hi = fq_round(hi, FQ_UP, sh);
        } else {
            lo = fq_round(lo, FQ_FLOOR, sh);
            hi = fq_round(hi, FQ_FLOOR, sh);
        }
        int8_t q[8];
        vst1_s8(q, vqmovn_s16(vqmovn_high_s32(vqmovn_s32(lo), hi)));
        for (int j = 0; j < nr; j++) out[(size_t)i * ldo + j] = q[j];
    }
}

int dfx_dot_gemm_s8_packed_requant(int m, int n, int k, const void *ap, const int8_t *b, int ldb, int b_nonneg,
                                   const int64_t *bias, const int8_t *lshift, const int16_t *shift, int rounding,
                                   int bw, int relu, int8_t *out, int ldo)
{
    (void)b_nonneg;
    if (k > PD_KC || m > FQ_MAX_ROWS || bw != 8) return 0;
    int32_t b32[FQ_MAX_ROWS + 8], s32[FQ_MAX_ROWS + 8];
    /* one mode for all rows; a row with shift 0 (v itself) cannot take HALF_AWAY_FROM_ZERO's SSRA */
    int mode = rounding == RND_HALF_AWAY ? FQ_AWAY
               : rounding == RND_HALF_UP ? FQ_UP
               : rounding == RND_FLOOR   ? FQ_FLOOR
                                         : -1;
    if (mode < 0) return 0;
    int same = 1;
    for (int i = 0; i < m; i++) {
        if (fq_mode(bias[i], lshift[i], shift[i], rounding) < 0 || (mode == FQ_AWAY && shift[i] == 0)) return 0;
        same &= shift[i] == shift[0];
        b32[i] = (int32_t)bias[i];
        s32[i] = -shift[i];
    }
    for (int i = m; i < m + 8; i++) b32[i] = s32[i] = 0;
    int8_t bbuf[PD_NC * PD_KC] __attribute__((aligned(16)));
    int kg = (k + 3) / 4;
    const int8_t *A = (const int8_t *)ap;
    for (int j0 = 0; j0 < n; j0 += PD_NC) {
        int nc = imin(PD_NC, n - j0);
        pack_b_dot(b + j0, ldb, k, nc, bbuf);
        for (int i0 = 0; i0 < m; i0 += 8) {
            const int8_t *pa = A + (size_t)(i0 / 8) * kg * 32;
            for (int q0 = 0; q0 < nc; q0 += 8)
                tile8x8_rq(kg, pa, bbuf + (size_t)(q0 / 8) * kg * 32, b32 + i0, s32 + i0,
                           out + (size_t)i0 * ldo + j0 + q0, ldo, imin(8, m - i0), imin(8, nc - q0), mode, same);
            for (int i = i0; relu && i < i0 + 8 && i < m; i++) /* the codes just written, while in cache */
                dfx_neon_relu_s8(out + (size_t)i * ldo + j0, out + (size_t)i * ldo + j0, nc);
        }
    }
    return 1;
}

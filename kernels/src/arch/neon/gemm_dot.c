/* The SDOT (ARMv8.2 dot product) micro-kernels of the int8 GEMM; the packing
 * and blocking are gemm.c's. This file alone is compiled with
 * -march=armv8.2-a+dotprod; its functions run only after the run-time check
 * (dfx_neon_has_dotprod). One SDOT (by element) adds 4 products to each of 4
 * int32 lanes: 16 exact multiply-adds per instruction. */
#include <arm_neon.h>
#include <string.h>

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
 * micro-kernel is written in assembly (v16..v31: the tile, row R in v(16 + 2R), v(17 + 2R); two groups per
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
static void pack_b_dot(const int8_t *b, int ldb, int kc, int nc, int8_t *dst)
{
    int kg = (kc + 3) / 4, j0 = 0;
    size_t panel = (size_t)kg * 32;
    int8x16_t z = vdupq_n_s8(0);
    for (; j0 + 16 <= nc; j0 += 16) {
        int8_t *d0 = dst + (size_t)(j0 / 8) * panel, *d1 = d0 + panel;
        for (int g = 0; g < kg; g++, d0 += 32, d1 += 32) {
            const int8_t *s = b + (size_t)g * 4 * ldb + j0;
            int rows = kc - g * 4;
            int8x16_t r0 = vld1q_s8(s), r1 = rows > 1 ? vld1q_s8(s + ldb) : z,
                      r2 = rows > 2 ? vld1q_s8(s + 2 * (size_t)ldb) : z,
                      r3 = rows > 3 ? vld1q_s8(s + 3 * (size_t)ldb) : z;
            int16x8_t z01l = vreinterpretq_s16_s8(vzip1q_s8(r0, r1)), z01h = vreinterpretq_s16_s8(vzip2q_s8(r0, r1));
            int16x8_t z23l = vreinterpretq_s16_s8(vzip1q_s8(r2, r3)), z23h = vreinterpretq_s16_s8(vzip2q_s8(r2, r3));
            vst1q_s8(d0, vreinterpretq_s8_s16(vzip1q_s16(z01l, z23l)));      /* columns 0..3 */
            vst1q_s8(d0 + 16, vreinterpretq_s8_s16(vzip2q_s16(z01l, z23l))); /* 4..7 */
            vst1q_s8(d1, vreinterpretq_s8_s16(vzip1q_s16(z01h, z23h)));      /* 8..11 */
            vst1q_s8(d1 + 16, vreinterpretq_s8_s16(vzip2q_s16(z01h, z23h))); /* 12..15 */
        }
    }
    for (; j0 < ((nc + 7) & ~7); j0++) { /* the last columns one by one, zero columns up to the panel */
        int8_t *d = dst + (size_t)(j0 / 8) * panel + (j0 & 7) * 4;
        for (int g = 0; g < kg; g++)
            for (int t = 0; t < 4; t++)
                d[g * 32 + t] = j0 < nc && g * 4 + t < kc ? b[(size_t)(g * 4 + t) * ldb + j0] : 0;
    }
}

/* 8 x 8 tile of C over kg >= 1 groups, two groups per loop iteration. */
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
/* zero, an odd group, pairs of groups, then STORES */
#define DOT_TILE(STORES) \
    DFX_NEON_ZERO_V16_V31 \
    "tbz %w[n], #0, 2f\n\t" \
    "ld1 {v0.16b, v1.16b}, [%[a]], #32\n\t" \
    "ld1 {v4.16b, v5.16b}, [%[b]], #32\n\t" \
    DOT_GROUP(0, 1, 4, 5) \
    "subs %w[n], %w[n], #1\n\t" \
    "b.eq 3f\n\t" \
    "2:\n\t" \
    "ld1 {v0.16b-v3.16b}, [%[a]], #64\n\t" \
    "ld1 {v4.16b-v7.16b}, [%[b]], #64\n\t" \
    DOT_GROUP(0, 1, 4, 5) \
    DOT_GROUP(2, 3, 6, 7) \
    "subs %w[n], %w[n], #2\n\t" \
    "b.ne 2b\n\t" \
    "3:\n\t" \
    STORES
#define DOT_OPERANDS \
    : [a] "+r"(ap), [b] "+r"(bp), [n] "+r"(kg), [r] "+r"(r) \
    : [ldc] "r"(l4) \
    : "cc", "memory", "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v16", "v17", "v18", "v19", "v20", "v21", \
      "v22", "v23", "v24", "v25", "v26", "v27", "v28", "v29", "v30", "v31"
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

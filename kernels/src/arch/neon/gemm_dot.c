/* The SDOT (ARMv8.2 dot product) micro-kernels of the int8 GEMM; the packing
 * and blocking are gemm.c's. This file alone is compiled with
 * -march=armv8.2-a+dotprod; its functions run only after the run-time check
 * (dfx_neon_has_dotprod). One SDOT (by element) adds 4 products to each of 4
 * int32 lanes: 16 exact multiply-adds per instruction. */
#include <arm_neon.h>

#include "neon.h"
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

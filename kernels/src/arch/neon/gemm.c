/* int8 GEMM for ARMv8.0 NEON: C(m x n) = A(m x k) * B(k x n), int32 results.
 *
 * Blocking: k in blocks of GEMM_KC, m in blocks of GEMM_MC rows. A block of A
 * is packed into 8-row panels and B into 8-column panels, both as 4-deep k
 * groups (a group of a panel: 8 rows/columns x 4 consecutive k = 32 bytes,
 * zero padded), in buffers on the stack (no heap, no global state). A
 * micro-kernel computes one 8 x 8 tile of C from a pair of panels: here with
 * SMULL (8 exact int16 products: |int8 * int8| <= 16384 < 2^15) and SADALP,
 * which adds pairs of those products widened to int32, so no int16 sum is
 * ever formed and -128 * -128 needs no special case; gemm_dot.c does the same
 * with SDOT. All sums are exact in int32 by the dispatch contract. */
#include <arm_neon.h>
#include <string.h>

#include "neon.h"

#if defined(__GNUC__) && !defined(__clang__) /* short row loops stay inline, not memset/memcpy calls */
#pragma GCC optimize("no-tree-loop-distribute-patterns")
#endif
#include "store_row.h"

#define GEMM_KC 256 /* multiple of 4 */
#define GEMM_MC 128 /* multiple of 8 */

static int imin(int a, int b) { return a < b ? a : b; }

/* Pack rows [0, mc) x k [0, kc) of A into 8-row panels of kg groups. */
static void pack_a(const int8_t *a, int lda, int mc, int kc, int8_t *dst)
{
    int kg = (kc + 3) / 4, full = kc / 4;
    for (int r0 = 0; r0 < mc; r0 += 8) {
        int8_t *panel = dst + (size_t)r0 * kg * 4;
        for (int r = 0; r < 8; r++) {
            int8_t *d = panel + r * 4;
            if (r0 + r >= mc) {
                for (int g = 0; g < kg; g++) memset(d + g * 32, 0, 4);
                continue;
            }
            const int8_t *s = a + (size_t)(r0 + r) * lda;
            for (int g = 0; g < full; g++) memcpy(d + g * 32, s + g * 4, 4);
            if (full < kg) {
                int8_t t[4] = {0, 0, 0, 0};
                memcpy(t, s + full * 4, (size_t)(kc - full * 4));
                memcpy(d + full * 32, t, 4);
            }
        }
    }
}

/* Pack columns [0, nr) x k [0, kc) of B (row stride ldb) into one 8-column panel. */
static void pack_b(const int8_t *b, int ldb, int kc, int nr, int8_t *dst)
{
    int full = kc / 4, kg = (kc + 3) / 4, g = 0;
    if (nr == 8) {
        for (; g < full; g++, b += 4 * (size_t)ldb, dst += 32) {
            int8x8_t r0 = vld1_s8(b), r1 = vld1_s8(b + ldb), r2 = vld1_s8(b + 2 * (size_t)ldb),
                     r3 = vld1_s8(b + 3 * (size_t)ldb);
            int16x8_t z01 = vreinterpretq_s16_s8(vcombine_s8(vzip1_s8(r0, r1), vzip2_s8(r0, r1)));
            int16x8_t z23 = vreinterpretq_s16_s8(vcombine_s8(vzip1_s8(r2, r3), vzip2_s8(r2, r3)));
            vst1q_s8(dst, vreinterpretq_s8_s16(vzip1q_s16(z01, z23)));
            vst1q_s8(dst + 16, vreinterpretq_s8_s16(vzip2q_s16(z01, z23)));
        }
    }
    for (; g < kg; g++, b += 4 * (size_t)ldb, dst += 32) {
        memset(dst, 0, 32);
        for (int t = 0; t < 4 && g * 4 + t < kc; t++)
            for (int j = 0; j < nr; j++) dst[j * 4 + t] = b[(size_t)t * ldb + j];
    }
}

/* Four rows (half of the 8-row panel) x 8 columns. */
static void tile4_v80(int kg, const int8_t *ap, const int8_t *bp, int32_t *c, int ldc, int mr, int nr, int accumulate)
{
    int32x4_t c00 = vdupq_n_s32(0), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00,
              c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00, c33 = c00;
    for (int g = 0; g < kg; g++, ap += 32, bp += 32) {
        int8x16_t b0 = vld1q_s8(bp), b1 = vld1q_s8(bp + 16);
        int32x4_t av = vreinterpretq_s32_s8(vld1q_s8(ap));
        int8x8_t b0l = vget_low_s8(b0), b1l = vget_low_s8(b1);
#define ROW(R, A0, A1, A2, A3)                                       \
    {                                                                \
        int8x16_t ar = vreinterpretq_s8_s32(vdupq_laneq_s32(av, R)); \
        A0 = vpadalq_s16(A0, vmull_s8(vget_low_s8(ar), b0l));        \
        A1 = vpadalq_s16(A1, vmull_high_s8(ar, b0));                 \
        A2 = vpadalq_s16(A2, vmull_s8(vget_low_s8(ar), b1l));        \
        A3 = vpadalq_s16(A3, vmull_high_s8(ar, b1));                 \
    }
        ROW(0, c00, c01, c02, c03)
        ROW(1, c10, c11, c12, c13)
        ROW(2, c20, c21, c22, c23)
        ROW(3, c30, c31, c32, c33)
#undef ROW
    }
    /* lanes of cR0: [col0 k0+k1, col0 k2+k3, col1 k0+k1, col1 k2+k3]: pairwise sums give the columns */
    dfx_neon_store_row(c, vpaddq_s32(c00, c01), vpaddq_s32(c02, c03), nr, accumulate);
    if (mr > 1) dfx_neon_store_row(c + ldc, vpaddq_s32(c10, c11), vpaddq_s32(c12, c13), nr, accumulate);
    if (mr > 2) dfx_neon_store_row(c + 2 * (size_t)ldc, vpaddq_s32(c20, c21), vpaddq_s32(c22, c23), nr, accumulate);
    if (mr > 3) dfx_neon_store_row(c + 3 * (size_t)ldc, vpaddq_s32(c30, c31), vpaddq_s32(c32, c33), nr, accumulate);
}

/* One 8 x 8 tile: rows 0..3 sit in bytes 0..15 of every 32-byte group, rows 4..7 in bytes 16..31. */
void dfx_neon_tile_v80(int kg, const int8_t *ap, const int8_t *bp, int32_t *c, int ldc, int mr, int nr, int accumulate)
{
    tile4_v80(kg, ap, bp, c, ldc, imin(mr, 4), nr, accumulate);
    if (mr > 4) tile4_v80(kg, ap + 16, bp, c + 4 * (size_t)ldc, ldc, mr - 4, nr, accumulate);
}

/* Matrix times vector, 4 rows at a time, 16 k per step. */
void dfx_neon_gemv_v80(int m, int k, const int8_t *a, int lda, const int8_t *x, int32_t *c, int ldc, int accumulate)
{
    int i = 0;
    for (; i + 4 <= m; i += 4) {
        const int8_t *a0 = a + (size_t)i * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
        int32x4_t s0 = vdupq_n_s32(0), s1 = s0, s2 = s0, s3 = s0;
        int p = 0;
        for (; p + 16 <= k; p += 16) {
            int8x16_t xv = vld1q_s8(x + p), v0 = vld1q_s8(a0 + p), v1 = vld1q_s8(a1 + p), v2 = vld1q_s8(a2 + p),
                      v3 = vld1q_s8(a3 + p);
            int8x8_t xl = vget_low_s8(xv);
            s0 = vpadalq_s16(vpadalq_s16(s0, vmull_s8(vget_low_s8(v0), xl)), vmull_high_s8(v0, xv));
            s1 = vpadalq_s16(vpadalq_s16(s1, vmull_s8(vget_low_s8(v1), xl)), vmull_high_s8(v1, xv));
            s2 = vpadalq_s16(vpadalq_s16(s2, vmull_s8(vget_low_s8(v2), xl)), vmull_high_s8(v2, xv));
            s3 = vpadalq_s16(vpadalq_s16(s3, vmull_s8(vget_low_s8(v3), xl)), vmull_high_s8(v3, xv));
        }
        int32_t r0 = vaddvq_s32(s0), r1 = vaddvq_s32(s1), r2 = vaddvq_s32(s2), r3 = vaddvq_s32(s3);
        for (; p < k; p++) {
            r0 += a0[p] * x[p];
            r1 += a1[p] * x[p];
            r2 += a2[p] * x[p];
            r3 += a3[p] * x[p];
        }
        int32_t *cp = c + (size_t)i * ldc;
        if (accumulate) {
            r0 += cp[0];
            r1 += cp[ldc];
            r2 += cp[2 * (size_t)ldc];
            r3 += cp[3 * (size_t)ldc];
        }
        cp[0] = r0;
        cp[ldc] = r1;
        cp[2 * (size_t)ldc] = r2;
        cp[3 * (size_t)ldc] = r3;
    }
    for (; i < m; i++) {
        const int8_t *ar = a + (size_t)i * lda;
        int32x4_t s = vdupq_n_s32(0);
        int p = 0;
        for (; p + 16 <= k; p += 16) {
            int8x16_t xv = vld1q_s8(x + p), v = vld1q_s8(ar + p);
            s = vpadalq_s16(vpadalq_s16(s, vmull_s8(vget_low_s8(v), vget_low_s8(xv))), vmull_high_s8(v, xv));
        }
        int32_t r = vaddvq_s32(s);
        for (; p < k; p++) r += ar[p] * x[p];
        c[(size_t)i * ldc] = accumulate ? c[(size_t)i * ldc] + r : r;
    }
}

#define GEMV_CHUNK 4096

void dfx_neon_gemm_driver(int m, int n, int k, const int8_t *a, int lda, const int8_t *b, int ldb, int32_t *c, int ldc,
                          dfx_gemm_tile_fn tile, dfx_gemv_fn gemv)
{
    if (n == 1) {
        if (ldb == 1) {
            gemv(m, k, a, lda, b, c, ldc, 0);
            return;
        }
        int8_t xbuf[GEMV_CHUNK];
        for (int p0 = 0; p0 < k; p0 += GEMV_CHUNK) {
            int kc = imin(GEMV_CHUNK, k - p0);
            for (int p = 0; p < kc; p++) xbuf[p] = b[(size_t)(p0 + p) * ldb];
            gemv(m, kc, a + p0, lda, xbuf, c, ldc, p0 > 0);
        }
        return;
    }
    int8_t abuf[GEMM_MC * GEMM_KC] __attribute__((aligned(16)));
    int8_t bbuf[DFX_GEMM_NR * GEMM_KC] __attribute__((aligned(16)));
    for (int p0 = 0; p0 < k; p0 += GEMM_KC) {
        int kc = imin(GEMM_KC, k - p0), kg = (kc + 3) / 4;
        for (int i0 = 0; i0 < m; i0 += GEMM_MC) {
            int mc = imin(GEMM_MC, m - i0);
            pack_a(a + (size_t)i0 * lda + p0, lda, mc, kc, abuf);
            for (int j0 = 0; j0 < n; j0 += DFX_GEMM_NR) {
                int nr = imin(DFX_GEMM_NR, n - j0);
                pack_b(b + (size_t)p0 * ldb + j0, ldb, kc, nr, bbuf);
                for (int r0 = 0; r0 < mc; r0 += DFX_GEMM_MR)
                    tile(kg, abuf + (size_t)r0 * kg * 4, bbuf, c + (size_t)(i0 + r0) * ldc + j0, ldc,
                         imin(DFX_GEMM_MR, mc - r0), nr, p0 > 0);
            }
        }
    }
}

void dfx_neon_gemm_s8(int m, int n, int k, const int8_t *a, int lda, const int8_t *b, int ldb, int32_t *c, int ldc)
{ dfx_neon_gemm_driver(m, n, k, a, lda, b, ldb, c, ldc, dfx_neon_tile_v80, dfx_neon_gemv_v80); }

/* ---- ARMv8.0 GEMM with 16-deep k chunks: SMULL + SMLAL2 into int16, SADALP into int32.
 *
 * Two int8 x int8 products share an int16 lane before SADALP widens them:
 * |a*b + c*d| <= 127*128*2 = 32512 < 2^15 whenever the weights a, c differ
 * from -128 (activations may be -128). A weight -128 is packed as -127 and
 * its missing -1 * b is added afterwards from a list of (row, k) positions
 * (weights of -128 are rare: random 8-bit weights have one in 256); a block
 * with more than CORR_MAX of them goes through the 4-deep SMULL + SADALP
 * kernels above. 3 instructions per 16 multiply-adds. int32 sums wrap
 * modulo 2^32 and are exact by the dispatch contract. */
#define K16_KC 512 /* multiple of 16 */
#define K16_MC 64  /* multiple of 4 */
#define K16_NC 64  /* multiple of 4 */
#define CORR_MAX 512

static inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b)
{
    int16x8_t p = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    p = vmlal_high_s8(p, a, b);
    return vpadalq_s16(acc, p);
}

/* 4 x 4 tile over kq chunks; ap: [chunk][4 rows][16], bp: [chunk][4 cols][16]. */
static void tile4x4_k16(int kq, const int8_t *ap, const int8_t *bp, int32_t *c, int ldc, int mr, int nr, int acc)
{
    int32x4_t c00 = vdupq_n_s32(0), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00,
              c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00, c33 = c00;
    for (int q = 0; q < kq; q++, ap += 64, bp += 64) {
        int8x16_t b0 = vld1q_s8(bp), b1 = vld1q_s8(bp + 16), b2 = vld1q_s8(bp + 32), b3 = vld1q_s8(bp + 48);
        int8x16_t a = vld1q_s8(ap);
        c00 = dot16(c00, a, b0);
        c01 = dot16(c01, a, b1);
        c02 = dot16(c02, a, b2);
        c03 = dot16(c03, a, b3);
        a = vld1q_s8(ap + 16);
        c10 = dot16(c10, a, b0);
        c11 = dot16(c11, a, b1);
        c12 = dot16(c12, a, b2);
        c13 = dot16(c13, a, b3);
        a = vld1q_s8(ap + 32);
        c20 = dot16(c20, a, b0);
        c21 = dot16(c21, a, b1);
        c22 = dot16(c22, a, b2);
        c23 = dot16(c23, a, b3);
        a = vld1q_s8(ap + 48);
        c30 = dot16(c30, a, b0);
        c31 = dot16(c31, a, b1);
        c32 = dot16(c32, a, b2);
        c33 = dot16(c33, a, b3);
    }
    int32x4_t r[4];
    r[0] = vpaddq_s32(vpaddq_s32(c00, c01), vpaddq_s32(c02, c03));
    r[1] = vpaddq_s32(vpaddq_s32(c10, c11), vpaddq_s32(c12, c13));
    r[2] = vpaddq_s32(vpaddq_s32(c20, c21), vpaddq_s32(c22, c23));
    r[3] = vpaddq_s32(vpaddq_s32(c30, c31), vpaddq_s32(c32, c33));
    for (int i = 0; i < mr; i++) {
        int32_t *cr = c + (size_t)i * ldc;
        if (nr == 4) {
            vst1q_s32(cr, acc ? vaddq_s32(r[i], vld1q_s32(cr)) : r[i]);
        } else {
            int32_t t[4];
            vst1q_s32(t, r[i]);
            for (int j = 0; j < nr; j++) cr[j] = acc ? (int32_t)((uint32_t)cr[j] + (uint32_t)t[j]) : t[j];
        }
    }
}

/* A rows [0, mc) x k [0, kc) -> 4-row panels of 16-byte chunks, -128 -> -127 with the position listed.
 * Returns the number of listed positions, or -1 when more than CORR_MAX. */
static int pack_a16(const int8_t *a, int lda, int mc, int kc, int8_t *dst, uint16_t (*corr)[2])
{
    int kq = (kc + 15) / 16, nc = 0;
    int8x16_t m128 = vdupq_n_s8(-128), one = vdupq_n_s8(1);
    for (int r0 = 0; r0 < mc; r0 += 4)
        for (int r = 0; r < 4; r++) {
            int8_t *d = dst + (size_t)r0 * kq * 16 + r * 16;
            if (r0 + r >= mc) {
                for (int q = 0; q < kq; q++) vst1q_s8(d + q * 64, vdupq_n_s8(0));
                continue;
            }
            const int8_t *s = a + (size_t)(r0 + r) * lda;
            for (int q = 0; q < kq; q++) {
                int8x16_t v;
                if (q * 16 + 16 <= kc) v = vld1q_s8(s + q * 16);
                else {
                    int8_t t[16] = {0};
                    memcpy(t, s + q * 16, (size_t)(kc - q * 16));
                    v = vld1q_s8(t);
                }
                uint8x16_t eq = vceqq_s8(v, m128);
                if (vmaxvq_u8(eq)) {
                    uint8_t e[16];
                    vst1q_u8(e, eq);
                    for (int t = 0; t < 16; t++)
                        if (e[t]) {
                            if (nc == CORR_MAX) return -1;
                            corr[nc][0] = (uint16_t)(r0 + r);
                            corr[nc][1] = (uint16_t)(q * 16 + t);
                            nc++;
                        }
                    v = vaddq_s8(v, vandq_s8(vreinterpretq_s8_u8(eq), one));
                }
                vst1q_s8(d + q * 64, v);
            }
        }
    return nc;
}

/* B rows [0, kc) x columns [0, nc) -> 4-column panels of 16-byte chunks (zero padded). */
static void pack_b16(const int8_t *b, int ldb, int kc, int nc, int8_t *dst)
{
    int kq = (kc + 15) / 16;
    for (int j0 = 0; j0 < nc; j0 += 4) {
        int8_t *panel = dst + (size_t)j0 * kq * 16;
        for (int j = 0; j < 4; j++) {
            int8_t *d = panel + j * 16;
            if (j0 + j >= nc) {
                for (int q = 0; q < kq; q++) memset(d + q * 64, 0, 16);
                continue;
            }
            const int8_t *s = b + j0 + j;
            int p = 0;
            for (int q = 0; q < kq; q++)
                for (int t = 0; t < 16; t++, p++) d[q * 64 + t] = p < kc ? s[(size_t)p * ldb] : 0;
        }
    }
}

void dfx_neon_gemm_s8_k16(int m, int n, int k, const int8_t *a, int lda, const int8_t *b, int ldb, int32_t *c, int ldc)
{
    if (n < 4) {
        dfx_neon_gemm_driver(m, n, k, a, lda, b, ldb, c, ldc, dfx_neon_tile_v80, dfx_neon_gemv_v80);
        return;
    }
    int8_t abuf[K16_MC * K16_KC] __attribute__((aligned(16)));
    int8_t bbuf[K16_NC * K16_KC] __attribute__((aligned(16)));
    uint16_t corr[CORR_MAX][2];
    for (int k0 = 0; k0 < k; k0 += K16_KC) {
        int kc = imin(K16_KC, k - k0), kq = (kc + 15) / 16;
        for (int j0 = 0; j0 < n; j0 += K16_NC) {
            int nc = imin(K16_NC, n - j0);
            pack_b16(b + (size_t)k0 * ldb + j0, ldb, kc, nc, bbuf);
            for (int i0 = 0; i0 < m; i0 += K16_MC) {
                int mc = imin(K16_MC, m - i0);
                int32_t *cb = c + (size_t)i0 * ldc + j0;
                int ncorr = pack_a16(a + (size_t)i0 * lda + k0, lda, mc, kc, abuf, corr);
                if (ncorr < 0) { /* many -128 weights: this block with the 4-deep kernels */
                    int32_t tmp[K16_MC * K16_NC];
                    dfx_neon_gemm_driver(mc, nc, kc, a + (size_t)i0 * lda + k0, lda, b + (size_t)k0 * ldb + j0, ldb,
                                         tmp, nc, dfx_neon_tile_v80, dfx_neon_gemv_v80);
                    for (int i = 0; i < mc; i++)
                        for (int j = 0; j < nc; j++)
                            cb[(size_t)i * ldc + j] =
                                k0 ? (int32_t)((uint32_t)cb[(size_t)i * ldc + j] + (uint32_t)tmp[i * nc + j])
                                   : tmp[i * nc + j];
                    continue;
                }
                for (int r0 = 0; r0 < mc; r0 += 4)
                    for (int q0 = 0; q0 < nc; q0 += 4)
                        tile4x4_k16(kq, abuf + (size_t)r0 * kq * 16, bbuf + (size_t)q0 * kq * 16,
                                    cb + (size_t)r0 * ldc + q0, ldc, imin(4, mc - r0), imin(4, nc - q0), k0 > 0);
                for (int t = 0; t < ncorr; t++) { /* the -1 * b of each weight -128 */
                    int32_t *cr = cb + (size_t)corr[t][0] * ldc;
                    const int8_t *br = b + (size_t)(k0 + corr[t][1]) * ldb + j0;
                    int j = 0;
                    for (; j + 8 <= nc; j += 8) {
                        int16x8_t v = vmovl_s8(vld1_s8(br + j));
                        vst1q_s32(cr + j, vsubw_s16(vld1q_s32(cr + j), vget_low_s16(v)));
                        vst1q_s32(cr + j + 4, vsubw_high_s16(vld1q_s32(cr + j + 4), v));
                    }
                    for (; j < nc; j++) cr[j] = (int32_t)((uint32_t)cr[j] - (uint32_t)(int32_t)br[j]);
                }
            }
        }
    }
}

/* ---- Packed weights (dispatch.h packed_a_bytes / pack_a / gemm_s8_packed), ARMv8.0.
 *
 * A is packed once per session into 4-row panels of 16-deep k chunks
 * ([panel][chunk][4 rows][16 k], zero padded), the layout of tile4x4_k16.
 * Per call, B is packed per block of PK_KC x PK_NC into 4-column panels of the
 * same chunks by 16 x 16 byte transposes, once for all rows of A. When B is
 * never negative (b_nonneg), two products share an int16 lane exactly
 * (|a*b + c*d| <= 128 * 127 * 2 = 32512): SMULL + SMLAL2 + SADALP, 3
 * instructions per 16 multiply-adds. Otherwise -128 * -128 twice would not
 * fit, and the kernel widens every product on its own (SMULL, SMULL2, two
 * SADALP), exact for all int8 values. */
#define PK_KC 1024 /* multiple of 16 */
#define PK_NC 32   /* multiple of 16 */

size_t dfx_neon_packed_a_bytes(int m, int k, int b_nonneg)
{
    (void)b_nonneg;
    return (size_t)((m + 3) / 4) * 4 * (size_t)((k + 15) / 16) * 16;
}

void dfx_neon_pack_panels(int m, int k, const int8_t *a, int lda, int8_t *dst, int rows, int depth)
{
    int groups = (k + depth - 1) / depth;
    for (int r0 = 0; r0 < m; r0 += rows)
        for (int g = 0; g < groups; g++)
            for (int r = 0; r < rows; r++, dst += depth) {
                int n = r0 + r >= m ? 0 : k - g * depth < depth ? k - g * depth : depth;
                const int8_t *src = a + (size_t)(r0 + r) * lda + (size_t)g * depth;
                if (n == 4 && depth == 4) memcpy(dst, src, 4); /* whole groups: fixed sizes, inline moves */
                else if (n == 16 && depth == 16) memcpy(dst, src, 16);
                else {
                    memset(dst, 0, (size_t)depth);
                    if (n) memcpy(dst, src, (size_t)n);
                }
            }
}

void dfx_neon_pack_a(int m, int k, const int8_t *a, int lda, void *dst, int b_nonneg)
{
    (void)b_nonneg;
    dfx_neon_pack_panels(m, k, a, lda, (int8_t *)dst, 4, 16);
}

static inline void trn8(int8x16_t *x, int i, int j)
{
    int8x16_t t = vtrn1q_s8(x[i], x[j]);
    x[j] = vtrn2q_s8(x[i], x[j]);
    x[i] = t;
}

static inline void trn16(int8x16_t *x, int i, int j)
{
    int16x8_t a = vreinterpretq_s16_s8(x[i]), b = vreinterpretq_s16_s8(x[j]);
    x[i] = vreinterpretq_s8_s16(vtrn1q_s16(a, b));
    x[j] = vreinterpretq_s8_s16(vtrn2q_s16(a, b));
}

static inline void trn32(int8x16_t *x, int i, int j)
{
    int32x4_t a = vreinterpretq_s32_s8(x[i]), b = vreinterpretq_s32_s8(x[j]);
    x[i] = vreinterpretq_s8_s32(vtrn1q_s32(a, b));
    x[j] = vreinterpretq_s8_s32(vtrn2q_s32(a, b));
}

static inline void trn64(int8x16_t *x, int i, int j)
{
    int64x2_t a = vreinterpretq_s64_s8(x[i]), b = vreinterpretq_s64_s8(x[j]);
    x[i] = vreinterpretq_s8_s64(vtrn1q_s64(a, b));
    x[j] = vreinterpretq_s8_s64(vtrn2q_s64(a, b));
}

/* x[r] = row r of a 16 x 16 byte block -> x[c] = column c. */
static inline void transpose16(int8x16_t *x)
{
    for (int i = 0; i < 16; i += 2) trn8(x, i, i + 1);
    for (int i = 0; i < 16; i += 4) {
        trn16(x, i, i + 2);
        trn16(x, i + 1, i + 3);
    }
    for (int i = 0; i < 16; i += 8)
        for (int t = 0; t < 4; t++) trn32(x, i + t, i + t + 4);
    for (int t = 0; t < 8; t++) trn64(x, t, t + 8);
}

/* B rows [0, kc) x columns [0, nc) (row stride ldb) -> 4-column panels of kq chunks ([chunk][4 cols][16 k]). */
static void pack_b_k16(const int8_t *b, int ldb, int kc, int nc, int8_t *dst)
{
    int kq = (kc + 15) / 16, j0 = 0;
    size_t panel = (size_t)kq * 64;
    for (; j0 + 16 <= nc; j0 += 16)
        for (int q = 0; q < kq; q++) {
            int8x16_t x[16];
            int rows = kc - q * 16 < 16 ? kc - q * 16 : 16;
            for (int t = 0; t < 16; t++)
                x[t] = t < rows ? vld1q_s8(b + (size_t)(q * 16 + t) * ldb + j0) : vdupq_n_s8(0);
            transpose16(x);
            for (int c = 0; c < 16; c++) vst1q_s8(dst + (size_t)((j0 + c) / 4) * panel + q * 64 + (c & 3) * 16, x[c]);
        }
    for (; j0 < nc; j0++) { /* the last columns one by one, then zero columns up to the panel */
        int8_t *d = dst + (size_t)(j0 / 4) * panel + (j0 & 3) * 16;
        for (int q = 0; q < kq; q++)
            for (int t = 0; t < 16; t++) d[q * 64 + t] = q * 16 + t < kc ? b[(size_t)(q * 16 + t) * ldb + j0] : 0;
    }
    for (; j0 & 3; j0++) {
        int8_t *d = dst + (size_t)(j0 / 4) * panel + (j0 & 3) * 16;
        for (int q = 0; q < kq; q++) memset(d + q * 64, 0, 16);
    }
}

/* 4 x 4 tile of C over kq >= 1 chunks of a packed A panel (ap) and B panel (bp), in assembly: the
 * intrinsics version spills accumulators. v16..v31 hold the tile (row R, column J in v(16 + 4R + J)), v0..v3
 * the A chunk, v4..v7 the B chunk, v8..v15 the int16 products; two chunks per loop iteration. A full tile
 * that overwrites C is stored straight into C, others through r. */
// clang-format off
#define K16_LOAD "ld1 {v0.16b-v3.16b}, [%[a]], #64\n\tld1 {v4.16b-v7.16b}, [%[b]], #64\n\t"
/* OP of row R's products into temporaries T..T+3 (columns 0..3) */
#define K16_OP4(OP, R, HALF, T0, T1, T2, T3) \
    OP " v" #T0 ".8h, v" #R "." HALF ", v4." HALF "\n\t" \
    OP " v" #T1 ".8h, v" #R "." HALF ", v5." HALF "\n\t" \
    OP " v" #T2 ".8h, v" #R "." HALF ", v6." HALF "\n\t" \
    OP " v" #T3 ".8h, v" #R "." HALF ", v7." HALF "\n\t"
#define K16_ACC4(A0, A1, A2, A3, T0, T1, T2, T3) \
    "sadalp v" #A0 ".4s, v" #T0 ".8h\n\t" \
    "sadalp v" #A1 ".4s, v" #T1 ".8h\n\t" \
    "sadalp v" #A2 ".4s, v" #T2 ".8h\n\t" \
    "sadalp v" #A3 ".4s, v" #T3 ".8h\n\t"
/* b_nonneg: SMULL + SMLAL2 share the int16 lane; otherwise SMULL, SADALP, SMULL2, SADALP */
#define K16_ROW_NN(R, A0, A1, A2, A3, T0, T1, T2, T3) \
    K16_OP4("smull", R, "8b", T0, T1, T2, T3) \
    K16_OP4("smlal2", R, "16b", T0, T1, T2, T3) \
    K16_ACC4(A0, A1, A2, A3, T0, T1, T2, T3)
#define K16_ROW_EX(R, A0, A1, A2, A3, T0, T1, T2, T3) \
    K16_OP4("smull", R, "8b", T0, T1, T2, T3) \
    K16_ACC4(A0, A1, A2, A3, T0, T1, T2, T3) \
    K16_OP4("smull2", R, "16b", T0, T1, T2, T3) \
    K16_ACC4(A0, A1, A2, A3, T0, T1, T2, T3)
#define K16_CHUNK(ROW) \
    K16_LOAD \
    ROW(0, 16, 17, 18, 19, 8, 9, 10, 11) ROW(1, 20, 21, 22, 23, 12, 13, 14, 15) \
    ROW(2, 24, 25, 26, 27, 8, 9, 10, 11) ROW(3, 28, 29, 30, 31, 12, 13, 14, 15)
/* the whole tile: zero, an odd chunk, pairs of chunks, row sums (v0..v3), four row stores */
#define K16_TILE(ROW) \
    DFX_NEON_ZERO_V16_V31 \
    "tbz %w[n], #0, 2f\n\t" \
    K16_CHUNK(ROW) \
    "subs %w[n], %w[n], #1\n\t" \
    "b.eq 3f\n\t" \
    "2:\n\t" \
    K16_CHUNK(ROW) \
    K16_CHUNK(ROW) \
    "subs %w[n], %w[n], #2\n\t" \
    "b.ne 2b\n\t" \
    "3:\n\t" \
    "addp v16.4s, v16.4s, v17.4s\n\taddp v18.4s, v18.4s, v19.4s\n\taddp v0.4s, v16.4s, v18.4s\n\t" \
    "addp v20.4s, v20.4s, v21.4s\n\taddp v22.4s, v22.4s, v23.4s\n\taddp v1.4s, v20.4s, v22.4s\n\t" \
    "addp v24.4s, v24.4s, v25.4s\n\taddp v26.4s, v26.4s, v27.4s\n\taddp v2.4s, v24.4s, v26.4s\n\t" \
    "addp v28.4s, v28.4s, v29.4s\n\taddp v30.4s, v30.4s, v31.4s\n\taddp v3.4s, v28.4s, v30.4s\n\t" \
    "st1 {v0.4s}, [%[r]], %[rs]\n\tst1 {v1.4s}, [%[r]], %[rs]\n\t" \
    "st1 {v2.4s}, [%[r]], %[rs]\n\tst1 {v3.4s}, [%[r]], %[rs]\n\t"
#define K16_OPERANDS \
    : [a] "+r"(ap), [b] "+r"(bp), [n] "+r"(kq), [r] "+r"(out) \
    : [rs] "r"(rs) \
    : "cc", "memory", "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12", "v13", \
      "v14", "v15", "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v23", "v24", "v25", "v26", "v27", "v28", \
      "v29", "v30", "v31"
// clang-format on

static inline void tile4x4_packed(int kq, const int8_t *ap, const int8_t *bp, int32_t *c, int ldc, int mr, int nr,
                                  int acc, int nonneg)
{
    int32_t r[16] __attribute__((aligned(16)));
    int direct = mr == 4 && nr == 4 && !acc;
    int32_t *out = direct ? c : r;
    size_t rs = direct ? (size_t)ldc * 4 : 16;
    if (nonneg) __asm__ volatile(K16_TILE(K16_ROW_NN) K16_OPERANDS);
    else __asm__ volatile(K16_TILE(K16_ROW_EX) K16_OPERANDS);
    if (direct) return;
    for (int i = 0; i < mr; i++) {
        int32_t *cr = c + (size_t)i * ldc;
        int32x4_t v = vld1q_s32(r + 4 * i);
        if (nr == 4) {
            vst1q_s32(cr, acc ? vaddq_s32(v, vld1q_s32(cr)) : v);
        } else {
            for (int j = 0; j < nr; j++)
                cr[j] = acc ? (int32_t)((uint32_t)cr[j] + (uint32_t)r[4 * i + j]) : r[4 * i + j];
        }
    }
}

static void run_packed_k16(int m, int n, int k, const void *ap, const int8_t *b, int ldb, int32_t *c, int ldc,
                           int nonneg)
{
    int8_t bbuf[PK_NC * PK_KC] __attribute__((aligned(16)));
    int kqa = (k + 15) / 16; /* chunks of a packed A panel */
    const int8_t *A = (const int8_t *)ap;
    for (int k0 = 0; k0 < k; k0 += PK_KC) {
        int kc = imin(PK_KC, k - k0), kq = (kc + 15) / 16;
        for (int j0 = 0; j0 < n; j0 += PK_NC) {
            int nc = imin(PK_NC, n - j0);
            pack_b_k16(b + (size_t)k0 * ldb + j0, ldb, kc, nc, bbuf);
            for (int i0 = 0; i0 < m; i0 += 4) {
                const int8_t *pa = A + (size_t)(i0 / 4) * kqa * 64 + (size_t)(k0 / 16) * 64;
                for (int q0 = 0; q0 < nc; q0 += 4)
                    tile4x4_packed(kq, pa, bbuf + (size_t)q0 * kq * 16, c + (size_t)i0 * ldc + j0 + q0, ldc,
                                   imin(4, m - i0), imin(4, nc - q0), k0 > 0, nonneg);
            }
        }
    }
}

void dfx_neon_gemm_s8_packed(int m, int n, int k, const void *ap, const int8_t *b, int ldb, int32_t *c, int ldc,
                             int b_nonneg)
{
    if (b_nonneg) run_packed_k16(m, n, k, ap, b, ldb, c, ldc, 1);
    else run_packed_k16(m, n, k, ap, b, ldb, c, ldc, 0);
}

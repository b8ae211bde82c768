/* int8 GEMM for ARMv7 NEON (neon32.h): C(m x n) = A(m x k) * B(k x n), int32.
 *
 * A is packed into 4-row panels: a 16-byte header (byte 0: 1 when a row of
 * the panel holds the code -128), then [chunk][4 rows][16 k] (zero padded).
 * B is packed per call into 8-column panels, [chunk][8 columns][16 k], with
 * VTRN transposes. The 4 x 2 micro-kernel holds 8 int32x4 accumulators, the
 * 4 rows and the 2 columns of a chunk in the 16 q registers and forms
 * VMULL.S8 + VMLAL.S8 + VPADAL.S16: each int16 lane sums two products, which
 * is exact unless both A and B hold -128 (|a*b + c*d| <= 2 * 127 * 128 <
 * 2^15 otherwise); a panel of A with -128 against a block of B with -128
 * takes VMULL.S8 + VPADAL.S16 per 8 products instead. int32 sums are exact by
 * the dispatch contract. */
#include <arm_neon.h>
#include <string.h>

#include "neon32.h"

#define MR 4
#define NR 8
#define HEADER 16
#define KCQ 64 /* 16-deep chunks of k per pass: B panel of 8 KB on the stack */
#define MC 32  /* rows of A packed per block by the unpacked entry point */

static int imin(int a, int b) { return a < b ? a : b; }

static size_t panel_bytes(int k) { return HEADER + (size_t)((k + 15) / 16) * 16 * MR; }

size_t dfx_neon32_packed_a_bytes(int m, int k, int b_nonneg)
{
    (void)b_nonneg; /* B >= 0 is seen by the packing of B itself */
    return (size_t)((m + MR - 1) / MR) * panel_bytes(k);
}

void dfx_neon32_pack_a(int m, int k, const int8_t *a, int lda, void *dst, int b_nonneg)
{
    (void)b_nonneg;
    int kq = (k + 15) / 16;
    size_t pb = panel_bytes(k);
    for (int i0 = 0; i0 < m; i0 += MR) {
        int8_t *panel = (int8_t *)dst + (size_t)(i0 / MR) * pb, *body = panel + HEADER;
        int8x16_t lo = vdupq_n_s8(0);
        memset(panel, 0, HEADER);
        for (int r = 0; r < MR; r++) {
            int8_t *d = body + r * 16;
            if (i0 + r >= m) {
                for (int q = 0; q < kq; q++) vst1q_s8(d + q * 64, vdupq_n_s8(0));
                continue;
            }
            const int8_t *s = a + (size_t)(i0 + r) * lda;
            for (int q = 0; q < kq; q++) {
                int8x16_t v;
                if (q * 16 + 16 <= k) v = vld1q_s8(s + q * 16);
                else {
                    int8_t t[16] = {0};
                    memcpy(t, s + q * 16, (size_t)(k - q * 16));
                    v = vld1q_s8(t);
                }
                lo = vminq_s8(lo, v);
                vst1q_s8(d + q * 64, v);
            }
        }
        int8x8_t m8 = vpmin_s8(vget_low_s8(lo), vget_high_s8(lo));
        m8 = vpmin_s8(m8, m8);
        m8 = vpmin_s8(m8, m8);
        m8 = vpmin_s8(m8, m8);
        panel[0] = vget_lane_s8(m8, 0) == -128;
    }
}

/* Rows [0, krows) x columns [0, nr) of B (row stride ldb) -> one 8-column panel of qn chunks (zero
 * padded). Returns 1 when no packed value is -128. */
static int pack_b(const int8_t *b, int ldb, int krows, int nr, int qn, int8_t *dst)
{
    int8x16_t lo = vdupq_n_s8(0);
    int q = 0, any = 0;
    if (nr == NR)
        for (; q * 16 + 16 <= krows; q++, dst += 16 * NR) {
            const int8_t *s = b + (size_t)q * 16 * ldb;
            size_t l8 = (size_t)8 * ldb;
            /* row t of the chunk and row t + 8 side by side; after the transposes, register j is column j */
            int8x16_t r0 = vcombine_s8(vld1_s8(s), vld1_s8(s + l8));
            int8x16_t r1 = vcombine_s8(vld1_s8(s + ldb), vld1_s8(s + ldb + l8));
            int8x16_t r2 = vcombine_s8(vld1_s8(s + 2 * (size_t)ldb), vld1_s8(s + 2 * (size_t)ldb + l8));
            int8x16_t r3 = vcombine_s8(vld1_s8(s + 3 * (size_t)ldb), vld1_s8(s + 3 * (size_t)ldb + l8));
            int8x16_t r4 = vcombine_s8(vld1_s8(s + 4 * (size_t)ldb), vld1_s8(s + 4 * (size_t)ldb + l8));
            int8x16_t r5 = vcombine_s8(vld1_s8(s + 5 * (size_t)ldb), vld1_s8(s + 5 * (size_t)ldb + l8));
            int8x16_t r6 = vcombine_s8(vld1_s8(s + 6 * (size_t)ldb), vld1_s8(s + 6 * (size_t)ldb + l8));
            int8x16_t r7 = vcombine_s8(vld1_s8(s + 7 * (size_t)ldb), vld1_s8(s + 7 * (size_t)ldb + l8));
            int8x16x2_t t01 = vtrnq_s8(r0, r1), t23 = vtrnq_s8(r2, r3), t45 = vtrnq_s8(r4, r5), t67 = vtrnq_s8(r6, r7);
            int16x8x2_t u02 = vtrnq_s16(vreinterpretq_s16_s8(t01.val[0]), vreinterpretq_s16_s8(t23.val[0]));
            int16x8x2_t u13 = vtrnq_s16(vreinterpretq_s16_s8(t01.val[1]), vreinterpretq_s16_s8(t23.val[1]));
            int16x8x2_t u46 = vtrnq_s16(vreinterpretq_s16_s8(t45.val[0]), vreinterpretq_s16_s8(t67.val[0]));
            int16x8x2_t u57 = vtrnq_s16(vreinterpretq_s16_s8(t45.val[1]), vreinterpretq_s16_s8(t67.val[1]));
            int32x4x2_t v04 = vtrnq_s32(vreinterpretq_s32_s16(u02.val[0]), vreinterpretq_s32_s16(u46.val[0]));
            int32x4x2_t v15 = vtrnq_s32(vreinterpretq_s32_s16(u13.val[0]), vreinterpretq_s32_s16(u57.val[0]));
            int32x4x2_t v26 = vtrnq_s32(vreinterpretq_s32_s16(u02.val[1]), vreinterpretq_s32_s16(u46.val[1]));
            int32x4x2_t v37 = vtrnq_s32(vreinterpretq_s32_s16(u13.val[1]), vreinterpretq_s32_s16(u57.val[1]));
            int8x16_t c0 = vreinterpretq_s8_s32(v04.val[0]), c4 = vreinterpretq_s8_s32(v04.val[1]);
            int8x16_t c1 = vreinterpretq_s8_s32(v15.val[0]), c5 = vreinterpretq_s8_s32(v15.val[1]);
            int8x16_t c2 = vreinterpretq_s8_s32(v26.val[0]), c6 = vreinterpretq_s8_s32(v26.val[1]);
            int8x16_t c3 = vreinterpretq_s8_s32(v37.val[0]), c7 = vreinterpretq_s8_s32(v37.val[1]);
            lo = vminq_s8(lo, vminq_s8(vminq_s8(vminq_s8(c0, c1), vminq_s8(c2, c3)),
                                       vminq_s8(vminq_s8(c4, c5), vminq_s8(c6, c7))));
            vst1q_s8(dst, c0);
            vst1q_s8(dst + 16, c1);
            vst1q_s8(dst + 32, c2);
            vst1q_s8(dst + 48, c3);
            vst1q_s8(dst + 64, c4);
            vst1q_s8(dst + 80, c5);
            vst1q_s8(dst + 96, c6);
            vst1q_s8(dst + 112, c7);
        }
    for (; q < qn; q++, dst += 16 * NR) {
        memset(dst, 0, 16 * NR);
        for (int t = 0; t < 16 && q * 16 + t < krows; t++) {
            const int8_t *s = b + (size_t)(q * 16 + t) * ldb;
            for (int j = 0; j < nr; j++) {
                dst[j * 16 + t] = s[j];
                any |= s[j] == -128;
            }
        }
    }
    int8x8_t m8 = vpmin_s8(vget_low_s8(lo), vget_high_s8(lo));
    m8 = vpmin_s8(m8, m8);
    m8 = vpmin_s8(m8, m8);
    m8 = vpmin_s8(m8, m8);
    return !any && vget_lane_s8(m8, 0) != -128;
}

/* acc += two products per int16 lane (exact unless a and b both hold -128) */
static inline int32x4_t dot_pairs(int32x4_t acc, int8x16_t a, int8x16_t b)
{
    int16x8_t p = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    p = vmlal_s8(p, vget_high_s8(a), vget_high_s8(b));
    return vpadalq_s16(acc, p);
}

/* acc += one product per int16 lane (always exact) */
static inline int32x4_t dot_single(int32x4_t acc, int8x16_t a, int8x16_t b)
{
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_s8(vget_high_s8(a), vget_high_s8(b)));
}

/* c[0..nr) (nr <= 2) = (accumulate ? c : 0) + the sums of the lanes of x (column 0) and y (column 1) */
static inline void store2(int32_t *c, int32x4_t x, int32x4_t y, int nr, int accumulate)
{
    int32x2_t s = vpadd_s32(vpadd_s32(vget_low_s32(x), vget_high_s32(x)), vpadd_s32(vget_low_s32(y), vget_high_s32(y)));
    if (nr == 2) {
        if (accumulate) s = vadd_s32(s, vld1_s32(c));
        vst1_s32(c, s);
    } else {
        c[0] = accumulate ? c[0] + vget_lane_s32(s, 0) : vget_lane_s32(s, 0);
    }
}

/* 4 rows x 2 columns of C over qn chunks; ap: [chunk][4 rows][16], bp: columns j, j + 1 of an 8-column panel */
static void tile_single(int qn, const int8_t *ap, const int8_t *bp, int32_t *c, int ldc, int mr, int nr, int accumulate)
{
    int32x4_t c00 = vdupq_n_s32(0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    for (int q = 0; q < qn; q++, ap += 16 * MR, bp += 16 * NR) {
        int8x16_t b0 = vld1q_s8(bp), b1 = vld1q_s8(bp + 16);
        int8x16_t a0 = vld1q_s8(ap), a1 = vld1q_s8(ap + 16), a2 = vld1q_s8(ap + 32), a3 = vld1q_s8(ap + 48);
        c00 = dot_single(c00, a0, b0);
        c01 = dot_single(c01, a0, b1);
        c10 = dot_single(c10, a1, b0);
        c11 = dot_single(c11, a1, b1);
        c20 = dot_single(c20, a2, b0);
        c21 = dot_single(c21, a2, b1);
        c30 = dot_single(c30, a3, b0);
        c31 = dot_single(c31, a3, b1);
    }
    store2(c, c00, c01, nr, accumulate);
    if (mr > 1) store2(c + ldc, c10, c11, nr, accumulate);
    if (mr > 2) store2(c + 2 * (size_t)ldc, c20, c21, nr, accumulate);
    if (mr > 3) store2(c + 3 * (size_t)ldc, c30, c31, nr, accumulate);
}

/* 4 rows x 2 columns with two products per int16 lane, in assembly so that the 8 accumulators (q0-q7), the
 * two columns (q8, q9), the four rows (q10-q13) and two products (q14, q15) stay in registers: 3 loads and
 * 24 arithmetic instructions per chunk (128 multiply-adds); the first chunk starts the sums (VPADDL), the
 * loop runs two chunks per turn. The sums of the 4 rows go to c, c + ldc, ... (2 columns each; added to
 * them when accumulate). */
#define CHUNK(OP)                                                               \
    "vld1.8 {d16-d19}, [%[b]], %[bstep]\n\t"                                    \
    "vld1.8 {d20-d23}, [%[a]]!\n\t"                                             \
    "vmull.s8 q14, d20, d16\n\t"                                                \
    "vmull.s8 q15, d20, d18\n\t"                                                \
    "vmlal.s8 q14, d21, d17\n\t"                                                \
    "vmlal.s8 q15, d21, d19\n\t"                                                \
    "vld1.8 {d24-d27}, [%[a]]!\n\t" OP ".s16 q0, q14\n\t" OP ".s16 q1, q15\n\t" \
    "vmull.s8 q14, d22, d16\n\t"                                                \
    "vmull.s8 q15, d22, d18\n\t"                                                \
    "vmlal.s8 q14, d23, d17\n\t"                                                \
    "vmlal.s8 q15, d23, d19\n\t" OP ".s16 q2, q14\n\t" OP ".s16 q3, q15\n\t"    \
    "vmull.s8 q14, d24, d16\n\t"                                                \
    "vmull.s8 q15, d24, d18\n\t"                                                \
    "vmlal.s8 q14, d25, d17\n\t"                                                \
    "vmlal.s8 q15, d25, d19\n\t" OP ".s16 q4, q14\n\t" OP ".s16 q5, q15\n\t"    \
    "vmull.s8 q14, d26, d16\n\t"                                                \
    "vmull.s8 q15, d26, d18\n\t"                                                \
    "vmlal.s8 q14, d27, d17\n\t"                                                \
    "vmlal.s8 q15, d27, d19\n\t" OP ".s16 q6, q14\n\t" OP ".s16 q7, q15\n\t"

static inline void pairs_4x2(int qn, const int8_t *ap, const int8_t *bp, int32_t *c, int ldc, int accumulate)
{
    const int bstep = 16 * NR, ldcb = ldc * 4;
    int32_t *cl = c;
    __asm__ volatile(CHUNK("vpaddl") "subs %[n], %[n], #1\n\t"
                                     "beq 2f\n\t"
                                     "tst %[n], #1\n\t"
                                     "beq 1f\n\t" CHUNK(
                                         "vpadal") "subs %[n], %[n], #1\n\t"
                                                   "beq 2f\n\t"
                                                   "1:\n\t" CHUNK("vpadal")
                                                       CHUNK("vpadal") "subs %[n], %[n], #2\n\t"
                                                                       "bne 1b\n\t"
                                                                       "2:\n\t"
                                                                       /* row r: [sum of c_r0, sum of c_r1] in d0..d3 */
                                                                       "vpadd.i32 d0, d0, d1\n\t"
                                                                       "vpadd.i32 d1, d2, d3\n\t"
                                                                       "vpadd.i32 d0, d0, d1\n\t"
                                                                       "vpadd.i32 d4, d4, d5\n\t"
                                                                       "vpadd.i32 d5, d6, d7\n\t"
                                                                       "vpadd.i32 d1, d4, d5\n\t"
                                                                       "vpadd.i32 d8, d8, d9\n\t"
                                                                       "vpadd.i32 d9, d10, d11\n\t"
                                                                       "vpadd.i32 d2, d8, d9\n\t"
                                                                       "vpadd.i32 d12, d12, d13\n\t"
                                                                       "vpadd.i32 d13, d14, d15\n\t"
                                                                       "vpadd.i32 d3, d12, d13\n\t"
                                                                       "cmp %[acc], #0\n\t"
                                                                       "beq 3f\n\t"
                                                                       "vld1.32 {d4}, [%[cl]], %[ldcb]\n\t"
                                                                       "vld1.32 {d5}, [%[cl]], %[ldcb]\n\t"
                                                                       "vld1.32 {d6}, [%[cl]], %[ldcb]\n\t"
                                                                       "vld1.32 {d7}, [%[cl]]\n\t"
                                                                       "vadd.i32 q0, q0, q2\n\t"
                                                                       "vadd.i32 q1, q1, q3\n\t"
                                                                       "3:\n\t"
                                                                       "vst1.32 {d0}, [%[c]], %[ldcb]\n\t"
                                                                       "vst1.32 {d1}, [%[c]], %[ldcb]\n\t"
                                                                       "vst1.32 {d2}, [%[c]], %[ldcb]\n\t"
                                                                       "vst1.32 {d3}, [%[c]]\n\t"
                     : [a] "+r"(ap), [b] "+r"(bp), [n] "+r"(qn), [c] "+r"(c), [cl] "+r"(cl)
                     : [bstep] "r"(bstep), [ldcb] "r"(ldcb), [acc] "r"(accumulate)
                     : "cc", "memory", "d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8", "d9", "d10", "d11", "d12",
                       "d13", "d14", "d15", "d16", "d17", "d18", "d19", "d20", "d21", "d22", "d23", "d24", "d25", "d26",
                       "d27", "d28", "d29", "d30", "d31");
}

/* pairs_4x2 for an edge tile (mr < 4 rows or nr < 2 columns), through a buffer */
static void tile_pairs(int qn, const int8_t *ap, const int8_t *bp, int32_t *c, int ldc, int mr, int nr, int accumulate)
{
    int32_t t[8];
    pairs_4x2(qn, ap, bp, t, 2, 0);
    for (int r = 0; r < mr; r++, c += ldc)
        for (int j = 0; j < nr; j++) c[j] = accumulate ? c[j] + t[2 * r + j] : t[2 * r + j];
}

/* C (+)= A * B with A packed (k deep: panel_bytes(k) per 4 rows) */
static void gemm_packed(int m, int n, int k, const int8_t *ap, const int8_t *b, int ldb, int32_t *c, int ldc,
                        int accumulate)
{
    int8_t bbuf[KCQ * 16 * NR] __attribute__((aligned(16)));
    int kq = (k + 15) / 16;
    size_t pb = panel_bytes(k);
    for (int q0 = 0; q0 < kq; q0 += KCQ) {
        int qn = imin(KCQ, kq - q0), krows = imin(k - q0 * 16, qn * 16), acc = accumulate || q0 > 0;
        for (int j0 = 0; j0 < n; j0 += NR) {
            int nr = imin(NR, n - j0);
            int bsafe = pack_b(b + (size_t)q0 * 16 * ldb + j0, ldb, krows, nr, qn, bbuf);
            for (int i0 = 0; i0 < m; i0 += MR) {
                const int8_t *pa = ap + (size_t)(i0 / MR) * pb, *body = pa + HEADER + (size_t)q0 * 16 * MR;
                int mr = imin(MR, m - i0);
                int32_t *cr = c + (size_t)i0 * ldc + j0;
                if ((bsafe || !pa[0]) && mr == MR && nr == NR) {
                    pairs_4x2(qn, body, bbuf, cr, ldc, acc);
                    pairs_4x2(qn, body, bbuf + 32, cr + 2, ldc, acc);
                    pairs_4x2(qn, body, bbuf + 64, cr + 4, ldc, acc);
                    pairs_4x2(qn, body, bbuf + 96, cr + 6, ldc, acc);
                    continue;
                }
                for (int j = 0; j < nr; j += 2) {
                    if (bsafe || !pa[0]) tile_pairs(qn, body, bbuf + j * 16, cr + j, ldc, mr, imin(2, nr - j), acc);
                    else tile_single(qn, body, bbuf + j * 16, cr + j, ldc, mr, imin(2, nr - j), acc);
                }
            }
        }
    }
}

void dfx_neon32_gemm_s8_packed(int m, int n, int k, const void *ap, const int8_t *b, int ldb, int32_t *c, int ldc,
                               int b_nonneg)
{
    (void)b_nonneg;
    gemm_packed(m, n, k, (const int8_t *)ap, b, ldb, c, ldc, 0);
}

/* matrix times vector with A in place: c[i * ldc] = sum_p a[i * lda + p] * x[p] */
static void gemv(int m, int k, const int8_t *a, int lda, const int8_t *x, int32_t *c, int ldc)
{
    for (int i = 0; i < m; i++) {
        const int8_t *ar = a + (size_t)i * lda;
        int32x4_t s = vdupq_n_s32(0);
        int p = 0;
        for (; p + 16 <= k; p += 16) s = dot_single(s, vld1q_s8(ar + p), vld1q_s8(x + p));
        int32x2_t t = vpadd_s32(vget_low_s32(s), vget_high_s32(s));
        int32_t r = vget_lane_s32(t, 0) + vget_lane_s32(t, 1);
        for (; p < k; p++) r += ar[p] * x[p];
        c[(size_t)i * ldc] = r;
    }
}

#define GEMV_CHUNK 4096

void dfx_neon32_gemm_s8(int m, int n, int k, const int8_t *a, int lda, const int8_t *b, int ldb, int32_t *c, int ldc)
{
    if (n == 1) {
        if (ldb == 1) {
            gemv(m, k, a, lda, b, c, ldc);
            return;
        }
        int8_t xbuf[GEMV_CHUNK];
        int32_t part[MC];
        for (int p0 = 0; p0 < k; p0 += GEMV_CHUNK) {
            int kc = imin(GEMV_CHUNK, k - p0);
            for (int p = 0; p < kc; p++) xbuf[p] = b[(size_t)(p0 + p) * ldb];
            for (int i0 = 0; i0 < m; i0 += MC) {
                int mc = imin(MC, m - i0);
                gemv(mc, kc, a + (size_t)i0 * lda + p0, lda, xbuf, part, 1);
                for (int i = 0; i < mc; i++)
                    c[(size_t)(i0 + i) * ldc] = p0 ? c[(size_t)(i0 + i) * ldc] + part[i] : part[i];
            }
        }
        return;
    }
    int8_t abuf[(MC / MR) * (HEADER + KCQ * 16 * MR)] __attribute__((aligned(16)));
    for (int k0 = 0; k0 < k; k0 += KCQ * 16) {
        int kc = imin(KCQ * 16, k - k0);
        for (int i0 = 0; i0 < m; i0 += MC) {
            int mc = imin(MC, m - i0);
            dfx_neon32_pack_a(mc, kc, a + (size_t)i0 * lda + k0, lda, abuf, 0);
            gemm_packed(mc, n, kc, abuf, b + (size_t)k0 * ldb, ldb, c + (size_t)i0 * ldc, ldc, k0 > 0);
        }
    }
}

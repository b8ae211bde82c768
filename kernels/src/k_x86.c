/* x86-64 AVX2 inner loops behind the portable set (dispatch.h), chosen at run
 * time: the library is compiled for the baseline x86-64 ISA (SSE2), and
 * these functions, compiled with __attribute__((target("avx2"))), are called
 * only when the CPU reports AVX2 (__builtin_cpu_supports). Other targets and
 * compilers build none of this (k_portable.c's plain C loops run).
 *
 * GEMM: B is packed per block of GEMM_KC x GEMM_NC into 16-column panels of
 * k pairs widened to int16 ([pair][16 columns][2]), A per block of GEMM_MC
 * rows into 6-row panels of k pairs ([pair][6 rows] as int32 = 2 x int16);
 * a 6 x 16 micro-kernel keeps its tile of C in 12 registers and does
 * VPMADDWD (two exact int8 x int8 products summed in an int32 lane: at most
 * 2 * 2^14, no saturation) + VPADDD: 16 multiply-adds per instruction pair.
 * int32 sums wrap modulo 2^32 in the vector adds, and the dispatch contract
 * guarantees that every final sum fits int32, so the result is exact. */
#include "k_x86.h"

#if DFX_X86_SIMD
#include <immintrin.h>
#include <string.h>

#define GEMM_KC 256 /* even */
#define GEMM_NC 128 /* multiple of 16 */
#define GEMM_MC 96  /* multiple of 6 */
#define MR 6
#define NR 16

int dfx_x86_avx2(void)
{
    return __builtin_cpu_supports("avx2") ? 1 : 0;
}

static int imin(int a, int b) { return a < b ? a : b; }

/* B rows [0, kc) x columns [0, nc) (row stride ldb) -> 16-column panels of kc/2 (rounded up) pairs. */
__attribute__((target("avx2"))) static void pack_b(const int8_t *b, int ldb, int kc, int nc, int16_t *dst)
{
    int kp = (kc + 1) / 2;
    for (int j0 = 0; j0 < nc; j0 += NR) {
        int w = imin(NR, nc - j0);
        for (int p = 0; p < kp; p++, dst += 2 * NR) {
            const int8_t *r0 = b + (size_t)(2 * p) * ldb + j0;
            int has1 = 2 * p + 1 < kc;
            __m128i x0, x1;
            if (w == NR) {
                x0 = _mm_loadu_si128((const __m128i *)r0);
                x1 = has1 ? _mm_loadu_si128((const __m128i *)(r0 + ldb)) : _mm_setzero_si128();
            } else {
                int8_t t0[NR] = {0}, t1[NR] = {0};
                memcpy(t0, r0, (size_t)w);
                if (has1) memcpy(t1, r0 + ldb, (size_t)w);
                x0 = _mm_loadu_si128((const __m128i *)t0);
                x1 = _mm_loadu_si128((const __m128i *)t1);
            }
            _mm256_storeu_si256((__m256i *)dst, _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(x0, x1)));
            _mm256_storeu_si256((__m256i *)(dst + NR), _mm256_cvtepi8_epi16(_mm_unpackhi_epi8(x0, x1)));
        }
    }
}

/* A rows [0, mc) x k [0, kc) -> 6-row panels of kp pairs (zero padded rows / odd k). */
static void pack_a(const int8_t *a, int lda, int mc, int kc, int16_t *dst)
{
    int kp = (kc + 1) / 2;
    for (int r0 = 0; r0 < mc; r0 += MR, dst += (size_t)kp * 2 * MR)
        for (int r = 0; r < MR; r++) {
            int16_t *d = dst + 2 * r;
            if (r0 + r >= mc) {
                for (int p = 0; p < kp; p++) d[2 * MR * p] = d[2 * MR * p + 1] = 0;
                continue;
            }
            const int8_t *s = a + (size_t)(r0 + r) * lda;
            int p = 0;
            for (; 2 * p + 1 < kc; p++) {
                d[2 * MR * p] = s[2 * p];
                d[2 * MR * p + 1] = s[2 * p + 1];
            }
            if (p < kp) {
                d[2 * MR * p] = s[2 * p];
                d[2 * MR * p + 1] = 0;
            }
        }
}

__attribute__((target("avx2"))) static inline void store_row(int32_t *c, __m256i lo, __m256i hi, int nr, int acc)
{
    if (nr == NR) {
        if (acc) {
            lo = _mm256_add_epi32(lo, _mm256_loadu_si256((const __m256i *)c));
            hi = _mm256_add_epi32(hi, _mm256_loadu_si256((const __m256i *)(c + 8)));
        }
        _mm256_storeu_si256((__m256i *)c, lo);
        _mm256_storeu_si256((__m256i *)(c + 8), hi);
        return;
    }
    int32_t t[NR];
    _mm256_storeu_si256((__m256i *)t, lo);
    _mm256_storeu_si256((__m256i *)(t + 8), hi);
    for (int j = 0; j < nr; j++) c[j] = acc ? (int32_t)((uint32_t)c[j] + (uint32_t)t[j]) : t[j];
}

__attribute__((target("avx2"))) static void kernel6x16(int kp, const int16_t *ap, const int16_t *bp, int32_t *c,
                                                         int ldc, int mr, int nr, int acc)
{
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,
            c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    const int32_t *a32 = (const int32_t *)(const void *)ap;
    for (int p = 0; p < kp; p++, a32 += MR, bp += 2 * NR) {
        __m256i b0 = _mm256_loadu_si256((const __m256i *)bp), b1 = _mm256_loadu_si256((const __m256i *)(bp + 16));
        __m256i a;
        a = _mm256_set1_epi32(a32[0]);
        c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(a, b0));
        c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(a, b1));
        a = _mm256_set1_epi32(a32[1]);
        c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(a, b0));
        c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(a, b1));
        a = _mm256_set1_epi32(a32[2]);
        c20 = _mm256_add_epi32(c20, _mm256_madd_epi16(a, b0));
        c21 = _mm256_add_epi32(c21, _mm256_madd_epi16(a, b1));
        a = _mm256_set1_epi32(a32[3]);
        c30 = _mm256_add_epi32(c30, _mm256_madd_epi16(a, b0));
        c31 = _mm256_add_epi32(c31, _mm256_madd_epi16(a, b1));
        a = _mm256_set1_epi32(a32[4]);
        c40 = _mm256_add_epi32(c40, _mm256_madd_epi16(a, b0));
        c41 = _mm256_add_epi32(c41, _mm256_madd_epi16(a, b1));
        a = _mm256_set1_epi32(a32[5]);
        c50 = _mm256_add_epi32(c50, _mm256_madd_epi16(a, b0));
        c51 = _mm256_add_epi32(c51, _mm256_madd_epi16(a, b1));
    }
    store_row(c, c00, c01, nr, acc);
    if (mr > 1) store_row(c + ldc, c10, c11, nr, acc);
    if (mr > 2) store_row(c + 2 * (size_t)ldc, c20, c21, nr, acc);
    if (mr > 3) store_row(c + 3 * (size_t)ldc, c30, c31, nr, acc);
    if (mr > 4) store_row(c + 4 * (size_t)ldc, c40, c41, nr, acc);
    if (mr > 5) store_row(c + 5 * (size_t)ldc, c50, c51, nr, acc);
}

__attribute__((target("avx2"))) static inline int32_t hsum(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* c[i * ldc] = sum_p a[i * lda + p] * x[p * incx]. */
__attribute__((target("avx2"))) static void gemv(int m, int k, const int8_t *a, int lda, const int8_t *x, int incx,
                                                   int32_t *c, int ldc)
{
    int8_t xb[1024];
    for (int i = 0; i < m; i++) c[(size_t)i * ldc] = 0;
    for (int p0 = 0; p0 < k; p0 += 1024) {
        int kc = imin(1024, k - p0);
        const int8_t *xs = x + (size_t)p0 * incx;
        if (incx != 1) {
            for (int p = 0; p < kc; p++) xb[p] = xs[(size_t)p * incx];
            xs = xb;
        }
        int i = 0;
        for (; i + 4 <= m; i += 4) {
            const int8_t *a0 = a + (size_t)i * lda + p0, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
            __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
            int p = 0;
            for (; p + 16 <= kc; p += 16) {
                __m256i xv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(xs + p)));
                s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a0 + p))), xv));
                s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a1 + p))), xv));
                s2 = _mm256_add_epi32(s2, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a2 + p))), xv));
                s3 = _mm256_add_epi32(s3, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a3 + p))), xv));
            }
            uint32_t r0 = (uint32_t)hsum(s0), r1 = (uint32_t)hsum(s1), r2 = (uint32_t)hsum(s2), r3 = (uint32_t)hsum(s3);
            for (; p < kc; p++) {
                r0 += (uint32_t)(a0[p] * xs[p]);
                r1 += (uint32_t)(a1[p] * xs[p]);
                r2 += (uint32_t)(a2[p] * xs[p]);
                r3 += (uint32_t)(a3[p] * xs[p]);
            }
            int32_t *cp = c + (size_t)i * ldc;
            cp[0] = (int32_t)((uint32_t)cp[0] + r0);
            cp[ldc] = (int32_t)((uint32_t)cp[ldc] + r1);
            cp[2 * (size_t)ldc] = (int32_t)((uint32_t)cp[2 * (size_t)ldc] + r2);
            cp[3 * (size_t)ldc] = (int32_t)((uint32_t)cp[3 * (size_t)ldc] + r3);
        }
        for (; i < m; i++) {
            const int8_t *ar = a + (size_t)i * lda + p0;
            __m256i s = _mm256_setzero_si256();
            int p = 0;
            for (; p + 16 <= kc; p += 16)
                s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(ar + p))),
                                                          _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(xs + p)))));
            uint32_t r = (uint32_t)hsum(s);
            for (; p < kc; p++) r += (uint32_t)(ar[p] * xs[p]);
            c[(size_t)i * ldc] = (int32_t)((uint32_t)c[(size_t)i * ldc] + r);
        }
    }
}

__attribute__((target("avx2"))) void dfx_x86_gemm_s8_avx2(int m, int n, int k, const int8_t *a, int lda,
                                                          const int8_t *b, int ldb, int32_t *c, int ldc)
{
    if (n == 1) {
        gemv(m, k, a, lda, b, ldb, c, ldc);
        return;
    }
    int16_t bbuf[GEMM_KC * GEMM_NC] __attribute__((aligned(32)));
    int16_t abuf[GEMM_KC * GEMM_MC] __attribute__((aligned(32)));
    for (int k0 = 0; k0 < k; k0 += GEMM_KC) {
        int kc = imin(GEMM_KC, k - k0), kp = (kc + 1) / 2;
        for (int j0 = 0; j0 < n; j0 += GEMM_NC) {
            int nc = imin(GEMM_NC, n - j0);
            pack_b(b + (size_t)k0 * ldb + j0, ldb, kc, nc, bbuf);
            for (int i0 = 0; i0 < m; i0 += GEMM_MC) {
                int mc = imin(GEMM_MC, m - i0);
                pack_a(a + (size_t)i0 * lda + k0, lda, mc, kc, abuf);
                for (int r0 = 0; r0 < mc; r0 += MR)
                    for (int q0 = 0; q0 < nc; q0 += NR)
                        kernel6x16(kp, abuf + (size_t)r0 * kp * 2, bbuf + (size_t)q0 * kp * 2,
                                   c + (size_t)(i0 + r0) * ldc + j0 + q0, ldc, imin(MR, mc - r0), imin(NR, nc - q0),
                                   k0 > 0);
            }
        }
    }
}

#endif

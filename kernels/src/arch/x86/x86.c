/* x86-64 AVX2 inner loops behind the portable set (dispatch.h), chosen at run
 * time: the library is compiled for the baseline x86-64 ISA (SSE2), and
 * these functions, compiled with __attribute__((target("avx2"))), are called
 * only when the CPU reports AVX2 (__builtin_cpu_supports). Other targets and
 * compilers build none of this (arch/portable/portable.c's plain C loops run).
 *
 * GEMM: A (the weights) is packed into 6-row panels of k pairs widened to
 * int16 ([pair][6 rows][2]); a session packs each layer's weights once
 * (dfx_x86_pack_a), the unpacked entry point per block into a stack buffer.
 * B is packed per block of GEMM_KC x GEMM_NC into 16-column panels of k pairs
 * ([pair][16 columns][2]). A 6 x 16 micro-kernel keeps its tile of C in 12
 * registers and does VPMADDWD (two exact int8 x int8 products summed in an
 * int32 lane: at most 2 * 2^14, no saturation) + VPADDD: 16 multiply-adds per
 * instruction pair. It is written in inline assembly because compilers spill
 * some of the 12 accumulators of the intrinsics version (16 registers are
 * exactly enough). When the session knows that B is never negative (the
 * layer's input comes from a ReLU), A is packed as int8 quads instead and a
 * VPMADDUBSW kernel does 32 multiply-adds in three instructions (see
 * pack_b_u8). int32 sums wrap modulo 2^32 in the vector adds, and the
 * dispatch contract guarantees that every final sum fits int32, so the result
 * is exact. */
#include "x86.h"
#include "../../dfx_internal.h" /* RND_* */

#if DFX_X86_SIMD
#include <immintrin.h>
#include <string.h>

#define GEMM_KC 256 /* a multiple of 4 */
#define GEMM_NC 128 /* multiple of 16 */
#define GEMM_MC 96  /* multiple of 6 */
#define MR 6
#define NR 16

int dfx_x86_avx2(void) { return __builtin_cpu_supports("avx2") ? 1 : 0; }

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

/* A rows [0, m) x k [0, k) -> 6-row panels of k quads of int8 ([quad][6 rows][4]), zero padded. */
static void pack_a_u8(const int8_t *a, int lda, int m, int k, int8_t *dst)
{
    int kq = (k + 3) / 4;
    for (int r0 = 0; r0 < m; r0 += MR, dst += (size_t)kq * 4 * MR)
        for (int r = 0; r < MR; r++)
            for (int p = 0; p < 4 * kq; p++)
                dst[(size_t)(p / 4) * 4 * MR + 4 * r + p % 4] = r0 + r < m && p < k ? a[(size_t)(r0 + r) * lda + p] : 0;
}

size_t dfx_x86_packed_a_bytes(int m, int k, int b_nonneg)
{
    size_t panels = (size_t)((m + MR - 1) / MR);
    if (b_nonneg) return panels * (size_t)((k + 3) / 4) * 4 * MR;
    return panels * (size_t)((k + 1) / 2) * 2 * MR * sizeof(int16_t);
}

void dfx_x86_pack_a(int m, int k, const int8_t *a, int lda, void *dst, int b_nonneg)
{
    if (b_nonneg) pack_a_u8(a, lda, m, k, (int8_t *)dst);
    else pack_a(a, lda, m, k, (int16_t *)dst);
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

/* The assembly shared by both micro-kernels: ymm0..11 hold the 6 x 16 tile (row r in ymm 2r, 2r+1),
 * the loop runs n times over panels of 24 bytes of A (6 rows) and 64 bytes of B (16 columns),
 * loading B into ymm12/13, and the tile ends in t[6][16]. */
#define TILE_ZERO_AND_LOOP_HEAD           \
    "vpxor %%ymm0, %%ymm0, %%ymm0\n\t"    \
    "vpxor %%ymm1, %%ymm1, %%ymm1\n\t"    \
    "vpxor %%ymm2, %%ymm2, %%ymm2\n\t"    \
    "vpxor %%ymm3, %%ymm3, %%ymm3\n\t"    \
    "vpxor %%ymm4, %%ymm4, %%ymm4\n\t"    \
    "vpxor %%ymm5, %%ymm5, %%ymm5\n\t"    \
    "vpxor %%ymm6, %%ymm6, %%ymm6\n\t"    \
    "vpxor %%ymm7, %%ymm7, %%ymm7\n\t"    \
    "vpxor %%ymm8, %%ymm8, %%ymm8\n\t"    \
    "vpxor %%ymm9, %%ymm9, %%ymm9\n\t"    \
    "vpxor %%ymm10, %%ymm10, %%ymm10\n\t" \
    "vpxor %%ymm11, %%ymm11, %%ymm11\n\t" \
    "test %[n], %[n]\n\t"                 \
    "jle 2f\n\t"                          \
    "1:\n\t"                              \
    "vmovdqu (%[b]), %%ymm12\n\t"         \
    "vmovdqu 32(%[b]), %%ymm13\n\t"
#define TILE_LOOP_TAIL_AND_STORE     \
    "add $24, %[a]\n\t"              \
    "add $64, %[b]\n\t"              \
    "dec %[n]\n\t"                   \
    "jnz 1b\n\t"                     \
    "2:\n\t"                         \
    "vmovdqa %%ymm0, 0(%[t])\n\t"    \
    "vmovdqa %%ymm1, 32(%[t])\n\t"   \
    "vmovdqa %%ymm2, 64(%[t])\n\t"   \
    "vmovdqa %%ymm3, 96(%[t])\n\t"   \
    "vmovdqa %%ymm4, 128(%[t])\n\t"  \
    "vmovdqa %%ymm5, 160(%[t])\n\t"  \
    "vmovdqa %%ymm6, 192(%[t])\n\t"  \
    "vmovdqa %%ymm7, 224(%[t])\n\t"  \
    "vmovdqa %%ymm8, 256(%[t])\n\t"  \
    "vmovdqa %%ymm9, 288(%[t])\n\t"  \
    "vmovdqa %%ymm10, 320(%[t])\n\t" \
    "vmovdqa %%ymm11, 352(%[t])\n\t"
#define TILE_CLOBBERS                                                                                                 \
    "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", \
        "xmm12", "xmm13", "xmm14", "xmm15"

/* Rows [0, mr) x columns [0, nr) of the tile t into C (added to C when acc). */
__attribute__((target("avx2"))) static void store_tile(int32_t *c, int ldc, const int32_t *t, int mr, int nr, int acc)
{
    for (int r = 0; r < mr; r++)
        store_row(c + r * (size_t)ldc, _mm256_load_si256((const __m256i *)(t + r * NR)),
                  _mm256_load_si256((const __m256i *)(t + r * NR + 8)), nr, acc);
}

/* One row of the tile (A bytes at OFF, accumulators ymm C0 / C1): the A pair broadcast to ymm14,
 * times the B pairs of columns 0-7 (ymm12) and 8-15 (ymm13), added to the row. */
#define ROW_S16(OFF, C0, C1)                         \
    "vpbroadcastd " #OFF "(%[a]), %%ymm14\n\t"       \
    "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"         \
    "vpaddd %%ymm15, %%ymm" #C0 ", %%ymm" #C0 "\n\t" \
    "vpmaddwd %%ymm13, %%ymm14, %%ymm15\n\t"         \
    "vpaddd %%ymm15, %%ymm" #C1 ", %%ymm" #C1 "\n\t"

/* C tile (mr x nr of a 6 x 16 block) = sum over kp pairs of the A panel (6 rows) times the B
 * panel (16 columns); acc: add to C instead of overwriting it. */
__attribute__((target("avx2"))) static void kernel6x16(int kp, const int16_t *ap, const int16_t *bp, int32_t *c,
                                                       int ldc, int mr, int nr, int acc)
{
    int32_t t[MR * NR] __attribute__((aligned(32)));
    long n = kp;
    /* ymm12/13: B pairs of columns 0-7 / 8-15; ymm14: broadcast A pair; ymm15: products */
    __asm__ volatile(TILE_ZERO_AND_LOOP_HEAD ROW_S16(0, 0, 1) ROW_S16(4, 2, 3) ROW_S16(8, 4, 5) ROW_S16(12, 6, 7)
                         ROW_S16(16, 8, 9) ROW_S16(20, 10, 11) TILE_LOOP_TAIL_AND_STORE
                     : [a] "+r"(ap), [b] "+r"(bp), [n] "+r"(n)
                     : [t] "r"(t)
                     : TILE_CLOBBERS);
    store_tile(c, ldc, t, mr, nr, acc);
}

/* The unsigned x signed form, for B (activations) known to be >= 0, so stored
 * int8 codes 0..127: VPMADDUBSW multiplies 32 unsigned bytes of B with signed
 * bytes of A and adds adjacent pairs into int16 lanes; a pair is at most
 * 2 * 127 * 128 = 32512 in magnitude, so the int16 saturation never acts and
 * the sums are exact. VPMADDWD with ones then adds the two pairs of each
 * column (4 products) into an int32 lane. 32 multiply-adds take three
 * instructions instead of four. */

/* B rows [0, kc) x columns [0, nc) -> 16-column panels of kc/4 (rounded up) quads ([quad][16 columns][4]). */
__attribute__((target("avx2"))) static void pack_b_u8(const int8_t *b, int ldb, int kc, int nc, int8_t *dst)
{
    int kq = (kc + 3) / 4;
    for (int j0 = 0; j0 < nc; j0 += NR) {
        int w = imin(NR, nc - j0);
        for (int q = 0; q < kq; q++, dst += 4 * NR) {
            __m128i r[4];
            for (int e = 0; e < 4; e++) {
                int row = 4 * q + e;
                if (row < kc && w == NR) {
                    r[e] = _mm_loadu_si128((const __m128i *)(b + (size_t)row * ldb + j0));
                } else {
                    int8_t t[NR] = {0};
                    if (row < kc) memcpy(t, b + (size_t)row * ldb + j0, (size_t)w);
                    r[e] = _mm_loadu_si128((const __m128i *)t);
                }
            }
            __m128i t0 = _mm_unpacklo_epi8(r[0], r[1]), t1 = _mm_unpackhi_epi8(r[0], r[1]);
            __m128i t2 = _mm_unpacklo_epi8(r[2], r[3]), t3 = _mm_unpackhi_epi8(r[2], r[3]);
            _mm_storeu_si128((__m128i *)dst, _mm_unpacklo_epi16(t0, t2));
            _mm_storeu_si128((__m128i *)(dst + 16), _mm_unpackhi_epi16(t0, t2));
            _mm_storeu_si128((__m128i *)(dst + 32), _mm_unpacklo_epi16(t1, t3));
            _mm_storeu_si128((__m128i *)(dst + 48), _mm_unpackhi_epi16(t1, t3));
        }
    }
}

static const int16_t ONES16[16] __attribute__((aligned(32))) = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};

/* ROW_S16 for quads: unsigned B bytes times the signed A quad (int16 pair sums), then the pairs
 * summed into int32 lanes by VPMADDWD with ones. */
#define ROW_U8(OFF, C0, C1)                          \
    "vpbroadcastd " #OFF "(%[a]), %%ymm14\n\t"       \
    "vpmaddubsw %%ymm14, %%ymm12, %%ymm15\n\t"       \
    "vpmaddwd (%[ones]), %%ymm15, %%ymm15\n\t"       \
    "vpaddd %%ymm15, %%ymm" #C0 ", %%ymm" #C0 "\n\t" \
    "vpmaddubsw %%ymm14, %%ymm13, %%ymm15\n\t"       \
    "vpmaddwd (%[ones]), %%ymm15, %%ymm15\n\t"       \
    "vpaddd %%ymm15, %%ymm" #C1 ", %%ymm" #C1 "\n\t"

/* kernel6x16 for the quad layouts (A signed, B unsigned), kq quads. */
__attribute__((target("avx2"))) static void kernel6x16_u8(int kq, const int8_t *ap, const int8_t *bp, int32_t *c,
                                                          int ldc, int mr, int nr, int acc)
{
    int32_t t[MR * NR] __attribute__((aligned(32)));
    long n = kq;
    /* ymm12/13: B quads of columns 0-7 / 8-15; ymm14: broadcast A quad; ymm15: products */
    __asm__ volatile(TILE_ZERO_AND_LOOP_HEAD ROW_U8(0, 0, 1) ROW_U8(4, 2, 3) ROW_U8(8, 4, 5) ROW_U8(12, 6, 7)
                         ROW_U8(16, 8, 9) ROW_U8(20, 10, 11) TILE_LOOP_TAIL_AND_STORE
                     : [a] "+r"(ap), [b] "+r"(bp), [n] "+r"(n)
                     : [t] "r"(t), [ones] "r"(ONES16)
                     : TILE_CLOBBERS);
    store_tile(c, ldc, t, mr, nr, acc);
}

__attribute__((target("avx2"))) static inline int32_t hsum(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* c[i * ldc] = sum_p a[i * lda + p] * x[p * incx]. */
__attribute__((target("avx2"), noinline)) static void gemv(int m, int k, const int8_t *a, int lda, const int8_t *x,
                                                           int incx, int32_t *c, int ldc)
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
                s0 = _mm256_add_epi32(
                    s0, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a0 + p))), xv));
                s1 = _mm256_add_epi32(
                    s1, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a1 + p))), xv));
                s2 = _mm256_add_epi32(
                    s2, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a2 + p))), xv));
                s3 = _mm256_add_epi32(
                    s3, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a3 + p))), xv));
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
                s = _mm256_add_epi32(
                    s, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(ar + p))),
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

__attribute__((target("avx2"))) void dfx_x86_gemm_s8_packed(int m, int n, int k, const void *ap, const int8_t *b,
                                                            int ldb, int32_t *c, int ldc, int b_nonneg)
{
    if (b_nonneg) { /* quads: A panels of 6 rows x 4 int8 per quad, B packed per block as unsigned quads */
        const int8_t *A = (const int8_t *)ap;
        size_t panel = (size_t)((k + 3) / 4) * 4 * MR; /* bytes of one 6-row panel over all of k */
        int8_t bbuf[GEMM_KC * GEMM_NC] __attribute__((aligned(32)));
        for (int k0 = 0; k0 < k; k0 += GEMM_KC) { /* GEMM_KC is a multiple of 4: block k0 starts at quad k0 / 4 */
            int kc = imin(GEMM_KC, k - k0), kq = (kc + 3) / 4;
            for (int j0 = 0; j0 < n; j0 += GEMM_NC) {
                int nc = imin(GEMM_NC, n - j0);
                pack_b_u8(b + (size_t)k0 * ldb + j0, ldb, kc, nc, bbuf);
                for (int r0 = 0; r0 < m; r0 += MR) {
                    const int8_t *pa = A + (size_t)(r0 / MR) * panel + (size_t)k0 * MR;
                    for (int q0 = 0; q0 < nc; q0 += NR)
                        kernel6x16_u8(kq, pa, bbuf + (size_t)q0 * kq * 4, c + (size_t)r0 * ldc + j0 + q0, ldc,
                                      imin(MR, m - r0), imin(NR, nc - q0), k0 > 0);
                }
            }
        }
        return;
    }
    const int16_t *A = (const int16_t *)ap;
    size_t panel = (size_t)((k + 1) / 2) * 2 * MR; /* int16 elements of one 6-row panel over all of k */
    int16_t bbuf[GEMM_KC * GEMM_NC] __attribute__((aligned(32)));
    for (int k0 = 0; k0 < k; k0 += GEMM_KC) { /* GEMM_KC is even: block k0 starts at pair k0 / 2 */
        int kc = imin(GEMM_KC, k - k0), kp = (kc + 1) / 2;
        for (int j0 = 0; j0 < n; j0 += GEMM_NC) {
            int nc = imin(GEMM_NC, n - j0);
            pack_b(b + (size_t)k0 * ldb + j0, ldb, kc, nc, bbuf);
            for (int r0 = 0; r0 < m; r0 += MR) {
                const int16_t *pa = A + (size_t)(r0 / MR) * panel + (size_t)k0 * MR;
                for (int q0 = 0; q0 < nc; q0 += NR)
                    kernel6x16(kp, pa, bbuf + (size_t)q0 * kp * 2, c + (size_t)r0 * ldc + j0 + q0, ldc,
                               imin(MR, m - r0), imin(NR, nc - q0), k0 > 0);
            }
        }
    }
}

/* requant_s32 of dispatch.h in its int32 form (the conditions of arch/portable/portable.c's
 * requant_body: lshift <= 29, |bias| <= 2^29, 0 <= shift, shift + bw <= 29)
 * for int8 outputs, 32 values per step: the same clamp, shift, tie rule and
 * saturation as the portable int32 loop (RQ32_MODES), then two saturating
 * packs (exact: the values are already within bw <= 8 bits) and one lane
 * permutation to restore the order. */
__attribute__((target("avx2"))) static inline __m256i
rq8(__m256i a, __m256i cap, __m128i lsh, __m256i bias, __m256i half, __m128i sh, int rounding, __m256i lo, __m256i hi)
{
    __m256i one = _mm256_set1_epi32(1);
    a = _mm256_min_epi32(_mm256_max_epi32(a, _mm256_sub_epi32(_mm256_setzero_si256(), cap)), cap);
    __m256i v = _mm256_add_epi32(_mm256_sll_epi32(a, lsh), bias), r;
    switch (rounding) {
        case RND_FLOOR: r = _mm256_sra_epi32(v, sh); break;
        case RND_HALF_UP: r = _mm256_sra_epi32(_mm256_add_epi32(v, half), sh); break;
        case RND_HALF_AWAY:
            r = _mm256_sra_epi32(_mm256_add_epi32(_mm256_add_epi32(v, half), _mm256_srai_epi32(v, 31)), sh);
            break;
        default: /* half to even: v + half - 1 + (bit shift of v) */
            r = _mm256_sra_epi32(_mm256_add_epi32(_mm256_sub_epi32(_mm256_add_epi32(v, half), one),
                                                  _mm256_and_si256(_mm256_sra_epi32(v, sh), one)),
                                 sh);
            break;
    }
    return _mm256_min_epi32(_mm256_max_epi32(r, lo), hi);
}

__attribute__((target("avx2"))) void dfx_x86_requant_s8_avx2(const int32_t *acc, int n, int32_t bias, int lshift,
                                                             int shift, int rounding, int bw, int8_t *out)
{
    const int32_t cap = (int32_t)1 << (30 - lshift), half = shift > 0 ? (int32_t)1 << (shift - 1) : 0;
    const int32_t hi = (1 << (bw - 1)) - 1, lo = -hi - 1;
    if (shift == 0) rounding = RND_FLOOR; /* no rounding: every rule is the identity (half = 0, floor of an integer) */
    __m256i vcap = _mm256_set1_epi32(cap), vbias = _mm256_set1_epi32(bias), vhalf = _mm256_set1_epi32(half);
    __m256i vlo = _mm256_set1_epi32(lo), vhi = _mm256_set1_epi32(hi);
    __m128i vlsh = _mm_cvtsi32_si128(lshift), vsh = _mm_cvtsi32_si128(shift);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i r0 =
            rq8(_mm256_loadu_si256((const __m256i *)(acc + i)), vcap, vlsh, vbias, vhalf, vsh, rounding, vlo, vhi);
        __m256i r1 =
            rq8(_mm256_loadu_si256((const __m256i *)(acc + i + 8)), vcap, vlsh, vbias, vhalf, vsh, rounding, vlo, vhi);
        __m256i r2 =
            rq8(_mm256_loadu_si256((const __m256i *)(acc + i + 16)), vcap, vlsh, vbias, vhalf, vsh, rounding, vlo, vhi);
        __m256i r3 =
            rq8(_mm256_loadu_si256((const __m256i *)(acc + i + 24)), vcap, vlsh, vbias, vhalf, vsh, rounding, vlo, vhi);
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(r0, r1), _mm256_packs_epi32(r2, r3));
        _mm256_storeu_si256((__m256i *)(out + i), _mm256_permutevar8x32_epi32(p, order));
    }
    for (; i < n; i++) { /* the tail: the same steps on one value */
        int32_t a = acc[i];
        a = a < -cap ? -cap : a > cap ? cap : a;
        int32_t v = (int32_t)((uint32_t)a << lshift) + bias, r;
        if (rounding == RND_FLOOR) r = v >> shift;
        else if (rounding == RND_HALF_UP) r = (v + half) >> shift;
        else if (rounding == RND_HALF_AWAY) r = (v + half - (v < 0)) >> shift;
        else r = (v + half - 1 + ((v >> shift) & 1)) >> shift;
        out[i] = (int8_t)(r < lo ? lo : r > hi ? hi : r);
    }
}

#endif

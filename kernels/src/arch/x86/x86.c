/* x86-64 AVX2 inner loops of the avx2 set (set.c, dispatch.h), chosen at run
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
 * layer's input comes from a ReLU), A is packed as int8 quads in 4-row panels
 * instead and a VPMADDUBSW 4 x 16 kernel does 32 multiply-adds in three
 * instructions, or, in panels whose weights allow it (pair_safe), 64 in five
 * (see pack_b_u8, kernel4x16_u8). int32 sums wrap modulo 2^32 in the vector adds, and the
 * dispatch contract guarantees that every final sum fits int32, so the result
 * is exact. */
#include "x86.h"
#include "../../dfx_internal.h"   /* RND_* */
#include "../../fixedpoint.h"     /* fp_quantize_row */
#include "../portable/portable.h" /* dfx_requant_int32_form */

#if DFX_X86_SIMD
#include <immintrin.h>
#include <string.h>

#define GEMM_KC 256 /* a multiple of 4 */
#define GEMM_NC 128 /* multiple of 16 */
#define GEMM_MC 96  /* multiple of 6 */
#define MR 6
#define NR 16
#define KC_U8 512 /* the B >= 0 form's blocks (a multiple of 8): fewer passes over C for long k, 32 KB of B */
#define NC_U8 64

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

/* The B >= 0 form packs A in 4-row panels: a PANEL_HEAD-byte header (byte 0: 1 when the panel may add
 * two quads in int16, see kernel4x16_u8; bytes 16-31: the 4 rows' sums of weights, int32, for the VNNI sets'
 * offset B) and then k quads of int8 ([quad][4 rows][4]), zero padded. */
#define MRU 4
#define PANEL_HEAD 32
#define PAIR_BOUND 258 /* 127 * 258 = 32766: two quads' products of one int16 lane stay within int16 */

static size_t panel_u8_bytes(int k) { return PANEL_HEAD + (size_t)((k + 3) / 4) * 4 * MRU; }

/* 1 when, for every row of the panel and every pair of quads (2p, 2p + 1), each int16 lane of VPMADDUBSW's
 * two products summed (weights w[8p + 2h], w[8p + 2h + 1], w[8p + 4 + 2h], w[8p + 5 + 2h], h = 0 or 1) stays
 * within int16 for any unsigned activations up to 127: the positive weights and the negative ones each
 * sum to at most PAIR_BOUND in magnitude. */
static int pair_safe(const int8_t *q, int kq)
{
    for (int p = 0; p + 1 < kq; p += 2)
        for (int r = 0; r < MRU; r++)
            for (int h = 0; h < 2; h++) {
                int pos = 0, neg = 0;
                for (int e = 0; e < 4; e++) {
                    int w = q[(size_t)(p + e / 2) * 4 * MRU + 4 * r + 2 * h + e % 2];
                    if (w > 0) pos += w;
                    else neg -= w;
                }
                if (pos > PAIR_BOUND || neg > PAIR_BOUND) return 0;
            }
    return 1;
}

static void pack_a_u8(const int8_t *a, int lda, int m, int k, int8_t *dst)
{
    int kq = (k + 3) / 4;
    for (int r0 = 0; r0 < m; r0 += MRU, dst += panel_u8_bytes(k)) {
        int8_t *q = dst + PANEL_HEAD;
        memset(dst, 0, PANEL_HEAD + (size_t)kq * 4 * MRU);
        for (int r = 0; r < MRU && r0 + r < m; r++) {
            const int8_t *s = a + (size_t)(r0 + r) * lda;
            int32_t sum = 0;
            for (int p = 0; p < k; p++) {
                q[(size_t)(p >> 2) * 4 * MRU + 4 * r + (p & 3)] = s[p];
                sum += s[p];
            }
            memcpy(dst + 16 + 4 * r, &sum, 4);
        }
        dst[0] = (int8_t)pair_safe(q, kq);
    }
}

size_t dfx_x86_packed_a_bytes(int m, int k, int b_nonneg)
{
    if (b_nonneg) return (size_t)((m + MRU - 1) / MRU) * panel_u8_bytes(k);
    size_t panels = (size_t)((m + MR - 1) / MR);
    return panels * (size_t)((k + 1) / 2) * 2 * MR * sizeof(int16_t);
}

void dfx_x86_pack_a(int m, int k, const int8_t *a, int lda, void *dst, int b_nonneg)
{
    if (b_nonneg) pack_a_u8(a, lda, m, k, (int8_t *)dst);
    else pack_a(a, lda, m, k, (int16_t *)dst);
}

size_t dfx_x86_packed_quads_bytes(int m, int k, int b_nonneg)
{
    (void)b_nonneg;
    return dfx_x86_packed_a_bytes(m, k, 1);
}

void dfx_x86_pack_quads(int m, int k, const int8_t *a, int lda, void *dst, int b_nonneg)
{
    (void)b_nonneg;
    pack_a_u8(a, lda, m, k, (int8_t *)dst);
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

/* The first nr <= 8 values of lo to c (added to C when acc). */
__attribute__((target("avx2"))) static inline void store_row8(int32_t *c, __m256i lo, int nr, int acc)
{
    if (nr == 8) {
        if (acc) lo = _mm256_add_epi32(lo, _mm256_loadu_si256((const __m256i *)c));
        _mm256_storeu_si256((__m256i *)c, lo);
        return;
    }
    int32_t t[8];
    _mm256_storeu_si256((__m256i *)t, lo);
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
    ".p2align 6\n\t"                      \
    "1:\n\t"                              \
    "vmovdqu (%[b]), %%ymm12\n\t"         \
    "vmovdqu 32(%[b]), %%ymm13\n\t"
/* The loop's end, then the 6 x 16 tile to rows d, d + st, d + 2 st (and the same from d3 = d + 3 st),
 * first added to what is there when add != 0. */
#define ROW_ST(C0, C1, ADDR)             \
    "vmovdqu %%ymm" #C0 ", " ADDR "\n\t" \
    "vmovdqu %%ymm" #C1 ", 32" ADDR "\n\t"
#define TILE_ADD_ROW(C0, C1, ADDR)                    \
    "vpaddd " ADDR ", %%ymm" #C0 ", %%ymm" #C0 "\n\t" \
    "vpaddd 32" ADDR ", %%ymm" #C1 ", %%ymm" #C1 "\n\t"
#define TILE_LOOP_TAIL_AND_STORE                                                                                     \
    "add $24, %[a]\n\t"                                                                                              \
    "add $64, %[b]\n\t"                                                                                              \
    "dec %[n]\n\t"                                                                                                   \
    "jnz 1b\n\t"                                                                                                     \
    "2:\n\t"                                                                                                         \
    "test %[add], %[add]\n\t"                                                                                        \
    "jz 3f\n\t" TILE_ADD_ROW(0, 1, "(%[d])") TILE_ADD_ROW(2, 3, "(%[d],%[st])") TILE_ADD_ROW(4, 5, "(%[d],%[st],2)") \
        TILE_ADD_ROW(6, 7, "(%[d3])") TILE_ADD_ROW(8, 9, "(%[d3],%[st])")                                            \
            TILE_ADD_ROW(10, 11, "(%[d3],%[st],2)") "3:\n\t" ROW_ST(0, 1, "(%[d])") ROW_ST(2, 3, "(%[d],%[st])")     \
                ROW_ST(4, 5, "(%[d],%[st],2)") ROW_ST(6, 7, "(%[d3])") ROW_ST(8, 9, "(%[d3],%[st])")                 \
                    ROW_ST(10, 11, "(%[d3],%[st],2)")
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
    int whole = mr == MR && nr == NR;
    long n = kp, add = whole && acc, stride = whole ? (long)ldc * 4 : NR * 4;
    int32_t *d = whole ? c : t, *d3 = (int32_t *)((char *)d + 3 * stride);
    /* ymm12/13: B pairs of columns 0-7 / 8-15; ymm14: broadcast A pair; ymm15: products */
    __asm__ volatile(TILE_ZERO_AND_LOOP_HEAD ROW_S16(0, 0, 1) ROW_S16(4, 2, 3) ROW_S16(8, 4, 5) ROW_S16(12, 6, 7)
                         ROW_S16(16, 8, 9) ROW_S16(20, 10, 11) TILE_LOOP_TAIL_AND_STORE
                     : [a] "+r"(ap), [b] "+r"(bp), [n] "+r"(n)
                     : [d] "r"(d), [d3] "r"(d3), [st] "r"(stride), [add] "r"(add)
                     : TILE_CLOBBERS);
    if (!whole) store_tile(c, ldc, t, mr, nr, acc);
}

/* The unsigned x signed form, for B (activations) known to be >= 0, so stored
 * int8 codes 0..127: VPMADDUBSW multiplies 32 unsigned bytes of B with signed
 * bytes of A and adds adjacent pairs into int16 lanes; a pair is at most
 * 2 * 127 * 128 = 32512 in magnitude, so the int16 saturation never acts and
 * the sums are exact. VPMADDWD with ones then adds the two pairs of each
 * column (4 products) into an int32 lane. 32 multiply-adds take three
 * instructions instead of four. */

/* B rows [0, kc) x columns [0, nc) -> 16-column panels of kc/4 (rounded up) quads ([quad][16 columns][4]);
 * flip: each code + 128 (XOR 0x80), the offset form of signed B. */
__attribute__((target("avx2"), always_inline)) static inline void pack_b_u8(const int8_t *b, int ldb, int kc, int nc,
                                                                            int8_t *dst, int flip)
{
    int kq = (kc + 3) / 4;
    const __m128i fv = _mm_set1_epi8(flip ? (char)0x80 : 0);
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
                r[e] = _mm_xor_si128(r[e], fv);
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

/* The 4 x 16 tile of the B >= 0 form, ymm0..7 (row r in ymm 2r, 2r+1). One quad: the A quad of the row
 * broadcast to ymm12, unsigned B bytes of columns 0-7 (ymm8) and 8-15 (ymm9) times it (int16 pair sums),
 * the pairs summed into int32 lanes by VPMADDWD with ones (Q1_COLS: one half, into accumulator C). */
#define Q1_COLS(B, C)                              \
    "vpmaddubsw %%ymm12, %%ymm" #B ", %%ymm14\n\t" \
    "vpmaddwd (%[ones]), %%ymm14, %%ymm14\n\t"     \
    "vpaddd %%ymm14, %%ymm" #C ", %%ymm" #C "\n\t"
#define ROW_Q1(OFF, C0, C1) "vpbroadcastd " #OFF "(%[a]), %%ymm12\n\t" Q1_COLS(8, C0) Q1_COLS(9, C1)
/* Two quads (a safe panel): quad q's A in ymm12 times B in ymm8/9, quad q + 1's in ymm13 times ymm10/11,
 * the int16 pair sums of both added (VPADDW, exact: pair_safe) before one VPMADDWD: 64 multiply-adds in
 * three multiplications, not four (Q2_COLS: one half, B of quads q and q + 1 in B0 and B1). */
#define Q2_COLS(B0, B1, C)                          \
    "vpmaddubsw %%ymm12, %%ymm" #B0 ", %%ymm14\n\t" \
    "vpmaddubsw %%ymm13, %%ymm" #B1 ", %%ymm15\n\t" \
    "vpaddw %%ymm15, %%ymm14, %%ymm14\n\t"          \
    "vpmaddwd (%[ones]), %%ymm14, %%ymm14\n\t"      \
    "vpaddd %%ymm14, %%ymm" #C ", %%ymm" #C "\n\t"
#define BCAST_Q2(OFF)                          \
    "vpbroadcastd " #OFF "(%[a]), %%ymm12\n\t" \
    "vpbroadcastd 16+" #OFF "(%[a]), %%ymm13\n\t"
#define ROW_Q2(OFF, C0, C1) BCAST_Q2(OFF) Q2_COLS(8, 10, C0) Q2_COLS(9, 11, C1)

/* The loop skeleton of the B >= 0 tiles (kernel4x8_u8, kernel4x16_u8): p iterations over pairs of quads
 * (label 1; A 32 bytes, B 128 bytes a step), then s over single quads (label 3; 16 and 64 bytes), ending at
 * label 4. The loops start a 64-byte line: their speed does not depend on the code before them. */
#define QUAD_PAIRS_HEAD   \
    "test %[p], %[p]\n\t" \
    "jle 2f\n\t"          \
    ".p2align 6\n\t"      \
    "1:\n\t"
#define QUAD_PAIRS_END_SINGLES_HEAD \
    "add $32, %[a]\n\t"             \
    "add $128, %[b]\n\t"            \
    "dec %[p]\n\t"                  \
    "jnz 1b\n\t"                    \
    "2:\n\t"                        \
    "test %[s], %[s]\n\t"           \
    "jle 4f\n\t"                    \
    ".p2align 6\n\t"                \
    "3:\n\t"
#define QUAD_SINGLES_END \
    "add $16, %[a]\n\t"  \
    "add $64, %[b]\n\t"  \
    "dec %[s]\n\t"       \
    "jnz 3b\n\t"         \
    "4:\n\t"

/* The half tile (columns 0-7) of a 4 x 16 block: row r in ymm r, B of quad q in ymm8 (and of quad q + 1 in
 * ymm10, 64 bytes on, for a safe panel), the steps of ROW_Q1 / ROW_Q2 for the first half only. */
#define HALF_Q1(OFF, C) "vpbroadcastd " #OFF "(%[a]), %%ymm12\n\t" Q1_COLS(8, C)
#define HALF_Q2(OFF, C) BCAST_Q2(OFF) Q2_COLS(8, 10, C)

/* kernel4x16_u8 for nr <= 8: half the multiplications of a whole tile (a block's last columns, such as the
 * 4 of a 100-column map). */
__attribute__((target("avx2"))) static void kernel4x8_u8(int kq, const int8_t *ap, const int8_t *bp, int32_t *c,
                                                         int ldc, int mr, int nr, int acc, int safe)
{
    int32_t t[MRU * NR] __attribute__((aligned(32)));
    long pairs = safe ? kq / 2 : 0, singles = kq - 2 * pairs;
    // clang-format off
    __asm__ volatile(
        "vpxor %%ymm0, %%ymm0, %%ymm0\n\t"
        "vpxor %%ymm1, %%ymm1, %%ymm1\n\t"
        "vpxor %%ymm2, %%ymm2, %%ymm2\n\t"
        "vpxor %%ymm3, %%ymm3, %%ymm3\n\t"
        QUAD_PAIRS_HEAD
        "vmovdqu (%[b]), %%ymm8\n\t"
        "vmovdqu 64(%[b]), %%ymm10\n\t"
        HALF_Q2(0, 0)
        HALF_Q2(4, 1)
        HALF_Q2(8, 2)
        HALF_Q2(12, 3)
        QUAD_PAIRS_END_SINGLES_HEAD
        "vmovdqu (%[b]), %%ymm8\n\t"
        HALF_Q1(0, 0)
        HALF_Q1(4, 1)
        HALF_Q1(8, 2)
        HALF_Q1(12, 3)
        QUAD_SINGLES_END
        "vmovdqa %%ymm0, (%[t])\n\t"
        "vmovdqa %%ymm1, 64(%[t])\n\t"
        "vmovdqa %%ymm2, 128(%[t])\n\t"
        "vmovdqa %%ymm3, 192(%[t])\n\t"
        : [a] "+r"(ap), [b] "+r"(bp), [p] "+r"(pairs), [s] "+r"(singles)
        : [t] "r"(t), [ones] "r"(ONES16)
        : TILE_CLOBBERS);
    // clang-format on
    for (int r = 0; r < mr; r++) /* columns 0-7 of each row */
        store_row8(c + r * (size_t)ldc, _mm256_load_si256((const __m256i *)(t + r * NR)), nr, acc);
}

/* C tile (mr x nr of a 4 x 16 block) = kq quads of the A panel (4 rows) times the B panel (16 columns);
 * safe: the panel's pair_safe flag (pairs of quads, then the odd quad alone); acc: add to C. A whole tile
 * is stored (or added) from the registers, a partial one through a buffer. */
__attribute__((target("avx2"))) static void kernel4x16_u8(int kq, const int8_t *ap, const int8_t *bp, int32_t *c,
                                                          int ldc, int mr, int nr, int acc, int safe)
{
    if (nr <= 8) {
        kernel4x8_u8(kq, ap, bp, c, ldc, mr, nr, acc, safe);
        return;
    }
    int32_t t[MRU * NR] __attribute__((aligned(32)));
    int whole = mr == MRU && nr == NR;
    long pairs = safe ? kq / 2 : 0, singles = kq - 2 * pairs, add = whole && acc;
    int32_t *d = whole ? c : t;
    long stride = whole ? (long)ldc * 4 : NR * 4, stride3 = 3 * stride;
    // clang-format off
    __asm__ volatile(
        "vpxor %%ymm0, %%ymm0, %%ymm0\n\t"
        "vpxor %%ymm1, %%ymm1, %%ymm1\n\t"
        "vpxor %%ymm2, %%ymm2, %%ymm2\n\t"
        "vpxor %%ymm3, %%ymm3, %%ymm3\n\t"
        "vpxor %%ymm4, %%ymm4, %%ymm4\n\t"
        "vpxor %%ymm5, %%ymm5, %%ymm5\n\t"
        "vpxor %%ymm6, %%ymm6, %%ymm6\n\t"
        "vpxor %%ymm7, %%ymm7, %%ymm7\n\t"
        QUAD_PAIRS_HEAD
        "vmovdqu (%[b]), %%ymm8\n\t"
        "vmovdqu 32(%[b]), %%ymm9\n\t"
        "vmovdqu 64(%[b]), %%ymm10\n\t"
        "vmovdqu 96(%[b]), %%ymm11\n\t"
        ROW_Q2(0, 0, 1)
        ROW_Q2(4, 2, 3)
        ROW_Q2(8, 4, 5)
        ROW_Q2(12, 6, 7)
        QUAD_PAIRS_END_SINGLES_HEAD
        "vmovdqu (%[b]), %%ymm8\n\t"
        "vmovdqu 32(%[b]), %%ymm9\n\t"
        ROW_Q1(0, 0, 1)
        ROW_Q1(4, 2, 3)
        ROW_Q1(8, 4, 5)
        ROW_Q1(12, 6, 7)
        QUAD_SINGLES_END
        "test %[add], %[add]\n\t"
        "jz 5f\n\t"
        "vpaddd (%[d]), %%ymm0, %%ymm0\n\t"
        "vpaddd 32(%[d]), %%ymm1, %%ymm1\n\t"
        "vpaddd (%[d],%[st]), %%ymm2, %%ymm2\n\t"
        "vpaddd 32(%[d],%[st]), %%ymm3, %%ymm3\n\t"
        "vpaddd (%[d],%[st],2), %%ymm4, %%ymm4\n\t"
        "vpaddd 32(%[d],%[st],2), %%ymm5, %%ymm5\n\t"
        "vpaddd (%[d],%[st3]), %%ymm6, %%ymm6\n\t"
        "vpaddd 32(%[d],%[st3]), %%ymm7, %%ymm7\n\t"
        "5:\n\t"
        "vmovdqu %%ymm0, (%[d])\n\t"
        "vmovdqu %%ymm1, 32(%[d])\n\t"
        "vmovdqu %%ymm2, (%[d],%[st])\n\t"
        "vmovdqu %%ymm3, 32(%[d],%[st])\n\t"
        "vmovdqu %%ymm4, (%[d],%[st],2)\n\t"
        "vmovdqu %%ymm5, 32(%[d],%[st],2)\n\t"
        "vmovdqu %%ymm6, (%[d],%[st3])\n\t"
        "vmovdqu %%ymm7, 32(%[d],%[st3])\n\t"
        : [a] "+r"(ap), [b] "+r"(bp), [p] "+r"(pairs), [s] "+r"(singles)
        : [d] "r"(d), [st] "r"(stride), [st3] "r"(stride3), [add] "r"(add), [ones] "r"(ONES16)
        : TILE_CLOBBERS);
    // clang-format on
    if (!whole) store_tile(c, ldc, t, mr, nr, acc);
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

/* c[0, n) less 128 times the sum of weights of row r of the quad panel at head: the offset's share of the
 * sums when B was packed as x + 128 (int32 wrapping, as the sums). */
__attribute__((target("avx2"), always_inline)) static inline void less_offset(int32_t *c, int n, const int8_t *head,
                                                                              int r)
{
    int32_t sum;
    memcpy(&sum, head + 16 + 4 * r, 4);
    const int32_t d = (int32_t)((uint32_t)sum << 7);
    const __m256i vd = _mm256_set1_epi32(d);
    int j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_si256((__m256i *)(c + j), _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(c + j)), vd));
    for (; j < n; j++) c[j] = (int32_t)((uint32_t)c[j] - (uint32_t)d);
}

/* The B >= 0 GEMM on A packed in 4-row quad panels (pack_a_u8): B packed per block as unsigned quads, each
 * 4 x 16 tile computed by `tile` (kernel4x16_u8's contract; the VNNI sets pass their own, vnni.c). flip: B
 * may be negative, and is packed as x + 128, each row of C then less 128 times its weights' sum; only for
 * tiles without an int16 limit (VNNI). */
__attribute__((target("avx2"), always_inline)) static inline void gemm_u8_packed(int m, int n, int k, const void *ap,
                                                                                 const int8_t *b, int ldb, int32_t *c,
                                                                                 int ldc, dfx_x86_tile_u8 tile,
                                                                                 int flip)
{
    const int8_t *A = (const int8_t *)ap;
    size_t panel = panel_u8_bytes(k); /* bytes of one 4-row panel over all of k, with its header */
    int8_t bbuf[KC_U8 * NC_U8] __attribute__((aligned(32)));
    for (int k0 = 0; k0 < k; k0 += KC_U8) { /* KC_U8 is a multiple of 8: block k0 starts at an even quad */
        int kc = imin(KC_U8, k - k0), kq = (kc + 3) / 4;
        for (int j0 = 0; j0 < n; j0 += NC_U8) {
            int nc = imin(NC_U8, n - j0);
            pack_b_u8(b + (size_t)k0 * ldb + j0, ldb, kc, nc, bbuf, flip);
            for (int r0 = 0; r0 < m; r0 += MRU) {
                const int8_t *head = A + (size_t)(r0 / MRU) * panel, *pa = head + PANEL_HEAD + (size_t)k0 * MRU;
                for (int q0 = 0; q0 < nc; q0 += NR)
                    tile(kq, pa, bbuf + (size_t)q0 * kq * 4, c + (size_t)r0 * ldc + j0 + q0, ldc, imin(MRU, m - r0),
                         imin(NR, nc - q0), k0 > 0, head[0]);
            }
        }
    }
    for (int r = 0; flip && r < m; r++) less_offset(c + (size_t)r * ldc, n, A + (size_t)(r / MRU) * panel, r % MRU);
}

__attribute__((target("avx2"))) void dfx_x86_gemm_u8_packed(int m, int n, int k, const void *ap, const int8_t *b,
                                                            int ldb, int32_t *c, int ldc, dfx_x86_tile_u8 tile,
                                                            int flip)
{ gemm_u8_packed(m, n, k, ap, b, ldb, c, ldc, tile, flip); }

__attribute__((target("avx2"))) void dfx_x86_gemm_s8_packed(int m, int n, int k, const void *ap, const int8_t *b,
                                                            int ldb, int32_t *c, int ldc, int b_nonneg)
{
    if (b_nonneg) { /* quads: A panels of 4 rows x 4 int8 per quad, B packed per block as unsigned quads */
        gemm_u8_packed(m, n, k, ap, b, ldb, c, ldc, kernel4x16_u8, 0);
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
 * packs and one lane permutation to restore the order. The loop is compiled
 * once per tie rule, with and without the left shift, and with or without the
 * final clamp: for bw = 8 the packs' saturation is that clamp. */
__attribute__((target("avx2"), always_inline)) static inline __m256i rq8(__m256i a, __m256i cap, __m128i lsh,
                                                                         __m256i bias, __m256i half, __m256i halfm1,
                                                                         __m128i sh, int rounding, int shl, int clamp,
                                                                         __m256i lo, __m256i hi)
{
    __m256i one = _mm256_set1_epi32(1);
    a = _mm256_min_epi32(_mm256_max_epi32(a, _mm256_sub_epi32(_mm256_setzero_si256(), cap)), cap);
    __m256i v = _mm256_add_epi32(shl ? _mm256_sll_epi32(a, lsh) : a, bias), r;
    switch (rounding) {
        case RND_FLOOR: r = _mm256_sra_epi32(v, sh); break;
        case RND_HALF_UP: r = _mm256_sra_epi32(_mm256_add_epi32(v, half), sh); break;
        case RND_HALF_AWAY:
            r = _mm256_sra_epi32(_mm256_add_epi32(_mm256_add_epi32(v, half), _mm256_srai_epi32(v, 31)), sh);
            break;
        default: /* half to even: v + half - 1 + (bit shift of v) */
            r = _mm256_sra_epi32(
                _mm256_add_epi32(_mm256_add_epi32(v, halfm1), _mm256_and_si256(_mm256_sra_epi32(v, sh), one)), sh);
            break;
    }
    return clamp ? _mm256_min_epi32(_mm256_max_epi32(r, lo), hi) : r;
}

/* rq8's constants for one (bias, lshift, shift). */
typedef struct {
    __m256i cap, bias, half, halfm1;
    __m128i lsh, sh;
} rq8_consts;

__attribute__((target("avx2"), always_inline)) static inline rq8_consts rq8_setup(int32_t bias, int lshift, int shift)
{
    const int32_t half = shift > 0 ? (int32_t)1 << (shift - 1) : 0;
    rq8_consts k = {_mm256_set1_epi32((int32_t)1 << (30 - lshift)),
                    _mm256_set1_epi32(bias),
                    _mm256_set1_epi32(half),
                    _mm256_set1_epi32(half - 1),
                    _mm_cvtsi32_si128(lshift),
                    _mm_cvtsi32_si128(shift)};
    return k;
}

/* 32 sums at acc to 32 int8 codes in order: rq8 on four vectors (with its clamp to [lo, hi] when clamp), two
 * saturating packs, one lane permutation. */
__attribute__((target("avx2"), always_inline)) static inline __m256i
rq8_32(const int32_t *acc, const rq8_consts *k, int rounding, int shl, int clamp, __m256i lo, __m256i hi)
{
#define RQ8_AT(OFF)                                                                                           \
    rq8(_mm256_loadu_si256((const __m256i *)(acc + OFF)), k->cap, k->lsh, k->bias, k->half, k->halfm1, k->sh, \
        rounding, shl, clamp, lo, hi)
    __m256i p =
        _mm256_packs_epi16(_mm256_packs_epi32(RQ8_AT(0), RQ8_AT(8)), _mm256_packs_epi32(RQ8_AT(16), RQ8_AT(24)));
#undef RQ8_AT
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* ---- gemm_s8_packed_requant of dispatch.h for B >= 0: the tiles of a row panel over a block of up to
 * RQ_NC columns go to a 4 x RQ_NC int32 block in L1 (t), whose rows are then requantized into int8 rows, so C
 * never goes to memory. Rows with parameters outside requant_s32's int32 form (rq8's conditions), or with
 * shift 0 under a rule that rq8 does not run as the identity there, make the whole call return 0 (the caller
 * runs the two steps). Saturation to int8 is the packs'; bw < 8 and the ReLU clamp the packed bytes, which
 * equals clamping the int32 values (the bounds are within int8). */
#define RQ_NC 128

/* The n <= RQ_NC values of a row of t (32 at a time: t holds whole steps) requantized with the row's
 * (bias, lshift, shift) into out. */
__attribute__((target("avx2"), always_inline)) static inline void rq_span(const int32_t *t, int n, int32_t b, int ls,
                                                                          int s, int rounding, int shl, int clamp,
                                                                          __m256i lo8, __m256i hi8, int8_t *out)
{
    const __m256i z = _mm256_setzero_si256();
    const rq8_consts k = rq8_setup(b, ls, s);
    for (int i = 0; i < n; i += 32) {
        __m256i v = rq8_32(t + i, &k, rounding, shl, 0, z, z);
        if (clamp) v = _mm256_min_epi8(_mm256_max_epi8(v, lo8), hi8);
        if (i + 32 <= n) {
            _mm256_storeu_si256((__m256i *)(out + i), v);
        } else {
            int8_t q[32] __attribute__((aligned(32)));
            _mm256_store_si256((__m256i *)q, v);
            memcpy(out + i, q, (size_t)(n - i));
        }
    }
}

__attribute__((target("avx2"), always_inline)) static inline void
gemm_u8_rq_body(int m, int n, int k, const void *ap, const int8_t *b, int ldb, const int64_t *bias,
                const int8_t *lshift, const int16_t *shift, int rounding, int shl, int clamp, __m256i lo8, __m256i hi8,
                int8_t *out, int ldo, dfx_x86_tile_u8 tile, int flip)
{
    const int8_t *A = (const int8_t *)ap;
    size_t panel = panel_u8_bytes(k);
    int kq = (k + 3) / 4;
    int8_t bbuf[KC_U8 * NC_U8] __attribute__((aligned(32)));
    int32_t t[MRU * RQ_NC] __attribute__((aligned(32)));  /* the 4 rows of one panel over the block's columns */
    int blk = k * RQ_NC <= KC_U8 * NC_U8 ? RQ_NC : NC_U8; /* wider blocks where B fits the buffer */
    for (int j0 = 0; j0 < n; j0 += blk) {
        int nc = imin(blk, n - j0);
        pack_b_u8(b + j0, ldb, k, nc, bbuf, flip);
        for (int r0 = 0; r0 < m; r0 += MRU) {
            const int8_t *head = A + (size_t)(r0 / MRU) * panel;
            for (int q0 = 0; q0 < nc; q0 += NR)
                tile(kq, head + PANEL_HEAD, bbuf + (size_t)q0 * kq * 4, t + q0, RQ_NC, MRU, imin(NR, nc - q0), 0,
                     head[0]); /* t's columns past nc: computed or not, never stored */
            for (int r = 0; flip && r < MRU; r++) less_offset(t + r * RQ_NC, nc, head, r);
            for (int r = r0; r < r0 + MRU && r < m; r++)
                rq_span(t + (r - r0) * RQ_NC, nc, (int32_t)bias[r], lshift[r], shift[r], rounding, shl, clamp, lo8, hi8,
                        out + (size_t)r * ldo + j0);
        }
    }
}

#define RQ_BODY(R, SHL) \
    gemm_u8_rq_body(m, n, k, ap, b, ldb, bias, lshift, shift, R, SHL, clamp, lo8, hi8, out, ldo, tile, flip)
#define RQ_BODY_SHL(R)          \
    do {                        \
        if (shl) RQ_BODY(R, 1); \
        else RQ_BODY(R, 0);     \
    } while (0)

__attribute__((target("avx2"), always_inline)) static inline int
gemm_u8_packed_rq(int m, int n, int k, const void *ap, const int8_t *b, int ldb, const int64_t *bias,
                  const int8_t *lshift, const int16_t *shift, int rounding, int bw, int relu, int8_t *out, int ldo,
                  dfx_x86_tile_u8 tile, int flip)
{
    if (k > KC_U8 || bw < 2 || bw > 8) return 0;
    int shl = 0;
    for (int i = 0; i < m; i++) {
        if (!dfx_requant_int32_form(bias[i], lshift[i], shift[i], bw) ||
            (shift[i] == 0 && rounding != RND_FLOOR && rounding != RND_HALF_UP))
            return 0;
        shl |= lshift[i] != 0;
    }
    const int32_t hi = (1 << (bw - 1)) - 1, lo = relu ? 0 : -hi - 1;
    int clamp = relu || bw < 8;
    __m256i lo8 = _mm256_set1_epi8((int8_t)lo), hi8 = _mm256_set1_epi8((int8_t)hi);
    switch (rounding) {
        case RND_FLOOR: RQ_BODY_SHL(RND_FLOOR); break;
        case RND_HALF_UP: RQ_BODY_SHL(RND_HALF_UP); break;
        case RND_HALF_AWAY: RQ_BODY_SHL(RND_HALF_AWAY); break;
        default: RQ_BODY_SHL(RND_HALF_EVEN); break;
    }
    return 1;
}
#undef RQ_BODY_SHL
#undef RQ_BODY

__attribute__((target("avx2"))) int dfx_x86_gemm_u8_packed_rq(int m, int n, int k, const void *ap, const int8_t *b,
                                                              int ldb, const int64_t *bias, const int8_t *lshift,
                                                              const int16_t *shift, int rounding, int bw, int relu,
                                                              int8_t *out, int ldo, dfx_x86_tile_u8 tile, int flip)
{ return gemm_u8_packed_rq(m, n, k, ap, b, ldb, bias, lshift, shift, rounding, bw, relu, out, ldo, tile, flip); }

__attribute__((target("avx2"))) int dfx_x86_gemm_s8_packed_rq(int m, int n, int k, const void *ap, const int8_t *b,
                                                              int ldb, int b_nonneg, const int64_t *bias,
                                                              const int8_t *lshift, const int16_t *shift, int rounding,
                                                              int bw, int relu, int8_t *out, int ldo)
{
    return b_nonneg &&
           gemm_u8_packed_rq(m, n, k, ap, b, ldb, bias, lshift, shift, rounding, bw, relu, out, ldo, kernel4x16_u8, 0);
}

/* Values [0, n - n % 32) of dfx_x86_requant_s8_avx2; returns how many. */
__attribute__((target("avx2"), always_inline)) static inline int rq8_loop(const int32_t *acc, int n, int32_t bias,
                                                                          int lshift, int shift, int rounding, int shl,
                                                                          int clamp, int bw, int relu, int8_t *out)
{
    const int32_t hi = (1 << (bw - 1)) - 1, lo = relu ? 0 : -hi - 1;
    const __m256i floor8 = _mm256_set1_epi8(relu ? 0 : -128); /* the ReLU after the packs' saturation */
    const __m256i vlo = _mm256_set1_epi32(lo), vhi = _mm256_set1_epi32(hi);
    const rq8_consts k = rq8_setup(bias, lshift, shift);
    int i = 0;
    for (; i + 32 <= n; i += 32)
        _mm256_storeu_si256((__m256i *)(out + i),
                            _mm256_max_epi8(rq8_32(acc + i, &k, rounding, shl, clamp, vlo, vhi), floor8));
    return i;
}

#define RQ8_SHL_CLAMP(R)                                                               \
    (lshift ? (bw < 8 ? rq8_loop(acc, n, bias, lshift, shift, R, 1, 1, bw, relu, out)  \
                      : rq8_loop(acc, n, bias, lshift, shift, R, 1, 0, bw, relu, out)) \
            : (bw < 8 ? rq8_loop(acc, n, bias, lshift, shift, R, 0, 1, bw, relu, out)  \
                      : rq8_loop(acc, n, bias, lshift, shift, R, 0, 0, bw, relu, out)))

/* rq8_loop for the rule, the left shift and the clamp of the arguments (shift 0: every rule is FLOOR). */
__attribute__((target("avx2"))) static int rq8_any(const int32_t *acc, int n, int32_t bias, int lshift, int shift,
                                                   int rounding, int bw, int relu, int8_t *out)
{
    switch (rounding) {
        case RND_FLOOR: return RQ8_SHL_CLAMP(RND_FLOOR);
        case RND_HALF_UP: return RQ8_SHL_CLAMP(RND_HALF_UP);
        case RND_HALF_AWAY: return RQ8_SHL_CLAMP(RND_HALF_AWAY);
        default: return RQ8_SHL_CLAMP(RND_HALF_EVEN);
    }
}
#undef RQ8_SHL_CLAMP

/* 32 values a step; n >= 32 ends with the last 32 again (the same codes from the same sums: acc and out
 * do not overlap, dispatch.h), shorter ones take the same steps one value at a time. */
__attribute__((target("avx2"))) void dfx_x86_requant_s8_avx2(const int32_t *acc, int n, int32_t bias, int lshift,
                                                             int shift, int rounding, int bw, int relu, int8_t *out)
{
    const int32_t cap = (int32_t)1 << (30 - lshift), half = shift > 0 ? (int32_t)1 << (shift - 1) : 0;
    const int32_t hi = (1 << (bw - 1)) - 1, lo = relu ? 0 : -hi - 1; /* the ReLU: max(0, clamped) */
    if (shift == 0) rounding = RND_FLOOR; /* no rounding: every rule is the identity (half = 0, floor of an integer) */
    int i = rq8_any(acc, n, bias, lshift, shift, rounding, bw, relu, out);
    if (i < n && n >= 32) {
        rq8_any(acc + n - 32, 32, bias, lshift, shift, rounding, bw, relu, out + n - 32);
        i = n;
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

/* 32 bytes a step; a row of 32 or more ends with the last 32 bytes again (max(x, 0) recomputed from x: the
 * same bytes), shorter ones take 16, 8 and single bytes. */
__attribute__((target("avx2"))) void dfx_x86_relu_s8(const int8_t *x, int8_t *y, int n)
{
    const __m256i z = _mm256_setzero_si256();
    int i = 0;
    if (n >= 32) {
        for (; i + 32 <= n; i += 32)
            _mm256_storeu_si256((__m256i *)(y + i), _mm256_max_epi8(_mm256_loadu_si256((const __m256i *)(x + i)), z));
        if (i < n)
            _mm256_storeu_si256((__m256i *)(y + n - 32),
                                _mm256_max_epi8(_mm256_loadu_si256((const __m256i *)(x + n - 32)), z));
        return;
    }
    if (i + 16 <= n) {
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm_max_epi8(_mm_loadu_si128((const __m128i *)(x + i)), _mm256_castsi256_si128(z)));
        i += 16;
    }
    for (; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0;
}

/* Outputs t .. t + 7 of dfx_x86_max2x2_row from 16 bytes of each row. */
__attribute__((target("avx2"), always_inline)) static inline void max2x2_8(const int8_t *r0, const int8_t *r1,
                                                                           int8_t *o, int t)
{
    __m128i v =
        _mm_max_epi8(_mm_loadu_si128((const __m128i *)(r0 + 2 * t)), _mm_loadu_si128((const __m128i *)(r1 + 2 * t)));
    v = _mm_and_si128(_mm_max_epi8(v, _mm_srli_epi16(v, 8)), _mm_set1_epi16(0xFF));
    _mm_storel_epi64((__m128i *)(o + t), _mm_packus_epi16(v, v));
}

__attribute__((target("avx2"))) int dfx_x86_max2x2_row(const int8_t *r0, const int8_t *r1, int avail, int8_t *o, int n)
{
    const __m256i low = _mm256_set1_epi16(0xFF);
    int t = 0;
    for (; t + 16 <= n && 2 * t + 32 <= avail; t += 16) {
        __m256i v = _mm256_max_epi8(_mm256_loadu_si256((const __m256i *)(r0 + 2 * t)),
                                    _mm256_loadu_si256((const __m256i *)(r1 + 2 * t)));
        v = _mm256_and_si256(_mm256_max_epi8(v, _mm256_srli_epi16(v, 8)), low); /* byte 2i: the pair's max */
        v = _mm256_permute4x64_epi64(_mm256_packus_epi16(v, v), 0x08);          /* bytes 0-7 | 16-23 */
        _mm_storeu_si128((__m128i *)(o + t), _mm256_castsi256_si128(v));
    }
    if (t + 8 <= n && 2 * t + 16 <= avail) { /* 8 more from 16 bytes of each row */
        max2x2_8(r0, r1, o, t);
        t += 8;
    }
    if (t < n && n >= 8 && 2 * n <= avail) { /* the last 8 again (the same values: o is not r0 or r1) */
        max2x2_8(r0, r1, o, n - 8);
        t = n;
    }
    if (t + 4 <= n && 2 * t + 8 <= avail) { /* 4 from 8 bytes of each row */
        __m128i v = _mm_max_epi8(_mm_loadl_epi64((const __m128i *)(r0 + 2 * t)),
                                 _mm_loadl_epi64((const __m128i *)(r1 + 2 * t)));
        v = _mm_and_si128(_mm_max_epi8(v, _mm_srli_epi16(v, 8)), _mm_set1_epi16(0xFF));
        int32_t q = _mm_cvtsi128_si32(_mm_packus_epi16(v, v));
        memcpy(o + t, &q, 4);
        t += 4;
    }
    return t;
}

/* quantize_f32 of dispatch.h (fp_quantize_row of fixedpoint.h, bit-exact), 8 values per step in float64
 * lanes where fl < 0 (float32 lanes otherwise, below): s = x * 2^fl is exact in double for |fl| <= 800;
 * VROUNDPD rounds it as floor, nearbyint (to even, the default rounding mode) and truncation do, HALF_UP is floor(s +
 * 0.5) and HALF_AWAY the sign of s on floor(|s| + 0.5) (both as fp_quantize_row computes them); clamping after rounding
 * equals clamping before (the bounds are integers), and NaN inputs give 0. Int8 and int16 outputs with bw <= 16; other
 * widths, and the last n % 8 values, take fp_quantize_row. */
__attribute__((target("avx2"))) static inline __m128i quant4(const float *x, __m256d sc, __m256d lo, __m256d hi,
                                                             int rounding)
{
    __m128 v = _mm_loadu_ps(x);
    __m256d s = _mm256_mul_pd(_mm256_cvtps_pd(v), sc), half = _mm256_set1_pd(0.5);
    switch (rounding) {
        case RND_FLOOR: s = _mm256_round_pd(s, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); break;
        case RND_HALF_EVEN: s = _mm256_round_pd(s, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); break;
        case RND_HALF_UP: s = _mm256_round_pd(_mm256_add_pd(s, half), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); break;
        default: {
            __m256d sign = _mm256_and_pd(s, _mm256_set1_pd(-0.0)), a = _mm256_xor_pd(s, sign);
            s = _mm256_or_pd(_mm256_round_pd(_mm256_add_pd(a, half), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC), sign);
            break;
        }
    }
    s = _mm256_min_pd(_mm256_max_pd(s, lo), hi); /* NaN -> lo here (MAXPD returns its second operand) */
    __m128i q = _mm256_cvtpd_epi32(s);
    return _mm_andnot_si128(_mm_castps_si128(_mm_cmpunord_ps(v, v)), q); /* NaN -> 0 */
}

/* floor(s + 0.5) without rounding the sum (s + 0.5 is not exact in float32 for s just below a half): the
 * floor f of s, plus one where s - f (exact) is at least a half. */
__attribute__((target("avx2"))) static inline __m256 floor_half_up(__m256 s)
{
    __m256 f = _mm256_round_ps(s, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m256 up = _mm256_cmp_ps(_mm256_sub_ps(s, f), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    return _mm256_add_ps(f, _mm256_and_ps(up, _mm256_set1_ps(1.0f)));
}

/* The same in float32 lanes, 8 values a vector, for fl >= 0: s = x * 2^fl is then exact in float32 too (a
 * product by 2^fl >= 1 loses no bit; one past the float range is infinite and clamps like the double). */
__attribute__((target("avx2"))) static inline __m256i quant8f(const float *x, __m256 sc, __m256 lo, __m256 hi,
                                                              int rounding)
{
    __m256 v = _mm256_loadu_ps(x);
    __m256 s = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v, sc), lo), hi); /* NaN -> lo (masked below) */
    switch (rounding) {
        case RND_FLOOR: s = _mm256_round_ps(s, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); break;
        case RND_HALF_EVEN: s = _mm256_round_ps(s, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); break;
        case RND_HALF_UP: s = floor_half_up(s); break;
        default: {
            __m256 sign = _mm256_and_ps(s, _mm256_set1_ps(-0.0f));
            s = _mm256_or_ps(floor_half_up(_mm256_xor_ps(s, sign)), sign);
            break;
        }
    }
    __m256i q = _mm256_cvtps_epi32(s); /* integers within the bounds: exact */
    return _mm256_andnot_si256(_mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)), q); /* NaN -> 0 */
}

/* Values [0, n - n % 16) of the float32 form for one tie rule; returns how many. */
#define QUANT_FN_F(NAME, R)                                                                                         \
    __attribute__((target("avx2"))) static int64_t NAME(const float *x, int64_t n, __m256 sc, __m256 lo, __m256 hi, \
                                                        void *out, int out_bytes)                                   \
    {                                                                                                               \
        int64_t i = 0;                                                                                              \
        for (; i + 16 <= n; i += 16) {                                                                              \
            __m256i q = _mm256_packs_epi32(quant8f(x + i, sc, lo, hi, R), quant8f(x + i + 8, sc, lo, hi, R));       \
            q = _mm256_permute4x64_epi64(q, 0xD8); /* int16 0-15 in order */                                        \
            if (out_bytes == 1)                                                                                     \
                _mm_storeu_si128((__m128i *)((int8_t *)out + i),                                                    \
                                 _mm_packs_epi16(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1)));       \
            else _mm256_storeu_si256((__m256i *)((int16_t *)out + i), q);                                           \
        }                                                                                                           \
        return i;                                                                                                   \
    }
QUANT_FN_F(quantf_away, RND_HALF_AWAY)
QUANT_FN_F(quantf_even, RND_HALF_EVEN)
QUANT_FN_F(quantf_up, RND_HALF_UP)
QUANT_FN_F(quantf_floor, RND_FLOOR)
#undef QUANT_FN_F

/* Values [0, n - n % 8) for one tie rule; returns how many. */
#define QUANT_FN(NAME, R)                                                                                              \
    __attribute__((target("avx2"))) static int64_t NAME(const float *x, int64_t n, __m256d sc, __m256d lo, __m256d hi, \
                                                        void *out, int out_bytes)                                      \
    {                                                                                                                  \
        int64_t i = 0;                                                                                                 \
        for (; i + 8 <= n; i += 8) {                                                                                   \
            __m128i q = _mm_packs_epi32(quant4(x + i, sc, lo, hi, R), quant4(x + i + 4, sc, lo, hi, R));               \
            if (out_bytes == 1) _mm_storel_epi64((__m128i *)((int8_t *)out + i), _mm_packs_epi16(q, q));               \
            else _mm_storeu_si128((__m128i *)((int16_t *)out + i), q);                                                 \
        }                                                                                                              \
        return i;                                                                                                      \
    }
QUANT_FN(quant_away, RND_HALF_AWAY)
QUANT_FN(quant_even, RND_HALF_EVEN)
QUANT_FN(quant_up, RND_HALF_UP)
QUANT_FN(quant_floor, RND_FLOOR)
#undef QUANT_FN

__attribute__((target("avx2"))) void dfx_x86_quantize_f32(const float *x, int64_t n, int fl, int bw, int rounding,
                                                          void *out, int out_bytes)
{
    static int64_t (*const by_rule[4])(const float *, int64_t, __m256d, __m256d, __m256d, void *,
                                       int) = {quant_away, quant_even, quant_up, quant_floor}; /* RND_* order */
    static int64_t (*const by_rule_f[4])(const float *, int64_t, __m256, __m256, __m256, void *,
                                         int) = {quantf_away, quantf_even, quantf_up, quantf_floor};
    int64_t i = 0;
    if (bw <= 16 && out_bytes <= 2 && fl >= 0 && fl <= 100 && rounding >= 0 && rounding <= 3) {
        float top = (float)((1 << (bw - 1)) - 1);
        i = by_rule_f[rounding](x, n, _mm256_set1_ps(ldexpf(1.0f, fl)), _mm256_set1_ps(-top - 1.0f),
                                _mm256_set1_ps(top), out, out_bytes);
    } else if (bw <= 16 && out_bytes <= 2 && fl >= -800 && fl <= 800 && rounding >= 0 && rounding <= 3) {
        double top = (double)((1 << (bw - 1)) - 1);
        i = by_rule[rounding](x, n, _mm256_set1_pd(ldexp(1.0, fl)), _mm256_set1_pd(-top - 1.0), _mm256_set1_pd(top),
                              out, out_bytes);
    }
    if (i < n) fp_quantize_row(x + i, n - i, fl, bw, rounding, (char *)out + i * out_bytes, out_bytes);
}

#endif

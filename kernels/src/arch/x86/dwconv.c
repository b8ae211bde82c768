/* x86-64 AVX2 depthwise convolution (dwconv_s8 of dispatch.h), called by the
 * avx2 set (set.c) when the CPU has AVX2; compiled only where
 * arch/x86/x86.h sets DFX_X86_SIMD, with __attribute__((target("avx2"))).
 *
 * Handles stride 1 or 2 and dilation 1 across, any kernel height, vertical
 * stride, dilation and padding, kernel widths with kh * ceil(kw / 2) <= 64;
 * other geometry, or rows too long for the stack buffers, returns 0 and the
 * caller runs the portable loop.
 *
 * Multiply-adds: input rows are widened to int16, zero padded on both sides
 * (rows above or below the plane are zero rows), so that every output is
 * computed the same way, edges included. The taps of a kernel row are taken
 * in pairs (w[2p], w[2p+1]) (w[kw] = 0 for odd kw), broadcast as int16 pairs
 * in the int32 lanes; a 256-bit load at int16 offset t of a row holds the
 * pairs (r[t + 2i], r[t + 2i + 1]), i < 8, so VPMADDWD with a broadcast pair
 * adds two taps of 8 outputs into int32 lanes:
 *  - stride 2: output x reads r[2x + j]: a load at 2*x0 + 2p gives outputs
 *    x0..x0+7 in order;
 *  - stride 1: a load at x0 + 2p gives the even outputs x0, x0+2, .., x0+14,
 *    one at x0 + 2p + 1 the odd ones; the two sums are interleaved back into
 *    order once per 16 outputs (VPUNPCK[LH]DQ + VPERM2I128).
 * Products of int8 codes and their pairwise sums are exact; int32 lanes wrap
 * like the portable int32 sums, and the dispatch contract guarantees that
 * every final sum fits int32, so the results are bit-exact.
 *
 * Two drivers: output rows of 80 or more (dw_rows) are computed one at a time
 * from a ring of widened rows, two at a time for 3x3 stride 1 (sharing the
 * loads of their common input rows); narrower ones, with the same stride
 * both ways and dilation 1 (dw_flat), a band of rows at once: the band's
 * padded input rows stored one after the other are seen as a single row,
 * which saves the per-row work that dominates small planes. Kernels of 3
 * rows of 2 tap pairs (3x3, 3x4) have unrolled loops with the weights in
 * registers. */
#include "x86.h"

#if DFX_X86_SIMD
#include <immintrin.h>
#include <string.h>

#define DW_POOL 16384 /* int16 row-buffer elements on the stack (32 KB) */
#define DW_RING 32    /* at most this many buffered rows (a power of 2) */
#define DW_PAIRS 64   /* at most kh * ceil(kw / 2) tap pairs */
#define DW_FLAT_W 80  /* narrower output rows: dw_flat */

#define AVX2 __attribute__((target("avx2")))
#define AVX2_INLINE __attribute__((target("avx2"), always_inline)) inline
#define AVX2_NOINLINE __attribute__((target("avx2"), noinline))
/* Makes v opaque to the optimiser: keeps the sums in the order written (else
 * compilers may hoist every multiply and spill), and a zero vector from being
 * turned into memset calls. */
#define KEEP(v) __asm__("" : "+x"(v))
#define KEEP2(a, b) __asm__("" : "+x"(a), "+x"(b))

AVX2_INLINE static __m256i ld(const int16_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
AVX2_INLINE static __m256i madd2(__m256i a, __m256i wa, __m256i b, __m256i wb)
{ return _mm256_add_epi32(_mm256_madd_epi16(a, wa), _mm256_madd_epi16(b, wb)); }

/* Stores 16 outputs a (0-7), b (8-15), or the first n < 16 of them. */
AVX2_INLINE static void store16(int32_t *o, __m256i a, __m256i b, int n)
{
    if (n >= 16) {
        _mm256_storeu_si256((__m256i *)o, a);
        _mm256_storeu_si256((__m256i *)(o + 8), b);
        return;
    }
    int32_t t[16];
    _mm256_storeu_si256((__m256i *)t, a);
    _mm256_storeu_si256((__m256i *)(t + 8), b);
    for (int i = 0; i < n; i++) o[i] = t[i];
}

/* Stores 16 outputs from the sums of the even (0, 2, ..) and odd outputs. */
AVX2_INLINE static void store_eo(int32_t *o, __m256i e, __m256i d, int n)
{
    __m256i lo = _mm256_unpacklo_epi32(e, d), hi = _mm256_unpackhi_epi32(e, d); /* 0-3 8-11 | 4-7 12-15 */
    store16(o, _mm256_permute2x128_si256(lo, hi, 0x20), _mm256_permute2x128_si256(lo, hi, 0x31), n);
}

/* The row functions compute an output row in blocks of 16 outputs at 0, 16,
 * ..; when ow >= 16 the last block is moved back to end at ow (recomputing a
 * few outputs). A narrower row stores all 16 when `room` (outputs from the
 * row's start to the end of out) allows: the outputs past the row belong to
 * later rows, which are computed afterwards and overwrite them. */
#define BLOCK_START(x0, ow) \
    if (x0 + 16 > ow) x0 = ow >= 16 ? ow - 16 : 0
#define BLOCK_N(ow, room) ((ow) >= 16 || (room) >= 16 ? 16 : (room))

/* One output row, any kernel: rows[i] the buffered input row of kernel row i,
 * wp[i * np + p] the broadcast pair p of kernel row i. */
AVX2_NOINLINE static void row_any(int32_t *restrict o, int ow, int64_t room, int sw,
                                  const int16_t *const *restrict rows, const __m256i *restrict wp, int nr, int np)
{
    int n = BLOCK_N(ow, room);
    for (int x0 = 0;; x0 += 16) {
        BLOCK_START(x0, ow);
        __m256i a = _mm256_setzero_si256(), b = a;
        for (int i = 0; i < nr; i++)
            for (int p = 0; p < np; p++) {
                __m256i wv = wp[i * np + p];
                const int16_t *s = rows[i] + (sw == 1 ? x0 : 2 * x0) + 2 * p;
                a = _mm256_add_epi32(a, _mm256_madd_epi16(ld(s), wv));
                b = _mm256_add_epi32(b, _mm256_madd_epi16(ld(s + (sw == 1 ? 1 : 16)), wv));
            }
        if (sw == 1) store_eo(o + x0, a, b, n);
        else store16(o + x0, a, b, n);
        if (x0 + 16 >= ow) break;
    }
}

/* 3 x (3 or 4), stride 1: output rows o0 (input rows r0 r1 r2) and o1 = o0 + ow (r1 r2 r3). */
AVX2_NOINLINE static void rows2_3x3s1(int32_t *restrict o0, int ow, int64_t room, const int16_t *r0, const int16_t *r1,
                                      const int16_t *r2, const int16_t *r3, const __m256i *wp)
{
    const __m256i w00 = wp[0], w01 = wp[1], w10 = wp[2], w11 = wp[3], w20 = wp[4], w21 = wp[5];
    int32_t *o1 = o0 + ow;
    int n0 = BLOCK_N(ow, room), n1 = BLOCK_N(ow, room - ow);
    for (int x0 = 0;; x0 += 16) {
        BLOCK_START(x0, ow);
        const int16_t *p0 = r0 + x0, *p1 = r1 + x0, *p2 = r2 + x0, *p3 = r3 + x0;
        __m256i a, b, e0, d0, e1, d1;
        a = ld(p0), b = ld(p0 + 2);
        e0 = madd2(a, w00, b, w01);
        a = ld(p0 + 1), b = ld(p0 + 3);
        d0 = madd2(a, w00, b, w01);
        KEEP2(e0, d0);
        a = ld(p1), b = ld(p1 + 2);
        e0 = _mm256_add_epi32(e0, madd2(a, w10, b, w11));
        e1 = madd2(a, w00, b, w01);
        KEEP2(e0, e1);
        a = ld(p1 + 1), b = ld(p1 + 3);
        d0 = _mm256_add_epi32(d0, madd2(a, w10, b, w11));
        d1 = madd2(a, w00, b, w01);
        KEEP2(d0, d1);
        a = ld(p2), b = ld(p2 + 2);
        e0 = _mm256_add_epi32(e0, madd2(a, w20, b, w21));
        e1 = _mm256_add_epi32(e1, madd2(a, w10, b, w11));
        KEEP2(e0, e1);
        a = ld(p2 + 1), b = ld(p2 + 3);
        d0 = _mm256_add_epi32(d0, madd2(a, w20, b, w21));
        d1 = _mm256_add_epi32(d1, madd2(a, w10, b, w11));
        KEEP2(d0, d1);
        store_eo(o0 + x0, e0, d0, n0);
        a = ld(p3), b = ld(p3 + 2);
        e1 = _mm256_add_epi32(e1, madd2(a, w20, b, w21));
        a = ld(p3 + 1), b = ld(p3 + 3);
        d1 = _mm256_add_epi32(d1, madd2(a, w20, b, w21));
        store_eo(o1 + x0, e1, d1, n1);
        if (x0 + 16 >= ow) break;
    }
}

/* 3 x (3 or 4), stride 1: one output row from input rows r0 r1 r2. */
AVX2_NOINLINE static void row_3x3s1(int32_t *restrict o, int ow, int64_t room, const int16_t *r0, const int16_t *r1,
                                    const int16_t *r2, const __m256i *wp)
{
    const __m256i w00 = wp[0], w01 = wp[1], w10 = wp[2], w11 = wp[3], w20 = wp[4], w21 = wp[5];
    int n = BLOCK_N(ow, room);
    for (int x0 = 0;; x0 += 16) {
        BLOCK_START(x0, ow);
        const int16_t *p0 = r0 + x0, *p1 = r1 + x0, *p2 = r2 + x0;
        __m256i e = madd2(ld(p0), w00, ld(p0 + 2), w01), d = madd2(ld(p0 + 1), w00, ld(p0 + 3), w01);
        KEEP2(e, d);
        e = _mm256_add_epi32(e, madd2(ld(p1), w10, ld(p1 + 2), w11));
        d = _mm256_add_epi32(d, madd2(ld(p1 + 1), w10, ld(p1 + 3), w11));
        KEEP2(e, d);
        e = _mm256_add_epi32(e, madd2(ld(p2), w20, ld(p2 + 2), w21));
        d = _mm256_add_epi32(d, madd2(ld(p2 + 1), w20, ld(p2 + 3), w21));
        store_eo(o + x0, e, d, n);
        if (x0 + 16 >= ow) break;
    }
}

/* 3 x (3 or 4), stride 2: one output row from input rows r0 r1 r2. */
AVX2_NOINLINE static void row_3x3s2(int32_t *restrict o, int ow, int64_t room, const int16_t *r0, const int16_t *r1,
                                    const int16_t *r2, const __m256i *wp)
{
    const __m256i w00 = wp[0], w01 = wp[1], w10 = wp[2], w11 = wp[3], w20 = wp[4], w21 = wp[5];
    int n = BLOCK_N(ow, room);
    for (int x0 = 0;; x0 += 16) {
        BLOCK_START(x0, ow);
        const int16_t *p0 = r0 + 2 * x0, *p1 = r1 + 2 * x0, *p2 = r2 + 2 * x0;
        __m256i a = madd2(ld(p0), w00, ld(p0 + 2), w01), b = madd2(ld(p0 + 16), w00, ld(p0 + 18), w01);
        KEEP2(a, b);
        a = _mm256_add_epi32(a, madd2(ld(p1), w10, ld(p1 + 2), w11));
        b = _mm256_add_epi32(b, madd2(ld(p1 + 16), w10, ld(p1 + 18), w11));
        KEEP2(a, b);
        a = _mm256_add_epi32(a, madd2(ld(p2), w20, ld(p2 + 2), w21));
        b = _mm256_add_epi32(b, madd2(ld(p2 + 16), w20, ld(p2 + 18), w21));
        store16(o + x0, a, b, n);
        if (x0 + 16 >= ow) break;
    }
}

/* The geometry both paths share: columns [lo, lo + n) of a padded row (of
 * span columns, column t being input column t - pl) are input columns, the
 * others zero. */
struct geom {
    const int8_t *x;
    int h, w, pl, lo, n;
};

/* The fused requantization (dwconv_requant_s8): int8 outputs from the sums, by dfx_x86_requant_s8_avx2. */
struct rq {
    int8_t *out;
    int32_t bias;
    int lshift, shift, rounding, bw, relu;
};

AVX2_INLINE static void rq_run(const struct rq *q, const int32_t *acc, int n, int8_t *out)
{ dfx_x86_requant_s8_avx2(acc, n, q->bias, q->lshift, q->shift, q->rounding, q->bw, q->relu, out); }

/* Copies input row iy into r[lo, lo + n), possibly writing up to 15 elements
 * past; the caller zeroes the columns around. The row is read 16 bytes at a
 * time, past its end (into the next row) when the plane has the bytes, else
 * its last n % 16 bytes one by one. */
AVX2_INLINE static void copy_row(int16_t *r, const struct geom *g, int64_t iy)
{
    int64_t skip = g->lo - g->pl, avail = ((int64_t)g->h - iy) * g->w - skip; /* bytes from src on */
    const int8_t *src = g->x + (size_t)iy * g->w + skip;
    int16_t *d = r + g->lo;
    int nv = (g->n + 15) / 16;
    if (avail < 16 * (int64_t)nv) nv = g->n / 16;
    for (int i = 0; i < nv; i++)
        _mm256_storeu_si256((__m256i *)(d + 16 * i),
                            _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(src + 16 * i))));
    for (int i = 16 * nv; i < g->n; i++) d[i] = src[i];
}

AVX2_INLINE static void zero16(int16_t *r, int from, int to, __m256i z)
{
    for (int t = from; t < to; t += 16) _mm256_storeu_si256((__m256i *)(r + t), z);
}

/* Large planes: output rows one (or two) at a time from a ring of buffered
 * rows (r[0, len) the padded row, + 16 of slack). When consecutive windows
 * overlap (sh < rows spanned by one), rows are widened in order, ahead as
 * far as the ring allows without overwriting the current window: each row
 * once, and the kernels rarely load from a row whose stores are still in
 * flight (a stalling store-to-load forward). Else each window's rows go to
 * slots 0, 1, ... */
AVX2_NOINLINE static void dw_rows(const struct geom *g, const __m256i *wp, int kh, int np, int sh, int sw, int pt,
                                  int dh, int32_t *out, int oh, int ow, int len, int ring, const struct rq *q)
{
    int16_t pool[DW_POOL] __attribute__((aligned(32)));
    int stride = len + 32, lo = g->lo, n = g->n, h = g->h;
    int16_t *slot0 = pool + ((16 - (lo & 15)) & 15); /* row origin in its slot: r + lo 32-byte aligned */
    const int16_t *zero = pool + (size_t)ring * stride;
    __m256i z = _mm256_setzero_si256();
    KEEP(z);
    zero16(pool + (size_t)ring * stride, 0, len, z);
#define WIDEN(r, iy) (zero16(r, 0, lo, z), copy_row(r, g, iy), zero16(r, lo + n, len, z))

    int64_t wrows = (int64_t)(kh - 1) * dh + 1;
    int ahead = sh < wrows;
    int64_t last_row = (int64_t)(oh - 1) * sh - pt + (wrows - 1); /* the last row the outputs read */
    if (last_row > h - 1) last_row = h - 1;
    int64_t next = 0; /* rows below next are (or were) in the ring */
    const int16_t *rows[DW_RING];
    int fast3 = kh == 3 && np == 2, pairs = fast3 && sw == 1 && sh == 1 && dh == 1;
    for (int oy = 0; oy < oh;) {
        int two = pairs && oy + 1 < oh; /* two output rows, the second window one row below */
        int nr = kh + two;
        int64_t base = (int64_t)oy * sh - pt; /* the window's first row */
        if (ahead && base + (int64_t)(nr - 1) * dh >= next && next <= last_row) {
            int64_t end = base + ring - 1 < last_row ? base + ring - 1 : last_row;
            if (next < base) next = base < 0 ? 0 : base;
            for (; next <= end; next++) WIDEN(slot0 + (size_t)(next & (ring - 1)) * stride, next);
        }
        for (int i = 0; i < nr; i++) {
            int64_t iy = base + (int64_t)i * dh;
            if (iy < 0 || iy >= h) rows[i] = zero;
            else if (ahead) rows[i] = slot0 + (size_t)(iy & (ring - 1)) * stride;
            else {
                int16_t *r = slot0 + (size_t)i * stride;
                WIDEN(r, iy);
                rows[i] = r;
            }
        }
#undef WIDEN
        int32_t *o = out + (size_t)oy * ow;
        int64_t room = (int64_t)(oh - oy) * ow;
        if (two) {
            rows2_3x3s1(o, ow, room, rows[0], rows[1], rows[2], rows[3], wp);
            if (q) rq_run(q, o, 2 * ow, q->out + (size_t)oy * ow); /* final: later rows write past them only */
            oy += 2;
            continue;
        }
        if (fast3 && sw == 1) row_3x3s1(o, ow, room, rows[0], rows[1], rows[2], wp);
        else if (fast3) row_3x3s2(o, ow, room, rows[0], rows[1], rows[2], wp);
        else row_any(o, ow, room, sw, rows, wp, kh, np);
        if (q) rq_run(q, o, ow, q->out + (size_t)oy * ow);
        oy++;
    }
}

/* Fills plane rows [0, nrows) (pitch P) with padded input rows y0, y0 + step,
 * ..: input rows outside the plane give zero rows; + `slack` zeros. */
AVX2_INLINE static void fill_plane(int16_t *f, int P, int nrows, int slack, const struct geom *g, int64_t y0, int step,
                                   __m256i z)
{
    int t = 0; /* f[0, t) is done */
    for (int r = 0; r < nrows; r++) {
        int64_t iy = y0 + (int64_t)r * step;
        if (iy < 0 || iy >= g->h || !g->n) continue;
        zero16(f, t, r * P + g->lo, z);
        copy_row(f + (size_t)r * P, g, iy);
        t = r * P + g->lo + g->n;
    }
    zero16(f, t, nrows * P + slack, z);
}

#define FLAT_PLANE 8192 /* int16 */
#define FLAT_OUT 4096   /* int32 */

/* Small planes, stride s = sh = sw, dilation 1: bands of output rows at once.
 * Stride 1: the band's padded input rows (P columns each) are stored one
 * after the other in f; output (oy, ox) of the band is flat output
 * q = oy * P + ox = sum of k[i][j] * f[q + i * P + j]: one output row of
 * (nb - 1) * P + ow columns over f seen as one long row, with kernel row i
 * read at offset i * P (the columns ox >= ow are computed, then dropped when
 * the rows are copied out). Stride 2: the even and odd input rows go to two
 * such planes, of even pitch P; flat output q = oy * P / 2 + ox reads kernel
 * row i in the even or odd plane (i even or odd) at (i / 2) * P + 2 q + j.
 * The work per row is the copy in and out. */
AVX2_NOINLINE static void dw_flat(const struct geom *g, const __m256i *wp, int kh, int np, int s, int pt, int32_t *out,
                                  int oh, int ow, int P, int band, const struct rq *q)
{
    int16_t plane[FLAT_PLANE] __attribute__((aligned(32)));
    int32_t tmp[FLAT_OUT];
    int8_t tmp8[FLAT_OUT];
    __m256i z = _mm256_setzero_si256();
    KEEP(z);
    int Pq = s == 1 ? P : P / 2, slack = 2 * np + 48;
    const int16_t *rows[DW_RING];
    for (int oy0 = 0; oy0 < oh; oy0 += band) {
        int nb = oh - oy0 < band ? oh - oy0 : band;
        int64_t y0 = (int64_t)oy0 * s - pt;
        int nin = (nb - 1) * s + kh, qn = (nb - 1) * Pq + ow; /* input rows, flat outputs */
        if (s == 1) {
            fill_plane(plane, P, nin, slack, g, y0, 1, z);
            for (int i = 0; i < kh; i++) rows[i] = plane + (size_t)i * P;
        } else {
            int ne = (nin + 1) / 2, half = FLAT_PLANE / 2;
            fill_plane(plane, P, ne, slack, g, y0, 2, z);
            fill_plane(plane + half, P, nin / 2, slack, g, y0 + 1, 2, z);
            for (int i = 0; i < kh; i++) rows[i] = plane + (i & 1) * half + (size_t)(i / 2) * P;
        }
        if (kh == 3 && np == 2 && s == 1) row_3x3s1(tmp, qn, qn, rows[0], rows[1], rows[2], wp);
        else if (kh == 3 && np == 2) row_3x3s2(tmp, qn, qn, rows[0], rows[1], rows[2], wp);
        else row_any(tmp, qn, qn, s, rows, wp, kh, np);
        if (q) { /* the band requantized as one row, then the ow columns of each row */
            rq_run(q, tmp, (int)qn, tmp8);
            for (int r = 0; r < nb; r++) {
                const int8_t *src = tmp8 + (size_t)r * Pq;
                int8_t *dst = q->out + (size_t)(oy0 + r) * ow;
                if (ow < 8) {
                    for (int c = 0; c < ow; c++) dst[c] = src[c];
                    continue;
                }
                int64_t v;
                for (int c = 0; c + 8 < ow; c += 8) {
                    memcpy(&v, src + c, 8);
                    memcpy(dst + c, &v, 8);
                }
                memcpy(&v, src + ow - 8, 8);
                memcpy(dst + ow - 8, &v, 8);
            }
            continue;
        }
        for (int r = 0; r < nb; r++) { /* the ow columns of each row */
            const int32_t *src = tmp + (size_t)r * Pq;
            int32_t *dst = out + (size_t)(oy0 + r) * ow;
            if (ow < 8) {
                for (int c = 0; c < ow; c++) dst[c] = src[c];
                continue;
            }
            __m256i v;
            for (int c = 0; c + 8 < ow; c += 8) {
                v = _mm256_loadu_si256((const __m256i *)(src + c));
                KEEP(v); /* no memcpy call */
                _mm256_storeu_si256((__m256i *)(dst + c), v);
            }
            v = _mm256_loadu_si256((const __m256i *)(src + ow - 8));
            _mm256_storeu_si256((__m256i *)(dst + ow - 8), v);
        }
    }
}

AVX2 static int dw_run(const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int sh, int sw, int pt, int pl,
                       int dh, int dw, int32_t *out, int oh, int ow, const struct rq *q)
{
    if (dw != 1 || (sw != 1 && sw != 2) || sh < 1 || dh < 1 || kh < 1 || kw < 1 || h < 1 || w < 1 || oh < 1 || ow < 1)
        return 0;
    int np = (kw + 1) / 2;
    if ((int64_t)kh * np > DW_PAIRS || kh >= DW_RING || ow > DW_POOL) return 0;
    struct geom g;
    g.x = x, g.h = h, g.w = w, g.pl = pl;
    /* padded columns [0, span) are input columns [-pl, span - pl) */
    int64_t span = (int64_t)(ow - 1) * sw + kw, lo = pl < 0 ? 0 : pl < span ? pl : span, hi = (int64_t)pl + w;
    if (hi > span) hi = span;
    if (hi < lo) hi = lo;
    g.lo = (int)lo, g.n = (int)(hi - lo);

    __m256i wp[DW_PAIRS];
    for (int i = 0; i < kh; i++)
        for (int p = 0; p < np; p++) {
            uint16_t a = (uint16_t)k[i * kw + 2 * p], b = 2 * p + 1 < kw ? (uint16_t)k[i * kw + 2 * p + 1] : 0;
            wp[i * np + p] = _mm256_set1_epi32((int32_t)((uint32_t)a | (uint32_t)b << 16));
        }

    /* small planes: bands of flat rows, when a band of 2 rows (or all) fits */
    if (sh == sw && dh == 1 && ow < DW_FLAT_W) {
        int P = (int)(span + (sw == 2 && (span & 1))); /* even for stride 2 */
        /* elements per plane (zero16 writes up to 15 past), flat outputs per output row */
        int slack = 2 * np + 48, cap = FLAT_PLANE / sw - slack - 16, per = sw == 1 ? P : P / 2;
        int band = oh; /* all rows when they fit */
        if ((int64_t)oh * per > FLAT_OUT - 16 || ((int64_t)(oh - 1) * sw + kh + 1) / sw * P > cap) {
            int nin_max = cap / P, b2 = sw == 1 ? nin_max - kh + 1 : (2 * nin_max - kh) / 2 + 1;
            band = (FLAT_OUT - 16) / per;
            if (b2 < band) band = b2;
        }
        if (band >= 2 || (band == 1 && oh == 1)) {
            dw_flat(&g, wp, kh, np, sw, pt, out, oh, ow, P, band, q);
            return 1;
        }
    }
    /* a buffered row covers the padded columns and what the loads of the
     * last block of 16 outputs read past them (zeros) */
    int64_t need = (int64_t)sw * (ow < 16 ? 16 : ow) + 2 * np;
    int len = (int)((need + 15) & ~(int64_t)15);
    int64_t win = (int64_t)(kh - 1) * dh + 2; /* rows of one window, + 1 for two output rows at once */
    int ring = DW_RING;                       /* a power of 2, as many as fit (+ the zero row) */
    while (ring >= win && (int64_t)(ring + 1) * (len + 32) > DW_POOL) ring /= 2;
    if (ring < win) return 0;
    dw_rows(&g, wp, kh, np, sh, sw, pt, dh, out, oh, ow, len, ring, q);
    return 1;
}

AVX2 int dfx_x86_dwconv_s8_avx2(const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int sh, int sw, int pt,
                                int pl, int dh, int dw, int32_t *out, int oh, int ow)
{ return dw_run(x, h, w, k, kh, kw, sh, sw, pt, pl, dh, dw, out, oh, ow, NULL); }

/* The sums go to work (as dwconv_s8's out), and each output row, or band of rows, is requantized into
 * out while in cache: dw_rows after the row, dw_flat from its band buffer. */
AVX2 int dfx_x86_dwconv_rq_s8_avx2(const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int sh, int sw,
                                   int pt, int pl, int dh, int dw, int oh, int ow, int64_t bias, int lshift, int shift,
                                   int rounding, int bw, int relu, int8_t *out, int32_t *work)
{
    /* requant_s32's int32 form for int8 (arch/portable/portable.c requant_body) */
    if (lshift < 0 || lshift > 29 || bias < -((int64_t)1 << 29) || bias > ((int64_t)1 << 29) || shift < 0 ||
        shift + bw > 29 || bw < 2 || bw > 8)
        return 0;
    struct rq q = {out, (int32_t)bias, lshift, shift, rounding, bw, relu != 0};
    return dw_run(x, h, w, k, kh, kw, sh, sw, pt, pl, dh, dw, work, oh, ow, &q);
}

#endif

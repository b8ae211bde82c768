/* x86-64 AVX2 + FMA float32 kernels behind the avx2 set's float entries
 * (dispatch.h), chosen at run time like the integer ones (x86.c): compiled
 * with __attribute__((target("avx2,fma"))) and used only when the CPU reports
 * both (dfx_x86_packed_f32_bytes returns 0 otherwise, and the caller runs the
 * scalar reference loops of ops/conv.c and ops/fc.c).
 *
 * GEMM: a session packs each layer's weights once into 6-row panels
 * ([k][6 rows], zero rows at the end). Per block of F_KC rows of B, B is
 * packed into 16-column panels ([k][16 columns], zero columns at the end) in
 * the caller's work buffer; a 6 x 16 micro-kernel keeps its tile of C in 12
 * YMM registers (one broadcast of A and two FMAs per row and k). Row blocks
 * of F_MC rows keep their slice of A in L2 while the B panels stream from L1.
 * The bias starts the accumulators of the first block. One column (FC on one
 * row) is a matrix-vector product over the same panels.
 *
 * Depthwise: per output row, 8 columns at a time accumulate every tap in a
 * register, started from the bias (stride 1: plain loads, stride 2: two loads
 * deinterleaved); small planes are first copied with their padding, in
 * larger ones the columns near the padding load a zero-padded copy of their
 * window (masked loads); other strides go tap by tap.
 *
 * Float results are not bit-exact to the scalar loops (FMA, summation order);
 * spec/arithmetic.md §3.1 gives the tolerance they keep. */
#include "x86.h"

#if DFX_X86_SIMD
#include <immintrin.h>
#include <string.h>

#define F_MR 6
#define F_NR 16
#define F_KC 256 /* dispatch.h DFX_F32_WORK */
#define F_MC 72  /* multiple of F_MR */

static int imin(int a, int b) { return a < b ? a : b; }

int dfx_x86_fma(void) { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0; }

size_t dfx_x86_packed_f32_bytes(int m, int k)
{ return dfx_x86_fma() ? (size_t)((m + F_MR - 1) / F_MR) * F_MR * (size_t)k * sizeof(float) : 0; }

void dfx_x86_pack_f32(int m, int k, const float *a, int lda, void *dst)
{
    float *d = (float *)dst;
    for (int r0 = 0; r0 < m; r0 += F_MR, d += (size_t)F_MR * k)
        for (int r = 0; r < F_MR; r++) {
            const float *s = r0 + r < m ? a + (size_t)(r0 + r) * lda : NULL;
            for (int p = 0; p < k; p++) d[(size_t)p * F_MR + r] = s ? s[p] : 0.0f;
        }
}

/* B rows [0, kc) x columns [0, n) (row stride ldb) -> 16-column panels of kc rows. */
__attribute__((target("avx2,fma"))) static void pack_b(const float *b, int ldb, int kc, int n, float *dst)
{
    for (int j0 = 0; j0 < n; j0 += F_NR, dst += (size_t)kc * F_NR) {
        int w = imin(F_NR, n - j0);
        const float *s = b + j0;
        if (w == F_NR) {
            for (int p = 0; p < kc; p++, s += ldb) {
                _mm256_storeu_ps(dst + p * F_NR, _mm256_loadu_ps(s));
                _mm256_storeu_ps(dst + p * F_NR + 8, _mm256_loadu_ps(s + 8));
            }
            continue;
        }
        for (int p = 0; p < kc; p++, s += ldb) {
            float *d = dst + p * F_NR;
            int j = 0;
            for (; j < w; j++) d[j] = s[j];
            for (; j < F_NR; j++) d[j] = 0.0f;
        }
    }
}

#define F_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)

/* C tile (mr <= 6 rows, nr <= 16 columns, row stride ldc) = (first ? bias : C) + A panel * B panel over kc. */
__attribute__((target("avx2,fma"))) static void micro(int kc, const float *a, const float *b, float *c, int ldc, int mr,
                                                      int nr, int first, const float *bias)
{
#define F_DECL(r) __m256 c##r##0, c##r##1;
    F_ROWS(F_DECL)
    float tile[F_MR * F_NR];
    float *t = c;
    int lt = ldc, full = mr == F_MR && nr == F_NR;
    if (!full) {
        t = tile;
        lt = F_NR;
        memset(tile, 0, sizeof tile);
        if (!first)
            for (int r = 0; r < mr; r++) memcpy(tile + r * F_NR, c + (size_t)r * ldc, (size_t)nr * sizeof *c);
    }
    if (first) {
#define F_BIAS(r)                                                             \
    c##r##0 = bias && r < mr ? _mm256_set1_ps(bias[r]) : _mm256_setzero_ps(); \
    c##r##1 = c##r##0;
        F_ROWS(F_BIAS)
    } else {
#define F_LOAD(r)                                  \
    c##r##0 = _mm256_loadu_ps(t + (size_t)r * lt); \
    c##r##1 = _mm256_loadu_ps(t + (size_t)r * lt + 8);
        F_ROWS(F_LOAD)
    }
    for (int p = 0; p < kc; p++, a += F_MR, b += F_NR) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), av;
#define F_FMA(r)                                \
    av = _mm256_broadcast_ss(a + r);            \
    c##r##0 = _mm256_fmadd_ps(av, b0, c##r##0); \
    c##r##1 = _mm256_fmadd_ps(av, b1, c##r##1);
        F_ROWS(F_FMA)
    }
#define F_STORE(r)                                 \
    _mm256_storeu_ps(t + (size_t)r * lt, c##r##0); \
    _mm256_storeu_ps(t + (size_t)r * lt + 8, c##r##1);
    F_ROWS(F_STORE)
    if (!full)
        for (int r = 0; r < mr; r++) memcpy(c + (size_t)r * ldc, tile + r * F_NR, (size_t)nr * sizeof *c);
#undef F_DECL
#undef F_BIAS
#undef F_LOAD
#undef F_FMA
#undef F_STORE
}

/* n == 1 (FC on one row): each 6-row panel times the vector, one row of the panel ([k][6], read as 8 lanes of
 * which 6 count, the last k masked) per k, four panels in flight. Every sum starts from the bias and adds the
 * products in k order with FMA, as the micro-kernel does, so a batch-1 FC equals a row of a batch-N one. */
__attribute__((target("avx2,fma"))) static void gemv(int m, int k, const float *A, const float *b, int ldb, float *c,
                                                     int ldc, const float *bias)
{
    const __m256i six = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
    size_t ps = (size_t)F_MR * k; /* floats per panel */
    for (int i0 = 0; i0 < m; i0 += 4 * F_MR) {
        int np = (m - i0 + F_MR - 1) / F_MR;
        if (np > 4) np = 4;
        __m256 s[4];
        for (int q = 0; q < 4; q++) {
            float init[8] = {0};
            for (int r = 0; r < F_MR && bias && q < np && i0 + q * F_MR + r < m; r++) init[r] = bias[i0 + q * F_MR + r];
            s[q] = _mm256_loadu_ps(init);
        }
        const float *a = A + (size_t)(i0 / F_MR) * ps;
        for (int p = 0; p < k; p++) {
            __m256 bv = _mm256_set1_ps(b[(size_t)p * ldb]);
            const float *ap = a + (size_t)p * F_MR;
            if (p + 1 < k) {
                for (int q = 0; q < np; q++) s[q] = _mm256_fmadd_ps(_mm256_loadu_ps(ap + q * ps), bv, s[q]);
            } else {
                for (int q = 0; q < np; q++) s[q] = _mm256_fmadd_ps(_mm256_maskload_ps(ap + q * ps, six), bv, s[q]);
            }
        }
        for (int q = 0; q < np; q++) {
            float r[8];
            _mm256_storeu_ps(r, s[q]);
            for (int i = 0; i < F_MR && i0 + q * F_MR + i < m; i++) c[(size_t)(i0 + q * F_MR + i) * ldc] = r[i];
        }
    }
}

void dfx_x86_gemm_f32_packed(int m, int n, int k, const void *ap, const float *b, int ldb, float *c, int ldc,
                             const float *bias, float *work)
{
    const float *A = (const float *)ap;
    if (n == 1) {
        gemv(m, k, A, b, ldb, c, ldc, bias);
        return;
    }
    for (int k0 = 0; k0 < k; k0 += F_KC) {
        int kc = imin(F_KC, k - k0);
        pack_b(b + (size_t)k0 * ldb, ldb, kc, n, work);
        for (int m0 = 0; m0 < m; m0 += F_MC) {
            int m1 = imin(m, m0 + F_MC);
            for (int j0 = 0; j0 < n; j0 += F_NR) {
                const float *bp = work + (size_t)(j0 / F_NR) * kc * F_NR;
                for (int i0 = m0; i0 < m1; i0 += F_MR)
                    micro(kc, A + (size_t)i0 * k + (size_t)k0 * F_MR, bp, c + (size_t)i0 * ldc + j0, ldc,
                          imin(F_MR, m - i0), imin(F_NR, n - j0), k0 == 0, bias ? bias + i0 : NULL);
            }
        }
    }
}

/* Output columns [lo, hi) whose tap at offset base (input column ox*s + base) lies in [0, size). */
static void tap_range(int size, int out, int s, int base, int *lo, int *hi)
{
    int a = base >= 0 ? 0 : (-base + s - 1) / s;
    int z = size - base <= 0 ? 0 : (size - base - 1) / s + 1;
    *lo = a < out ? a : out;
    *hi = z < out ? z : out;
    if (*hi < *lo) *hi = *lo;
}

/* 8 input columns ox*sw + base, ox = ox0 .. ox0 + 7 (sw 1 or 2). */
__attribute__((target("avx2,fma"))) static DFX_ALWAYS_INLINE __m256 load_cols(const float *xr, int ox0, int sw,
                                                                              int base)
{
    if (sw == 1) return _mm256_loadu_ps(xr + ox0 + base);
    const float *s = xr + 2 * ox0 + base;
    __m256 ev = _mm256_shuffle_ps(_mm256_loadu_ps(s), _mm256_loadu_ps(s + 8), 0x88); /* even columns, per lane */
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ev), 0xd8));
}

#define DW_SPAN 320   /* floats of the window copy */
#define DW_PLANE 8192 /* floats of the padded copy of a small plane */

/* The geometry of one depthwise call. */
typedef struct dw_geo {
    const float *x, *k;
    int h, w, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow;
    float bias;
    float *out;
} dw_geo;

/* Chunks of 8 output columns, each summed in registers from the bias (three FMA chains). Chunks whose taps all
 * lie inside the input row load them from the row; the others (near the padding) from a copy of the window they
 * read, with zeros outside the row (masked loads). sw is 1 or 2, a constant after inlining. */
__attribute__((target("avx2,fma"))) static DFX_ALWAYS_INLINE void dw_rows(const dw_geo *g, int sw, int vlo, int vhi)
{
    const float *x = g->x, *k = g->k;
    int w = g->w, kw = g->kw, dw = g->dw, pl = g->pl, ow = g->ow, last = (kw - 1) * dw - pl;
    int span = (7 * sw + (kw - 1) * dw + 16 + 7) & ~7; /* one chunk's window of one tap row, for 16-column loads */
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), none = _mm256_set1_epi32(-1);
    const __m256i cols = _mm256_cmpgt_epi32(_mm256_set1_epi32(ow), lane), width = _mm256_set1_epi32(w);
    float win[DW_SPAN];
    for (int oy = 0; oy < g->oh; oy++) {
        float *yr = g->out + (size_t)oy * ow;
        int ia = 0, iz = g->kh, y0 = oy * g->sh - g->pt; /* tap rows [ia, iz) lie inside the plane */
        while (ia < iz && y0 + ia * g->dh < 0) ia++;
        while (iz > ia && y0 + (iz - 1) * g->dh >= g->h) iz--;
        for (int ox0 = 0;; ox0 += 8) {
            if (ow >= 8 && ox0 > ow - 8) ox0 = ow - 8;
            int inside = ox0 >= vlo && ox0 + 8 <= vhi && (sw == 1 || 2 * ox0 + last + 16 <= w);
            __m256 a0 = _mm256_set1_ps(g->bias), a1 = _mm256_setzero_ps(), a2 = a1;
            int c0 = ox0 * sw - pl; /* input column of lane 0's first tap */
            for (int i = ia; i < iz; i++) {
                const float *src = x + (size_t)(y0 + i * g->dh) * w + c0;
                if (!inside) { /* the window [c0, c0 + span) of the row, 0 outside it */
                    for (int t = 0; t < span; t += 8) {
                        __m256i c = _mm256_add_epi32(_mm256_set1_epi32(c0 + t), lane);
                        __m256i in = _mm256_and_si256(_mm256_cmpgt_epi32(c, none), _mm256_cmpgt_epi32(width, c));
                        _mm256_storeu_ps(win + t, _mm256_maskload_ps(src + t, in));
                    }
                    src = win;
                }
                const float *kr = k + i * kw;
                for (int j = 0; j < kw; j++) {
                    __m256 t = _mm256_fmadd_ps(_mm256_set1_ps(kr[j]), load_cols(src, 0, sw, j * dw), a0);
                    a0 = a1;
                    a1 = a2;
                    a2 = t;
                }
            }
            a0 = _mm256_add_ps(_mm256_add_ps(a0, a1), a2);
            if (ow >= 8) _mm256_storeu_ps(yr + ox0, a0);
            else _mm256_maskstore_ps(yr, cols, a0);
            if (ox0 + 8 >= ow) break;
        }
    }
}

__attribute__((target("avx2,fma"))) void dfx_x86_dwconv_f32(const float *x, int h, int w, const float *k, int kh,
                                                            int kw, int sh, int sw, int pt, int pl, int dh, int dw,
                                                            float bias, float *out, int oh, int ow)
{
    dw_geo g = {x, k, h, w, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, bias, out};
    int vlo = 0, vhi = ow; /* columns [vlo, vhi) have every tap inside the row */
    for (int j = 0; j < kw; j++) {
        int lo, hi;
        tap_range(w, ow, sw, j * dw - pl, &lo, &hi);
        if (lo > vlo) vlo = lo;
        if (hi < vhi) vhi = hi;
    }
    int rows = (oh - 1) * sh + (kh - 1) * dh + 1, cols = (ow - 1) * sw + (kw - 1) * dw + 17;
    if (sw <= 2 && (size_t)rows * (size_t)cols <= DW_PLANE) { /* small planes: a zero-padded copy, no edges */
        float plane[DW_PLANE + 8];
        const __m256 zero = _mm256_setzero_ps();
        int n = w < cols - pl ? w : cols - pl; /* input columns that land in the copy */
        __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(n & 7), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        for (int r = 0; r < rows; r++) {
            float *d = plane + (size_t)r * cols;
            for (int t = 0; t < cols; t += 8) _mm256_storeu_ps(d + t, zero);
            int iy = r - pt;
            if (iy < 0 || iy >= h || n <= 0) continue;
            const float *src = x + (size_t)iy * w;
            int t = 0;
            for (; t + 8 <= n; t += 8) _mm256_storeu_ps(d + pl + t, _mm256_loadu_ps(src + t));
            if (t < n) _mm256_maskstore_ps(d + pl + t, tail, _mm256_maskload_ps(src + t, tail));
        }
        dw_geo p = {plane, k, rows, cols, kh, kw, sh, sw, 0, 0, dh, dw, oh, ow, bias, out};
        if (sw == 1) dw_rows(&p, 1, 0, ow);
        else dw_rows(&p, 2, 0, ow);
        return;
    }
    if (sw <= 2 && 7 * sw + (kw - 1) * dw + 16 + 7 <= DW_SPAN) {
        if (sw == 1) dw_rows(&g, 1, vlo, vhi);
        else dw_rows(&g, 2, vlo, vhi);
        return;
    }
    for (int oy = 0; oy < oh; oy++) /* other strides, wide windows: tap by tap */
        for (int ox = 0; ox < ow; ox++) {
            float sum = bias;
            for (int i = 0; i < kh; i++) {
                int iy = oy * sh - pt + i * dh;
                if (iy < 0 || iy >= h) continue;
                for (int j = 0; j < kw; j++) {
                    int ix = ox * sw + j * dw - pl;
                    if (ix >= 0 && ix < w) sum += k[i * kw + j] * x[(size_t)iy * w + ix];
                }
            }
            out[(size_t)oy * ow + ox] = sum;
        }
}
#endif

/* x86-64 AVX2 + FMA float32 kernels behind the portable set's float entries
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
 * The bias starts the accumulators of the first block.
 *
 * Depthwise: per output row, 8 columns at a time whose taps all lie inside
 * the input row accumulate every tap in a register (started from the bias;
 * stride 1: plain loads, stride 2: two loads deinterleaved); the columns near
 * the padding check each tap.
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
            memcpy(d, s, (size_t)w * sizeof *d);
            memset(d + w, 0, (size_t)(F_NR - w) * sizeof *d);
        }
    }
}

#define F_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)

/* C tile (mr <= 6 rows, nr <= 16 columns, row stride ldc) = (first ? bias : C) + A panel * B panel over kc. */
__attribute__((target("avx2,fma"))) static void micro(int kc, const float *a, const float *b, float *c, int ldc,
                                                      int mr, int nr, int first, const float *bias)
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
#define F_BIAS(r)                                                                 \
    c##r##0 = bias && r < mr ? _mm256_set1_ps(bias[r]) : _mm256_setzero_ps(); \
    c##r##1 = c##r##0;
        F_ROWS(F_BIAS)
    } else {
#define F_LOAD(r)                                            \
    c##r##0 = _mm256_loadu_ps(t + (size_t)r * lt);         \
    c##r##1 = _mm256_loadu_ps(t + (size_t)r * lt + 8);
        F_ROWS(F_LOAD)
    }
    for (int p = 0; p < kc; p++, a += F_MR, b += F_NR) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), av;
#define F_FMA(r)                                  \
    av = _mm256_broadcast_ss(a + r);              \
    c##r##0 = _mm256_fmadd_ps(av, b0, c##r##0); \
    c##r##1 = _mm256_fmadd_ps(av, b1, c##r##1);
        F_ROWS(F_FMA)
    }
#define F_STORE(r)                                       \
    _mm256_storeu_ps(t + (size_t)r * lt, c##r##0);     \
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

void dfx_x86_gemm_f32_packed(int m, int n, int k, const void *ap, const float *b, int ldb, float *c, int ldc,
                             const float *bias, float *work)
{
    const float *A = (const float *)ap;
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
__attribute__((target("avx2,fma"))) static inline __m256 load_cols(const float *xr, int ox0, int sw, int base)
{
    if (sw == 1) return _mm256_loadu_ps(xr + ox0 + base);
    const float *s = xr + 2 * ox0 + base;
    __m256 ev = _mm256_shuffle_ps(_mm256_loadu_ps(s), _mm256_loadu_ps(s + 8), 0x88); /* even columns, per lane */
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ev), 0xd8));
}

/* One output row: outputs in [vlo, vhi) (whole 8-column chunks) see every tap of the valid rows inside the row
 * and add them in registers; the others check each tap. */
__attribute__((target("avx2,fma"))) void dfx_x86_dwconv_f32(const float *x, int h, int w, const float *k, int kh,
                                                            int kw, int sh, int sw, int pt, int pl, int dh, int dw,
                                                            float bias, float *out, int oh, int ow)
{
    int vlo = 0, vhi = ow; /* columns whose taps all lie inside the row */
    for (int j = 0; j < kw; j++) {
        int lo, hi;
        tap_range(w, ow, sw, j * dw - pl, &lo, &hi);
        if (lo > vlo) vlo = lo;
        if (hi < vhi) vhi = hi;
    }
    if (sw != 1 && sw != 2) vhi = vlo; /* no vector loads */
    if (sw == 2) { /* the 16-column loads of the last tap stay inside the row */
        int last = (kw - 1) * dw - pl, lim = (w - 16 - last) / 2 + 8;
        if (w - 16 - last < 0) lim = vlo;
        if (lim < vhi) vhi = lim;
    }
    if (vhi < vlo) vhi = vlo;
    vhi = vlo + (vhi - vlo) / 8 * 8;
    for (int oy = 0; oy < oh; oy++) {
        float *yr = out + (size_t)oy * ow;
        int ia = 0, iz = kh; /* taps rows [ia, iz) lie inside the plane */
        while (ia < kh && oy * sh - pt + ia * dh < 0) ia++;
        while (iz > ia && oy * sh - pt + (iz - 1) * dh >= h) iz--;
        for (int ox = 0; ox < ow; ox++) {
            if (ox == vlo && vhi > vlo) {
                for (; ox < vhi; ox += 8) {
                    __m256 acc = _mm256_set1_ps(bias);
                    for (int i = ia; i < iz; i++) {
                        const float *xr = x + (size_t)(oy * sh - pt + i * dh) * w;
                        for (int j = 0; j < kw; j++)
                            acc = _mm256_fmadd_ps(_mm256_set1_ps(k[i * kw + j]), load_cols(xr, ox, sw, j * dw - pl), acc);
                    }
                    _mm256_storeu_ps(yr + ox, acc);
                }
                if (ox >= ow) break;
            }
            float acc = bias;
            for (int i = ia; i < iz; i++) {
                const float *xr = x + (size_t)(oy * sh - pt + i * dh) * w;
                for (int j = 0; j < kw; j++) {
                    int ix = ox * sw + j * dw - pl;
                    if (ix >= 0 && ix < w) acc += k[i * kw + j] * xr[ix];
                }
            }
            yr[ox] = acc;
        }
    }
}
#endif

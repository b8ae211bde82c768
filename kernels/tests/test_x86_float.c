/* C test of the x86-64 AVX2 + FMA float kernels (arch/x86/float.c), through the avx2 set's float entries
 * (dispatch.h), against sums in double precision:
 *  - gemm_f32_packed on random and fixed shapes (m, n, k off the 6 x 16 tile, the 72-row block and the 256-deep
 *    K block; row strides beyond the sizes; with and without bias); the rows and columns outside C must stay
 *    untouched;
 *  - dwconv_f32 on MobileNet-SSD's geometries and random ones (kernels 1..5, strides 1..3, dilations 1..3,
 *    padding up to beyond the kernel, planes from 1 x 1 to 150 x 150, small planes (padded copy) and large ones
 *    (window copies near the padding)), the input against an inaccessible page on either side.
 * Float sums are not bit-exact (FMA, summation order): each value must lie within (terms + 2) * 2^-23 *
 * sum |terms| of the exact sum, the rounding error bound of a float32 sum (spec/arithmetic.md §3.1 states the
 * tolerance of float layers).
 *
 *   test_x86_float [iterations]
 *
 * Exits 1 on a difference, 77 (CTest: skipped) without the x86 SIMD code or without AVX2 and FMA. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "arch/x86/x86.h"

#if DFX_X86_SIMD
#include "test_guard.h"
#include "test_random.h"

static int failures;
static long gemm_cases, dw_cases;

static float rndf(void) { return (float)((int)(rnd64() % 2001) - 1000) / 1000.0f; }

static void *alloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

/* |got - exact| within the float32 summation bound of `terms` terms whose magnitudes sum to `mag` */
static int close_enough(float got, double exact, double mag, int terms)
{ return fabs((double)got - exact) <= (terms + 2) * ldexp(1.0, -23) * mag + 1e-30; }

static void check_gemm(int m, int n, int k, int with_bias)
{
    const struct dfx_kernels *kf = &dfx_kernels_avx2;
    int lda = k + rndi(0, 3), ldb = n + rndi(0, 5), ldc = n + rndi(0, 5);
    float *a = alloc(sizeof(float) * (size_t)m * lda), *b = alloc(sizeof(float) * (size_t)k * ldb);
    float *c = alloc(sizeof(float) * ((size_t)m * ldc + 8)), *bias = alloc(sizeof(float) * (size_t)m);
    float *work = alloc(sizeof(float) * DFX_F32_WORK(n, k));
    for (size_t i = 0; i < (size_t)m * lda; i++) a[i] = rndf();
    for (size_t i = 0; i < (size_t)k * ldb; i++) b[i] = rndf();
    for (int i = 0; i < m; i++) bias[i] = rndf() * 4;
    for (size_t i = 0; i < (size_t)m * ldc + 8; i++) c[i] = 1234.5f;
    size_t bytes = kf->packed_f32_bytes(m, k);
    void *ap = alloc(bytes);
    kf->pack_f32(m, k, a, lda, ap);
    kf->gemm_f32_packed(m, n, k, ap, b, ldb, c, ldc, with_bias ? bias : NULL, work);
    gemm_cases++;
    for (int i = 0; i < m && failures < 10; i++)
        for (int j = 0; j < ldc && failures < 10; j++) {
            float got = c[(size_t)i * ldc + j];
            if (j >= n) { /* outside C */
                if (got != 1234.5f) {
                    printf("gemm_f32 m=%d n=%d k=%d: C[%d][%d] outside C was written\n", m, n, k, i, j);
                    failures++;
                }
                continue;
            }
            double s = with_bias ? bias[i] : 0.0, mag = fabs(s);
            for (int p = 0; p < k; p++) {
                double t = (double)a[(size_t)i * lda + p] * b[(size_t)p * ldb + j];
                s += t;
                mag += fabs(t);
            }
            if (!close_enough(got, s, mag, k + 1)) {
                printf("gemm_f32 m=%d n=%d k=%d bias=%d: C[%d][%d] = %.9g, exact %.9g\n", m, n, k, with_bias, i, j, got,
                       s);
                failures++;
            }
        }
    for (int t = 0; t < 8; t++)
        if (c[(size_t)m * ldc + t] != 1234.5f) {
            printf("gemm_f32 m=%d n=%d k=%d: wrote past C\n", m, n, k);
            failures++;
            break;
        }
    free(a);
    free(b);
    free(c);
    free(bias);
    free(work);
    free(ap);
}

static void check_dw(int h, int w, int kh, int kw, int sh, int sw, int pt, int pl, int dh, int dw)
{
    int oh = (h + 2 * pt - (kh - 1) * dh - 1) / sh + 1, ow = (w + 2 * pl - (kw - 1) * dw - 1) / sw + 1;
    if (oh < 1 || ow < 1) return;
    size_t n = (size_t)h * w, no = (size_t)oh * ow;
    float *x = (float *)guarded(n * sizeof(float), rndi(0, 1)), k[25], bias = rndf();
    float *buf = alloc(sizeof(float) * (no + 16)), *out = buf + 8;
    for (size_t i = 0; i < n; i++) x[i] = rndf();
    for (int i = 0; i < kh * kw; i++) k[i] = rndf();
    for (size_t i = 0; i < no + 16; i++) buf[i] = 1234.5f;
    dfx_kernels_avx2.dwconv_f32(x, h, w, k, kh, kw, sh, sw, pt, pl, dh, dw, bias, out, oh, ow);
    dw_cases++;
    for (int t = 0; t < 8; t++)
        if (buf[t] != 1234.5f || out[no + t] != 1234.5f) {
            printf("dwconv_f32 %dx%d k%dx%d s%d,%d p%d,%d d%d,%d: wrote outside the output\n", h, w, kh, kw, sh, sw, pt,
                   pl, dh, dw);
            failures++;
            break;
        }
    for (int oy = 0; oy < oh && failures < 10; oy++)
        for (int ox = 0; ox < ow && failures < 10; ox++) {
            double s = bias, mag = fabs(bias);
            for (int i = 0; i < kh; i++)
                for (int j = 0; j < kw; j++) {
                    int iy = oy * sh - pt + i * dh, ix = ox * sw - pl + j * dw;
                    if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                    double t = (double)k[i * kw + j] * x[(size_t)iy * w + ix];
                    s += t;
                    mag += fabs(t);
                }
            float got = out[(size_t)oy * ow + ox];
            if (!close_enough(got, s, mag, kh * kw + 1)) {
                printf("dwconv_f32 %dx%d k%dx%d s%d,%d p%d,%d d%d,%d: out[%d][%d] = %.9g, exact %.9g\n", h, w, kh, kw,
                       sh, sw, pt, pl, dh, dw, oy, ox, got, s);
                failures++;
            }
        }
    free(buf);
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 2000;
    (void)fill_s8; /* test_random.h's int8 filler: the integer tests' */
    if (!dfx_kernels_avx2.packed_f32_bytes || !dfx_kernels_avx2.packed_f32_bytes(1, 1)) {
        printf("test_x86_float: SKIPPED: this CPU lacks AVX2 or FMA (the float kernels do not run)\n");
        return 77;
    }
    guard_init();
    static const int gemm_fixed[][3] = {{6, 16, 256}, {1, 1, 1},     {7, 17, 257}, {72, 16, 512}, {73, 100, 1},
                                        {80, 5, 300}, {12, 256, 27}, {5, 3, 1000}, {144, 33, 64}, {500, 1, 800},
                                        {7, 1, 5},    {13, 1, 4},    {6, 1, 1}};
    for (size_t i = 0; i < sizeof gemm_fixed / sizeof gemm_fixed[0]; i++)
        for (int bias = 0; bias < 2; bias++) check_gemm(gemm_fixed[i][0], gemm_fixed[i][1], gemm_fixed[i][2], bias);
    for (int i = 0; i < iters / 20 && failures < 10; i++)
        check_gemm(rndi(1, 100), rndi(1, 300), rndi(1, 600), rndi(0, 1));
    /* MobileNet-SSD's depthwise layers (h, w, kh, kw, sh, sw, pt, pl, dh, dw), then 1-wide and all-padding planes */
    static const int dw_fixed[][10] = {
        {150, 150, 3, 3, 1, 1, 1, 1, 1, 1}, {150, 150, 3, 3, 2, 2, 1, 1, 1, 1}, {75, 75, 3, 3, 1, 1, 1, 1, 1, 1},
        {75, 75, 3, 3, 2, 2, 1, 1, 1, 1},   {38, 38, 3, 3, 1, 1, 1, 1, 1, 1},   {38, 38, 3, 3, 2, 2, 1, 1, 1, 1},
        {19, 19, 3, 3, 1, 1, 1, 1, 1, 1},   {19, 19, 3, 3, 2, 2, 1, 1, 1, 1},   {10, 10, 3, 3, 1, 1, 1, 1, 1, 1},
        {1, 1, 3, 3, 1, 1, 1, 1, 1, 1},     {1, 1, 3, 3, 1, 1, 4, 4, 1, 1},     {1, 40, 3, 3, 1, 1, 1, 1, 1, 1},
        {40, 1, 3, 3, 2, 2, 1, 1, 1, 1},    {5, 5, 3, 3, 1, 1, 4, 4, 1, 1},     {160, 200, 5, 5, 2, 2, 2, 2, 2, 2},
        {120, 97, 3, 3, 3, 3, 1, 1, 1, 1},
    };
    for (size_t i = 0; i < sizeof dw_fixed / sizeof dw_fixed[0]; i++) {
        const int *f = dw_fixed[i];
        check_dw(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9]);
    }
    for (int i = 0; i < iters && failures < 10; i++) {
        int big = rndi(0, 9) == 0;
        check_dw(rndi(1, big ? 150 : 40), rndi(1, big ? 150 : 40), rndi(1, 5), rndi(1, 5), rndi(1, 3), rndi(1, 3),
                 rndi(0, 4), rndi(0, 4), rndi(1, 3), rndi(1, 3));
    }
    printf("test_x86_float: %ld gemm_f32 and %ld dwconv_f32 cases: %s\n", gemm_cases, dw_cases,
           failures ? "FAILED" : "within the float32 summation bound of the exact sums");
    guard_release();
    return failures ? 1 : 0;
}
#else
int main(void)
{
    printf(
        "test_x86_float: SKIPPED: built without the x86 SIMD code (not x86-64 with GCC/Clang, or DFX_NO_X86_SIMD)\n");
    return 77;
}
#endif

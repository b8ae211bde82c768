/* C test of the ARMv7 NEON kernel set (kernels/src/arch/neon32) against the
 * portable set, entry by entry of the dispatch table: the GEMM unpacked and
 * packed (whole, and from a row block of 48), with -128 in A, in B, in both
 * and in neither, n = 1 and the k blocks; depthwise 3x3 with both strides and
 * other shapes, with and without a -128 weight; requantization with every
 * rounding mode, shift and output size; ReLU; max pooling. Run under qemu-arm
 * with a NEON CPU model (-cpu cortex-a7 / cortex-a15).
 *
 *   test_neon32 [iterations]
 *
 * Prints what it checked; fails (exit 1) on the first differences. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/neon32/neon32.h"
#include "dispatch.h"
#include "test_random.h"

static const struct dfx_kernels *const P = &dfx_kernels_portable, *const N = &dfx_kernels_neon32;
static int failures;

static void differs(const char *what)
{
    if (failures++ < 10) fprintf(stderr, "differs: %s\n", what);
}

/* int8 codes: fill_s8, then (kind 0) no -128, (kind 1) >= 0, (kind 2) as drawn */
static void codes(int8_t *p, size_t n, int kind)
{
    fill_s8(p, n);
    for (size_t i = 0; i < n; i++)
        if (kind == 0 && p[i] == -128) p[i] = -127;
        else if (kind == 1 && p[i] < 0) p[i] = (int8_t)(p[i] == -128 ? 127 : -p[i]);
}

static void check_gemm(void)
{
    static const int sizes[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 48, 64, 100, 129};
    int m = rndi(0, 3) ? sizes[rndi(0, 16)] : rndi(1, 200), n = rndi(0, 3) ? sizes[rndi(0, 16)] : rndi(1, 300);
    int k = rndi(0, 3) ? sizes[rndi(0, 16)] : rndi(1, 1100);
    if (rndi(0, 15) == 0) k = rndi(1025, 2500); /* several k passes */
    if (rndi(0, 15) == 0) m = rndi(49, 150);
    int lda = k + rndi(0, 3), ldb = n + rndi(0, 1) * rndi(0, 9), ldc = n + rndi(0, 2);
    int8_t *a = malloc((size_t)m * lda), *b = malloc((size_t)k * ldb);
    int32_t *c0 = malloc(sizeof(int32_t) * (size_t)m * ldc), *c1 = malloc(sizeof(int32_t) * (size_t)m * ldc);
    codes(a, (size_t)m * lda, rndi(0, 2) ? 2 : 0);
    int nonneg = rndi(0, 2) == 0;
    codes(b, (size_t)k * ldb, nonneg ? 1 : rndi(0, 2) ? 2 : 0);
    char what[160];
    for (size_t i = 0; i < (size_t)m * ldc; i++) c0[i] = c1[i] = (int32_t)rnd64();
    P->gemm_s8(m, n, k, a, lda, b, ldb, c0, ldc);
    N->gemm_s8(m, n, k, a, lda, b, ldb, c1, ldc);
    snprintf(what, sizeof what, "gemm_s8 m=%d n=%d k=%d lda=%d ldb=%d ldc=%d", m, n, k, lda, ldb, ldc);
    if (memcmp(c0, c1, sizeof(int32_t) * (size_t)m * ldc)) differs(what);
    /* packed, whole and from row 48 (packed_a_bytes is additive there) */
    size_t bytes = N->packed_a_bytes(m, k, nonneg);
    void *ap = malloc(bytes);
    N->pack_a(m, k, a, lda, ap, nonneg);
    int r0 = m > 48 && rndi(0, 1) ? 48 : 0;
    for (size_t i = 0; i < (size_t)m * ldc; i++) c1[i] = (int)(i % (size_t)ldc) < n ? c0[i] ^ 0x5555 : c0[i];
    N->gemm_s8_packed(m - r0, n, k, (const char *)ap + N->packed_a_bytes(r0, k, nonneg), b, ldb, c1 + (size_t)r0 * ldc,
                      ldc, nonneg);
    snprintf(what, sizeof what, "gemm_s8_packed m=%d (from row %d) n=%d k=%d ldb=%d ldc=%d b>=0=%d", m, r0, n, k, ldb,
             ldc, nonneg);
    if (memcmp(c0 + (size_t)r0 * ldc, c1 + (size_t)r0 * ldc, sizeof(int32_t) * (size_t)(m - r0) * ldc)) differs(what);
    free(ap);
    free(a);
    free(b);
    free(c0);
    free(c1);
}

static void check_dwconv(void)
{
    int h = rndi(1, 40), w = rndi(1, 90), kh = rndi(1, 5), kw = rndi(1, 5), sh = rndi(1, 3), sw = rndi(1, 3);
    if (rndi(0, 2)) {
        kh = kw = 3;
        sh = sw = rndi(1, 2);
    }
    int dh = rndi(0, 4) ? 1 : 2, dw = rndi(0, 4) ? 1 : 2, pt = rndi(0, 2), pl = rndi(0, 2), pb = rndi(0, 2),
        pr = rndi(0, 2);
    if (h + pt + pb - dh * (kh - 1) - 1 < 0 || w + pl + pr - dw * (kw - 1) - 1 < 0) return;
    int oh = (h + pt + pb - dh * (kh - 1) - 1) / sh + 1, ow = (w + pl + pr - dw * (kw - 1) - 1) / sw + 1;
    int8_t *x = malloc((size_t)h * w), kk[25];
    int32_t *o0 = malloc(sizeof(int32_t) * (size_t)oh * ow), *o1 = malloc(sizeof(int32_t) * (size_t)oh * ow);
    codes(x, (size_t)h * w, rndi(1, 2));
    codes(kk, (size_t)kh * kw, rndi(0, 1) ? 0 : 2);
    if (rndi(0, 4) == 0) kk[rndi(0, kh * kw - 1)] = 0;
    P->dwconv_s8(x, h, w, kk, kh, kw, sh, sw, pt, pl, dh, dw, o0, oh, ow);
    N->dwconv_s8(x, h, w, kk, kh, kw, sh, sw, pt, pl, dh, dw, o1, oh, ow);
    char what[160];
    snprintf(what, sizeof what, "dwconv_s8 %dx%d k%dx%d s%d,%d p%d,%d d%d,%d", h, w, kh, kw, sh, sw, pt, pl, dh, dw);
    if (memcmp(o0, o1, sizeof(int32_t) * (size_t)oh * ow)) differs(what);
    free(x);
    free(o0);
    free(o1);
}

static void check_requant(void)
{
    int n = rndi(1, 90), lshift = rndi(0, 2) ? 0 : rndi(0, 31), rounding = rndi(0, 3);
    int shift = rndi(0, 4) ? rndi(0, 20) : rndi(-31, 62), bw = rndi(0, 2) ? 8 : rndi(2, 32);
    int out_bytes = bw <= 8 ? (1 << rndi(0, 2)) : bw <= 16 ? (2 << rndi(0, 1)) : 4;
    int64_t bias = rndi(0, 3) ? (int64_t)(int32_t)rnd64() >> rndi(0, 31) : (int64_t)(rnd64() >> 3) - ((int64_t)1 << 60);
    int32_t acc[90];
    for (int i = 0; i < n; i++) {
        int kind = rndi(0, 5);
        if (kind == 0) acc[i] = rndi(0, 1) ? INT32_MIN : INT32_MAX;
        else if (kind == 1 && shift > 0 && shift < 30 && lshift == 0) /* a tie */
            acc[i] = (int32_t)(((int64_t)rndi(-500, 500) * 2 + 1) * ((int64_t)1 << (shift - 1)) - (int32_t)bias);
        else acc[i] = (int32_t)rnd64() >> rndi(0, 31);
    }
    uint8_t o0[90 * 4], o1[90 * 4];
    memset(o0, 0x5a, sizeof o0);
    memset(o1, 0x5a, sizeof o1);
    P->requant_s32(acc, n, bias, lshift, shift, rounding, bw, o0, out_bytes);
    N->requant_s32(acc, n, bias, lshift, shift, rounding, bw, o1, out_bytes);
    char what[160];
    snprintf(what, sizeof what, "requant_s32 n=%d bias=%" PRId64 " lshift=%d shift=%d rounding=%d bw=%d bytes=%d", n,
             bias, lshift, shift, rounding, bw, out_bytes);
    if (memcmp(o0, o1, sizeof o0)) differs(what);
}

static void check_relu_maxpool(void)
{
    static int8_t x[40 * 90], y0[40 * 90], y1[40 * 90];
    int n = rndi(1, 40 * 90);
    fill_s8(x, (size_t)n);
    P->relu_s8(x, y0, n);
    N->relu_s8(x, y1, n);
    char what[160];
    snprintf(what, sizeof what, "relu_s8 n=%d", n);
    if (memcmp(y0, y1, (size_t)n)) differs(what);
    int h = rndi(1, 40), w = rndi(1, 90), kh = rndi(1, 4), kw = rndi(1, 4), sh = rndi(1, 3), sw = rndi(1, 3);
    int pt = rndi(0, kh - 1), pl = rndi(0, kw - 1), oh = (h + 2 * pt - kh) / sh + 1, ow = (w + 2 * pl - kw) / sw + 1;
    if (oh < 1 || ow < 1) return;
    int8_t empty = (int8_t)-rndi(2, 128);
    fill_s8(x, (size_t)h * w);
    P->maxpool_s8(x, h, w, kh, kw, sh, sw, pt, pl, y0, oh, ow, empty);
    N->maxpool_s8(x, h, w, kh, kw, sh, sw, pt, pl, y1, oh, ow, empty);
    snprintf(what, sizeof what, "maxpool_s8 %dx%d k%dx%d s%dx%d p%d,%d", h, w, kh, kw, sh, sw, pt, pl);
    if (memcmp(y0, y1, (size_t)oh * ow)) differs(what);
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 300;
    int neon = dfx_neon32_available();
    printf("cpu has neon: %d\n", neon);
    if (!neon) {
        printf("neon32: not run (no NEON)\n");
        return 0;
    }
    for (int i = 0; i < iters && failures < 10; i++) {
        check_gemm();
        check_dwconv();
        check_dwconv();
        for (int j = 0; j < 20; j++) check_requant();
        check_relu_maxpool();
    }
    printf("neon32: %d x (gemm_s8 + packed, 2 dwconv_s8, 20 requant_s32, relu_s8, maxpool_s8) %s\n", iters,
           failures ? "FAILED" : "equal to portable");
    return failures ? 1 : 0;
}

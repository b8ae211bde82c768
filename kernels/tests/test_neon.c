/* C test of the NEON kernel sets (kernels/src/arch/neon) against the portable set:
 * every entry of the dispatch table, on random inputs with the -128/127
 * extremes, rounding ties, every rounding mode, shifts -31..62, odd sizes and
 * strides. Run under qemu-aarch64 with -cpu cortex-a53 (neon only) and
 * -cpu cortex-a76 or max (dotprod too).
 *
 *   test_neon [iterations]
 *
 * Prints which sets it checked; fails (exit 1) on the first difference. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "fixedpoint.h"
#include "arch/neon/neon.h"
#include "test_random.h"

static int failures;
#define FAIL(...)                     \
    do {                              \
        fprintf(stderr, __VA_ARGS__); \
        fprintf(stderr, "\n");        \
        failures++;                   \
        return;                       \
    } while (0)
#include "test_fused.h" /* after FAIL */

static void check_gemm(const struct dfx_kernels *ks)
{
    static const int sizes[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 129};
    int m = rndi(0, 3) ? sizes[rndi(0, 14)] : rndi(1, 300);
    int n = rndi(0, 3) ? sizes[rndi(0, 14)] : rndi(1, 300);
    int k = rndi(0, 3) ? sizes[rndi(0, 14)] : rndi(1, 1200);
    if (rndi(0, 20) == 0) {
        n = 1;
        k = rndi(4097, 9000);
    } /* gemv chunks */
    if (rndi(0, 20) == 0) {
        m = rndi(100, 300);
        k = rndi(257, 700);
    } /* k and m blocks */
    int lda = k + rndi(0, 3) * rndi(0, 5), ldb = n + rndi(0, 1) * rndi(0, 9), ldc = n + rndi(0, 2);
    int8_t *a = malloc((size_t)m * lda), *b = malloc((size_t)k * ldb);
    int32_t *c0 = malloc(sizeof(int32_t) * (size_t)m * ldc), *c1 = malloc(sizeof(int32_t) * (size_t)m * ldc);
    fill_s8(a, (size_t)m * lda);
    fill_s8(b, (size_t)k * ldb);
    for (size_t i = 0; i < (size_t)m * ldc; i++) c0[i] = c1[i] = (int32_t)rnd64();
    dfx_kernels_portable.gemm_s8(m, n, k, a, lda, b, ldb, c0, ldc);
    ks->gemm_s8(m, n, k, a, lda, b, ldb, c1, ldc);
    int bad = memcmp(c0, c1, sizeof(int32_t) * (size_t)m * ldc) != 0;
    free(a);
    free(b);
    free(c0);
    free(c1);
    if (bad) FAIL("%s gemm_s8 m=%d n=%d k=%d lda=%d ldb=%d ldc=%d differs", ks->name, m, n, k, lda, ldb, ldc);
}

/* gemm_s8_packed against the portable gemm_s8: sizes off the blocks, odd k, -128/127, b_nonneg both ways
 * (B >= 0 when set), and the additivity of packed_a_bytes at 48-row boundaries (dispatch.h). */
static void check_gemm_packed(const struct dfx_kernels *ks)
{
    if (!ks->packed_a_bytes) return;
    int m, n, k;
    gemm_dims(&m, &n, &k);
    int nonneg = rndi(0, 1), lda = k + rndi(0, 3), ldb = n + rndi(0, 1) * rndi(0, 9), ldc = n + rndi(0, 2);
    size_t bytes = ks->packed_a_bytes(m, k, nonneg);
    int8_t *a = malloc((size_t)m * lda), *b = malloc((size_t)k * ldb);
    uint8_t *ap = malloc(bytes + 1), *ap2 = malloc(bytes + 1);
    int32_t *c0 = malloc(sizeof(int32_t) * (size_t)m * ldc), *c1 = malloc(sizeof(int32_t) * (size_t)m * ldc);
    fill_s8(a, (size_t)m * lda);
    fill_s8(b, (size_t)k * ldb);
    if (nonneg)
        for (size_t i = 0; i < (size_t)k * ldb; i++) b[i] = (int8_t)(b[i] < 0 ? -(b[i] + 1) : b[i]);
    for (size_t i = 0; i < (size_t)m * ldc; i++) c0[i] = c1[i] = (int32_t)rnd64();
    ks->pack_a(m, k, a, lda, ap, nonneg);
    dfx_kernels_portable.gemm_s8(m, n, k, a, lda, b, ldb, c0, ldc);
    ks->gemm_s8_packed(m, n, k, ap, b, ldb, c1, ldc, nonneg);
    int bad = memcmp(c0, c1, sizeof(int32_t) * (size_t)m * ldc) != 0, split = 0;
    if (m > 48) { /* rows [48, m) packed alone land at packed_a_bytes(48, k) */
        size_t off = ks->packed_a_bytes(48, k, nonneg);
        ks->pack_a(48, k, a, lda, ap2, nonneg);
        ks->pack_a(m - 48, k, a + (size_t)48 * lda, lda, ap2 + off, nonneg);
        split = off + ks->packed_a_bytes(m - 48, k, nonneg) != bytes || memcmp(ap, ap2, bytes) != 0;
    }
    free(a);
    free(b);
    free(ap);
    free(ap2);
    free(c0);
    free(c1);
    if (bad || split)
        FAIL("%s gemm_s8_packed m=%d n=%d k=%d nonneg=%d ldb=%d ldc=%d %s", ks->name, m, n, k, nonneg, ldb, ldc,
             bad ? "differs" : "packing is not additive");
}

static void check_dwconv(const struct dfx_kernels *ks)
{
    int h = rndi(1, 40), w = rndi(1, 70), kh = rndi(1, 5), kw = rndi(1, 5), sh = rndi(1, 3), sw = rndi(1, 3);
    if (rndi(0, 1)) { /* the 3 x 3 stride 1 / 2 path; sometimes planes of several strips */
        kh = kw = 3;
        sw = sh = rndi(1, 2);
        if (rndi(0, 5) == 0) {
            h = rndi(100, 400);
            w = rndi(100, 400);
        }
    }
    int dh = rndi(0, 3) ? 1 : 2, dw = rndi(0, 3) ? 1 : 2, pt = rndi(0, 2), pl = rndi(0, 2), pb = rndi(0, 2),
        pr = rndi(0, 2);
    if (kh == 3 && kw == 3 && sh == 1 && sw == 1 && rndi(0, 1)) { /* "same" padding: the flattened-plane path */
        pt = pl = pb = pr = 1;
        dh = dw = 1;
    }
    int oh = (h + pt + pb - dh * (kh - 1) - 1) / sh + 1, ow = (w + pl + pr - dw * (kw - 1) - 1) / sw + 1;
    if (h + pt + pb - dh * (kh - 1) - 1 < 0 || w + pl + pr - dw * (kw - 1) - 1 < 0) return;
    int8_t *x = malloc((size_t)h * w), kk[25];
    int32_t *o0 = malloc(sizeof(int32_t) * (size_t)oh * ow), *o1 = malloc(sizeof(int32_t) * (size_t)oh * ow);
    fill_s8(x, (size_t)h * w);
    fill_s8(kk, (size_t)kh * kw);
    if (rndi(0, 4) == 0) kk[rndi(0, kh * kw - 1)] = 0;
    for (int t = rndi(0, 2) ? 0 : rndi(1, 3); t > 0; t--) kk[rndi(0, kh * kw - 1)] = -128; /* -128 pairs */
    if (rndi(0, 4) == 0) memset(x, 0x80, (size_t)h * w);                                   /* -128 * -128 everywhere */
    dfx_kernels_portable.dwconv_s8(x, h, w, kk, kh, kw, sh, sw, pt, pl, dh, dw, o0, oh, ow);
    ks->dwconv_s8(x, h, w, kk, kh, kw, sh, sw, pt, pl, dh, dw, o1, oh, ow);
    int bad = memcmp(o0, o1, sizeof(int32_t) * (size_t)oh * ow) != 0;
    free(x);
    free(o0);
    free(o1);
    if (bad)
        FAIL("%s dwconv_s8 h=%d w=%d k=%dx%d s=%d,%d p=%d,%d d=%d,%d differs", ks->name, h, w, kh, kw, sh, sw, pt, pl,
             dh, dw);
}

static void check_requant(const struct dfx_kernels *ks)
{
    int n = rndi(1, 70), lshift = rndi(0, 3) ? 0 : rndi(0, 31), rounding = rndi(0, 3);
    int shift = rndi(0, 4) ? rndi(0, 20) : rndi(-31, 62);
    int bw = rndi(0, 2) ? 8 : rndi(2, 32);
    int out_bytes = bw <= 8 ? (1 << rndi(0, 2)) : bw <= 16 ? (2 << rndi(0, 1)) : 4;
    int64_t bias = rndi(0, 3) ? (int64_t)(int32_t)rnd64() >> rndi(0, 31) : (int64_t)(rnd64() >> 2) - ((int64_t)1 << 61);
    if (rndi(0, 5) == 0) bias = 0;
    int32_t acc[70];
    for (int i = 0; i < n; i++) {
        int64_t v;
        int kind = rndi(0, 6);
        if (kind == 0) v = rndi(0, 1) ? INT32_MIN : INT32_MAX;
        else if (kind <= 2 && shift > 0 && shift < 62) {
            /* a tie: (acc << lshift) + bias = odd multiple of 2^(shift-1), when representable */
            int64_t t = ((int64_t)rndi(-1000, 1000) * 2 + 1) * ((int64_t)1 << (shift - 1)) - bias;
            v = lshift ? (t >> lshift) : t;
            if (v < INT32_MIN || v > INT32_MAX) v = (int32_t)rnd64();
        } else v = (int32_t)rnd64() >> rndi(0, 31);
        acc[i] = (int32_t)v;
    }
    /* respect the contract: |(acc << lshift) + bias| < 2^62 */
    if (lshift > 30 && bias > ((int64_t)1 << 60)) bias >>= 2;
    uint8_t o0[70 * 4], o1[70 * 4];
    memset(o0, 0x5a, sizeof o0);
    memset(o1, 0x5a, sizeof o1);
    dfx_kernels_portable.requant_s32(acc, n, bias, lshift, shift, rounding, bw, o0, out_bytes);
    ks->requant_s32(acc, n, bias, lshift, shift, rounding, bw, o1, out_bytes);
    if (memcmp(o0, o1, sizeof o0))
        FAIL("%s requant_s32 n=%d bias=%" PRId64 " lshift=%d shift=%d rounding=%d bw=%d out_bytes=%d differs", ks->name,
             n, bias, lshift, shift, rounding, bw, out_bytes);
}

/* quantize_f32 against fp_quantize_row: ties, NaN, infinities, -0.0, tiny and huge values, every mode. */
static void check_quantize(const struct dfx_kernels *ks)
{
    if (!ks->quantize_f32) return;
    int n = rndi(1, 90), fl = rndi(0, 5) ? rndi(-20, 20) : (rndi(0, 1) ? 800 : -800), rounding = rndi(0, 3);
    if (rndi(0, 9) == 0) fl = rndi(90, 130); /* the float32 lanes' bound (100) */
    int bw = rndi(0, 2) ? 8 : rndi(2, 32), out_bytes = bw <= 8 ? (1 << rndi(0, 2)) : bw <= 16 ? (2 << rndi(0, 1)) : 4;
    float x[90];
    for (int i = 0; i < n; i++) {
        int kind = rndi(0, 9);
        double v = ldexp((double)rndi(-300000, 300000), rndi(-18, 0) - fl);
        if (kind == 0) v = ldexp(rndi(-400, 400) + 0.5, -fl); /* a tie */
        else if (kind == 1) v = (double)(float)ldexp(1.0, -149) * (rndi(0, 1) ? -1 : 1);
        else if (kind == 2) v = rndi(0, 1) ? INFINITY : -INFINITY;
        else if (kind == 3) v = rndi(0, 1) ? NAN : -0.0;
        else if (kind == 4) v = ldexp((double)rndi(-1000, 1000), rndi(0, 40) - fl);
        else if (kind == 5) v = ldexp(8388608.0 * (rndi(0, 1) ? -1 : 1) + rndi(-4, 4) * 0.5, -fl); /* near 2^23 */
        x[i] = (float)v;
    }
    uint8_t o0[90 * 4], o1[90 * 4];
    memset(o0, 0x5a, sizeof o0);
    memset(o1, 0x5a, sizeof o1);
    fp_quantize_row(x, n, fl, bw, rounding, o0, out_bytes);
    ks->quantize_f32(x, n, fl, bw, rounding, o1, out_bytes);
    if (memcmp(o0, o1, sizeof o0))
        FAIL("%s quantize_f32 n=%d fl=%d rounding=%d bw=%d out_bytes=%d differs", ks->name, n, fl, rounding, bw,
             out_bytes);
}

static void check_relu(const struct dfx_kernels *ks)
{
    int n = rndi(1, 300);
    int8_t x[300], y0[300], y1[300];
    fill_s8(x, (size_t)n);
    dfx_kernels_portable.relu_s8(x, y0, n);
    ks->relu_s8(x, y1, n);
    if (memcmp(y0, y1, (size_t)n)) FAIL("%s relu_s8 n=%d differs", ks->name, n);
}

/* building blocks outside the table, against plain loops */
static void check_blocks(void)
{
    int r = rndi(1, 9), stride = rndi(1, 2), n = rndi(1, 100);
    int8_t data[9][2 * 100 + 32];
    const int8_t *rows[9];
    for (int t = 0; t < r; t++) {
        fill_s8(data[t], sizeof data[t]);
        rows[t] = data[t];
    }
    int8_t y0[100], y1[100];
    int32_t s0[100], s1[100];
    for (int i = 0; i < n; i++) {
        int8_t m = rows[0][i * stride];
        int32_t s = 0;
        for (int t = 0; t < r; t++) {
            if (rows[t][i * stride] > m) m = rows[t][i * stride];
            s += rows[t][i * stride];
        }
        y0[i] = m;
        s0[i] = s + 7;
        s1[i] = 7;
    }
    dfx_neon_maxpool_row_s8(rows, r, stride, y1, n);
    dfx_neon_sumpool_row_s8(rows, r, stride, s1, n);
    if (memcmp(y0, y1, (size_t)n)) FAIL("maxpool_row r=%d stride=%d n=%d differs", r, stride, n);
    if (memcmp(s0, s1, sizeof(int32_t) * (size_t)n)) FAIL("sumpool_row r=%d stride=%d n=%d differs", r, stride, n);
    int la = rndi(0, 8), lb = rndi(0, 8), shift = rndi(0, 12), rounding = rndi(0, 3), bw = rndi(2, 8);
    for (int i = 0; i < n; i++) {
        int64_t v = ((int64_t)data[0][i] << la) + ((int64_t)data[1 % r][i] << lb);
        y0[i] = (int8_t)fp_saturate(fp_round_shift(v, shift, rounding), bw);
    }
    dfx_neon_add_s8(data[0], la, data[1 % r], lb, shift, rounding, bw, y1, n);
    if (memcmp(y0, y1, (size_t)n))
        FAIL("add_s8 la=%d lb=%d shift=%d rounding=%d bw=%d n=%d differs", la, lb, shift, rounding, bw, n);
}

static void check_maxpool(const struct dfx_kernels *ks)
{
    static int8_t x[40 * 70], y0[46 * 76], y1[46 * 76]; /* oh, ow reach h + 2 * pt - kh + 1 <= h + 3 */
    int h = rndi(1, 40), w = rndi(1, 70), kh = rndi(1, 4), kw = rndi(1, 4), sh = rndi(1, 3), sw = rndi(1, 3);
    int pt = rndi(0, kh - 1), pl = rndi(0, kw - 1);
    int oh = (h + 2 * pt - kh) / sh + 1, ow = (w + 2 * pl - kw) / sw + 1;
    if (oh < 1 || ow < 1) return;
    int8_t empty = (int8_t)-rndi(2, 128);
    fill_s8(x, (size_t)h * w);
    dfx_kernels_portable.maxpool_s8(x, h, w, kh, kw, sh, sw, pt, pl, y0, oh, ow, empty);
    ks->maxpool_s8(x, h, w, kh, kw, sh, sw, pt, pl, y1, oh, ow, empty);
    if (memcmp(y0, y1, (size_t)oh * ow))
        FAIL("%s maxpool_s8 %dx%d k%dx%d s%dx%d p%d,%d differs", ks->name, h, w, kh, kw, sh, sw, pt, pl);
    for (int oy = 0; oy < oh; oy++) /* and the portable set against the definition */
        for (int ox = 0; ox < ow; ox++) {
            int m = -1000;
            for (int i = 0; i < kh; i++)
                for (int j = 0; j < kw; j++) {
                    int iy = oy * sh - pt + i, ix = ox * sw - pl + j;
                    if (iy >= 0 && iy < h && ix >= 0 && ix < w && x[iy * w + ix] > m) m = x[iy * w + ix];
                }
            if (y0[oy * ow + ox] != (m == -1000 ? empty : m)) {
                FAIL("portable maxpool_s8 wrong at %d,%d", oy, ox);
                return;
            }
        }
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 300;
    guard_init(); /* B of the fused GEMM checks against an inaccessible page (test_fused.h) */
    int dot = dfx_neon_has_dotprod();
    const struct dfx_kernels *sets[2] = {&dfx_kernels_neon, &dfx_kernels_dotprod};
    printf("cpu has dotprod: %d\n", dot);
    for (int s = 0; s < 1 + dot; s++) {
        for (int i = 0; i < iters && failures < 10; i++) {
            check_gemm(sets[s]);
            check_gemm_packed(sets[s]);
            check_dwconv(sets[s]);
            check_dwconv_requant(sets[s]);
            check_gemm_requant(sets[s]);
            for (int j = 0; j < 20; j++) check_requant(sets[s]);
            for (int j = 0; j < 5; j++) check_quantize(sets[s]);
            check_relu(sets[s]);
            check_maxpool(sets[s]);
        }
        printf("%s: %d x (gemm_s8, gemm_s8_packed, dwconv_s8, the fused requantizing entries, 20 requant_s32, 5 "
               "quantize_f32, relu_s8, maxpool_s8) %s\n",
               sets[s]->name, iters, failures ? "FAILED" : "equal to portable");
    }
    if (fused_tried && fused_done * 4 < fused_tried) { /* many parameters are inside the fused case */
        fprintf(stderr, "the fused requantizing entries did only %d of %d calls\n", fused_done, fused_tried);
        failures++;
    }
    printf("fused requantizing entries: %d of %d calls done in one pass\n", fused_done, fused_tried);
    for (int i = 0; i < iters * 10 && failures < 10; i++) check_blocks();
    printf("building blocks (maxpool/sumpool rows, add_s8): %s\n", failures ? "FAILED" : "equal to the reference");
    guard_release();
    return failures ? 1 : 0;
}

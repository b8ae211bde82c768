/* C test of the x86-64 AVX2 kernels. First the depthwise convolution (arch/x86/dwconv.c) against a
 * plain scalar reference of the dwconv_s8 formula of dispatch.h: random
 * geometry (any kernel size, strides, dilations, padding up to beyond the
 * kernel, outputs whose windows lie entirely in padding, 1-wide planes, widths
 * that are not multiples of the vector width, rows too long for the stack
 * buffers), int8 codes with runs of -128 and 127, unaligned pointers, the
 * input against an inaccessible page on either side (reads outside the plane
 * fault) and canaries around the output. The dwconv_s8 of the avx2 set (which
 * calls the AVX2 code or falls back to the portable loop) and of the portable set
 * are checked too, and the fused depthwise requantization (dfx_x86_dwconv_rq_s8_avx2) against the reference sums
 * requantized. Then the AVX2 GEMM (arch/x86/x86.c: unpacked, packed for any B and for B >= 0, whole and from a row
 * block of 48) against int64 sums, the int8 requantization against the exact int64 formula, every tie rule, with ties
 * and saturating values, and the input quantization (dfx_x86_quantize_f32) against fp_quantize_row.
 *
 *   test_x86 [iterations]
 *
 * Fails (exit 1) on a difference; exits 77 (CTest: skipped) when the build
 * has no x86 SIMD code or the CPU has no AVX2, saying why. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "fixedpoint.h"
#include "arch/x86/x86.h"

#if DFX_X86_SIMD
#include "test_guard.h"
#include "test_random.h"

static int failures;
#define FAIL(...)            \
    do {                     \
        printf("FAIL ");     \
        printf(__VA_ARGS__); \
        printf("\n");        \
        failures++;          \
        return;              \
    } while (0)
#include "test_fused.h" /* after FAIL */

static void reference(const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int sh, int sw, int pt, int pl,
                      int dh, int dw, int32_t *out, int oh, int ow)
{
    for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++) {
            int64_t s = 0;
            for (int i = 0; i < kh; i++)
                for (int j = 0; j < kw; j++) {
                    int64_t iy = (int64_t)oy * sh - pt + (int64_t)i * dh, ix = (int64_t)ox * sw - pl + (int64_t)j * dw;
                    if (iy >= 0 && iy < h && ix >= 0 && ix < w) s += k[i * kw + j] * x[iy * w + ix];
                }
            out[(size_t)oy * ow + ox] = (int32_t)s;
        }
}

static long cases, handled, fast_handled;

#define CANARY 0x5A5A5A5A

static void check_case(int h, int w, int kh, int kw, int sh, int sw, int pt, int pl, int dh, int dw, int oh, int ow)
{
    size_t n = (size_t)h * w, no = (size_t)oh * ow;
    int8_t *x = (int8_t *)guarded(n, rndi(0, 1)), kk[64];
    int32_t *o0 = malloc(sizeof(int32_t) * no), *buf1 = malloc(sizeof(int32_t) * (no + 9)),
            *buf2 = malloc(sizeof(int32_t) * (no + 9));
    if (!o0 || !buf1 || !buf2) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    int off = rndi(0, 7); /* outputs at any 4-byte alignment */
    int32_t *o1 = buf1 + off, *o2 = buf2 + off;
    for (size_t i = 0; i < no + 9; i++) buf1[i] = buf2[i] = CANARY;
    fill_s8(x, n);
    fill_s8(kk, (size_t)kh * kw);
    if (rndi(0, 4) == 0) kk[rndi(0, kh * kw - 1)] = 0;
    const int8_t *kp = kk;
    if (rndi(0, 1)) { /* weights at an odd address */
        static int8_t kodd[65];
        memcpy(kodd + 1, kk, (size_t)kh * kw);
        kp = kodd + 1;
    }
    reference(x, h, w, kp, kh, kw, sh, sw, pt, pl, dh, dw, o0, oh, ow);
    int done = dfx_x86_dwconv_s8_avx2(x, h, w, kp, kh, kw, sh, sw, pt, pl, dh, dw, o1, oh, ow);
    /* the dwconv_s8 of the portable set or of an x86 set this CPU runs (the VNNI sets' own 3 x 3 code) */
    const struct dfx_kernels *sets[8] = {&dfx_kernels_portable}, *set;
    int nsets = 1;
    for (int si = 0; dfx_x86_sets[si] && nsets < 8; si++)
        if (dfx_x86_usable(dfx_x86_sets[si])) sets[nsets++] = dfx_x86_sets[si];
    set = sets[rndi(0, nsets - 1)];
    set->dwconv_s8(x, h, w, kp, kh, kw, sh, sw, pt, pl, dh, dw, o2, oh, ow);
    cases++;
    handled += done;
    /* the cases it is meant for must not fall back (arch/x86/dwconv.c: a ring of
     * rows, a power of 2 >= (kh - 1) * dh + 2, of len + 32 elements, + 1) */
    int np = (kw + 1) / 2, win = (kh - 1) * dh + 2, ring = 2;
    while (ring < win) ring *= 2;
    int64_t len = ((int64_t)sw * (ow < 16 ? 16 : ow) + 2 * np + 15) / 16 * 16;
    int fast = dw == 1 && (sw == 1 || sw == 2) && kh * np <= 64 && ring <= 32 && (ring + 1) * (len + 32) <= 16384;
    fast_handled += fast && done;
    const char *what = NULL;
    if (fast && !done) what = "not handled (returned 0)";
    else if (done && memcmp(o0, o1, sizeof(int32_t) * no)) what = "dfx_x86_dwconv_s8_avx2 differs from the reference";
    else if (memcmp(o0, o2, sizeof(int32_t) * no)) {
        static char msg[96];
        snprintf(msg, sizeof msg, "the dwconv_s8 of the set %s differs from the reference", set->name);
        what = msg;
    } else {
        for (int i = 0; i < off; i++)
            if (buf1[i] != CANARY || buf2[i] != CANARY) what = "wrote before the output";
        for (size_t i = off + no; i < no + 9; i++)
            if ((done && buf1[i] != CANARY) || buf2[i] != CANARY) what = "wrote after the output";
    }
    if (!what) { /* the fused requantization (dwconv_requant_s8): int8 codes from the reference sums */
        int bw = rndi(2, 8), lshift = rndi(0, 3) ? 0 : rndi(0, 4), shift = rndi(0, 29 - bw), rounding = rndi(0, 3);
        int32_t bias = rndi(-5000, 5000);
        int relu = rndi(0, 1);
        int8_t *q = malloc(no + 9), *want = malloc(no);
        int32_t *work = malloc(sizeof(int32_t) * no);
        memset(q, 0x5A, no + 9);
        int rq = dfx_x86_dwconv_rq_s8_avx2(x, h, w, kp, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, bias, lshift, shift,
                                           rounding, bw, relu, q, work);
        for (size_t i = 0; i < no; i++) {
            want[i] = (int8_t)fp_saturate(
                fp_round_shift((int64_t)o0[i] * ((int64_t)1 << lshift) + bias, shift, rounding), bw);
            if (relu && want[i] < 0) want[i] = 0;
        }
        if (rq != done) what = "dfx_x86_dwconv_rq_s8_avx2 handles other cases than dfx_x86_dwconv_s8_avx2";
        else if (rq && memcmp(q, want, no)) what = "dfx_x86_dwconv_rq_s8_avx2 differs from the requantized reference";
        else
            for (size_t i = no; i < no + 9; i++)
                if (q[i] != 0x5A) what = "dfx_x86_dwconv_rq_s8_avx2 wrote after the output";
        free(q);
        free(want);
        free(work);
    }
    if (what) {
        failures++;
        fprintf(stderr, "FAIL: dwconv_s8 h=%d w=%d k=%dx%d s=%d,%d p=%d,%d d=%d,%d out=%dx%d: %s\n", h, w, kh, kw, sh,
                sw, pt, pl, dh, dw, oh, ow, what);
        for (size_t i = 0; i < no && done; i++)
            if (o0[i] != o1[i]) {
                fprintf(stderr, "  first difference at oy=%d ox=%d: reference %d, avx2 %d\n", (int)(i / ow),
                        (int)(i % ow), (int)o0[i], (int)o1[i]);
                break;
            }
    }
    free(o0);
    free(buf1);
    free(buf2);
}

static void random_case(void)
{
    int h = rndi(1, 40), w = rndi(1, 70), kh = rndi(1, 7), kw = rndi(1, 7), sh = rndi(1, 3), sw = rndi(1, 3);
    int dh = rndi(0, 3) ? 1 : rndi(2, 4), dw = rndi(0, 3) ? 1 : rndi(2, 3);
    int kind = rndi(0, 9);
    if (kind < 5) {
        kh = kw = 3;
        sh = sw = rndi(1, 2);
        dh = dw = 1;
    } /* the MobileNet cases */
    else if (kind == 5) {
        sw = rndi(1, 2);
        dw = 1;
    } else if (kind == 6) {
        sh = sw = rndi(1, 2);
        dh = dw = 1;
    } /* any kernel, flat bands */
    if (rndi(0, 9) == 0) h = 1;
    if (rndi(0, 9) == 0) w = 1;
    if (rndi(0, 3) == 0) {
        w = rndi(71, 400);
        h = rndi(1, 12);
    } /* row by row */
    if (rndi(0, 49) == 0) {
        w = rndi(2000, 9000);
        h = rndi(1, 4);
    } /* long rows, some beyond the stack buffers */
    /* padding: usually below the kernel, sometimes beyond it */
    int big = rndi(0, 5) == 0;
    int pt = rndi(0, big ? kh + 4 : kh - 1), pl = rndi(0, big ? kw + 4 : kw - 1);
    int pb = rndi(0, big ? kh + 4 : kh - 1), pr = rndi(0, big ? kw + 4 : kw - 1);
    int64_t sy = (int64_t)h + pt + pb - (int64_t)dh * (kh - 1) - 1;
    int64_t sx = (int64_t)w + pl + pr - (int64_t)dw * (kw - 1) - 1;
    int oh = sy < 0 ? 0 : (int)(sy / sh + 1), ow = sx < 0 ? 0 : (int)(sx / sw + 1);
    if (rndi(0, 9) == 0) oh += rndi(1, 4); /* windows past the plane and its padding */
    if (rndi(0, 9) == 0) ow += rndi(1, 20);
    if (oh < 1) oh = rndi(1, 3);
    if (ow < 1) ow = rndi(1, 3);
    check_case(h, w, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow);
}

/* GEMM (arch/x86/x86.c): the unpacked entry point, the packed one for any B (int16 pairs) and the one for
 * B >= 0 (int8 quads, unsigned x signed), each whole and from row 48 on (as a session's row blocks
 * use them), against int64 sums, with odd sizes, strides and extremes. wmax > 0: weights within
 * [-wmax, wmax], many at the bounds, so that the B >= 0 form's panels that add two quads in int16 run
 * (wmax <= 64: every panel; 65: some, with sums at and just past the limit), and B then often all 127. */
static long gemm_cases, set_gemm_cases;

/* Rows [r0, m) of C (row stride ldc) against ref (m x n): equal, and the columns past n untouched. */
static void compare_c(const int32_t *c, int ldc, const int32_t *ref, int m, int n, int k, int r0, const char *set,
                      const char *form)
{
    for (int i = r0; i < m && failures < 10; i++)
        for (int j = 0; j < ldc; j++) {
            int32_t have = c[(size_t)i * ldc + j], exp = j < n ? ref[(size_t)i * n + j] : CANARY;
            if (have != exp) {
                printf("FAIL gemm (set %s, %s) m=%d n=%d k=%d ldc=%d: c[%d][%d] = %d, want %d\n", set, form, m, n, k,
                       ldc, i, j, (int)have, (int)exp);
                failures++;
                break;
            }
        }
}

static void check_gemm(int m, int n, int k, int wmax)
{
    static const char *const form_name[] = {"unpacked", "packed", "packed from row 48", "packed, B >= 0",
                                            "packed, B >= 0, from row 48"};
    int lda = k + rndi(0, 3), ldb = n + rndi(0, 3), ldc = n + rndi(0, 2);
    int8_t *a = (int8_t *)malloc((size_t)m * lda), *b = (int8_t *)malloc((size_t)k * ldb);
    int8_t *bu = (int8_t *)malloc((size_t)k * ldb);
    int32_t *c = (int32_t *)malloc((size_t)m * ldc * 4), *want = (int32_t *)malloc((size_t)m * n * 4);
    int32_t *wantu = (int32_t *)malloc((size_t)m * n * 4);
    void *ap = malloc(dfx_x86_packed_a_bytes(m, k, 0)), *apu = malloc(dfx_x86_packed_a_bytes(m, k, 1));
    fill_s8(a, (size_t)m * lda);
    fill_s8(b, (size_t)k * ldb);
    for (size_t i = 0; i < (size_t)k * ldb; i++) bu[i] = (int8_t)(b[i] < 0 ? (b[i] == -128 ? 127 : -b[i]) : b[i]);
    if (wmax > 0) {
        int sign = rndi(-1, 1); /* 0: either sign; else one sign for all (the largest lane sums) */
        for (size_t i = 0; i < (size_t)m * lda; i++) {
            int v = rndi(0, 1) ? wmax : rndi(0, wmax);
            a[i] = (int8_t)(sign ? sign * v : rndi(0, 1) ? v : -v);
        }
        if (rndi(0, 1))
            for (size_t i = 0; i < (size_t)k * ldb; i++) bu[i] = 127;
    }
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            int64_t acc = 0, accu = 0;
            for (int p = 0; p < k; p++) {
                acc += (int64_t)a[(size_t)i * lda + p] * b[(size_t)p * ldb + j];
                accu += (int64_t)a[(size_t)i * lda + p] * bu[(size_t)p * ldb + j];
            }
            want[(size_t)i * n + j] = (int32_t)acc;
            wantu[(size_t)i * n + j] = (int32_t)accu;
        }
    dfx_x86_pack_a(m, k, a, lda, ap, 0);
    dfx_x86_pack_a(m, k, a, lda, apu, 1);
    for (int form = 0; form < 5; form++) {
        int r0 = form == 2 || form == 4 ? 48 : 0, nonneg = form >= 3;
        if (r0 >= m) continue;
        memset(c, 0x5A, (size_t)m * ldc * 4);
        if (form == 0) dfx_x86_gemm_s8_avx2(m, n, k, a, lda, b, ldb, c, ldc);
        else
            dfx_x86_gemm_s8_packed(m - r0, n, k,
                                   (const uint8_t *)(nonneg ? apu : ap) + dfx_x86_packed_a_bytes(r0, k, nonneg),
                                   nonneg ? bu : b, ldb, c + (size_t)r0 * ldc, ldc, nonneg);
        compare_c(c, ldc, nonneg ? wantu : want, m, n, k, r0, "avx2", form_name[form]);
        gemm_cases++;
    }
    /* the packed GEMM of every other x86 set this CPU runs (the VNNI tiles: B >= 0), on its own packing */
    for (int si = 0; dfx_x86_sets[si]; si++) {
        const struct dfx_kernels *ks = dfx_x86_sets[si];
        if (ks == &dfx_kernels_avx2 || !dfx_x86_usable(ks)) continue;
        for (int form = 1; form < 5; form++) {
            int r0 = form == 2 || form == 4 ? 48 : 0, nonneg = form >= 3;
            if (r0 >= m) continue;
            void *pk = malloc(ks->packed_a_bytes(m, k, nonneg));
            ks->pack_a(m, k, a, lda, pk, nonneg);
            memset(c, 0x5A, (size_t)m * ldc * 4);
            ks->gemm_s8_packed(m - r0, n, k, (const uint8_t *)pk + ks->packed_a_bytes(r0, k, nonneg), nonneg ? bu : b,
                               ldb, c + (size_t)r0 * ldc, ldc, nonneg);
            compare_c(c, ldc, nonneg ? wantu : want, m, n, k, r0, ks->name, form_name[form]);
            free(pk);
            set_gemm_cases++;
        }
    }
    free(a);
    free(b);
    free(bu);
    free(c);
    free(want);
    free(wantu);
    free(ap);
    free(apu);
}

/* requant_s32 for int8 outputs (dfx_x86_requant_s8_avx2, used in its int32 form) against the exact
 * int64 formula of dispatch.h, for every tie rule, around ties and with saturating values; with the ReLU
 * (requant_relu_s8) against max(0, that). */
static long requant_cases;
static void check_requant(void)
{
    int n = rndi(1, 200), bw = rndi(2, 8), lshift = rndi(0, 3) ? rndi(0, 4) : rndi(0, 29);
    int shift = rndi(0, 4) ? rndi(0, 12) : rndi(0, 29 - bw), rounding = rndi(0, 3);
    int32_t bias = rndi(0, 3) ? rndi(-5000, 5000) : (int32_t)(rnd64() % (1u << 30)) - (1 << 29);
    int relu = rndi(0, 1);
    int32_t acc[200];
    int8_t out[200 + 8];
    for (int i = 0; i < n; i++) {
        int kind = rndi(0, 4);
        int64_t v = kind == 0   ? (int64_t)(int32_t)rnd64()
                    : kind == 1 ? rndi(-300, 300)
                                : (int64_t)rndi(-2000, 2000) << shift; /* exact multiples: ties after the bias */
        if (kind == 3) v += (int64_t)1 << (shift > 0 ? shift - 1 : 0);
        if (kind == 4) v = rndi(0, 1) ? INT32_MAX : INT32_MIN;
        acc[i] = (int32_t)(v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : v);
    }
    memset(out, 0x5A, sizeof out);
    dfx_x86_requant_s8_avx2(acc, n, bias, lshift, shift, rounding, bw, relu, out);
    for (int i = 0; i < n + 8 && failures < 10; i++) {
        int want =
            i < n
                ? (int)fp_saturate(fp_round_shift((int64_t)acc[i] * ((int64_t)1 << lshift) + bias, shift, rounding), bw)
                : (int8_t)0x5A;
        if (relu && i < n && want < 0) want = 0;
        if (out[i] != want) {
            printf("FAIL requant n=%d bw=%d lshift=%d shift=%d rounding=%d bias=%d relu=%d: out[%d] = %d for acc %d, "
                   "want %d\n",
                   n, bw, lshift, shift, rounding, (int)bias, relu, i, out[i], i < n ? (int)acc[i] : 0, want);
            failures++;
            break;
        }
    }
    requant_cases++;
}

/* The max pooling of the avx2 set (2 x 2, stride 2 rows through dfx_x86_max2x2_row) and of the portable
 * one against a scalar reference: odd and even sizes, padding, planes against an inaccessible page. */
/* The avx2 set's int8 ReLU (dfx_x86_relu_s8) against max(x, 0): every length to 100, in place or not, the
 * bytes around the output untouched. */
static long relu_cases;
static void check_relu(void)
{
    int n = rndi(0, 100), inplace = rndi(0, 1);
    int8_t x[116], y[116], want[116];
    for (int i = 0; i < 116; i++) x[i] = (int8_t)rndi(-128, 127);
    memcpy(y, x, sizeof y);
    memcpy(want, x, sizeof want);
    for (int i = 0; i < n; i++) want[8 + i] = x[8 + i] > 0 ? x[8 + i] : 0;
    if (!inplace) memset(y, 0x5A, sizeof y), memset(want, 0x5A, 8), memset(want + 8 + n, 0x5A, 108 - n);
    dfx_x86_relu_s8(inplace ? y + 8 : x + 8, y + 8, n);
    if (memcmp(y, want, sizeof y)) {
        printf("FAIL relu_s8 n=%d in place=%d\n", n, inplace);
        failures++;
    }
    relu_cases++;
}

static long maxpool_cases;
static void check_maxpool(void)
{
    int h = rndi(1, 70), w = rndi(1, 140), pt = rndi(0, 1), pl = rndi(0, 1), kh = rndi(0, 3) ? 2 : rndi(1, 3);
    int kw = kh == 2 ? 2 : rndi(1, 3), sh = kh == 2 ? 2 : rndi(1, 2), sw = kh == 2 ? 2 : rndi(1, 2);
    int oh = (h + 2 * pt - kh + sh - 1) / sh + 1, ow = (w + 2 * pl - kw + sw - 1) / sw + 1; /* Caffe: rounded up */
    if (oh < 1 || ow < 1) return;
    int8_t *x = (int8_t *)guarded((size_t)h * w, rndi(0, 1)), *have = malloc((size_t)oh * ow),
           *want = malloc((size_t)oh * ow);
    fill_s8(x, (size_t)h * w);
    const struct dfx_kernels *set = rndi(0, 1) ? &dfx_kernels_avx2 : &dfx_kernels_portable;
    set->maxpool_s8(x, h, w, kh, kw, sh, sw, pt, pl, have, oh, ow, -128);
    /* reference: the plane inside a border of -128 (the empty value, below no code), every window whole */
    int hp = (oh - 1) * sh + kh, wp = (ow - 1) * sw + kw;
    int8_t *xp = malloc((size_t)hp * wp);
    memset(xp, -128, (size_t)hp * wp);
    for (int iy = 0; iy < h && iy + pt < hp; iy++)
        for (int ix = 0; ix < w && ix + pl < wp; ix++) xp[(iy + pt) * wp + ix + pl] = x[iy * w + ix];
    for (int o = 0; o < oh * ow; o++) {
        const int8_t *win = xp + (o / ow) * sh * wp + (o % ow) * sw;
        int8_t m = -128;
        for (int t = 0; t < kh * kw; t++) m = win[(t / kw) * wp + t % kw] > m ? win[(t / kw) * wp + t % kw] : m;
        want[o] = m;
    }
    free(xp);
    if (memcmp(have, want, (size_t)oh * ow)) {
        printf("FAIL maxpool (%s) h=%d w=%d k=%dx%d s=%dx%d pad=%d,%d\n", set->name, h, w, kh, kw, sh, sw, pt, pl);
        failures++;
    }
    free(have);
    free(want);
    maxpool_cases++;
}

/* quantize_f32 (dfx_x86_quantize_f32) against fp_quantize_row of fixedpoint.h, byte for byte: every
 * tie rule, ties and near-ties, NaN, infinities, saturating and tiny values, int8 and int16 outputs. */
static long quantize_cases;
static void check_quantize(void)
{
    int n = rndi(1, 100), fl = rndi(0, 5) ? rndi(-4, 12) : rndi(-800, 800), rounding = rndi(0, 3);
    int out_bytes = rndi(1, 2), bw = rndi(2, out_bytes == 1 ? 8 : 16);
    float x[100];
    for (int i = 0; i < n; i++) {
        int kind = rndi(0, 7);
        float v = (float)ldexp((double)rndi(-300000, 300000) / 1000.0, -fl);
        if (kind == 0) v = (float)ldexp(rndi(-300, 300) + 0.5, -fl); /* ties */
        if (kind == 1) v = nextafterf((float)ldexp(rndi(-300, 300) + 0.5, -fl), rndi(0, 1) ? INFINITY : -INFINITY);
        if (kind == 2) v = rndi(0, 1) ? NAN : rndi(0, 1) ? INFINITY : -INFINITY;
        if (kind == 3) v = (float)ldexp((double)rndi(-1000, 1000), rndi(-160, 140));
        x[i] = v;
    }
    uint8_t have[2 * 100 + 16], want[2 * 100 + 16];
    memset(have, 0x5A, sizeof have);
    memset(want, 0x5A, sizeof want);
    dfx_x86_quantize_f32(x, n, fl, bw, rounding, have, out_bytes);
    fp_quantize_row(x, n, fl, bw, rounding, want, out_bytes);
    if (memcmp(have, want, sizeof have)) {
        for (int i = 0; i < n; i++)
            if (memcmp(have + i * out_bytes, want + i * out_bytes, (size_t)out_bytes)) {
                printf("FAIL quantize_f32 n=%d fl=%d bw=%d rounding=%d out_bytes=%d: x[%d] = %a\n", n, fl, bw, rounding,
                       out_bytes, i, (double)x[i]);
                break;
            }
        failures++;
    }
    quantize_cases++;
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 20000;
    if (!dfx_x86_avx2()) {
        printf("test_x86: SKIPPED: this CPU has no AVX2 (dfx_x86_avx2() == 0), the AVX2 depthwise code cannot run\n");
        return 77;
    }
    guard_init();
    /* fixed cases: MobileNet-SSD's depthwise layers, 1-wide and 1-high planes, all-padding outputs */
    static const int fixed[][12] = {
        {150, 150, 3, 3, 1, 1, 1, 1, 1, 1, 150, 150}, {150, 150, 3, 3, 2, 2, 0, 0, 1, 1, 75, 75},
        {20, 150, 3, 3, 1, 1, 1, 1, 1, 1, 20, 150},   {20, 150, 3, 3, 2, 2, 0, 0, 1, 1, 9, 74},
        {20, 150, 3, 3, 2, 2, 1, 1, 1, 1, 10, 75},    {75, 75, 3, 3, 1, 1, 1, 1, 1, 1, 75, 75},
        {75, 75, 3, 3, 2, 2, 1, 1, 1, 1, 38, 38},     {19, 19, 3, 3, 1, 1, 1, 1, 1, 1, 19, 19},
        {19, 19, 3, 3, 2, 2, 1, 1, 1, 1, 10, 10},     {10, 10, 3, 3, 1, 1, 1, 1, 1, 1, 10, 10},
        {1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},         {1, 1, 3, 3, 1, 1, 5, 5, 1, 1, 12, 12},
        {1, 40, 3, 3, 1, 1, 1, 1, 1, 1, 1, 40},       {40, 1, 3, 3, 2, 2, 1, 1, 1, 1, 20, 1},
        {5, 5, 3, 3, 1, 1, 9, 9, 1, 1, 3, 3},         {5, 5, 3, 3, 2, 1, 0, 0, 1, 1, 9, 40},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        for (int rep = 0; rep < 20; rep++) {
            const int *f = fixed[i];
            check_case(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11]);
        }
    for (int i = 0; i < iters && failures < 10; i++) random_case();
    printf("test_x86: %ld dwconv_s8 cases, %ld handled by the AVX2 code (%ld of its fast cases): %s\n", cases, handled,
           fast_handled, failures ? "FAILED" : "equal to the reference");
    static const int gemm_fixed[][3] = {{6, 16, 2},     {1, 1, 1},   {50, 64, 500}, {20, 576, 25}, {100, 7, 513},
                                        {97, 129, 257}, {48, 16, 1}, {64, 300, 32}, {7, 3, 1000}};
    for (size_t i = 0; i < sizeof gemm_fixed / sizeof gemm_fixed[0]; i++)
        for (int wmax = 0; wmax <= 65; wmax += 64) {
            check_gemm(gemm_fixed[i][0], gemm_fixed[i][1], gemm_fixed[i][2], wmax);
            check_gemm(gemm_fixed[i][0], gemm_fixed[i][1], gemm_fixed[i][2], wmax + (wmax > 0));
        }
    for (int i = 0; i < iters / 100 && failures < 10; i++)
        check_gemm(rndi(1, 120), rndi(1, 300), rndi(1, 700), rndi(0, 1) ? 0 : rndi(1, 70));
    for (int i = 0; i < iters && failures < 10; i++) check_requant();
    for (int i = 0; i < iters && failures < 10; i++) check_quantize();
    for (int i = 0; i < iters / 10 && failures < 10; i++) check_maxpool();
    for (int i = 0; i < iters / 10 && failures < 10; i++) check_relu();
    for (int si = 0; dfx_x86_sets[si]; si++) /* the fused entries of every x86 set this CPU runs */
        for (int i = 0; dfx_x86_usable(dfx_x86_sets[si]) && i < iters / 20 && failures < 10; i++) {
            check_dwconv_requant(dfx_x86_sets[si]);
            check_gemm_requant(dfx_x86_sets[si]);
        }
    printf("test_x86: fused requantizing entries against the two steps: %d of %d calls done in one pass: %s\n",
           fused_done, fused_tried, failures ? "FAILED" : "equal");
    if (fused_tried && fused_done * 4 < fused_tried) { /* many parameters are inside the fused case */
        printf("FAIL the fused requantizing entries did only %d of %d calls\n", fused_done, fused_tried);
        failures++;
    }
    printf("test_x86: %ld max pooling and %ld ReLU cases: %s\n", maxpool_cases, relu_cases,
           failures ? "FAILED" : "equal to the reference");
    printf("test_x86: %ld GEMM (and %ld of the other x86 sets this CPU runs:", gemm_cases, set_gemm_cases);
    for (int si = 0; dfx_x86_sets[si]; si++)
        if (dfx_x86_sets[si] != &dfx_kernels_avx2 && dfx_x86_usable(dfx_x86_sets[si]))
            printf(" %s", dfx_x86_sets[si]->name);
    printf("), %ld int8 requantization and %ld input quantization cases: %s\n", requant_cases, quantize_cases,
           failures ? "FAILED" : "equal to the reference");
    guard_release();
    return failures ? 1 : 0;
}
#else
int main(void)
{
    printf("test_x86: SKIPPED: built without the x86 SIMD code (not x86-64 with GCC/Clang, or DFX_NO_X86_SIMD)\n");
    return 77;
}
#endif

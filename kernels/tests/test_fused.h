/* The fused requantizing entries of a kernel set (dispatch.h dwconv_requant_s8, gemm_s8_packed_requant)
 * against the portable set's two steps, for the C kernel tests (test_neon.c, test_x86.c): random shapes,
 * parameters mostly inside the entries' fast cases and sometimes outside (an entry may decline: it returns 0
 * and must not have written), every rounding mode, bw 2..8, with and without the ReLU, B against an
 * inaccessible page (test_guard.h: the includer calls guard_init first). The includer defines FAIL(...)
 * (report, count a failure, return) first; fused_done and fused_tried count the calls that did the work and
 * the calls made. */
#ifndef DFX_TEST_FUSED_H
#define DFX_TEST_FUSED_H

#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "dispatch.h"
#include "test_guard.h"
#include "test_random.h"

static int fused_done, fused_tried;

/* Requantization parameters of the fused entries: mostly inside their fast case (lshift 0, shift 0..31,
 * |bias| <= 2^30, every mode), sometimes outside it (the entry may then decline: it returns 0). */
static void fused_params(int64_t *bias, int *lshift, int *shift)
{
    *lshift = rndi(0, 9) ? 0 : rndi(1, 3);
    *shift = rndi(0, 9) ? rndi(0, 20) : rndi(-3, 40);
    *bias = rndi(0, 9) ? (int64_t)(int32_t)rnd64() >> rndi(1, 31) : (int64_t)(int32_t)rnd64() * 4;
}

/* dwconv_requant_s8 against the portable dwconv_s8 then requant_s32 (int8 outputs). */
static void check_dwconv_requant(const struct dfx_kernels *ks)
{
    if (!ks->dwconv_requant_s8) return;
    int h = rndi(1, 40), w = rndi(1, 70), s = rndi(1, 2), kh = 3, kw = 3, dl = 1;
    if (rndi(0, 5) == 0) {
        h = rndi(100, 300);
        w = rndi(100, 400);
    }
    if (rndi(0, 9) == 0) kh = kw = rndi(1, 5); /* declined shapes */
    if (rndi(0, 9) == 0) dl = 2;
    int pt = rndi(0, 2), pl = rndi(0, 2), pb = rndi(0, 2), pr = rndi(0, 2);
    if (s == 1 && rndi(0, 1)) pt = pl = pb = pr = 1; /* "same" padding: the flattened-plane path */
    int oh = (h + pt + pb - dl * (kh - 1) - 1) / s + 1, ow = (w + pl + pr - dl * (kw - 1) - 1) / s + 1;
    if (h + pt + pb - dl * (kh - 1) - 1 < 0 || w + pl + pr - dl * (kw - 1) - 1 < 0) return;
    int64_t bias;
    int lshift, shift, rounding = rndi(0, 3), bw = rndi(0, 2) ? 8 : rndi(2, 8), relu = rndi(0, 1);
    fused_params(&bias, &lshift, &shift);
    size_t P = (size_t)oh * ow;
    int8_t *x = malloc((size_t)h * w), kk[25], *y0 = malloc(P + 1), *y1 = malloc(P + 1);
    int32_t *acc = malloc(sizeof(int32_t) * P);
    fill_s8(x, (size_t)h * w);
    fill_s8(kk, (size_t)kh * kw);
    for (int t = rndi(0, 2) ? 0 : rndi(1, 9); t > 0; t--) kk[rndi(0, kh * kw - 1)] = -128;
    if (rndi(0, 4) == 0) memset(x, 0x80, (size_t)h * w);
    memset(y1, 0x5a, P + 1);
    dfx_kernels_portable.dwconv_s8(x, h, w, kk, kh, kw, s, s, pt, pl, dl, dl, acc, oh, ow);
    dfx_kernels_portable.requant_s32(acc, (int)P, bias, lshift, shift, rounding, bw, y0, 1);
    if (relu) dfx_kernels_portable.relu_s8(y0, y0, (int)P);
    y0[P] = 0x5a;
    int done = ks->dwconv_requant_s8(x, h, w, kk, kh, kw, s, s, pt, pl, dl, dl, bias, lshift, shift, rounding, bw, relu,
                                     y1, oh, ow, acc);
    int bad = done ? memcmp(y0, y1, P + 1) != 0 : y1[0] != 0x5a;
    fused_done += done != 0;
    fused_tried++;
    free(x);
    free(y0);
    free(y1);
    free(acc);
    if (bad)
        FAIL("%s dwconv_requant_s8 h=%d w=%d k=%d s=%d p=%d,%d d=%d bias=%" PRId64 " lshift=%d shift=%d rounding=%d "
             "bw=%d relu=%d %s",
             ks->name, h, w, kh, s, pt, pl, dl, bias, lshift, shift, rounding, bw, relu, done ? "differs" : "wrote");
}

/* Random GEMM sizes of the checks: mostly around the block edges, sometimes anything, sometimes k over
 * several k blocks. */
static void gemm_dims(int *m, int *n, int *k)
{
    static const int sizes[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 48, 64, 97, 129};
    *m = rndi(0, 3) ? sizes[rndi(0, 16)] : rndi(1, 300);
    *n = rndi(0, 3) ? sizes[rndi(0, 16)] : rndi(1, 300);
    *k = rndi(0, 3) ? sizes[rndi(0, 16)] : rndi(1, 1200);
    if (rndi(0, 10) == 0) *k = rndi(1025, 2600);
}

/* gemm_s8_packed_requant against the portable gemm_s8 then requant_s32 per row (int8 outputs). */
static void check_gemm_requant(const struct dfx_kernels *ks)
{
    if (!ks->gemm_s8_packed_requant) return;
    int m, n, k;
    gemm_dims(&m, &n, &k);
    int nonneg = rndi(0, 1), ldb = n + rndi(0, 1) * rndi(0, 9), ldo = n + rndi(0, 2);
    int rounding = rndi(0, 3), bw = rndi(0, 5) ? 8 : rndi(2, 8), relu = rndi(0, 1);
    int64_t *bias = malloc(sizeof(int64_t) * (size_t)m);
    int8_t *lsh = malloc((size_t)m);
    int16_t *rsh = malloc(sizeof(int16_t) * (size_t)m);
    int same = rndi(0, 1), easy = rndi(0, 1); /* easy: every row inside the fused case */
    for (int i = 0; i < m; i++) {
        int l, sft;
        fused_params(&bias[i], &l, &sft);
        if (easy) {
            l = 0;
            sft = rndi(1, 20);
            bias[i] = (int64_t)(int32_t)rnd64() >> rndi(2, 31);
        }
        if (same && i) sft = rsh[0];
        lsh[i] = (int8_t)l;
        rsh[i] = (int16_t)(sft < -31 ? -31 : sft);
    }
    size_t bytes = ks->packed_a_bytes(m, k, nonneg);
    size_t bn = (size_t)(k - 1) * ldb + n; /* B's last row ends at its n-th column, before a guard page */
    int8_t *a = malloc((size_t)m * k), *b = (int8_t *)guarded(bn, 1);
    int8_t *y0 = malloc((size_t)m * ldo), *y1 = malloc((size_t)m * ldo);
    uint8_t *ap = malloc(bytes + 1);
    int32_t *c = malloc(sizeof(int32_t) * (size_t)m * n);
    fill_s8(a, (size_t)m * k);
    fill_s8(b, bn);
    if (nonneg)
        for (size_t i = 0; i < bn; i++) b[i] = (int8_t)(b[i] < 0 ? -(b[i] + 1) : b[i]);
    memset(y0, 0x5a, (size_t)m * ldo);
    memset(y1, 0x5a, (size_t)m * ldo);
    ks->pack_a(m, k, a, k, ap, nonneg);
    dfx_kernels_portable.gemm_s8(m, n, k, a, k, b, ldb, c, n);
    for (int i = 0; i < m; i++) {
        int8_t *row = y0 + (size_t)i * ldo;
        dfx_kernels_portable.requant_s32(c + (size_t)i * n, n, bias[i], lsh[i], rsh[i], rounding, bw, row, 1);
        if (relu) dfx_kernels_portable.relu_s8(row, row, n);
    }
    int done = ks->gemm_s8_packed_requant(m, n, k, ap, b, ldb, nonneg, bias, lsh, rsh, rounding, bw, relu, y1, ldo);
    int bad = 0;
    fused_done += done != 0;
    fused_tried++;
    for (int i = 0; i < m && !bad; i++)
        bad = done ? memcmp(y0 + (size_t)i * ldo, y1 + (size_t)i * ldo, (size_t)n) != 0 : y1[(size_t)i * ldo] != 0x5a;
    for (int i = 0; i < m && !bad; i++) /* nothing past n in a row */
        for (int j = n; j < ldo; j++) bad |= y1[(size_t)i * ldo + j] != 0x5a;
    free(bias);
    free(lsh);
    free(rsh);
    free(a);
    free(y0);
    free(y1);
    free(ap);
    free(c);
    if (bad)
        FAIL("%s gemm_s8_packed_requant m=%d n=%d k=%d nonneg=%d rounding=%d bw=%d relu=%d %s", ks->name, m, n, k,
             nonneg, rounding, bw, relu, done ? "differs" : "wrote");
}

#endif

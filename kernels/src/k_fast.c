/* The fast integer path of Conv2D and FullyConnected (spec/arithmetic.md
 * "Conv2D", §3.3): int8 activations and int8 weights (sub-byte weights are
 * unpacked per block of output channels into scratch), int32 accumulators
 * where the accumulator bound allows, then one requantization call per output
 * row. Convolution is im2col (into scratch; none for 1x1 stride-1 unpadded
 * convolutions) + GEMM, depthwise convolution its own kernel, FC a GEMM over
 * the batch. The inner loops are those of the dispatch table (dispatch.h).
 * Bit-exact to the generic kernels of k_conv.c / k_fc.c, which handle every
 * other case. */
#include <stdlib.h>

#include "kernels.h"

#if defined(DFX_USE_PREPARE)
static int clog2(int64_t k)
{
    int n = 0;
    while (((int64_t)1 << n) < k) n++;
    return n;
}
#endif
#if defined(DFX_USE_PREPARE) || defined(DFX_USE_CONV2D_FAST) || defined(DFX_USE_FC_FAST)
static size_t al64(size_t v) { return (v + 63) & ~(size_t)63; }
#endif

#if defined(DFX_USE_PREPARE)
dfx_status dfx_linear_prepare(const dt_layer *L, const rt *x, const dt_tensor *w, const dt_tensor *b, const rt *y,
                              dfx_linprep *lp, size_t *scratch)
{
    memset(lp, 0, sizeof *lp);
    *scratch = 0;
    if (L->op != OP_CONV2D && L->op != OP_FC) return DFX_OK;
    const dt_tensor *tx = x->t, *ty = y->t;
    if (!w->is_const || !w->data || !w->has_q || !tx->has_q || tx->per_channel || tx->bw > 8 || w->bw > 8 ||
        w->dtype == DFX_FLOAT32)
        return DFX_OK;
    int64_t O = w->shape[0], K = O ? w->count / O : 0;
    if (O <= 0 || K <= 0 || K > (1 << 24) || O > (1 << 24)) return DFX_OK;
    if (tx->bw + w->bw + clog2(K) + 1 > 31) return DFX_OK;
    int64_t *bias = (int64_t *)malloc((size_t)O * sizeof *bias);
    int8_t *lsh = (int8_t *)malloc((size_t)O);
    int16_t *rsh = (int16_t *)malloc((size_t)O * sizeof *rsh);
    if (!bias || !lsh || !rsh) {
        free(bias); free(lsh); free(rsh);
        return dfx_fail(DFX_ERR_NOMEM, "out of memory preparing layer '%s'", L->name);
    }
    for (int64_t o = 0; o < O; o++) {
        int shift, fw = dfx_weight_align(L, w, (int)o, &shift);
        int fp = tx->fl + fw, F = fp;
        int64_t bv = 0;
        if (b) {
            int flb = dfx_fl_at(b, o);
            F = fp > flb ? fp : flb;
            bv = fp_shl(dfx_const_int(b, o), F - flb);
        }
        int r = F - ty->fl;
        if (shift != 0 || F - fp > 31) { free(bias); free(lsh); free(rsh); return DFX_OK; }
        bias[o] = bv;
        lsh[o] = (int8_t)(F - fp);
        rsh[o] = (int16_t)(r > 62 ? 62 : r < -1000 ? -1000 : r);
    }
    lp->fast = 1;
    lp->bias = bias;
    lp->lsh = lsh;
    lp->rsh = rsh;
    lp->K = K;
    lp->w_in_place = w->dtype == DFX_INT8 && (!w->per_channel || w->ch_axis == 0);
    const dt_opts *op = &L->o;
    int64_t cols, og;
    if (L->op == OP_CONV2D) {
        int64_t C = x->shape[1], G = op->group;
        og = O / G;
        cols = y->shape[2] * y->shape[3];
        lp->dw = C / G == 1 && og == 1;
        lp->direct = op->kh == 1 && op->kw == 1 && op->sh == 1 && op->sw == 1 && op->pt == 0 && op->pl == 0 &&
                     y->shape[2] == x->shape[2] && y->shape[3] == x->shape[3];
    } else {
        og = O;
        cols = O ? y->count / O : 0;
    }
    if (lp->dw) {
        *scratch = al64((size_t)cols * 4) + al64((size_t)K);
        return DFX_OK;
    }
    int64_t nb = (131072 / K) & ~(int64_t)15;
    if (nb < 16) nb = 16;
    if (nb > 1024) nb = 1024;
    if (nb > cols) nb = cols;
    if (nb < 1) nb = 1;
    int64_t ob = lp->w_in_place ? og : (og < 64 ? og : 64);
    lp->nb = (int)nb;
    lp->ob = (int)ob;
    size_t need = al64((size_t)(ob * nb * 4));
    if (!lp->w_in_place) need += al64((size_t)(ob * K));
    if (L->op == OP_FC) need += al64((size_t)(K * nb)) + al64((size_t)nb * 4);
    else if (!lp->direct) need += al64((size_t)(K * nb));
    *scratch = need;
    return DFX_OK;
}
#endif

/* Weights of output channels [o0, o0 + rows) as int8 rows of K (in place or unpacked). */
#if defined(DFX_USE_CONV2D_FAST) || defined(DFX_USE_FC_FAST)
static const int8_t *weight_rows(const dfx_linprep *lp, const dt_tensor *w, int64_t o0, int64_t rows, int8_t *buf)
{
    int64_t K = lp->K;
    if (lp->w_in_place) return (const int8_t *)w->data + o0 * K;
    const uint8_t *d = w->data;
    int64_t i0 = o0 * K, n = rows * K;
    switch (w->dtype) { /* packed little-endian, first element in the low bits (spec/format.md) */
    case DFX_INT8:
        memcpy(buf, d + i0, (size_t)n);
        break;
    case DFX_INT4:
        if (!(i0 & 1) && !(n & 1)) { /* whole bytes: sign-extend both nibbles */
            const uint8_t *src = d + (i0 >> 1);
            for (int64_t i = 0; i < n / 2; i++) {
                buf[2 * i] = (int8_t)((int8_t)(uint8_t)(src[i] << 4) >> 4);
                buf[2 * i + 1] = (int8_t)((int8_t)src[i] >> 4);
            }
            break;
        }
        for (int64_t i = 0; i < n; i++) {
            int64_t e = i0 + i;
            int v = (d[e >> 1] >> ((e & 1) * 4)) & 15;
            buf[i] = (int8_t)(v >= 8 ? v - 16 : v);
        }
        break;
    case DFX_INT2:
        for (int64_t i = 0; i < n; i++) {
            int64_t e = i0 + i;
            int v = (d[e >> 2] >> ((e & 3) * 2)) & 3;
            buf[i] = (int8_t)(v >= 2 ? v - 4 : v);
        }
        break;
    default: /* int16 / int32 storage of codes within 8 bits */
        for (int64_t i = 0; i < n; i++) buf[i] = (int8_t)dfx_const_int(w, i0 + i);
        break;
    }
    return buf;
}
#endif

/* im2col of columns [p0, p0 + n) of one group: col[k * n + (p - p0)], k = (c*kh + i)*kw + j. */
#if defined(DFX_USE_CONV2D_FAST)
static void im2col(const dt_opts *o, const int8_t *x, int64_t cg, int64_t H, int64_t W, int64_t OW, int64_t p0,
                   int64_t n, int8_t *col)
{
    int64_t kh = o->kh, kw = o->kw;
    for (int64_t c = 0; c < cg; c++)
        for (int64_t i = 0; i < kh; i++)
            for (int64_t j = 0; j < kw; j++) {
                int8_t *dst = col + ((c * kh + i) * kw + j) * n;
                const int8_t *xc = x + c * H * W;
                int64_t base = j * o->dw - o->pl;
                for (int64_t p = p0; p < p0 + n;) {
                    int64_t oy = p / OW, ox0 = p % OW, seg = OW - ox0;
                    if (seg > p0 + n - p) seg = p0 + n - p;
                    int64_t iy = oy * o->sh - o->pt + i * o->dh;
                    int8_t *d = dst + (p - p0);
                    if (iy < 0 || iy >= H) {
                        memset(d, 0, (size_t)seg);
                    } else { /* columns t in [lo, hi) read inside the row; the others are padding */
                        const int8_t *xr = xc + iy * W;
                        int64_t sw = o->sw, x0 = ox0 * sw + base, lo = 0, hi = seg;
                        if (x0 < 0) lo = (-x0 + sw - 1) / sw;
                        if (lo > seg) lo = seg;
                        if (x0 + (hi - 1) * sw >= W) hi = W - x0 <= 0 ? 0 : (W - x0 - 1) / sw + 1;
                        if (hi < lo) hi = lo;
                        memset(d, 0, (size_t)lo);
                        if (sw == 1) memcpy(d + lo, xr + x0 + lo, (size_t)(hi - lo));
                        else
                            for (int64_t t = lo; t < hi; t++) d[t] = xr[x0 + t * sw];
                        memset(d + hi, 0, (size_t)(seg - hi));
                    }
                    p += seg;
                }
            }
}
#endif

#if defined(DFX_USE_CONV2D_FAST)
dfx_status dfx_conv2d_fast(const dt_layer *L, const dfx_linprep *lp, const struct dfx_kernels *kf, const rt *x,
                           const dt_tensor *w, rt *y, void *scratch)
{
    const dt_opts *o = &L->o;
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t O = y->shape[1], OH = y->shape[2], OW = y->shape[3], P = OH * OW;
    int64_t G = o->group, cg = C / G, og = O / G, K = lp->K;
    const int8_t *X = (const int8_t *)x->p;
    const dt_tensor *ty = y->t;
    int esz = y->esz;
    char *Y = (char *)y->p;
    if (lp->dw) {
        int32_t *acc = (int32_t *)scratch;
        int8_t *kbuf = (int8_t *)scratch + al64((size_t)P * 4);
        for (int64_t n = 0; n < N; n++)
            for (int64_t c = 0; c < O; c++) {
                const int8_t *k = weight_rows(lp, w, c, 1, kbuf);
                kf->dwconv_s8(X + (n * C + c) * H * W, (int)H, (int)W, k, o->kh, o->kw, o->sh, o->sw, o->pt, o->pl,
                              o->dh, o->dw, acc, (int)OH, (int)OW);
                kf->requant_s32(acc, (int)P, lp->bias[c], lp->lsh[c], lp->rsh[c], ty->rounding, ty->bw,
                                Y + (n * O + c) * P * esz, esz);
            }
        return DFX_OK;
    }
    int64_t nb = lp->nb, ob = lp->ob;
    uint8_t *sp = (uint8_t *)scratch;
    int32_t *acc = (int32_t *)sp;
    sp += al64((size_t)(ob * nb * 4));
    int8_t *wbuf = NULL, *col = NULL;
    if (!lp->w_in_place) { wbuf = (int8_t *)sp; sp += al64((size_t)(ob * K)); }
    if (!lp->direct) col = (int8_t *)sp;
    for (int64_t g = 0; g < G; g++)
        for (int64_t o0 = 0; o0 < og; o0 += ob) { /* weights unpacked once per block of output channels */
            int64_t mb = og - o0 < ob ? og - o0 : ob;
            const int8_t *A = weight_rows(lp, w, g * og + o0, mb, wbuf);
            for (int64_t n = 0; n < N; n++) {
                const int8_t *xg = X + (n * C + g * cg) * H * W;
                for (int64_t p0 = 0; p0 < P; p0 += nb) {
                    int64_t cols = P - p0 < nb ? P - p0 : nb;
                    const int8_t *B;
                    int64_t ldb;
                    if (lp->direct) { B = xg + p0; ldb = H * W; }
                    else { im2col(o, xg, cg, H, W, OW, p0, cols, col); B = col; ldb = cols; }
                    kf->gemm_s8((int)mb, (int)cols, (int)K, A, (int)K, B, (int)ldb, acc, (int)cols);
                    for (int64_t r = 0; r < mb; r++) {
                        int64_t oc = g * og + o0 + r;
                        kf->requant_s32(acc + r * cols, (int)cols, lp->bias[oc], lp->lsh[oc], lp->rsh[oc], ty->rounding,
                                        ty->bw, Y + ((n * O + oc) * P + p0) * esz, esz);
                    }
                }
            }
        }
    return DFX_OK;
}
#endif

#if defined(DFX_USE_FC_FAST)
dfx_status dfx_fc_fast(const dt_layer *L, const dfx_linprep *lp, const struct dfx_kernels *kf, const rt *x,
                       const dt_tensor *w, rt *y, void *scratch)
{
    (void)L;
    int64_t O = w->shape[0], K = lp->K, M = O ? y->count / O : 0;
    int64_t nb = lp->nb, ob = lp->ob;
    const int8_t *X = (const int8_t *)x->p;
    const dt_tensor *ty = y->t;
    int esz = y->esz;
    uint8_t *sp = (uint8_t *)scratch;
    int32_t *acc = (int32_t *)sp;
    sp += al64((size_t)(ob * nb * 4));
    int8_t *wbuf = NULL;
    if (!lp->w_in_place) { wbuf = (int8_t *)sp; sp += al64((size_t)(ob * K)); }
    int8_t *xt = (int8_t *)sp;
    sp += al64((size_t)(K * nb));
    void *tmp = sp;
    for (int64_t o0 = 0; o0 < O; o0 += ob) { /* weights unpacked once per block of output channels */
        int64_t mb = O - o0 < ob ? O - o0 : ob;
        const int8_t *A = weight_rows(lp, w, o0, mb, wbuf);
        for (int64_t r0 = 0; r0 < M; r0 += nb) {
            int64_t rows = M - r0 < nb ? M - r0 : nb;
            const int8_t *B = X + r0 * K;
            if (rows > 1) { /* B = x^T: K x rows */
                for (int64_t r = 0; r < rows; r++)
                    for (int64_t k = 0; k < K; k++) xt[k * rows + r] = B[r * K + k];
                B = xt;
            }
            kf->gemm_s8((int)mb, (int)rows, (int)K, A, (int)K, B, (int)rows, acc, (int)rows);
            for (int64_t r = 0; r < mb; r++) {
                int64_t oc = o0 + r;
                kf->requant_s32(acc + r * rows, (int)rows, lp->bias[oc], lp->lsh[oc], lp->rsh[oc], ty->rounding, ty->bw,
                                tmp, esz);
                for (int64_t t = 0; t < rows; t++) dfx_st(y->p, esz, (r0 + t) * O + oc, dfx_ld(tmp, esz, t));
            }
        }
    }
    return DFX_OK;
}
#endif

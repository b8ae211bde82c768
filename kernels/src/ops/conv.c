/* Convolution and transposed convolution (general, 1x1, depthwise, grouped,
 * dilated), integer and float. spec/arithmetic.md, "Conv2D": products
 * x_q * w_q summed exactly; per output channel o the weights are aligned to
 * Fw[o] (their largest fl), the accumulator sits at F = max(fl_x + Fw[o], fl_b[o]),
 * bias is shifted left to F, and y = saturate(round_shift(acc, F - fl_y)).
 * The sum of products uses int32 when it provably fits, int64 otherwise. */
#include "../kernels.h"

/* Flat weight index of element k of output channel o's reduction. */
#if DFX_ALL_KERNELS || defined(DFX_USE_WEIGHT_ALIGN) || defined(DFX_USE_CONV2D_F32) || defined(DFX_USE_DECONV2D_F32)
static int64_t weight_index(const dt_layer *L, const dt_tensor *w, int64_t o, int64_t k)
{
    if (L->op != OP_DECONV2D) return o * (w->count / w->shape[0]) + k;
    int64_t g = L->o.group, cg = w->shape[0] / g, og = w->shape[1], khkw = w->shape[2] * w->shape[3];
    int64_t gi = o / og, oc = o % og, cl = k / khkw, r = k % khkw;
    (void)cg;
    return ((gi * cg + cl) * og + oc) * khkw + r;
}
#endif

#if defined(DFX_USE_WEIGHT_ALIGN) || defined(DFX_USE_PREPARE)
static int64_t reduction_len(const dt_layer *L, const dt_tensor *w)
{
    if (L->op == OP_DECONV2D) return w->shape[0] / L->o.group * w->shape[2] * w->shape[3];
    return w->shape[0] ? w->count / w->shape[0] : 0;
}
#endif

#if defined(DFX_USE_WEIGHT_ALIGN)
int dfx_weight_align(const dt_layer *L, const dt_tensor *w, int o, int *max_shift)
{
    if (!w->per_channel) {
        *max_shift = 0;
        return w->fl;
    }
    int64_t K = reduction_len(L, w);
    int hi = -1000, lo = 1000;
    for (int64_t k = 0; k < K; k++) {
        int f = dfx_fl_at(w, weight_index(L, w, o, k));
        if (f > hi) hi = f;
        if (f < lo) lo = f;
    }
    if (K == 0) hi = lo = 0;
    *max_shift = hi - lo;
    return hi;
}
#endif

#if defined(DFX_USE_PREPARE)
size_t dfx_linear_scratch(const dt_layer *L, const rt *x, const dt_tensor *w, const rt *y)
{
    (void)x;
    size_t plane = L->op == OP_FC ? 0 : (size_t)(y->shape[2] * y->shape[3]);
    return (size_t)reduction_len(L, w) * 8 + plane * 12 + 64;
}
#endif

/* Unpack output channel o's weights, aligned to Fw (integer codes). */
#if DFX_ALL_KERNELS || defined(DFX_USE_CONV2D_INT) || defined(DFX_USE_DECONV2D_INT)
static void row_i64(const dt_layer *L, const dt_tensor *w, int64_t o, int fw, int64_t *row, int64_t K)
{
    for (int64_t k = 0; k < K; k++) {
        int64_t idx = weight_index(L, w, o, k);
        row[k] = fp_shl(dfx_const_int(w, idx), fw - dfx_fl_at(w, idx));
    }
}
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_CONV2D_INT)
static void row_i32(const dt_layer *L, const dt_tensor *w, int64_t o, int fw, int32_t *row, int64_t K)
{
    if (w->dtype == DFX_INT8 && !w->per_channel && L->op != OP_DECONV2D) {
        const int8_t *src = (const int8_t *)w->data + o * K;
        for (int64_t k = 0; k < K; k++) row[k] = src[k];
        return;
    }
    for (int64_t k = 0; k < K; k++) {
        int64_t idx = weight_index(L, w, o, k);
        row[k] = (int32_t)fp_shl(dfx_const_int(w, idx), fw - dfx_fl_at(w, idx));
    }
}
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_CONV2D_F32) || defined(DFX_USE_DECONV2D_F32)
static void row_f32(const dt_layer *L, const dt_tensor *w, int64_t o, float *row, int64_t K)
{
    for (int64_t k = 0; k < K; k++) row[k] = dfx_const_float(w, weight_index(L, w, o, k));
}
#endif

/* Finish output channel o: align, add bias, round, saturate. */
#if DFX_ALL_KERNELS || defined(DFX_USE_CONV2D_INT) || defined(DFX_USE_DECONV2D_INT)
static void finish_int(const int64_t *acc, int64_t n, int fp, const rt *b, int64_t o, const rt *y, int32_t *out)
{
    const dt_tensor *ty = y->t;
    int F = fp, sp = 0, sb = 0;
    int64_t bias = 0;
    if (b) {
        int flb = dfx_fl_at(b->t, o);
        F = fp > flb ? fp : flb;
        sp = F - fp;
        sb = F - flb;
        bias = fp_shl(I32(b)[o], sb);
    }
    for (int64_t i = 0; i < n; i++) out[i] = fp_requant(fp_shl(acc[i], sp) + bias, F, ty->fl, ty->bw, ty->rounding);
}
#endif

/* Column range [lo, hi) of outputs whose input column ox*s - p + j*d lies in [0, size). */
#if DFX_ALL_KERNELS || defined(DFX_USE_CONV2D_INT) || defined(DFX_USE_CONV2D_F32)
static void valid_range(int64_t size, int64_t out, int64_t s, int64_t p, int64_t off, int64_t *lo, int64_t *hi)
{
    /* need 0 <= ox*s + (off - p) < size */
    int64_t base = off - p;
    int64_t a = base >= 0 ? 0 : (-base + s - 1) / s;
    int64_t b = size - base <= 0 ? 0 : (size - base - 1) / s + 1;
    *lo = a;
    *hi = b < out ? b : out;
    if (*hi < *lo) *hi = *lo;
}
#endif

#define CONV_LOOP(ACC_T, ROW)                                                                   \
    for (int64_t c = 0; c < cg; c++) {                                                          \
        const int32_t *xp = X + ((n * C + gi * cg + c) * H) * W;                                \
        for (int64_t i = 0; i < kh; i++)                                                        \
            for (int64_t j = 0; j < kw; j++) {                                                  \
                ACC_T wv = ROW[(c * kh + i) * kw + j];                                          \
                if (!wv) continue;                                                              \
                int64_t lo, hi;                                                                 \
                valid_range(W, OW, sw, pl, j * dw, &lo, &hi);                                   \
                for (int64_t oy = 0; oy < OH; oy++) {                                           \
                    int64_t iy = oy * sh - pt + i * dh;                                         \
                    if (iy < 0 || iy >= H) continue;                                            \
                    const int32_t *xr = xp + iy * W + j * dw - pl;                              \
                    ACC_T *ar = acc + oy * OW;                                                  \
                    if (sw == 1)                                                                \
                        for (int64_t ox = lo; ox < hi; ox++) ar[ox] += wv * (ACC_T)xr[ox];      \
                    else                                                                        \
                        for (int64_t ox = lo; ox < hi; ox++) ar[ox] += wv * (ACC_T)xr[ox * sw]; \
                }                                                                               \
            }                                                                                   \
    }

#if DFX_ALL_KERNELS || defined(DFX_USE_CONV2D_INT)
dfx_status dfx_conv2d_int(const dt_layer *L, const rt *x, const dt_tensor *w, const rt *b, rt *y, void *scratch)
{
    const dt_opts *o = &L->o;
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t O = y->shape[1], OH = y->shape[2], OW = y->shape[3];
    int64_t G = o->group, cg = C / G, og = O / G, kh = o->kh, kw = o->kw;
    int64_t sh = o->sh, sw = o->sw, pt = o->pt, pl = o->pl, dh = o->dh, dw = o->dw;
    int64_t K = cg * kh * kw, plane = OH * OW;
    const int32_t *X = I32(x);
    int64_t *acc64 = (int64_t *)scratch;
    int32_t *acc32 = (int32_t *)(acc64 + plane);
    void *rowbuf = acc32 + plane + (plane & 1);
    for (int64_t n = 0; n < N; n++)
        for (int64_t oc = 0; oc < O; oc++) {
            int64_t gi = oc / og;
            int shift;
            int fw = dfx_weight_align(L, w, (int)oc, &shift);
            int fp = x->t->fl + fw;
            int32_t *out = I32(y) + (n * O + oc) * plane;
            if (x->t->bw + w->bw + shift + fp_clog2(K) + 1 <= 31) {
                int32_t *row = (int32_t *)rowbuf, *acc = acc32;
                row_i32(L, w, oc, fw, row, K);
                memset(acc, 0, (size_t)plane * sizeof *acc);
                CONV_LOOP(int32_t, row)
                for (int64_t p = 0; p < plane; p++) acc64[p] = acc[p];
            } else {
                int64_t *row = (int64_t *)rowbuf, *acc = acc64;
                row_i64(L, w, oc, fw, row, K);
                memset(acc, 0, (size_t)plane * sizeof *acc);
                CONV_LOOP(int64_t, row)
            }
            finish_int(acc64, plane, fp, b, oc, y, out);
        }
    return DFX_OK;
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_CONV2D_F32)
void dfx_conv2d_f32(const dt_layer *L, const rt *x, const dt_tensor *w, const rt *b, rt *y, void *scratch)
{
    const dt_opts *o = &L->o;
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t O = y->shape[1], OH = y->shape[2], OW = y->shape[3];
    int64_t G = o->group, cg = C / G, og = O / G, kh = o->kh, kw = o->kw;
    int64_t sh = o->sh, sw = o->sw, pt = o->pt, pl = o->pl, dh = o->dh, dw = o->dw;
    int64_t K = cg * kh * kw, plane = OH * OW;
    const float *X = F32(x);
    float *row = (float *)scratch;
    for (int64_t n = 0; n < N; n++)
        for (int64_t oc = 0; oc < O; oc++) {
            int64_t gi = oc / og;
            float *acc = F32(y) + (n * O + oc) * plane;
            row_f32(L, w, oc, row, K);
            memset(acc, 0, (size_t)plane * sizeof *acc);
            for (int64_t c = 0; c < cg; c++) {
                const float *xp = X + ((n * C + gi * cg + c) * H) * W;
                for (int64_t i = 0; i < kh; i++)
                    for (int64_t j = 0; j < kw; j++) {
                        float wv = row[(c * kh + i) * kw + j];
                        int64_t lo, hi;
                        valid_range(W, OW, sw, pl, j * dw, &lo, &hi);
                        for (int64_t oy = 0; oy < OH; oy++) {
                            int64_t iy = oy * sh - pt + i * dh;
                            if (iy < 0 || iy >= H) continue;
                            const float *xr = xp + iy * W + j * dw - pl;
                            float *ar = acc + oy * OW;
                            for (int64_t ox = lo; ox < hi; ox++) ar[ox] += wv * xr[ox * sw];
                        }
                    }
            }
            if (b)
                for (int64_t p = 0; p < plane; p++) acc[p] += F32(b)[oc];
        }
}
#endif

/* Transposed convolution: every input pixel scatters kh x kw taps. */
#if DFX_ALL_KERNELS || defined(DFX_USE_DECONV2D_INT)
dfx_status dfx_deconv2d_int(const dt_layer *L, const rt *x, const dt_tensor *w, const rt *b, rt *y, void *scratch)
{
    const dt_opts *o = &L->o;
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t O = y->shape[1], OH = y->shape[2], OW = y->shape[3];
    int64_t G = o->group, cg = C / G, og = O / G, kh = o->kh, kw = o->kw, plane = OH * OW;
    int64_t K = cg * kh * kw;
    int64_t *acc = (int64_t *)scratch, *row = acc + plane;
    for (int64_t n = 0; n < N; n++)
        for (int64_t oc = 0; oc < O; oc++) {
            int64_t gi = oc / og;
            int shift;
            int fw = dfx_weight_align(L, w, (int)oc, &shift);
            row_i64(L, w, oc, fw, row, K);
            memset(acc, 0, (size_t)plane * sizeof *acc);
            for (int64_t c = 0; c < cg; c++) {
                const int32_t *xp = I32(x) + (n * C + gi * cg + c) * H * W;
                for (int64_t i = 0; i < kh; i++)
                    for (int64_t j = 0; j < kw; j++) {
                        int64_t wv = row[(c * kh + i) * kw + j];
                        if (!wv) continue;
                        for (int64_t iy = 0; iy < H; iy++) {
                            int64_t oy = iy * o->sh + i * o->dh - o->pt;
                            if (oy < 0 || oy >= OH) continue;
                            for (int64_t ix = 0; ix < W; ix++) {
                                int64_t ox = ix * o->sw + j * o->dw - o->pl;
                                if (ox >= 0 && ox < OW) acc[oy * OW + ox] += wv * xp[iy * W + ix];
                            }
                        }
                    }
            }
            finish_int(acc, plane, x->t->fl + fw, b, oc, y, I32(y) + (n * O + oc) * plane);
        }
    return DFX_OK;
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_DECONV2D_F32)
void dfx_deconv2d_f32(const dt_layer *L, const rt *x, const dt_tensor *w, const rt *b, rt *y, void *scratch)
{
    const dt_opts *o = &L->o;
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t O = y->shape[1], OH = y->shape[2], OW = y->shape[3];
    int64_t G = o->group, cg = C / G, og = O / G, kh = o->kh, kw = o->kw, plane = OH * OW;
    float *row = (float *)scratch;
    for (int64_t n = 0; n < N; n++)
        for (int64_t oc = 0; oc < O; oc++) {
            int64_t gi = oc / og;
            float *acc = F32(y) + (n * O + oc) * plane;
            row_f32(L, w, oc, row, cg * kh * kw);
            memset(acc, 0, (size_t)plane * sizeof *acc);
            for (int64_t c = 0; c < cg; c++) {
                const float *xp = F32(x) + (n * C + gi * cg + c) * H * W;
                for (int64_t i = 0; i < kh; i++)
                    for (int64_t j = 0; j < kw; j++) {
                        float wv = row[(c * kh + i) * kw + j];
                        for (int64_t iy = 0; iy < H; iy++) {
                            int64_t oy = iy * o->sh + i * o->dh - o->pt;
                            if (oy < 0 || oy >= OH) continue;
                            for (int64_t ix = 0; ix < W; ix++) {
                                int64_t ox = ix * o->sw + j * o->dw - o->pl;
                                if (ox >= 0 && ox < OW) acc[oy * OW + ox] += wv * xp[iy * W + ix];
                            }
                        }
                    }
            }
            if (b)
                for (int64_t p = 0; p < plane; p++) acc[p] += F32(b)[oc];
        }
}
#endif

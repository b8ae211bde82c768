/* Fully connected: y[r, o] = sum_k x[r, k] * w[o, k] (+ bias), integer and float,
 * with the same alignment rules as convolution. */
#include "../kernels.h"

#if DFX_ALL_KERNELS || defined(DFX_USE_FC_INT)
dfx_status dfx_fc_int(const dt_layer *L, const rt *x, const dt_tensor *w, const rt *b, rt *y, void *scratch)
{
    int64_t O = w->shape[0], K = w->shape[1], M = O ? y->count / O : 0;
    const int32_t *X = I32(x);
    const dt_tensor *ty = y->t;
    for (int64_t o = 0; o < O; o++) {
        int shift;
        int fw = dfx_weight_align(L, w, (int)o, &shift);
        int fp = x->t->fl + fw, F = fp;
        int64_t bias = 0;
        if (b) {
            int flb = dfx_fl_at(b->t, o);
            F = fp > flb ? fp : flb;
            bias = fp_shl(I32(b)[o], F - flb);
        }
        int small = x->t->bw + w->bw + shift + fp_clog2(K) + 1 <= 31;
        int32_t *r32 = (int32_t *)scratch;
        int64_t *r64 = (int64_t *)scratch;
        for (int64_t k = 0; k < K; k++) {
            int64_t idx = o * K + k;
            int64_t v = fp_shl(dfx_const_int(w, idx), fw - dfx_fl_at(w, idx));
            if (small) r32[k] = (int32_t)v;
            else r64[k] = v;
        }
        for (int64_t r = 0; r < M; r++) {
            const int32_t *xr = X + r * K;
            int64_t acc = 0;
            if (small) {
                int32_t a = 0;
                for (int64_t k = 0; k < K; k++) a += xr[k] * r32[k];
                acc = a;
            } else {
                for (int64_t k = 0; k < K; k++) acc += (int64_t)xr[k] * r64[k];
            }
            I32(y)[r * O + o] = fp_requant(fp_shl(acc, F - fp) + bias, F, ty->fl, ty->bw, ty->rounding);
        }
    }
    return DFX_OK;
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_FC_F32)
void dfx_fc_f32(const dt_layer *L, const rt *x, const dt_tensor *w, const rt *b, rt *y, void *scratch)
{
    (void)L;
    int64_t O = w->shape[0], K = w->shape[1], M = O ? y->count / O : 0;
    float *row = (float *)scratch;
    for (int64_t o = 0; o < O; o++) {
        for (int64_t k = 0; k < K; k++) row[k] = dfx_const_float(w, o * K + k);
        for (int64_t r = 0; r < M; r++) {
            const float *xr = F32(x) + r * K;
            float acc = 0;
            for (int64_t k = 0; k < K; k++) acc += xr[k] * row[k];
            F32(y)[r * O + o] = b ? acc + F32(b)[o] : acc;
        }
    }
}
#endif

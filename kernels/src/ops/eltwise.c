/* Eltwise (SUM with dyadic coefficients, PROD, MAX) with NumPy broadcasting,
 * and Scale (channel-wise affine), integer and float. */
#include "../kernels.h"

#define MAXIN 64

/* Flat index of input x for output element counter idx[] (broadcasting). */
typedef struct {
    int64_t stride[DFX_MAX_RANK];
} bcast;

#if DFX_ALL_KERNELS || defined(DFX_USE_ELTWISE_INT) || defined(DFX_USE_ELTWISE_F32)
static void make_bcast(const rt *x, const rt *y, bcast *b)
{
    int64_t s = 1;
    for (int d = y->rank - 1; d >= 0; d--) {
        int k = d - (y->rank - x->rank);
        if (k < 0) {
            b->stride[d] = 0;
            continue;
        }
        b->stride[d] = x->shape[k] == 1 ? 0 : s;
        s *= x->shape[k];
    }
}
#endif

/* Iterate over output elements [A, B), calling BODY with flat input indices ix[]. */
#define ELT_ITERATE(A, B, BODY)                                                         \
    do {                                                                                \
        int64_t ctr[DFX_MAX_RANK] = {0}, ix[MAXIN] = {0}, rest = (A);                   \
        bcast bc[MAXIN];                                                                \
        int same = 1;                                                                   \
        for (int k = 0; k < n; k++) {                                                   \
            make_bcast(x[k], y, &bc[k]);                                                \
            same &= x[k]->count == y->count;                                            \
        }                                                                               \
        for (int d = y->rank - 1; d >= 0 && !same; d--) { /* the counter of A */        \
            ctr[d] = rest % y->shape[d];                                                \
            rest /= y->shape[d];                                                        \
            for (int k = 0; k < n; k++) ix[k] += ctr[d] * bc[k].stride[d];              \
        }                                                                               \
        for (int64_t i = (A); i < (B); i++) {                                           \
            if (same)                                                                   \
                for (int k = 0; k < n; k++) ix[k] = i;                                  \
            BODY;                                                                       \
            if (!same)                                                                  \
                for (int d = y->rank - 1; d >= 0; d--) {                                \
                    for (int k = 0; k < n; k++) ix[k] += bc[k].stride[d];               \
                    if (++ctr[d] < y->shape[d]) break;                                  \
                    for (int k = 0; k < n; k++) ix[k] -= bc[k].stride[d] * y->shape[d]; \
                    ctr[d] = 0;                                                         \
                }                                                                       \
        }                                                                               \
    } while (0)

#if DFX_ALL_KERNELS || defined(DFX_USE_ELTWISE_INT) || defined(DFX_USE_ELTWISE_F32)
/* Output elements [a, b) are one task (threads.h). */
typedef struct elt_job {
    const dt_layer *L;
    const rt *const *x;
    int n;
    rt *y;
} elt_job;
#define ELT_GRAIN 16384 /* output elements per task at least */
/* The job's layer, inputs, input count and output, in a range function (ctx, a, b, thread). */
#define ELT_JOB(CTX)                           \
    const elt_job *j = (const elt_job *)(CTX); \
    const dt_layer *L = j->L;                  \
    const rt *const *x = j->x;                 \
    int n = j->n;                              \
    rt *y = j->y;                              \
    (void)thread
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_ELTWISE_INT)
static void eltwise_int_range(void *ctx, int64_t a, int64_t b, int thread)
{
    ELT_JOB(ctx);
    const dt_tensor *ty = y->t;
    int op = L->o.operation;
    int cm[MAXIN], ce[MAXIN];
    for (int k = 0; k < n; k++) {
        cm[k] = 1;
        ce[k] = 0;
        if (L->o.coeffs.n) fp_dyadic(vec_f32(L->o.coeffs, k), &cm[k], &ce[k]);
    }
    ELT_ITERATE(a, b, {
        int64_t acc = 0;
        int F = 0;
        if (op == 0) {
            F = -100000;
            for (int k = 0; k < n; k++) {
                int t = dfx_fl_at(x[k]->t, ix[k]) + ce[k];
                F = t > F ? t : F;
            }
            for (int k = 0; k < n; k++) {
                int t = dfx_fl_at(x[k]->t, ix[k]) + ce[k];
                acc += fp_shl((int64_t)cm[k] * I32(x[k])[ix[k]], F - t);
            }
        } else if (op == 1) {
            acc = 1;
            for (int k = 0; k < n; k++) {
                acc *= I32(x[k])[ix[k]];
                F += dfx_fl_at(x[k]->t, ix[k]);
            }
        } else {
            F = -100000;
            for (int k = 0; k < n; k++) {
                int t = dfx_fl_at(x[k]->t, ix[k]);
                F = t > F ? t : F;
            }
            acc = INT64_MIN;
            for (int k = 0; k < n; k++) {
                int64_t v = fp_shl(I32(x[k])[ix[k]], F - dfx_fl_at(x[k]->t, ix[k]));
                acc = v > acc ? v : acc;
            }
        }
        I32(y)[i] = fp_requant(acc, F, ty->fl, ty->bw, ty->rounding);
    });
}

void dfx_eltwise_int(const dt_layer *L, const rt *const *x, int n, rt *y, const dfx_par *par)
{
    elt_job j = {L, x, n, y};
    dfx_par_range(par, y->count, ELT_GRAIN, 64, eltwise_int_range, &j);
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_ELTWISE_F32)
static void eltwise_f32_range(void *ctx, int64_t a, int64_t b, int thread)
{
    ELT_JOB(ctx);
    int op = L->o.operation;
    ELT_ITERATE(a, b, {
        float v;
        if (op == 0) {
            v = F32(x[0])[ix[0]] * (L->o.coeffs.n ? vec_f32(L->o.coeffs, 0) : 1.0f);
            for (int k = 1; k < n; k++) v = v + F32(x[k])[ix[k]] * (L->o.coeffs.n ? vec_f32(L->o.coeffs, k) : 1.0f);
        } else if (op == 1) {
            v = F32(x[0])[ix[0]];
            for (int k = 1; k < n; k++) v = v * F32(x[k])[ix[k]];
        } else {
            v = F32(x[0])[ix[0]];
            for (int k = 1; k < n; k++) v = F32(x[k])[ix[k]] > v ? F32(x[k])[ix[k]] : v;
        }
        F32(y)[i] = v;
    });
}

void dfx_eltwise_f32(const dt_layer *L, const rt *const *x, int n, rt *y, const dfx_par *par)
{
    elt_job j = {L, x, n, y};
    dfx_par_range(par, y->count, ELT_GRAIN, 64, eltwise_f32_range, &j);
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_SCALE_INT) || defined(DFX_USE_SCALE_F32)
static void scale_geom(const dt_layer *L, const rt *x, int64_t *S, int64_t *inner)
{
    int a = L->o.axis < 0 ? L->o.axis + x->rank : L->o.axis;
    *S = 1;
    *inner = 1;
    for (int d = a; d < a + L->o.num_axes; d++) *S *= x->shape[d];
    for (int d = a + L->o.num_axes; d < x->rank; d++) *inner *= x->shape[d];
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_SCALE_INT)
void dfx_scale_int(const dt_layer *L, const rt *x, const rt *s, const rt *b, rt *y)
{
    const dt_tensor *ty = y->t;
    int64_t S, inner;
    scale_geom(L, x, &S, &inner);
    for (int64_t i = 0; i < y->count; i++) {
        int64_t j = (i / inner) % S;
        int fp = x->t->fl + dfx_fl_at(s->t, j), F = fp;
        int64_t p = (int64_t)I32(x)[i] * I32(s)[j];
        if (b) {
            int flb = dfx_fl_at(b->t, j);
            F = fp > flb ? fp : flb;
            p = fp_shl(p, F - fp) + fp_shl(I32(b)[j], F - flb);
        }
        I32(y)[i] = fp_requant(p, F, ty->fl, ty->bw, ty->rounding);
    }
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_SCALE_F32)
void dfx_scale_f32(const dt_layer *L, const rt *x, const rt *s, const rt *b, rt *y)
{
    int64_t S, inner;
    scale_geom(L, x, &S, &inner);
    for (int64_t i = 0; i < y->count; i++) {
        int64_t j = (i / inner) % S;
        float v = F32(x)[i] * F32(s)[j];
        F32(y)[i] = b ? v + F32(b)[j] : v;
    }
}
#endif

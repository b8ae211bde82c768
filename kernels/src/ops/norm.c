/* Float normalisations: Softmax, LRN (Caffe), Normalize (SSD L2). */
#include "../kernels.h"
#include "fexp.h"

#if DFX_ALL_KERNELS || defined(DFX_USE_SOFTMAX_F32)
static void axis_geom(const rt *x, int a, int64_t *outer, int64_t *len, int64_t *inner)
{
    *outer = 1;
    *inner = 1;
    *len = x->shape[a];
    for (int d = 0; d < a; d++) *outer *= x->shape[d];
    for (int d = a + 1; d < x->rank; d++) *inner *= x->shape[d];
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_SOFTMAX_F32)
typedef struct softmax_job {
    const rt *x;
    rt *y;
    int64_t len, inner;
} softmax_job;

/* Rows [a, b) of outer x inner, each a softmax over len values (threads.h): every row's x - max first, then
 * the exponentials (of all the rows at once where they are contiguous), then every row divided by its sum. */
static void softmax_rows(void *ctx, int64_t a, int64_t b, int thread)
{
    const softmax_job *j = (const softmax_job *)ctx;
    int64_t len = j->len, inner = j->inner;
    (void)thread;
    for (int64_t r = a; r < b; r++) {
        int64_t o = r / inner, in = r % inner;
        const float *xp = F32(j->x) + o * len * inner + in;
        float *yp = F32(j->y) + o * len * inner + in;
        float m = -INFINITY;
        for (int64_t k = 0; k < len; k++) m = xp[k * inner] > m ? xp[k * inner] : m;
        for (int64_t k = 0; k < len; k++) yp[k * inner] = xp[k * inner] - m;
        if (inner > 1) dfx_expf_inplace(yp, len, inner);
    }
    if (inner == 1) dfx_expf_inplace(F32(j->y) + a * len, (b - a) * len, 1);
    for (int64_t r = a; r < b; r++) {
        float *yp = F32(j->y) + (r / inner) * len * inner + r % inner;
        double s = 0;
        for (int64_t k = 0; k < len; k++) s += yp[k * inner];
        float fs = (float)s;
        for (int64_t k = 0; k < len; k++) yp[k * inner] /= fs;
    }
}

void dfx_softmax_f32(const dt_layer *L, const rt *x, rt *y, const dfx_par *par)
{
    int a = L->o.axis < 0 ? L->o.axis + x->rank : L->o.axis;
    int64_t outer;
    softmax_job j = {x, y, 0, 0};
    axis_geom(x, a, &outer, &j.len, &j.inner);
    /* rows split over the threads, 4 K values a task at least (an exponential each) */
    dfx_par_range(par, outer * j.inner, j.len > 0 ? 1 + 4096 / j.len : 1, 1, softmax_rows, &j);
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_LRN_F32)
void dfx_lrn_f32(const dt_layer *L, const rt *x, rt *y)
{
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], plane = H * W;
    int size = L->o.local_size, half = (size - 1) / 2;
    const float *X = F32(x);
    if (L->o.region == 0) {
        float coef = (float)((double)L->o.alpha / size);
        for (int64_t n = 0; n < N; n++)
            for (int64_t c = 0; c < C; c++)
                for (int64_t p = 0; p < plane; p++) {
                    float acc = 0;
                    /* the window is clamped to the channels (taps outside add nothing), so the
                     * work is bounded by C whatever local_size says */
                    int64_t k0 = c - half < 0 ? 0 : c - half, k1 = c + half >= C ? C - 1 : c + half;
                    for (int64_t k = k0; k <= k1; k++) {
                        float v = X[(n * C + k) * plane + p];
                        acc += v * v;
                    }
                    float scale = L->o.k + coef * acc;
                    int64_t i = (n * C + c) * plane + p;
                    F32(y)[i] = X[i] * powf(scale, -L->o.beta);
                }
    } else {
        float coef = (float)((double)L->o.alpha / ((double)size * size));
        for (int64_t nc = 0; nc < N * C; nc++)
            for (int64_t r = 0; r < H; r++)
                for (int64_t c = 0; c < W; c++) {
                    double acc = 0;
                    int64_t i0 = r - half < 0 ? 0 : r - half, i1 = r + half >= H ? H - 1 : r + half;
                    int64_t j0 = c - half < 0 ? 0 : c - half, j1 = c + half >= W ? W - 1 : c + half;
                    for (int64_t i = i0; i <= i1; i++)
                        for (int64_t j = j0; j <= j1; j++) {
                            float v = X[nc * plane + i * W + j];
                            acc += (double)(v * v);
                        }
                    float scale = L->o.k + coef * (float)acc;
                    int64_t k = nc * plane + r * W + c;
                    F32(y)[k] = X[k] * powf(scale, -L->o.beta);
                }
    }
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_NORMALIZE_F32)
void dfx_normalize_f32(const dt_layer *L, const rt *x, const rt *s, rt *y)
{
    int64_t N = x->shape[0], C = x->shape[1], plane = x->shape[2] * x->shape[3];
    const float *X = F32(x);
    for (int64_t n = 0; n < N; n++) {
        const float *xn = X + n * C * plane;
        float *yn = F32(y) + n * C * plane;
        if (L->o.across_spatial) {
            double acc = 0;
            for (int64_t i = 0; i < C * plane; i++) acc += (double)(xn[i] * xn[i]);
            float norm = sqrtf((float)acc + L->o.eps);
            for (int64_t i = 0; i < C * plane; i++) yn[i] = xn[i] / norm;
        } else {
            for (int64_t p = 0; p < plane; p++) {
                double acc = 0;
                for (int64_t c = 0; c < C; c++) acc += (double)(xn[c * plane + p] * xn[c * plane + p]);
                float norm = sqrtf((float)acc + L->o.eps);
                for (int64_t c = 0; c < C; c++) yn[c * plane + p] = xn[c * plane + p] / norm;
            }
        }
        if (s)
            for (int64_t c = 0; c < C; c++)
                for (int64_t p = 0; p < plane; p++) yn[c * plane + p] *= F32(s)[s->count == 1 ? 0 : c];
    }
}
#endif

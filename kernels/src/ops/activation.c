/* Elementwise activations: ReLU, Clip, PRelu (integer and float), sigmoid,
 * tanh, exp, minifloat trimming, power (float), and Requantize (integer -> integer). */
#include "../kernels.h"

#if DFX_ALL_KERNELS || defined(DFX_USE_RELU_INT)
void dfx_relu_int(const rt *x, rt *y)
{
    const dt_tensor *tx = x->t, *ty = y->t;
    for (int64_t i = 0; i < y->count; i++) {
        int32_t v = I32(x)[i];
        I32(y)[i] = fp_requant(v > 0 ? v : 0, tx->fl, ty->fl, ty->bw, ty->rounding);
    }
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_RELU_F32)
void dfx_relu_f32(const rt *x, rt *y)
{
    for (int64_t i = 0; i < y->count; i++) F32(y)[i] = F32(x)[i] > 0 ? F32(x)[i] : 0.0f;
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_CLIP_INT)
static int64_t clip_bound(float v, int fl, int ceiling)
{
    double lim = 4611686018427387904.0, s = ldexp((double)v, fl);
    s = ceiling ? ceil(s) : floor(s);
    if (s < -lim) s = -lim;
    if (s > lim) s = lim;
    return (int64_t)s;
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_CLIP_INT)
void dfx_clip_int(const dt_layer *L, const rt *x, rt *y)
{
    const dt_tensor *tx = x->t, *ty = y->t;
    int64_t lo = clip_bound(L->o.fmin, tx->fl, 1), hi = clip_bound(L->o.fmax, tx->fl, 0);
    for (int64_t i = 0; i < y->count; i++) {
        int64_t v = I32(x)[i];
        v = v < lo ? lo : v;
        v = v > hi ? hi : v;
        I32(y)[i] = fp_requant(v, tx->fl, ty->fl, ty->bw, ty->rounding);
    }
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_CLIP_F32)
void dfx_clip_f32(const dt_layer *L, const rt *x, rt *y)
{
    for (int64_t i = 0; i < y->count; i++) {
        float v = F32(x)[i];
        v = v < L->o.fmin ? L->o.fmin : v;
        F32(y)[i] = v > L->o.fmax ? L->o.fmax : v;
    }
}
#endif

/* Channel (axis 1) of flat element i, for a per-channel parameter. */
#if DFX_ALL_KERNELS || defined(DFX_USE_PRELU_INT) || defined(DFX_USE_PRELU_F32)
static int64_t channel_of(const rt *x, int64_t i)
{
    int64_t inner = 1;
    for (int d = 2; d < x->rank; d++) inner *= x->shape[d];
    return (i / inner) % x->shape[1];
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_PRELU_INT)
void dfx_prelu_int(const rt *x, const rt *s, rt *y)
{
    const dt_tensor *tx = x->t, *ty = y->t;
    int shared = s->count == 1;
    for (int64_t i = 0; i < y->count; i++) {
        int64_t c = shared ? 0 : channel_of(x, i);
        int fls = dfx_fl_at(s->t, c), e = fls > 0 ? fls : 0;
        int64_t v = I32(x)[i];
        int64_t r = v > 0 ? fp_shl(v, e) : fp_shl(v * I32(s)[c], e - fls);
        I32(y)[i] = fp_requant(r, tx->fl + e, ty->fl, ty->bw, ty->rounding);
    }
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_PRELU_F32)
void dfx_prelu_f32(const rt *x, const rt *s, rt *y)
{
    int shared = s->count == 1;
    for (int64_t i = 0; i < y->count; i++) {
        float v = F32(x)[i];
        F32(y)[i] = v > 0 ? v : v * F32(s)[shared ? 0 : channel_of(x, i)];
    }
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_SIGMOID_F32)
void dfx_sigmoid_f32(const rt *x, rt *y)
{
    for (int64_t i = 0; i < y->count; i++) {
        float v = F32(x)[i], e = expf(-fabsf(v));
        F32(y)[i] = v >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
    }
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_TANH_F32)
void dfx_tanh_f32(const rt *x, rt *y)
{
    for (int64_t i = 0; i < y->count; i++) F32(y)[i] = tanhf(F32(x)[i]);
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_EXP_F32)
void dfx_exp_f32(const rt *x, rt *y)
{
    for (int64_t i = 0; i < y->count; i++) F32(y)[i] = expf(F32(x)[i]);
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_MINIFLOAT_F32)
/* Ristretto's Trim2MiniFloat, element by element (spec/arithmetic.md, Minifloat). */
void dfx_minifloat_f32(const dt_layer *L, const rt *x, rt *y)
{
    const int mant_bits = L->o.mant_bits, exp_bits = L->o.exp_bits, shift = 23 - mant_bits;
    const int bias = (1 << (exp_bits - 1)) - 1, max_exp = (1 << exp_bits) - 1;
    for (int64_t i = 0; i < y->count; i++) {
        uint32_t u;
        float v = F32(x)[i];
        memcpy(&u, &v, 4);
        int e8 = (int)((u >> 23) & 0xFF), e = e8 - 127 + bias;
        int64_t m = (int64_t)(u & 0x7FFFFF);
        if (e8 == 0 || e < 0) {
            F32(y)[i] = 0.0f;
            continue;
        }
        if (e > max_exp) {
            e = max_exp;
            m = ((int64_t)1 << mant_bits) - 1;
        } else {
            m = (m + (((int64_t)1 << shift) >> 1)) >> shift; /* round(): halves away from zero */
        }
        double r = ldexp((double)(((int64_t)1 << mant_bits) + m), e - bias - mant_bits);
        F32(y)[i] = (float)((u >> 31) ? -r : r);
    }
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_POWER_F32)
void dfx_power_f32(const dt_layer *L, const rt *x, rt *y)
{
    for (int64_t i = 0; i < y->count; i++) {
        float base = L->o.shift + L->o.scale * F32(x)[i];
        F32(y)[i] = L->o.power == 1.0f ? base : powf(base, L->o.power);
    }
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_REQUANTIZE_INT)
typedef struct requant_job {
    const rt *x;
    rt *y;
} requant_job;

static void requantize_range(void *ctx, int64_t a, int64_t b, int thread)
{
    const requant_job *j = (const requant_job *)ctx;
    const dt_tensor *tx = j->x->t, *ty = j->y->t;
    (void)thread;
    for (int64_t i = a; i < b; i++) I32(j->y)[i] = fp_requant(I32(j->x)[i], tx->fl, ty->fl, ty->bw, ty->rounding);
}

/* Elements split over the threads (threads.h), 16 K at least per task. */
void dfx_requantize_int(const rt *x, rt *y, const dfx_par *par)
{
    requant_job j = {x, y};
    dfx_par_range(par, y->count, 16384, 64, requantize_range, &j);
}
#endif

/* Helpers shared by the kernels, the loader and the validator, kept apart so
 * that a compiled model (dfxsdk compile) can use the kernels without the loader:
 * constants' integer codes and real values, PriorBox aspect ratios. */
#include <math.h>

#include "../kernels.h"

/* ---- constants ---- */
int64_t dfx_const_int(const dt_tensor *t, int64_t i)
{
    const uint8_t *d = t->data;
    switch (t->dtype) {
        case DFX_INT8: return (int8_t)d[i];
        case DFX_INT16: return (int16_t)rd_u16(d + 2 * i);
        case DFX_INT32: return rd_i32(d + 4 * i);
        case DFX_INT4: {
            int v = (d[i >> 1] >> ((i & 1) * 4)) & 15;
            return v >= 8 ? v - 16 : v;
        }
        case DFX_INT2: {
            int v = (d[i >> 2] >> ((i & 3) * 2)) & 3;
            return v >= 2 ? v - 4 : v;
        }
        default: return 0;
    }
}

#if defined(DFX_USE_CONST_FLOAT)
float dfx_const_float(const dt_tensor *t, int64_t i)
{
    if (t->dtype == DFX_FLOAT32) return rd_f32(t->data + 4 * i);
    return (float)ldexp((double)dfx_const_int(t, i), -dfx_fl_at(t, i));
}
#endif

/* PriorBox helpers shared with the kernel. */
#if defined(DFX_USE_PRIOR_RATIOS)
int dfx_prior_ratios(const dt_opts *o, double *ratios, int cap)
{
    int n = 0;
    ratios[n++] = 1.0;
    for (uint32_t i = 0; i < o->aspect_ratios.n; i++) {
        double ar = vec_f32(o->aspect_ratios, i);
        double cand[2] = {ar, 1.0 / ar};
        for (int k = 0; k < (o->flip ? 2 : 1); k++) {
            int fresh = 1;
            for (int j = 0; j < n; j++)
                if (!(fabs(cand[k] - ratios[j]) >= 1e-6)) fresh = 0;
            if (fresh && n < cap) ratios[n++] = cand[k];
        }
    }
    return n;
}
#endif

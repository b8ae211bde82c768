/* The executor (plan.h): runs one planned layer. Shared by the library's
 * sessions and the C that `dfxsdk compile` writes; a compiled model defines
 * DFX_USE_<KERNEL> only for the kernels its plans name (kselect.h), so the
 * other cases compile out. */
#include "plan.h"

/* The stored data of an input or output. */
static void *stored(const dfx_io_plan *io, uint8_t *arena)
{ return io->data ? (void *)io->data : (void *)(arena + io->off); }

/* The tensor the kernel sees: the stored data, or its wide copy. */
static void bind(const dfx_io_plan *io, uint8_t *arena, rt *r)
{
    r->t = io->t;
    r->rank = io->t->rank;
    memcpy(r->shape, io->shape, sizeof r->shape);
    r->count = io->count;
    r->esz = io->esz;
    r->p = stored(io, arena);
    if (io->act >= DFX_IO_WIDEN) {
        r->p = arena + io->conv;
        r->esz = 4;
    }
}

/* Elements [a, b) of a wide copy (threads.h ranges). */
typedef struct conv_job {
    const dfx_io_plan *io;
    uint8_t *arena;
    const struct dfx_kernels *kf; /* store_range: the set's quantize_f32, if any (NULL: no set, compiled C) */
    const void *wide;             /* store_range: the wide values (the wide copy, or a Copy layer's input) */
} conv_job;

static void widen_range(void *ctx, int64_t a, int64_t b, int thread)
{
    const conv_job *j = (const conv_job *)ctx;
    const dfx_io_plan *io = j->io;
    const void *src = stored(io, j->arena);
    (void)thread;
    if (io->act == DFX_IO_WIDEN) {
        int32_t *q = (int32_t *)(j->arena + io->conv);
        for (int64_t i = a; i < b; i++) q[i] = dfx_ld(src, io->esz, i);
    } else {
        float *f = (float *)(j->arena + io->conv);
        const int fl = io->t->fl; /* fp_dequantize multiplies by a power of two it builds once per loop */
        for (int64_t i = a; i < b; i++) f[i] = fp_dequantize(dfx_ld(src, io->esz, i), fl);
    }
}

static void store_range(void *ctx, int64_t a, int64_t b, int thread)
{
    const conv_job *j = (const conv_job *)ctx;
    const dfx_io_plan *io = j->io;
    void *dst = stored(io, j->arena);
    const dt_tensor *T = io->t;
    (void)thread;
    if (io->act == DFX_IO_NARROW) {
        const int32_t *q = (const int32_t *)j->wide;
        for (int64_t i = a; i < b; i++) dfx_st(dst, io->esz, i, q[i]);
    } else if (j->kf && j->kf->quantize_f32 && T->fl >= -800 && T->fl <= 800) {
        j->kf->quantize_f32((const float *)j->wide + a, b - a, T->fl, T->bw, T->rounding, (uint8_t *)dst + a * io->esz,
                            io->esz);
    } else {
        fp_quantize_row((const float *)j->wide + a, b - a, T->fl, T->bw, T->rounding, (uint8_t *)dst + a * io->esz,
                        io->esz);
    }
}

#define COPY_GRAIN 8192 /* elements of a wide copy per task at least */

static void widen_input(const dfx_io_plan *io, uint8_t *arena, const dfx_par *par)
{
    conv_job j = {io, arena, NULL, NULL};
    if (io->act == DFX_IO_WIDEN || io->act == DFX_IO_DEQUANT)
        dfx_par_range(par, io->count, COPY_GRAIN, 64, widen_range, &j);
}

/* wide: the wide values to store (NULL: the output's wide copy). */
static void store_output(const dfx_io_plan *io, uint8_t *arena, const dfx_par *par, const struct dfx_kernels *kf,
                         const void *wide)
{
    conv_job j = {io, arena, kf, wide ? wide : arena + io->conv};
    if (io->act == DFX_IO_NARROW || io->act == DFX_IO_QUANT)
        dfx_par_range(par, io->count, COPY_GRAIN, 64, store_range, &j);
}

/* One call per planned kernel. x, s, b: inputs 0, 1, 2 (NULL when absent), w:
 * the weights, xs: all inputs, y: output 0, ys: all outputs, sc: scratch. */
static dfx_status call_kernel(const dfx_layer_plan *p, const struct dfx_kernels *kf, const rt *const *xs, rt *const *ys,
                              void *sc, const dfx_par *par, int relu)
{
    const dt_layer *L = p->L;
    const rt *x = xs[0], *s = xs[1], *b = xs[2];
    const dt_tensor *w = p->n_in > 1 ? p->in[1].t : NULL;
    const dfx_linprep *lp = p->lin;
    rt *y = ys[0];
    int n = p->n_in;
    (void)kf;
    (void)x;
    (void)s;
    (void)b;
    (void)w;
    (void)lp;
    (void)y;
    (void)n;
    (void)sc;
    (void)L;
    (void)par;
    (void)relu;
    switch (p->kernel) {
#if DFX_ALL_KERNELS || defined(DFX_USE_CONV2D_FAST)
        case DFX_K_CONV2D_FAST: return dfx_conv2d_fast(L, lp, kf, x, w, y, sc, par, relu);
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_CONV2D_INT)
        case DFX_K_CONV2D_INT: return dfx_conv2d_int(L, x, w, b, y, sc);
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_CONV2D_F32)
        case DFX_K_CONV2D_F32:
#if defined(DFX_USE_PREPARE)
            if (lp) { /* weights packed for the kernel set's float entries (ops/fast_f32.c) */
                dfx_conv2d_f32_fast(L, lp, kf, x, b, y, par);
                return DFX_OK;
            }
#endif
            dfx_conv2d_f32(L, x, w, b, y, sc);
            return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_DECONV2D_INT)
        case DFX_K_DECONV2D_INT: return dfx_deconv2d_int(L, x, w, b, y, sc);
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_DECONV2D_F32)
        case DFX_K_DECONV2D_F32: dfx_deconv2d_f32(L, x, w, b, y, sc); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_FC_FAST)
        case DFX_K_FC_FAST: return dfx_fc_fast(L, lp, kf, x, w, y, sc, par);
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_FC_INT)
        case DFX_K_FC_INT: return dfx_fc_int(L, x, w, b, y, sc);
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_FC_F32)
        case DFX_K_FC_F32:
#if defined(DFX_USE_PREPARE)
            if (lp) {
                dfx_fc_f32_fast(lp, kf, x, w, b, y, par);
                return DFX_OK;
            }
#endif
            dfx_fc_f32(L, x, w, b, y, sc);
            return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_MAXPOOL_S8)
        case DFX_K_MAXPOOL_S8: dfx_maxpool_s8(L, kf, x, y, par); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_POOL_INT)
        case DFX_K_POOL_INT: dfx_pool_int(L, x, y, par); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_POOL_F32)
        case DFX_K_POOL_F32: dfx_pool_f32(L, x, y, par); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_RELU_S8)
        case DFX_K_RELU_S8: dfx_relu_s8(kf, x, y, par); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_RELU_INT)
        case DFX_K_RELU_INT: dfx_relu_int(x, y); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_RELU_F32)
        case DFX_K_RELU_F32: dfx_relu_f32(x, y); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_CLIP_INT)
        case DFX_K_CLIP_INT: dfx_clip_int(L, x, y); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_CLIP_F32)
        case DFX_K_CLIP_F32: dfx_clip_f32(L, x, y); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_PRELU_INT)
        case DFX_K_PRELU_INT: dfx_prelu_int(x, s, y); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_PRELU_F32)
        case DFX_K_PRELU_F32: dfx_prelu_f32(x, s, y); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_SIGMOID_F32)
        case DFX_K_SIGMOID_F32: dfx_sigmoid_f32(x, y); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_TANH_F32)
        case DFX_K_TANH_F32: dfx_tanh_f32(x, y); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_LRN_F32)
        case DFX_K_LRN_F32: dfx_lrn_f32(L, x, y); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_CONCAT)
        case DFX_K_CONCAT: dfx_concat(L, xs, n, y, p->integer, par); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_ELTWISE_INT)
        case DFX_K_ELTWISE_INT: dfx_eltwise_int(L, xs, n, y, par); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_ELTWISE_F32)
        case DFX_K_ELTWISE_F32: dfx_eltwise_f32(L, xs, n, y, par); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_SOFTMAX_F32)
        case DFX_K_SOFTMAX_F32: dfx_softmax_f32(L, x, y, par); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_SCALE_INT)
        case DFX_K_SCALE_INT: dfx_scale_int(L, x, s, b, y); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_SCALE_F32)
        case DFX_K_SCALE_F32: dfx_scale_f32(L, x, s, b, y); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_POWER_F32)
        case DFX_K_POWER_F32: dfx_power_f32(L, x, y); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_COPY)
        case DFX_K_COPY: dfx_copy(x, y); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_PERMUTE)
        case DFX_K_PERMUTE: dfx_permute(L, x, y, par); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_SLICE)
        case DFX_K_SLICE: dfx_slice(L, x, ys, p->n_out); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_PAD)
        case DFX_K_PAD: dfx_pad(L, x, y, p->integer); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_UPSAMPLE)
        case DFX_K_UPSAMPLE: dfx_upsample(L, x, y); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_NORMALIZE_F32)
        case DFX_K_NORMALIZE_F32: dfx_normalize_f32(L, x, s, y); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_PRIORBOX_F32)
        case DFX_K_PRIORBOX_F32: dfx_priorbox_f32(L, x, s, y); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_DETECTION_OUTPUT_F32)
        case DFX_K_DETECTION_OUTPUT_F32: dfx_detection_output_f32(L, x, s, b, y, sc, par); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_REQUANTIZE_INT)
        case DFX_K_REQUANTIZE_INT: dfx_requantize_int(x, y, par); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_EXP_F32)
        case DFX_K_EXP_F32: dfx_exp_f32(x, y); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_MINIFLOAT_F32)
        case DFX_K_MINIFLOAT_F32: dfx_minifloat_f32(L, x, y); return DFX_OK;
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_CUSTOM)
        case DFX_K_CUSTOM: return dfx_custom(L, p->custom, xs, n, ys, p->n_out);
#endif
        default: /* not built in (the planner only plans built-in kernels) */ return DFX_ERR_UNSUPPORTED;
    }
}

/* Layer p; relu: the next layer, an int8 ReLU that p applies itself (dfx_exec_fuses_relu), else NULL. */
static dfx_status exec_layer(const dfx_layer_plan *p, const dfx_layer_plan *relu, const struct dfx_kernels *kf,
                             uint8_t *arena, const dfx_par *par)
{
    rt in[DFX_MAX_IO], out[DFX_MAX_IO];
    const rt *xs[DFX_MAX_IO + 3];
    rt *ys[DFX_MAX_IO] = {NULL};
    for (int k = 0; k < 3; k++) xs[p->n_in + k] = NULL; /* x, s, b of layers with fewer inputs */
    for (int k = 0; k < p->n_in; k++) {
        const dfx_io_plan *io = &p->in[k];
        xs[k] = NULL;
        if (io->act == DFX_IO_NONE) continue;
        widen_input(io, arena, par);
        bind(io, arena, &in[k]);
        xs[k] = &in[k];
    }
    for (int k = 0; k < p->n_out; k++) {
        bind(&p->out[k], arena, &out[k]);
        ys[k] = &out[k];
    }
    if (relu) out[0].p = stored(&relu->out[0], arena); /* p's codes, clamped, where the ReLU writes them */
#if DFX_ALL_KERNELS || defined(DFX_USE_COPY)
    if (p->kernel == DFX_K_COPY && p->n_out == 1 && xs[0] && xs[0]->esz == 4 && xs[0]->count == p->out[0].count &&
        (p->out[0].act == DFX_IO_NARROW || p->out[0].act == DFX_IO_QUANT)) { /* no wide copy: store the input */
        store_output(&p->out[0], arena, par, kf, xs[0]->p);
        return DFX_OK;
    }
#endif
    dfx_status st = call_kernel(p, kf, xs, ys, arena + p->scratch, par, relu != NULL);
    if (st) return st;
    for (int k = 0; k < p->n_out; k++) store_output(&p->out[k], arena, par, kf, NULL);
    return DFX_OK;
}

dfx_status dfx_exec_layer(const dfx_layer_plan *p, const struct dfx_kernels *kf, uint8_t *arena)
{ return exec_layer(p, NULL, kf, arena, NULL); }

dfx_status dfx_exec_layer_par(const dfx_layer_plan *p, const struct dfx_kernels *kf, uint8_t *arena, const dfx_par *par)
{ return exec_layer(p, NULL, kf, arena, par); }

#if DFX_ALL_KERNELS
int dfx_exec_fuses_relu(const dfx_layer_plan *p, const dfx_layer_plan *q, int q_index)
{
    if (p->kernel != DFX_K_CONV2D_FAST || q->kernel != DFX_K_RELU_S8 || p->n_out != 1 || q->n_in != 1 || q->n_out != 1)
        return 0;
    const dfx_io_plan *o = &p->out[0], *i = &q->in[0], *r = &q->out[0];
    if (!(o->t == i->t && o->act == DFX_IO_DIRECT && i->act == DFX_IO_DIRECT && r->act == DFX_IO_DIRECT &&
          o->esz == 1 && r->esz == 1 && o->count == r->count && !o->t->is_graph_output && o->t->last_use == q_index &&
          !r->data))
        return 0;
    for (int k = 0; k < p->n_in; k++) { /* q's output may reuse the memory of p's inputs: p still reads them */
        const dfx_io_plan *in = &p->in[k];
        if (in->act != DFX_IO_NONE && !in->data && in->off >= 0 && in->off < r->off + r->count * r->esz &&
            r->off < in->off + in->count * in->esz)
            return 0;
    }
    return 1;
}

dfx_status dfx_exec_layer_relu(const dfx_layer_plan *p, const dfx_layer_plan *q, const struct dfx_kernels *kf,
                               uint8_t *arena, const dfx_par *par)
{ return exec_layer(p, q, kf, arena, par); }
#endif

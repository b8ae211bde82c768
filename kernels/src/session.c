/* Sessions: memory plan, constant preparation, the layer loop and the API
 * accessors. Integer activations are stored in the narrowest type of their bit
 * width (int8, int16 or int32 codes), float ones as float32. Layers whose
 * kernels take narrow codes directly (the fast Conv2D/FC path, ReLU without a
 * format change, the layout operators, Concat without rescaling) run "native";
 * the others get their narrow inputs widened to int32 (or dequantized, for the
 * float form) in scratch and their outputs narrowed back. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#ifdef DFX_PROFILE
#include <time.h>
#endif

#include "kernels.h"

uint64_t dfx_plan(const dfx_model *m, const uint64_t *bytes, int keep_all, int64_t *off, uint64_t *sum);

struct dfx_session {
    const dfx_model *m;
    int64_t batch;
    unsigned flags;
    uint8_t *arena;
    size_t arena_bytes;
    int owns_arena;
    int64_t *off;            /* per tensor: arena offset of activations */
    int64_t (*shape)[DFX_MAX_RANK];
    int64_t *count;
    void **cin;              /* per layer input slot: prepared constant (or NULL) */
    int64_t *cin_off;        /* arena offset of a prepared constant, -1 = in place/none */
    int *cin_base;           /* index of each layer's first slot */
    unsigned char *native;   /* per layer: 1 = the kernel takes narrow codes */
    dfx_linprep *lin;        /* per layer: fast Conv2D / FC constants */
    const struct dfx_kernels *kf;
    size_t plan_bytes, const_bytes, scratch_bytes, sum_bytes;
    unsigned char *input_set;
    /* API extras (session_api.c): constant graph outputs, per-layer times */
    dfx_const_outputs couts;
    double *prof_s;          /* DFX_PROFILE: seconds per layer over all runs */
    int64_t prof_runs;
};

static int is_weight_slot(const dt_layer *L, int p)
{
    return p == 1 && (L->op == OP_CONV2D || L->op == OP_DECONV2D || L->op == OP_FC);
}

static int host_le(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

/* Integer form (spec/arithmetic.md, "Forms"; validate.integer_form): an
 * integer operator whose inputs (constants included) and outputs are all
 * integer tensors. */
static int int_form(const dfx_model *m, const dt_layer *L)
{
    if (!dfx_op_is_integer(L->op)) return 0;
    for (int p = 0; p < L->n_in; p++)
        if (L->in[p] >= 0 && !m->tensors[L->in[p]].has_q) return 0;
    for (int p = 0; p < L->n_out; p++)
        if (!m->tensors[L->out[p]].has_q) return 0;
    return 1;
}

static void make_rt(const dfx_session *s, int t, void *p, rt *r)
{
    const dt_tensor *T = &s->m->tensors[t];
    r->p = p;
    r->t = T;
    r->rank = T->rank;
    r->esz = T->is_const ? 4 : dfx_store_bytes(T);
    if (T->is_const) {
        memcpy(r->shape, T->shape, sizeof r->shape);
        r->count = T->count;
    } else {
        memcpy(r->shape, s->shape[t], sizeof r->shape);
        r->count = s->count[t];
    }
}

static int act_esz(const dfx_model *m, int t) { return dfx_store_bytes(&m->tensors[t]); }

/* Does layer L's kernel take the narrow stored codes directly? */
static int native_layer(const dfx_session *s, const dt_layer *L, int integer)
{
    const dfx_model *m = s->m;
    int li = (int)(L - m->layers);
    switch (L->op) {
    case OP_CONV2D:
    case OP_FC:
        return integer && s->lin[li].fast;
    case OP_RELU: {
        const dt_tensor *x = &m->tensors[L->in[0]], *y = &m->tensors[L->out[0]];
        return integer && !x->is_const && act_esz(m, L->in[0]) == 1 && act_esz(m, L->out[0]) == 1 && !x->per_channel &&
               x->fl == y->fl && y->bw >= x->bw;
    }
    case OP_POOL2D: { /* max pooling without a format change: int8 codes in place (kf->maxpool_s8) */
        const dt_tensor *x = &m->tensors[L->in[0]], *y = &m->tensors[L->out[0]];
        return integer && L->o.pool_type == 0 && !x->is_const && act_esz(m, L->in[0]) == 1 &&
               act_esz(m, L->out[0]) == 1 && !x->per_channel && !y->per_channel && x->fl == y->fl && y->bw >= x->bw;
    }
    case OP_FLATTEN: case OP_RESHAPE: case OP_PERMUTE: case OP_SLICE: case OP_UPSAMPLE:
        if (m->tensors[L->in[0]].is_const) return 0;
        for (int p = 0; p < L->n_out; p++)
            if (act_esz(m, L->out[p]) != act_esz(m, L->in[0]) || m->tensors[L->out[p]].has_q != m->tensors[L->in[0]].has_q)
                return 0;
        return 1;
    case OP_CONCAT: {
        const dt_tensor *y = &m->tensors[L->out[0]];
        for (int p = 0; p < L->n_in; p++) {
            if (L->in[p] < 0) continue;
            const dt_tensor *x = &m->tensors[L->in[p]];
            if (x->is_const) return 0;
            if (integer) {
                if (x->per_channel || x->fl != y->fl || x->bw > y->bw || act_esz(m, L->in[p]) != act_esz(m, L->out[0]))
                    return 0;
            } else if (x->has_q || y->has_q) {
                return 0;
            }
        }
        return 1;
    }
    default:
        return 0;
    }
}

/* Scratch of a non-native layer for its widened (or dequantized) inputs and
 * its wide outputs; mirrors run_layer. */
static size_t convert_bytes(const dfx_session *s, const dt_layer *L, int integer)
{
    const dfx_model *m = s->m;
    int layout = dfx_op_layout_only(L->op);
    size_t need = 0;
    for (int p = 0; p < L->n_in; p++) {
        int t = L->in[p];
        if (t < 0 || m->tensors[t].is_const) continue;
        if ((!integer && !layout && m->tensors[t].has_q) || act_esz(m, t) != 4) need += fp_align64((size_t)s->count[t] * 4);
    }
    for (int p = 0; p < L->n_out; p++)
        if (act_esz(m, L->out[p]) != 4) need += fp_align64((size_t)s->count[L->out[p]] * 4);
    return need;
}

static dfx_status prepare(dfx_session *s)
{
    const dfx_model *m = s->m;
    int nt = m->n_tensors, nl = m->n_layers, slots = 0;
    for (int i = 0; i < nl; i++) slots += m->layers[i].n_in;
    s->off = (int64_t *)calloc(nt ? nt : 1, sizeof *s->off);
    s->shape = (int64_t(*)[DFX_MAX_RANK])calloc(nt ? nt : 1, sizeof *s->shape);
    s->count = (int64_t *)calloc(nt ? nt : 1, sizeof *s->count);
    s->cin = (void **)calloc(slots ? slots : 1, sizeof *s->cin);
    s->cin_off = (int64_t *)calloc(slots ? slots : 1, sizeof *s->cin_off);
    s->cin_base = (int *)calloc(nl ? nl : 1, sizeof *s->cin_base);
    s->input_set = (unsigned char *)calloc(m->n_inputs ? m->n_inputs : 1, 1);
    s->native = (unsigned char *)calloc(nl ? nl : 1, 1);
    s->lin = (dfx_linprep *)calloc(nl ? nl : 1, sizeof *s->lin);
    if (!s->kf) s->kf = dfx_select_kernels();
    uint64_t *bytes = (uint64_t *)calloc(nt ? nt : 1, sizeof *bytes);
    if (!s->off || !s->shape || !s->count || !s->cin || !s->cin_off || !s->cin_base || !s->input_set || !s->native || !s->lin || !bytes) {
        free(bytes);
        return dfx_fail(DFX_ERR_NOMEM, "out of memory creating a session");
    }
    for (int i = 0; i < nt; i++) {
        const dt_tensor *T = &m->tensors[i];
        memcpy(s->shape[i], T->shape, sizeof s->shape[i]);
        int64_t c = T->count;
        /* PriorBox output depends on shapes only: (1, 2, ...) whatever the batch */
        int fixed = T->producer >= 0 && m->layers[T->producer].op == OP_PRIORBOX;
        if (!T->is_const && T->rank >= 1 && !fixed) {
            c = 1;
            s->shape[i][0] = s->batch;
            for (int d = 0; d < T->rank; d++) {
                if (s->shape[i][d] && c > ((int64_t)1 << 40) / s->shape[i][d]) { free(bytes); return dfx_fail(DFX_ERR_ARGUMENT, "batch too large"); }
                c *= s->shape[i][d];
            }
        }
        s->count[i] = c;
        bytes[i] = T->is_const ? 0 : (uint64_t)c * (uint64_t)dfx_store_bytes(T);
    }
    uint64_t sum;
    uint64_t plan = dfx_plan(m, bytes, (s->flags & DFX_KEEP_ALL) != 0, s->off, &sum);
    free(bytes);
    if (plan == (uint64_t)-1) return dfx_fail(DFX_ERR_NOMEM, "out of memory planning");
    s->plan_bytes = (size_t)plan;
    s->sum_bytes = (size_t)sum;
    size_t cbytes = 0, scratch = 0;
    int slot = 0;
    for (int li = 0; li < nl; li++) {
        const dt_layer *L = &m->layers[li];
        int integer = int_form(m, L);
        s->cin_base[li] = slot;
        if (L->op == OP_CUSTOM)
            return dfx_fail(DFX_ERR_UNSUPPORTED, "layer '%s': custom operator '%s' is not implemented by the native runtime",
                            L->name, L->o.custom_name ? L->o.custom_name : "");
        size_t need = 0;
        for (int p = 0; p < L->n_in; p++, slot++) {
            s->cin_off[slot] = -1;
            int t = L->in[p];
            if (t < 0) continue;
            const dt_tensor *T = &m->tensors[t];
            if (integer && !dfx_op_layout_only(L->op) && !T->has_q)
                return dfx_fail(DFX_ERR_INVALID, "layer '%s', tensor '%s': runs in integer form but its constant input is float32; integer constants are required",
                                L->name, T->name);
            if (!T->is_const) continue;
            if (is_weight_slot(L, p)) continue;
            int in_place = host_le() && ((integer && T->dtype == DFX_INT32) || (!integer && T->dtype == DFX_FLOAT32) ||
                                         (dfx_op_layout_only(L->op) && (T->dtype == DFX_INT32 || T->dtype == DFX_FLOAT32)));
            if (!in_place) {
                s->cin_off[slot] = (int64_t)cbytes;
                cbytes += fp_align64((size_t)T->count * 4);
            }
        }
        if ((L->op == OP_CONV2D || L->op == OP_DECONV2D || L->op == OP_FC) && !m->tensors[L->in[1]].is_const)
            return dfx_fail(DFX_ERR_UNSUPPORTED, "layer '%s': the weights '%s' are an activation; the native runtime needs constant weights",
                            L->name, m->tensors[L->in[1]].name);
        /* the accumulator bound and the per-tensor fl of input 0 are checked at load (validate.c) */
        if (integer && (L->op == OP_CONV2D || L->op == OP_FC)) {
            rt x, y;
            size_t fast = 0;
            make_rt(s, L->in[0], NULL, &x);
            make_rt(s, L->out[0], NULL, &y);
            const dt_tensor *b = L->n_in > 2 && L->in[2] >= 0 ? &m->tensors[L->in[2]] : NULL;
            dfx_status st = dfx_linear_prepare(L, &x, &m->tensors[L->in[1]], b, &y, &s->lin[li], &fast);
            if (st) return st;
            if (s->lin[li].fast) need += fast;
        }
        s->native[li] = (unsigned char)native_layer(s, L, integer);
        if (!s->native[li]) need += convert_bytes(s, L, integer);
        if ((L->op == OP_CONV2D || L->op == OP_DECONV2D || L->op == OP_FC) && !s->native[li]) {
            rt x, y;
            make_rt(s, L->in[0], NULL, &x);
            make_rt(s, L->out[0], NULL, &y);
            need += fp_align64(dfx_linear_scratch(L, &x, &m->tensors[L->in[1]], &y));
        }
        if (L->op == OP_DETECTION_OUTPUT) {
            rt a, b, c;
            make_rt(s, L->in[0], NULL, &a);
            make_rt(s, L->in[1], NULL, &b);
            make_rt(s, L->in[2], NULL, &c);
            need += fp_align64(dfx_detection_scratch(L, &a, &b, &c));
        }
        if (need > scratch) scratch = need;
    }
    s->const_bytes = cbytes;
    s->scratch_bytes = scratch;
    s->arena_bytes = fp_align64(s->plan_bytes) + cbytes + scratch;
    return DFX_OK;
}

static void fill_constants(dfx_session *s)
{
    const dfx_model *m = s->m;
    uint8_t *base = s->arena + fp_align64(s->plan_bytes);
    for (int li = 0; li < m->n_layers; li++) {
        const dt_layer *L = &m->layers[li];
        int integer = int_form(m, L), slot = s->cin_base[li];
        for (int p = 0; p < L->n_in; p++, slot++) {
            int t = L->in[p];
            s->cin[slot] = NULL;
            if (t < 0 || !m->tensors[t].is_const || is_weight_slot(L, p)) continue;
            const dt_tensor *T = &m->tensors[t];
            if (s->cin_off[slot] < 0) { s->cin[slot] = (void *)T->data; continue; }
            void *dst = base + s->cin_off[slot];
            s->cin[slot] = dst;
            int as_int = dfx_op_layout_only(L->op) ? T->has_q : integer;
            for (int64_t i = 0; i < T->count; i++) {
                if (as_int) ((int32_t *)dst)[i] = (int32_t)dfx_const_int(T, i);
                else ((float *)dst)[i] = dfx_const_float(T, i);
            }
        }
    }
}

/* Weights of the fast GEMM layers prepared once for the kernel set (dfx_linear_pack). */
static dfx_status pack_weights(dfx_session *s)
{
    const dfx_model *m = s->m;
    for (int li = 0; li < m->n_layers; li++) {
        const dt_layer *L = &m->layers[li];
        if (!s->native[li] || !s->lin[li].fast || (L->op != OP_CONV2D && L->op != OP_FC)) continue;
        const dt_tensor *w = &m->tensors[L->in[1]];
        int y = L->out[0];
        int64_t cols = L->op == OP_CONV2D ? s->shape[y][2] * s->shape[y][3] : s->count[y] / w->shape[0];
        /* a ReLU's output is never negative (its codes, in any form) */
        int px = m->tensors[L->in[0]].producer, x_nonneg = px >= 0 && m->layers[px].op == OP_RELU;
        dfx_status st = dfx_linear_pack(L, w, cols, x_nonneg, s->kf, &s->lin[li]);
        if (st) return st;
    }
    return DFX_OK;
}

static void session_free(dfx_session *s)
{
    if (!s) return;
    if (s->owns_arena) free(s->arena);
    if (s->lin)
        for (int i = 0; i < s->m->n_layers; i++) {
            free(s->lin[i].bias); free(s->lin[i].lsh); free(s->lin[i].rsh);
            dfx_linear_release(&s->lin[i]);
        }
    free(s->off); free(s->shape); free(s->count); free(s->cin); free(s->cin_off); free(s->cin_base); free(s->input_set);
    free(s->native); free(s->lin);
    dfx_const_outputs_free(&s->couts);
    free(s->prof_s);
    free(s);
}

static dfx_status session_new(const dfx_model *m, int64_t batch, unsigned flags, const struct dfx_kernels *kf,
                              dfx_session **out)
{
    if (!m || !out) return dfx_fail(DFX_ERR_ARGUMENT, "NULL argument");
    if (batch < 1) return dfx_fail(DFX_ERR_ARGUMENT, "batch must be >= 1");
    dfx_session *s = (dfx_session *)calloc(1, sizeof *s);
    if (!s) return dfx_fail(DFX_ERR_NOMEM, "out of memory");
    s->m = m;
    s->batch = batch;
    s->flags = flags;
    s->kf = kf;
    dfx_status st = prepare(s);
    if (st) { session_free(s); return st; }
    *out = s;
    return DFX_OK;
}

dfx_status dfx_model_arena_size(const dfx_model *m, int64_t batch, unsigned flags, size_t *arena_bytes, size_t *sum_bytes)
{
    dfx_session *s = NULL;
    dfx_clear_error();
    dfx_status st = session_new(m, batch, flags, NULL, &s);
    if (st) return st;
    if (arena_bytes) *arena_bytes = s->arena_bytes;
    if (sum_bytes) *sum_bytes = s->sum_bytes;
    session_free(s);
    return DFX_OK;
}

static dfx_status session_create(const dfx_model *m, int64_t batch, void *arena, size_t arena_bytes, unsigned flags,
                                 const struct dfx_kernels *kf, dfx_session **out)
{
    dfx_session *s = NULL;
    dfx_clear_error();
    if (out) *out = NULL;
    dfx_status st = session_new(m, batch, flags, kf, &s);
    if (st) return st;
    if (arena) {
        if ((uintptr_t)arena % 16) { session_free(s); return dfx_fail(DFX_ERR_ARGUMENT, "the arena must be 16-byte aligned"); }
        if (arena_bytes < s->arena_bytes) {
            size_t want = s->arena_bytes;
            session_free(s);
            return dfx_fail(DFX_ERR_NOMEM, "the arena has %zu bytes, the model needs %zu", arena_bytes, want);
        }
        s->arena = (uint8_t *)arena;
    } else {
        s->arena = (uint8_t *)malloc(s->arena_bytes ? s->arena_bytes + 64 : 64);
        if (!s->arena) { size_t want = s->arena_bytes; session_free(s); return dfx_fail(DFX_ERR_NOMEM, "cannot allocate a %zu-byte arena", want); }
        s->owns_arena = 1;
    }
    fill_constants(s);
    st = pack_weights(s);
    if (!st) st = dfx_const_outputs_init(m, &s->couts);
#ifdef DFX_PROFILE
    if (!st && !(s->prof_s = (double *)calloc(m->n_layers ? m->n_layers : 1, sizeof *s->prof_s)))
        st = dfx_fail(DFX_ERR_NOMEM, "out of memory");
#endif
    if (st) { session_free(s); return st; }
    *out = s;
    return DFX_OK;
}

dfx_status dfx_session_create(const dfx_model *m, int64_t batch, void *arena, size_t arena_bytes, unsigned flags,
                              dfx_session **out)
{
    return session_create(m, batch, arena, arena_bytes, flags, NULL, out);
}

dfx_status dfx_session_create_ex(const dfx_model *m, const dfx_session_options *o, dfx_session **out)
{
    dfx_session_options opt;
    const struct dfx_kernels *kf = NULL;
    dfx_clear_error();
    if (out) *out = NULL;
    dfx_status st = dfx_session_options_read(o, &opt);
    if (!st) st = dfx_find_kernels(opt.kernels, &kf);
    if (st) return st;
    return session_create(m, opt.batch, opt.arena, opt.arena_bytes, opt.flags, kf, out);
}

const char *dfx_session_kernels_name(const dfx_session *s) { return s ? s->kf->name : NULL; }

dfx_status dfx_session_layer_time(const dfx_session *s, int layer, double *seconds, int64_t *runs)
{
    dfx_clear_error();
    if (!s || layer < 0 || layer >= s->m->n_layers) return dfx_fail(DFX_ERR_ARGUMENT, "no layer %d", layer);
    if (!s->prof_s) return dfx_fail(DFX_ERR_UNSUPPORTED, "per-layer times need a library built with DFX_PROFILE");
    if (seconds) *seconds = s->prof_s[layer];
    if (runs) *runs = s->prof_runs;
    return DFX_OK;
}

void dfx_session_destroy(dfx_session *s) { session_free(s); }
size_t dfx_session_arena_bytes(const dfx_session *s) { return s ? s->arena_bytes : 0; }

static dfx_status input_slot(dfx_session *s, int input, int64_t count, int *t)
{
    if (!s || input < 0 || input >= s->m->n_inputs) return dfx_fail(DFX_ERR_ARGUMENT, "no graph input %d", input);
    *t = s->m->inputs[input];
    if (count != s->count[*t])
        return dfx_fail(DFX_ERR_ARGUMENT, "input '%s' needs %lld values for batch %lld, got %lld", s->m->tensors[*t].name,
                        (long long)s->count[*t], (long long)s->batch, (long long)count);
    return DFX_OK;
}

dfx_status dfx_session_set_input_f32(dfx_session *s, int input, const float *v, int64_t count)
{
    int t = -1;
    dfx_clear_error();
    dfx_status st = input_slot(s, input, count, &t);
    if (st) return st;
    const dt_tensor *T = &s->m->tensors[t];
    void *dst = s->arena + s->off[t];
    int esz = dfx_store_bytes(T);
    if (T->has_q) fp_quantize_row(v, count, T->fl, T->bw, T->rounding, dst, esz);
    else
        for (int64_t i = 0; i < count; i++) ((float *)dst)[i] = v[i];
    s->input_set[input] = 1;
    return DFX_OK;
}

dfx_status dfx_session_set_input_codes(dfx_session *s, int input, const int32_t *codes, int64_t count)
{
    int t = -1;
    dfx_clear_error();
    dfx_status st = input_slot(s, input, count, &t);
    if (st) return st;
    const dt_tensor *T = &s->m->tensors[t];
    if (!T->has_q) return dfx_fail(DFX_ERR_ARGUMENT, "input '%s' is float32; use dfx_session_set_input_f32", T->name);
    void *dst = s->arena + s->off[t];
    int esz = dfx_store_bytes(T);
    for (int64_t i = 0; i < count; i++) dfx_st(dst, esz, i, (int32_t)fp_saturate(codes[i], T->bw));
    s->input_set[input] = 1;
    return DFX_OK;
}

/* Set graph input `input` from `count` float32 values that gen() produces in
 * chunks (dfx_session_set_input_u8), quantized as dfx_session_set_input_f32. */
dfx_status dfx_session_fill_input(dfx_session *s, int input, int64_t count, dfx_input_gen gen, void *ctx)
{
    int t = -1;
    dfx_status st = input_slot(s, input, count, &t);
    if (st) return st;
    const dt_tensor *T = &s->m->tensors[t];
    uint8_t *dst = s->arena + s->off[t];
    int esz = dfx_store_bytes(T);
    float buf[256];
    for (int64_t i = 0; i < count; i += 256) {
        int64_t n = count - i < 256 ? count - i : 256;
        gen(ctx, i, n, buf);
        if (T->has_q) fp_quantize_row(buf, n, T->fl, T->bw, T->rounding, dst + i * esz, esz);
        else memcpy(dst + i * 4, buf, (size_t)n * 4);
    }
    s->input_set[input] = 1;
    return DFX_OK;
}

const dfx_model *dfx_session_model(const dfx_session *s) { return s->m; }

#define MAXIO 64

static void run_maxpool_s8(const dfx_session *s, const dt_layer *L, const rt *x, rt *y)
{
    const dt_opts *o = &L->o;
    int64_t NC = x->shape[0] * x->shape[1], H = x->shape[2], W = x->shape[3], OH = y->shape[2], OW = y->shape[3];
    int kh = (int)o->kh, kw = (int)o->kw, sh = (int)o->sh, sw = (int)o->sw, pt = (int)o->pt, pl = (int)o->pl;
    if (o->global) { kh = (int)H; kw = (int)W; sh = sw = 1; pt = pl = 0; }
    int8_t empty = (int8_t)(-(1 << (y->t->bw - 1)));
    for (int64_t c = 0; c < NC; c++)
        s->kf->maxpool_s8((const int8_t *)x->p + c * H * W, (int)H, (int)W, kh, kw, sh, sw, pt, pl,
                          (int8_t *)y->p + c * OH * OW, (int)OH, (int)OW, empty);
}

static dfx_status run_layer(dfx_session *s, int li, uint8_t *scratch)
{
    const dfx_model *m = s->m;
    const dt_layer *L = &m->layers[li];
    int integer = int_form(m, L), layout = dfx_op_layout_only(L->op), native = s->native[li];
    rt in[MAXIO], out[MAXIO];
    void *final[MAXIO];
    const rt *pin[MAXIO];
    rt *pout[MAXIO];
    int n_in = L->n_in;
    if (n_in > MAXIO || L->n_out > MAXIO) return dfx_fail(DFX_ERR_UNSUPPORTED, "layer '%s': more than %d inputs or outputs", L->name, MAXIO);
    while (n_in > 0 && L->in[n_in - 1] < 0) n_in--;
    int slot = s->cin_base[li];
    for (int p = 0; p < n_in; p++) {
        int t = L->in[p];
        pin[p] = NULL;
        if (t < 0) continue;
        const dt_tensor *T = &m->tensors[t];
        void *ptr = T->is_const ? s->cin[slot + p] : (void *)(s->arena + s->off[t]);
        make_rt(s, t, ptr, &in[p]);
        if (!native && !T->is_const && !integer && !layout && T->has_q) { /* dequantize into scratch */
            float *f = (float *)scratch;
            for (int64_t i = 0; i < in[p].count; i++) f[i] = fp_dequantize(dfx_ld(ptr, in[p].esz, i), T->fl);
            in[p].p = f;
            in[p].esz = 4;
            scratch += fp_align64((size_t)in[p].count * 4);
        } else if (!native && !T->is_const && in[p].esz != 4) { /* widen into scratch */
            int32_t *q = (int32_t *)scratch;
            for (int64_t i = 0; i < in[p].count; i++) q[i] = dfx_ld(ptr, in[p].esz, i);
            in[p].p = q;
            in[p].esz = 4;
            scratch += fp_align64((size_t)in[p].count * 4);
        }
        pin[p] = &in[p];
    }
    for (int p = 0; p < L->n_out; p++) {
        make_rt(s, L->out[p], s->arena + s->off[L->out[p]], &out[p]);
        final[p] = out[p].p;
        if (!native && out[p].esz != 4) { /* the kernel writes int32 / float32 into scratch */
            out[p].p = scratch;
            out[p].esz = 4;
            scratch += fp_align64((size_t)out[p].count * 4);
        }
        pout[p] = &out[p];
    }
    const dt_tensor *w = is_weight_slot(L, 1) ? &m->tensors[L->in[1]] : NULL;
    const rt *b = n_in > 2 ? pin[2] : NULL;
    dfx_status st = DFX_OK;
    switch (L->op) {
    case OP_CONV2D: if (native) st = dfx_conv2d_fast(L, &s->lin[li], s->kf, pin[0], w, pout[0], scratch); else if (integer) st = dfx_conv2d_int(L, pin[0], w, b, pout[0], scratch); else dfx_conv2d_f32(L, pin[0], w, b, pout[0], scratch); break;
    case OP_DECONV2D: if (integer) st = dfx_deconv2d_int(L, pin[0], w, b, pout[0], scratch); else dfx_deconv2d_f32(L, pin[0], w, b, pout[0], scratch); break;
    case OP_FC: if (native) st = dfx_fc_fast(L, &s->lin[li], s->kf, pin[0], w, pout[0], scratch); else if (integer) st = dfx_fc_int(L, pin[0], w, b, pout[0], scratch); else dfx_fc_f32(L, pin[0], w, b, pout[0], scratch); break;
    case OP_POOL2D: if (native) run_maxpool_s8(s, L, pin[0], pout[0]); else if (integer) dfx_pool_int(L, pin[0], pout[0]); else dfx_pool_f32(L, pin[0], pout[0]); break;
    case OP_RELU: if (native) s->kf->relu_s8((const int8_t *)pin[0]->p, (int8_t *)pout[0]->p, (int)pout[0]->count); else if (integer) dfx_relu_int(pin[0], pout[0]); else dfx_relu_f32(pin[0], pout[0]); break;
    case OP_CLIP: if (integer) dfx_clip_int(L, pin[0], pout[0]); else dfx_clip_f32(L, pin[0], pout[0]); break;
    case OP_PRELU: if (integer) dfx_prelu_int(pin[0], pin[1], pout[0]); else dfx_prelu_f32(pin[0], pin[1], pout[0]); break;
    case OP_SIGMOID: dfx_sigmoid_f32(pin[0], pout[0]); break;
    case OP_TANH: dfx_tanh_f32(pin[0], pout[0]); break;
    case OP_EXP: dfx_exp_f32(pin[0], pout[0]); break;
    case OP_MINIFLOAT: dfx_minifloat_f32(L, pin[0], pout[0]); break;
    case OP_LRN: dfx_lrn_f32(L, pin[0], pout[0]); break;
    case OP_CONCAT: dfx_concat(L, pin, n_in, pout[0], integer); break;
    case OP_ELTWISE: if (integer) dfx_eltwise_int(L, pin, n_in, pout[0]); else dfx_eltwise_f32(L, pin, n_in, pout[0]); break;
    case OP_SOFTMAX: dfx_softmax_f32(L, pin[0], pout[0]); break;
    case OP_SCALE: if (integer) dfx_scale_int(L, pin[0], pin[1], b, pout[0]); else dfx_scale_f32(L, pin[0], pin[1], b, pout[0]); break;
    case OP_POWER: dfx_power_f32(L, pin[0], pout[0]); break;
    case OP_FLATTEN: case OP_RESHAPE: dfx_copy(pin[0], pout[0]); break;
    case OP_PERMUTE: dfx_permute(L, pin[0], pout[0]); break;
    case OP_SLICE: dfx_slice(L, pin[0], pout, L->n_out); break;
    case OP_PAD: dfx_pad(L, pin[0], pout[0], integer); break;
    case OP_UPSAMPLE: dfx_upsample(L, pin[0], pout[0]); break;
    case OP_NORMALIZE: dfx_normalize_f32(L, pin[0], n_in > 1 ? pin[1] : NULL, pout[0]); break;
    case OP_PRIORBOX: dfx_priorbox_f32(L, pin[0], pin[1], pout[0]); break;
    case OP_DETECTION_OUTPUT: dfx_detection_output_f32(L, pin[0], pin[1], pin[2], pout[0], scratch); break;
    case OP_REQUANTIZE: if (integer) dfx_requantize_int(pin[0], pout[0]); else dfx_copy(pin[0], pout[0]); break;
    default: return dfx_fail(DFX_ERR_UNSUPPORTED, "layer '%s': operator %s is not implemented", L->name, dfx_op_name(L->op));
    }
    if (st) return st;
    if (native) return DFX_OK;
    for (int p = 0; p < L->n_out; p++) {
        const dt_tensor *T = out[p].t;
        int esz = dfx_store_bytes(T);
        if (!integer && !layout && T->has_q) { /* quantize float results */
            fp_quantize_row(F32(&out[p]), out[p].count, T->fl, T->bw, T->rounding, final[p], esz);
        } else if (esz != 4) { /* narrow int32 codes (already within bw) */
            for (int64_t i = 0; i < out[p].count; i++) dfx_st(final[p], esz, i, I32(&out[p])[i]);
        }
    }
    return DFX_OK;
}

dfx_status dfx_session_run(dfx_session *s)
{
    dfx_clear_error();
    if (!s) return dfx_fail(DFX_ERR_ARGUMENT, "NULL session");
    for (int i = 0; i < s->m->n_inputs; i++)
        if (!s->input_set[i]) return dfx_fail(DFX_ERR_STATE, "input '%s' is not set", s->m->tensors[s->m->inputs[i]].name);
    uint8_t *scratch = s->arena + fp_align64(s->plan_bytes) + s->const_bytes;
    for (int li = 0; li < s->m->n_layers; li++) {
#ifdef DFX_PROFILE /* per-layer times (dfx_session_layer_time): build with -DDFX_PROFILE */
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
#endif
        dfx_status st = run_layer(s, li, scratch);
        if (st) return st;
#ifdef DFX_PROFILE
        clock_gettime(CLOCK_MONOTONIC, &t1);
        s->prof_s[li] += (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
#endif
    }
#ifdef DFX_PROFILE
    s->prof_runs++;
#endif
    return DFX_OK;
}

dfx_status dfx_session_get_tensor(dfx_session *s, int t, dfx_view *v)
{
    dfx_clear_error();
    if (!s || !v || t < 0 || t >= s->m->n_tensors) return dfx_fail(DFX_ERR_ARGUMENT, "no tensor %d", t);
    const dt_tensor *T = &s->m->tensors[t];
    if (T->is_const) return dfx_fail(DFX_ERR_ARGUMENT, "tensor '%s' is a constant", T->name);
    v->data = s->arena + s->off[t];
    v->count = s->count[t];
    v->is_float = !T->has_q;
    v->dtype = !T->has_q ? DFX_FLOAT32 : dfx_store_bytes(T) == 1 ? DFX_INT8 : dfx_store_bytes(T) == 2 ? DFX_INT16 : DFX_INT32;
    v->rank = T->rank;
    memcpy(v->shape, s->shape[t], sizeof v->shape);
    dfx_view_format(T, v);
    return DFX_OK;
}

dfx_status dfx_session_get_output(dfx_session *s, int i, dfx_view *v)
{
    dfx_clear_error();
    if (!s || !v || i < 0 || i >= s->m->n_outputs) return dfx_fail(DFX_ERR_ARGUMENT, "no graph output %d", i);
    if (s->m->tensors[s->m->outputs[i]].is_const) return dfx_const_output_view(s->m, &s->couts, i, v);
    return dfx_session_get_tensor(s, s->m->outputs[i], v);
}

/* ---- model accessors ---- */
int dfx_model_num_tensors(const dfx_model *m) { return m ? m->n_tensors : 0; }
int dfx_model_num_layers(const dfx_model *m) { return m ? m->n_layers : 0; }
int dfx_model_num_inputs(const dfx_model *m) { return m ? m->n_inputs : 0; }
int dfx_model_num_outputs(const dfx_model *m) { return m ? m->n_outputs : 0; }
int dfx_model_input(const dfx_model *m, int i) { return m && i >= 0 && i < m->n_inputs ? m->inputs[i] : -1; }
int dfx_model_output(const dfx_model *m, int i) { return m && i >= 0 && i < m->n_outputs ? m->outputs[i] : -1; }
int dfx_model_find_tensor(const dfx_model *m, const char *name)
{
    if (!m || !name) return -1;
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return i;
    return -1;
}
const char *dfx_model_layer_name(const dfx_model *m, int i) { return m && i >= 0 && i < m->n_layers ? m->layers[i].name : NULL; }
const char *dfx_model_layer_type(const dfx_model *m, int i) { return m && i >= 0 && i < m->n_layers ? dfx_op_name(m->layers[i].op) : NULL; }
dfx_status dfx_model_tensor_info(const dfx_model *m, int t, dfx_tensor_info *info)
{
    if (!m || !info || t < 0 || t >= m->n_tensors) return dfx_fail(DFX_ERR_ARGUMENT, "no tensor %d", t);
    const dt_tensor *T = &m->tensors[t];
    info->name = T->name;
    info->rank = T->rank;
    memcpy(info->shape, T->shape, sizeof info->shape);
    info->dtype = (dfx_dtype)T->dtype;
    info->quantized = T->has_q;
    info->bw = T->bw;
    info->fl = T->fl;
    info->rounding = T->rounding;
    info->per_channel = T->per_channel;
    info->is_constant = T->is_const;
    return DFX_OK;
}

/* ---- dfx_model_describe: the prepared plan as JSON, for code generators ---- */

typedef struct { char *p; size_t n, cap; int oom; } sbuf;

static void sb_put(sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void sb_put(sbuf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) { b->oom = 1; return; }
        if (b->p && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
        size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)k;
        char *q = (char *)realloc(b->p, cap);
        if (!q) { b->oom = 1; return; }
        b->p = q;
        b->cap = cap;
    }
}

static void sb_str(sbuf *b, const char *s)
{
    sb_put(b, "\"");
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') sb_put(b, "\\%c", c);
        else if (c < 0x20) sb_put(b, "\\u%04x", c);
        else sb_put(b, "%c", c);
    }
    sb_put(b, "\"");
}

static void sb_hex(sbuf *b, const uint8_t *p, size_t n)
{
    sb_put(b, "\"");
    for (size_t i = 0; i < n; i++) sb_put(b, "%02x", p[i]);
    sb_put(b, "\"");
}

static void sb_i64s(sbuf *b, const int64_t *v, int n)
{
    sb_put(b, "[");
    for (int i = 0; i < n; i++) sb_put(b, "%s%lld", i ? "," : "", (long long)v[i]);
    sb_put(b, "]");
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Every field of dt_opts, by kind (keep in step with dfx_internal.h). */
#define DFX_OPT_INTS(X)                                                                                          \
    X(kh) X(kw) X(sh) X(sw) X(pt) X(pl) X(pb) X(pr) X(dh) X(dw) X(group) X(oph) X(opw) X(pool_type) X(global)     \
    X(ceil_mode) X(divisor) X(axis) X(end_axis) X(num_axes) X(local_size) X(region) X(operation) X(scale_h)       \
    X(scale_w) X(across_spatial) X(channel_shared) X(flip) X(clip) X(img_h) X(img_w) X(num_classes)               \
    X(share_location) X(background_label_id) X(top_k) X(keep_top_k) X(code_type) X(variance_encoded_in_target)    \
    X(mant_bits) X(exp_bits)
#define DFX_OPT_FLOATS(X)                                                                                        \
    X(fmin) X(fmax) X(alpha) X(beta) X(k) X(power) X(scale) X(shift) X(pad_value) X(eps) X(step_h) X(step_w)     \
    X(offset) X(nms_threshold) X(eta) X(confidence_threshold)
#define DFX_OPT_VECS(X) X(coeffs) X(order) X(points) X(pads) X(min_sizes) X(max_sizes) X(aspect_ratios) X(variances)

static void describe_layer(sbuf *b, const dfx_session *s, int li)
{
    const dfx_model *m = s->m;
    const dt_layer *L = &m->layers[li];
    const dt_opts *o = &L->o;
    sb_put(b, "{\"name\":");
    sb_str(b, L->name);
    sb_put(b, ",\"op\":%d,\"type\":\"%s\",\"version\":%d,\"int_form\":%d,\"layout\":%d,\"native\":%d,\"in\":[", L->op,
           dfx_op_name(L->op), L->version, int_form(m, L), dfx_op_layout_only(L->op), s->native[li]);
    for (int p = 0; p < L->n_in; p++) sb_put(b, "%s%d", p ? "," : "", (int)L->in[p]);
    sb_put(b, "],\"out\":[");
    for (int p = 0; p < L->n_out; p++) sb_put(b, "%s%d", p ? "," : "", (int)L->out[p]);
    /* prepared constant inputs: arena offset in the constant area, or -1 (used in place / none / weights) */
    sb_put(b, "],\"const_off\":[");
    for (int p = 0; p < L->n_in; p++) sb_put(b, "%s%lld", p ? "," : "", (long long)s->cin_off[s->cin_base[li] + p]);
    sb_put(b, "],\"opts\":{");
    const char *sep = "";
#define PUT_INT(f) sb_put(b, "%s\"" #f "\":%d", sep, (int)o->f), sep = ",";
#define PUT_FLT(f) sb_put(b, "%s\"" #f "\":{\"f32\":%lu}", sep, (unsigned long)f32_bits(o->f)), sep = ",";
#define PUT_VEC(f) sb_put(b, "%s\"" #f "\":{\"vec\":", sep), sb_hex(b, o->f.p, (size_t)o->f.n * 4), sb_put(b, ",\"n\":%u}", o->f.n), sep = ",";
    DFX_OPT_INTS(PUT_INT)
    DFX_OPT_FLOATS(PUT_FLT)
    DFX_OPT_VECS(PUT_VEC)
#undef PUT_INT
#undef PUT_FLT
#undef PUT_VEC
    sb_put(b, "}");
    const dfx_linprep *lp = &s->lin[li];
    if (lp->fast) {
        int64_t O = m->tensors[L->in[1]].shape[0];
        sb_put(b, ",\"lin\":{\"fast\":1,\"dw\":%d,\"direct\":%d,\"w_in_place\":%d,\"K\":%lld,\"nb\":%d,\"ob\":%d,\"bias\":",
               lp->dw, lp->direct, lp->w_in_place, (long long)lp->K, lp->nb, lp->ob);
        sb_i64s(b, lp->bias, (int)O);
        sb_put(b, ",\"lsh\":[");
        for (int64_t i = 0; i < O; i++) sb_put(b, "%s%d", i ? "," : "", lp->lsh[i]);
        sb_put(b, "],\"rsh\":[");
        for (int64_t i = 0; i < O; i++) sb_put(b, "%s%d", i ? "," : "", lp->rsh[i]);
        sb_put(b, "]}");
    }
    sb_put(b, "}");
}

static void describe(sbuf *b, const dfx_session *s)
{
    const dfx_model *m = s->m;
    sb_put(b, "{\"format\":1,\"batch\":%lld,\"plan_bytes\":%zu,\"const_bytes\":%zu,\"scratch_bytes\":%zu,"
              "\"arena_bytes\":%zu,\"sum_bytes\":%zu,\"inputs\":[",
           (long long)s->batch, s->plan_bytes, s->const_bytes, s->scratch_bytes, s->arena_bytes, s->sum_bytes);
    for (int i = 0; i < m->n_inputs; i++) sb_put(b, "%s%d", i ? "," : "", (int)m->inputs[i]);
    sb_put(b, "],\"outputs\":[");
    for (int i = 0; i < m->n_outputs; i++) sb_put(b, "%s%d", i ? "," : "", (int)m->outputs[i]);
    sb_put(b, "],\"tensors\":[");
    for (int i = 0; i < m->n_tensors; i++) {
        const dt_tensor *T = &m->tensors[i];
        sb_put(b, "%s{\"name\":", i ? "," : "");
        sb_str(b, T->name);
        sb_put(b, ",\"rank\":%d,\"shape\":", T->rank);
        sb_i64s(b, T->shape, T->rank);
        sb_put(b, ",\"count\":%lld,\"dtype\":%d,\"has_q\":%d,\"bw\":%d,\"fl\":%d,\"rounding\":%d,\"per_channel\":%d,"
                  "\"ch_axis\":%d,\"ch_inner\":%lld,\"cfl\":",
               (long long)T->count, T->dtype, T->has_q, T->bw, T->fl, T->rounding, T->per_channel, T->ch_axis,
               (long long)T->ch_inner);
        sb_hex(b, T->cfl.p, T->cfl.n);
        sb_put(b, ",\"is_const\":%d,\"file_off\":%lld,\"data_len\":%llu,\"crc\":%lu,\"producer\":%d,\"last_use\":%d,"
                  "\"is_graph_output\":%d,\"arena_off\":%lld,\"run_shape\":",
               T->is_const, T->data ? (long long)(T->data - m->base) : -1LL, (unsigned long long)T->data_len,
               (unsigned long)T->crc, T->producer, T->last_use, T->is_graph_output, (long long)s->off[i]);
        sb_i64s(b, s->shape[i], T->rank);
        sb_put(b, ",\"run_count\":%lld,\"esz\":%d}", (long long)s->count[i], T->is_const ? 4 : dfx_store_bytes(T));
    }
    sb_put(b, "],\"layers\":[");
    for (int li = 0; li < m->n_layers; li++) {
        if (li) sb_put(b, ",");
        describe_layer(b, s, li);
    }
    sb_put(b, "]}");
}

dfx_status dfx_model_describe(const dfx_model *m, int64_t batch, unsigned flags, char *buf, size_t cap, size_t *len)
{
    dfx_session *s = NULL;
    dfx_clear_error();
    if (!len || (cap && !buf)) return dfx_fail(DFX_ERR_ARGUMENT, "NULL argument");
    dfx_status st = session_new(m, batch, flags, NULL, &s);
    if (st) return st;
    sbuf b = {NULL, 0, 0, 0};
    describe(&b, s);
    session_free(s);
    if (b.oom) { free(b.p); return dfx_fail(DFX_ERR_NOMEM, "out of memory describing the model"); }
    *len = b.n;
    if (cap) {
        size_t k = b.n < cap - 1 ? b.n : cap - 1;
        memcpy(buf, b.p, k);
        buf[k] = 0;
    }
    free(b.p);
    return DFX_OK;
}

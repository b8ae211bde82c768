/* Sessions (dfx.h): the arena, the inputs and the layer loop. What runs for
 * each layer is decided once, when the session is created (plan.c), and
 * carried out by the executor (exec.c). */
#include <stdlib.h>
#ifdef DFX_PROFILE
#include <time.h>
#endif

#include "plan.h"

struct dfx_session {
    const dfx_model *m;
    dfx_netplan plan;
    const struct dfx_kernels *kf; /* the kernel set this session's layers call */
    uint8_t *arena;
    int owns_arena;
    unsigned char *input_set;
    /* API extras (session_api.c): constant graph outputs, per-layer times */
    dfx_const_outputs couts;
    double *prof_s; /* DFX_PROFILE: seconds per layer over all runs */
    int64_t prof_runs;
    /* threads (threads.h): the pool (NULL for one thread) and the workers' scratch */
    int threads;
    dfx_par par;
    void *worker_scratch;
    int fuse; /* a fast int8 convolution applies the int8 ReLU after it (exec.c), unless DFX_KEEP_ALL */
};

static void session_free(dfx_session *s)
{
    if (!s) return;
    dfx_pool_destroy(s->par.pool);
    free(s->worker_scratch);
    if (s->owns_arena) free(s->arena);
    dfx_netplan_free(&s->plan);
    dfx_const_outputs_free(&s->couts);
    free(s->prof_s);
    free(s->input_set);
    free(s);
}

dfx_status dfx_model_arena_size(const dfx_model *m, int64_t batch, unsigned flags, size_t *arena_bytes,
                                size_t *sum_bytes)
{
    dfx_netplan np;
    dfx_clear_error();
    if (!m) return dfx_fail(DFX_ERR_ARGUMENT, "NULL argument");
    if (batch < 1) return dfx_fail(DFX_ERR_ARGUMENT, "batch must be >= 1");
    dfx_status st = dfx_netplan_build(m, batch, flags, &np);
    if (!st) {
        if (arena_bytes) *arena_bytes = np.arena_bytes;
        if (sum_bytes) *sum_bytes = np.sum_bytes;
    }
    dfx_netplan_free(&np);
    return st;
}

/* The pool and the workers' scratch of a session of `threads` threads (threads.h). */
static dfx_status start_threads(dfx_session *s, int threads)
{
    s->threads = threads;
    s->par.threads = 1;
    if (threads < 2) return DFX_OK;
    s->par.stride = fp_align64(s->plan.thread_scratch);
    if (s->par.stride) {
        s->worker_scratch = malloc(s->par.stride * (size_t)(threads - 1) + 64);
        if (!s->worker_scratch) return dfx_fail(DFX_ERR_NOMEM, "out of memory for the scratch of %d threads", threads);
        s->par.scratch = (uint8_t *)s->worker_scratch + (64 - (uintptr_t)s->worker_scratch % 64) % 64;
    }
    s->par.pool = dfx_pool_create(threads);
    if (!s->par.pool) return DFX_ERR_NOMEM; /* the message is set */
    s->par.threads = threads;
    return DFX_OK;
}

static dfx_status session_create(const dfx_model *m, int64_t batch, void *arena, size_t arena_bytes, unsigned flags,
                                 const struct dfx_kernels *kf, int threads, dfx_session **out)
{
    dfx_clear_error();
    if (out) *out = NULL;
    if (!m || !out) return dfx_fail(DFX_ERR_ARGUMENT, "NULL argument");
    if (batch < 1) return dfx_fail(DFX_ERR_ARGUMENT, "batch must be >= 1");
    dfx_session *s = (dfx_session *)calloc(1, sizeof *s);
    if (!s) return dfx_fail(DFX_ERR_NOMEM, "out of memory");
    s->m = m;
    s->fuse = !(flags & DFX_KEEP_ALL);
    s->kf = kf ? kf : dfx_select_kernels();
    s->input_set = (unsigned char *)calloc(m->n_inputs ? m->n_inputs : 1, 1);
    dfx_status st = s->input_set ? dfx_netplan_build(m, batch, flags, &s->plan)
                                 : dfx_fail(DFX_ERR_NOMEM, "out of memory creating a session");
    if (!st) st = dfx_const_outputs_init(m, &s->couts);
#ifdef DFX_PROFILE
    if (!st && !(s->prof_s = (double *)calloc(m->n_layers ? m->n_layers : 1, sizeof *s->prof_s)))
        st = dfx_fail(DFX_ERR_NOMEM, "out of memory");
#endif
    if (st) {
        session_free(s);
        return st;
    }
    size_t need = s->plan.arena_bytes;
    if (arena) {
        if ((uintptr_t)arena % 16) st = dfx_fail(DFX_ERR_ARGUMENT, "the arena must be 16-byte aligned");
        else if (arena_bytes < need)
            st = dfx_fail(DFX_ERR_NOMEM, "the arena has %zu bytes, the model needs %zu", arena_bytes, need);
        s->arena = (uint8_t *)arena;
    } else {
        s->arena = (uint8_t *)malloc(need ? need + 64 : 64);
        s->owns_arena = 1;
        if (!s->arena) st = dfx_fail(DFX_ERR_NOMEM, "cannot allocate a %zu-byte arena", need);
    }
    if (!st) {
        dfx_netplan_fill_constants(&s->plan, s->arena);
        st = dfx_netplan_pack(&s->plan, s->kf);
    }
    if (!st) st = start_threads(s, threads ? threads : dfx_threads_auto());
    if (st) {
        session_free(s);
        return st;
    }
    *out = s;
    return DFX_OK;
}

dfx_status dfx_session_create(const dfx_model *m, int64_t batch, void *arena, size_t arena_bytes, unsigned flags,
                              dfx_session **out)
{ return session_create(m, batch, arena, arena_bytes, flags, NULL, 0, out); }

dfx_status dfx_session_create_ex(const dfx_model *m, const dfx_session_options *o, dfx_session **out)
{
    dfx_session_options opt;
    const struct dfx_kernels *kf = NULL;
    dfx_clear_error();
    if (out) *out = NULL;
    dfx_status st = dfx_session_options_read(o, &opt);
    if (!st) st = dfx_find_kernels(opt.kernels, &kf);
    if (!st && (opt.threads < 0 || opt.threads > DFX_MAX_SESSION_THREADS))
        st = dfx_fail(DFX_ERR_ARGUMENT, "threads is %d: give 0 (automatic) or 1 .. %d", opt.threads,
                      DFX_MAX_SESSION_THREADS);
    if (st) return st;
    return session_create(m, opt.batch, opt.arena, opt.arena_bytes, opt.flags, kf, opt.threads, out);
}

const char *dfx_session_kernels_name(const dfx_session *s) { return s ? s->kf->name : NULL; }
int dfx_session_threads(const dfx_session *s) { return s ? s->threads : 0; }

dfx_status dfx_session_layer_time(const dfx_session *s, int layer, double *seconds, int64_t *runs)
{
    dfx_clear_error();
    if (!s || layer < 0 || layer >= s->m->n_layers) return dfx_fail(DFX_ERR_ARGUMENT, "no layer %d", layer);
    if (!s->prof_s) return dfx_fail(DFX_ERR_UNSUPPORTED, "per-layer times need a library built with DFX_PROFILE");
    if (seconds) *seconds = s->prof_s[layer];
    if (runs) *runs = s->prof_runs;
    return DFX_OK;
}

const dfx_model *dfx_session_model(const dfx_session *s) { return s->m; }

void dfx_session_destroy(dfx_session *s) { session_free(s); }
size_t dfx_session_arena_bytes(const dfx_session *s) { return s ? s->plan.arena_bytes : 0; }

static dfx_status input_slot(dfx_session *s, int input, int64_t count, int *t)
{
    if (!s || input < 0 || input >= s->m->n_inputs) return dfx_fail(DFX_ERR_ARGUMENT, "no graph input %d", input);
    *t = s->m->inputs[input];
    if (count != s->plan.count[*t])
        return dfx_fail(DFX_ERR_ARGUMENT, "input '%s' needs %lld values for batch %lld, got %lld",
                        s->m->tensors[*t].name, (long long)s->plan.count[*t], (long long)s->plan.batch,
                        (long long)count);
    return DFX_OK;
}

dfx_status dfx_session_set_input_f32(dfx_session *s, int input, const float *v, int64_t count)
{
    int t = -1;
    dfx_clear_error();
    dfx_status st = input_slot(s, input, count, &t);
    if (st) return st;
    const dt_tensor *T = &s->m->tensors[t];
    void *dst = s->arena + s->plan.off[t];
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
    void *dst = s->arena + s->plan.off[t];
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
    uint8_t *dst = s->arena + s->plan.off[t];
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

dfx_status dfx_session_run(dfx_session *s)
{
    dfx_clear_error();
    if (!s) return dfx_fail(DFX_ERR_ARGUMENT, "NULL session");
    for (int i = 0; i < s->m->n_inputs; i++)
        if (!s->input_set[i])
            return dfx_fail(DFX_ERR_STATE, "input '%s' is not set", s->m->tensors[s->m->inputs[i]].name);
    for (int li = 0; li < s->m->n_layers; li++) {
#ifdef DFX_PROFILE /* per-layer times (dfx_session_layer_time): build with -DDFX_PROFILE */
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
#endif
        const dfx_layer_plan *p = &s->plan.layers[li];
        int fused = s->fuse && li + 1 < s->m->n_layers && dfx_exec_fuses_relu(p, p + 1, li + 1);
        dfx_status st = fused ? dfx_exec_layer_relu(p, p + 1, s->kf, s->arena, &s->par)
                              : dfx_exec_layer_par(p, s->kf, s->arena, &s->par);
        if (st) return st;
#ifdef DFX_PROFILE
        clock_gettime(CLOCK_MONOTONIC, &t1);
        s->prof_s[li] += (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
#endif
        li += fused; /* the ReLU ran with layer li (its time counts as 0) */
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
    int esz = dfx_store_bytes(T);
    v->data = s->arena + s->plan.off[t];
    v->count = s->plan.count[t];
    v->is_float = !T->has_q;
    v->dtype = !T->has_q ? DFX_FLOAT32 : esz == 1 ? DFX_INT8 : esz == 2 ? DFX_INT16 : DFX_INT32;
    v->rank = T->rank;
    memcpy(v->shape, s->plan.shape[t], sizeof v->shape);
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

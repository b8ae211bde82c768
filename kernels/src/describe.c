/* dfx_model_describe (dfx.h): a session's plan as JSON, for code generators
 * (`dfxsdk compile`): the memory plan, every tensor, and per layer the planned
 * kernel, what happens to each input and output, the prepared constants and
 * the fast-path constants. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "plan.h"

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

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
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if (b->p && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)k;
        char *q = (char *)realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
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

/* An input or output: its action, where it lives, and a prepared constant's values. */
static void describe_io(sbuf *b, const dfx_netplan *np, const dfx_io_plan *io, int t)
{
    sb_put(b, "{\"t\":%d,\"act\":\"%s\",\"esz\":%d,\"count\":%lld,\"off\":%lld,\"conv\":%lld", t,
           dfx_io_action_name(io->act), io->esz, (long long)io->count, io->data ? -1LL : (long long)io->off,
           (long long)io->conv);
    if (io->act == DFX_IO_CONST_I32 || io->act == DFX_IO_CONST_F32) {
        sb_put(b, ",\"values\":[");
        for (int64_t i = 0; i < io->count; i++) {
            if (io->act == DFX_IO_CONST_I32) sb_put(b, "%s%lld", i ? "," : "", (long long)dfx_const_int(io->t, i));
            else sb_put(b, "%s%lu", i ? "," : "", (unsigned long)f32_bits(dfx_const_float(io->t, i)));
        }
        sb_put(b, "]");
    }
    (void)np;
    sb_put(b, "}");
}

static void describe_layer(sbuf *b, const dfx_netplan *np, int li)
{
    const dfx_model *m = np->m;
    const dt_layer *L = &m->layers[li];
    const dfx_layer_plan *p = &np->layers[li];
    const dt_opts *o = &L->o;
    sb_put(b, "{\"name\":");
    sb_str(b, L->name);
    sb_put(b,
           ",\"op\":%d,\"type\":\"%s\",\"version\":%d,\"int_form\":%d,\"layout\":%d,\"native\":%d,"
           "\"kernel\":\"%s\",\"kernel_set\":%d,\"scratch\":%lld,\"in\":[",
           L->op, dfx_op_name(L->op), L->version, p->integer, dfx_op_layout_only(L->op), np->native[li],
           dfx_kernel_name(p->kernel), dfx_kernel_uses_set(p->kernel), (long long)p->scratch);
    for (int k = 0; k < L->n_in; k++) sb_put(b, "%s%d", k ? "," : "", (int)L->in[k]);
    sb_put(b, "],\"out\":[");
    for (int k = 0; k < L->n_out; k++) sb_put(b, "%s%d", k ? "," : "", (int)L->out[k]);
    sb_put(b, "],\"in_plan\":[");
    for (int k = 0; k < p->n_in; k++) {
        if (k) sb_put(b, ",");
        describe_io(b, np, &p->in[k], (int)L->in[k]);
    }
    sb_put(b, "],\"out_plan\":[");
    for (int k = 0; k < p->n_out; k++) {
        if (k) sb_put(b, ",");
        describe_io(b, np, &p->out[k], (int)L->out[k]);
    }
    sb_put(b, "],\"opts\":{");
    const char *sep = "";
#define PUT_I(f) sb_put(b, "%s\"" #f "\":%d", sep, (int)o->f), sep = ",";
#define PUT_F(f) sb_put(b, "%s\"" #f "\":{\"f32\":%lu}", sep, (unsigned long)f32_bits(o->f)), sep = ",";
#define PUT_V(f)                                                                                                      \
    sb_put(b, "%s\"" #f "\":{\"vec\":", sep), sb_hex(b, o->f.p, (size_t)o->f.n * 4), sb_put(b, ",\"n\":%u}", o->f.n), \
        sep = ",";
#define PUT(kind, f) PUT_##kind(f)
    DT_OPTS(PUT) /* every field of dt_opts */
#undef PUT
#undef PUT_I
#undef PUT_F
#undef PUT_V
    sb_put(b, "}");
    if (p->custom) {
        sb_put(b, ",\"custom\":{\"name\":");
        sb_str(b, p->custom->name);
        sb_put(b, ",\"version\":%d,\"options\":", p->custom->version);
        sb_hex(b, o->custom_options.p, o->custom_options.n);
        sb_put(b, "}");
    }
    const dfx_linprep *lp = p->lin;
    if (lp && lp->fast) { /* float layers' packed weights are the session's own, not the plan's */
        int64_t O = m->tensors[L->in[1]].shape[0];
        sb_put(b,
               ",\"lin\":{\"fast\":1,\"dw\":%d,\"direct\":%d,\"w_in_place\":%d,\"K\":%lld,\"nb\":%d,\"ob\":%d,"
               "\"bias\":",
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

static void describe(sbuf *b, const dfx_netplan *np)
{
    const dfx_model *m = np->m;
    sb_put(b,
           "{\"format\":1,\"batch\":%lld,\"plan_bytes\":%zu,\"const_bytes\":%zu,\"scratch_bytes\":%zu,"
           "\"arena_bytes\":%zu,\"sum_bytes\":%zu,\"inputs\":[",
           (long long)np->batch, np->plan_bytes, np->const_bytes, np->scratch_bytes, np->arena_bytes, np->sum_bytes);
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
        sb_put(b,
               ",\"count\":%lld,\"dtype\":%d,\"has_q\":%d,\"bw\":%d,\"fl\":%d,\"rounding\":%d,\"per_channel\":%d,"
               "\"ch_axis\":%d,\"ch_inner\":%lld,\"cfl\":",
               (long long)T->count, T->dtype, T->has_q, T->bw, T->fl, T->rounding, T->per_channel, T->ch_axis,
               (long long)T->ch_inner);
        sb_hex(b, T->cfl.p, T->cfl.n);
        sb_put(b,
               ",\"is_const\":%d,\"file_off\":%lld,\"data_len\":%llu,\"crc\":%lu,\"producer\":%d,\"last_use\":%d,"
               "\"is_graph_output\":%d,\"arena_off\":%lld,\"run_shape\":",
               T->is_const, T->data ? (long long)(T->data - m->base) : -1LL, (unsigned long long)T->data_len,
               (unsigned long)T->crc, T->producer, T->last_use, T->is_graph_output, (long long)np->off[i]);
        sb_i64s(b, np->shape[i], T->rank);
        sb_put(b, ",\"run_count\":%lld,\"esz\":%d}", (long long)np->count[i], T->is_const ? 4 : dfx_store_bytes(T));
    }
    sb_put(b, "],\"layers\":[");
    for (int li = 0; li < m->n_layers; li++) {
        if (li) sb_put(b, ",");
        describe_layer(b, np, li);
    }
    sb_put(b, "]}");
}

dfx_status dfx_model_describe(const dfx_model *m, int64_t batch, unsigned flags, char *buf, size_t cap, size_t *len)
{
    dfx_netplan np;
    dfx_clear_error();
    if (!m || !len || (cap && !buf)) return dfx_fail(DFX_ERR_ARGUMENT, "NULL argument");
    if (batch < 1) return dfx_fail(DFX_ERR_ARGUMENT, "batch must be >= 1");
    dfx_status st = dfx_netplan_build(m, batch, flags, &np);
    if (st) {
        dfx_netplan_free(&np);
        return st;
    }
    sbuf b = {NULL, 0, 0, 0};
    describe(&b, &np);
    dfx_netplan_free(&np);
    if (b.oom) {
        free(b.p);
        return dfx_fail(DFX_ERR_NOMEM, "out of memory describing the model");
    }
    *len = b.n;
    if (cap) {
        size_t k = b.n < cap - 1 ? b.n : cap - 1;
        memcpy(buf, b.p, k);
        buf[k] = 0;
    }
    free(b.p);
    return DFX_OK;
}

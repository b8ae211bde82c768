/* Planning (plan.h): every per-layer decision of a session, made once.
 *
 * Integer activations are stored in the narrowest type of their bit width
 * (int8, int16 or int32 codes), float ones as float32. Layers whose kernels
 * take the stored codes directly run "native": the fast Conv2D / FC path, ReLU
 * and max pooling of int8 codes without a format change (kernel set), the
 * layout operators and Concat without rescaling. For the others the plan
 * widens narrow inputs to int32 (or dequantizes them, in float form) into
 * scratch and narrows (or quantizes) the outputs back. */
#include <stdlib.h>

#include "plan.h"
#include "planner.h"

static int is_linear(int op) { return op == OP_CONV2D || op == OP_DECONV2D || op == OP_FC; }

static int host_le(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

/* A layer as planning reads it: its brief (dt_layer_brief), and its decoded
 * record for the names and options of the operators that need them. */
typedef struct lay {
    int op, n_in, n_out;
    const int32_t *in, *out;
    const dt_layer *d;
} lay;

static const dt_tensor_brief *brief(const dfx_model *m, int t) { return &m->tbrief[t]; }
static int has_q(const dfx_model *m, int t) { return (m->tbrief[t].flags & DT_BRIEF_Q) != 0; }
static int is_const(const dfx_model *m, int t) { return (m->tbrief[t].flags & DT_BRIEF_CONST) != 0; }
static int act_esz(const dfx_model *m, int t) { return m->tbrief[t].esz; }

/* Integer form (spec/arithmetic.md, "Forms"; validate.integer_form): an
 * integer operator whose inputs (constants included) and outputs are all
 * integer tensors. */
static int int_form(const dfx_model *m, const lay *L)
{
    if (!dfx_op_is_integer(L->op)) return 0;
    for (int p = 0; p < L->n_in; p++)
        if (L->in[p] >= 0 && !has_q(m, L->in[p])) return 0;
    for (int p = 0; p < L->n_out; p++)
        if (!has_q(m, L->out[p])) return 0;
    return 1;
}

/* A tensor as the kernels will see it, without data (for the preparation functions). */
static void view(const dfx_netplan *np, int t, rt *r)
{
    const dt_tensor *T = &np->m->tensors[t];
    r->p = NULL;
    r->t = T;
    r->rank = T->rank;
    r->esz = T->is_const ? 4 : dfx_store_bytes(T);
    memcpy(r->shape, T->is_const ? T->shape : np->shape[t], sizeof r->shape);
    r->count = T->is_const ? T->count : np->count[t];
}

/* int8 codes in and out without a format change (ReLU, max pooling on the stored codes). */
static int int8_same_format(const dfx_model *m, const lay *L)
{
    const dt_tensor_brief *x = brief(m, L->in[0]), *y = brief(m, L->out[0]);
    return !(x->flags & (DT_BRIEF_CONST | DT_BRIEF_PER_CHANNEL)) && x->esz == 1 && y->esz == 1 && x->fl == y->fl &&
           y->bw >= x->bw;
}

/* Does layer L's kernel take the stored codes directly? */
static int native_layer(const dfx_netplan *np, const lay *L, int integer, int fast)
{
    const dfx_model *m = np->m;
    switch (L->op) {
        case OP_CONV2D:
        case OP_FC: return integer && fast;
        case OP_RELU: return integer && int8_same_format(m, L);
        case OP_POOL2D: /* max pooling: int8 codes in place */
            return integer && L->d->o.pool_type == 0 && int8_same_format(m, L) &&
                   !(brief(m, L->out[0])->flags & DT_BRIEF_PER_CHANNEL);
        case OP_FLATTEN:
        case OP_RESHAPE:
        case OP_PERMUTE:
        case OP_SLICE:
        case OP_UPSAMPLE:
            if (is_const(m, L->in[0])) return 0;
            for (int p = 0; p < L->n_out; p++)
                if (act_esz(m, L->out[p]) != act_esz(m, L->in[0]) || has_q(m, L->out[p]) != has_q(m, L->in[0]))
                    return 0;
            return 1;
        case OP_CONCAT:
            for (int p = 0; p < L->n_in; p++) {
                if (L->in[p] < 0) continue;
                const dt_tensor_brief *c = brief(m, L->in[p]), *y = brief(m, L->out[0]);
                if (c->flags & DT_BRIEF_CONST) return 0;
                if (integer) {
                    if ((c->flags & DT_BRIEF_PER_CHANNEL) || c->fl != y->fl || c->bw > y->bw || c->esz != y->esz)
                        return 0;
                } else if ((c->flags | y->flags) & DT_BRIEF_Q) {
                    return 0;
                }
            }
            return 1;
        default: return 0;
    }
}

/* The kernel of a layer, given its form and whether it runs on the stored codes. */
static int choose_kernel(int op, int integer, int native)
{
    switch (op) {
        case OP_CONV2D: return native ? DFX_K_CONV2D_FAST : integer ? DFX_K_CONV2D_INT : DFX_K_CONV2D_F32;
        case OP_DECONV2D: return integer ? DFX_K_DECONV2D_INT : DFX_K_DECONV2D_F32;
        case OP_FC: return native ? DFX_K_FC_FAST : integer ? DFX_K_FC_INT : DFX_K_FC_F32;
        case OP_POOL2D: return native ? DFX_K_MAXPOOL_S8 : integer ? DFX_K_POOL_INT : DFX_K_POOL_F32;
        case OP_RELU: return native ? DFX_K_RELU_S8 : integer ? DFX_K_RELU_INT : DFX_K_RELU_F32;
        case OP_CLIP: return integer ? DFX_K_CLIP_INT : DFX_K_CLIP_F32;
        case OP_PRELU: return integer ? DFX_K_PRELU_INT : DFX_K_PRELU_F32;
        case OP_SIGMOID: return DFX_K_SIGMOID_F32;
        case OP_TANH: return DFX_K_TANH_F32;
        case OP_LRN: return DFX_K_LRN_F32;
        case OP_CONCAT: return DFX_K_CONCAT;
        case OP_ELTWISE: return integer ? DFX_K_ELTWISE_INT : DFX_K_ELTWISE_F32;
        case OP_SOFTMAX: return DFX_K_SOFTMAX_F32;
        case OP_SCALE: return integer ? DFX_K_SCALE_INT : DFX_K_SCALE_F32;
        case OP_POWER: return DFX_K_POWER_F32;
        case OP_FLATTEN:
        case OP_RESHAPE: return DFX_K_COPY;
        case OP_PERMUTE: return DFX_K_PERMUTE;
        case OP_SLICE: return DFX_K_SLICE;
        case OP_PAD: return DFX_K_PAD;
        case OP_UPSAMPLE: return DFX_K_UPSAMPLE;
        case OP_NORMALIZE: return DFX_K_NORMALIZE_F32;
        case OP_PRIORBOX: return DFX_K_PRIORBOX_F32;
        case OP_DETECTION_OUTPUT: return DFX_K_DETECTION_OUTPUT_F32;
        case OP_REQUANTIZE: return integer ? DFX_K_REQUANTIZE_INT : DFX_K_COPY;
        case OP_CUSTOM: return DFX_K_CUSTOM;
        case OP_EXP: return DFX_K_EXP_F32;
        case OP_MINIFLOAT: return DFX_K_MINIFLOAT_F32;
        default: return DFX_K_NONE;
    }
}

/* A row of np->rows for tensor i (allocated on first use); NULL when out of memory. */
static int64_t *shape_row(dfx_netplan *np, int i)
{
    if (!np->rows) np->rows = (int64_t (*)[DFX_MAX_RANK])malloc((size_t)np->m->n_tensors * sizeof *np->rows);
    return np->rows ? np->rows[i] : NULL;
}

/* Shapes, counts and the memory plan of the activations: one pass over the
 * tensors' briefs (their records only where the batch changes a shape) and the planner. */
static dfx_status plan_memory(dfx_netplan *np, unsigned flags)
{
    const dfx_model *m = np->m;
    int nt = m->n_tensors, n = 0;
    dfx_lifetime *it = (dfx_lifetime *)(void *)np->io; /* written by the layer plans only later */
    uint64_t sum = 0;
    for (int i = 0; i < nt; i++) {
        const dt_tensor_brief *B = brief(m, i);
        np->shape[i] = m->tensors[i].shape;
        np->count[i] = B->count;
        np->off[i] = -1;
        if (B->flags & DT_BRIEF_CONST) continue;
        int64_t c = B->count;
        if (B->batch0 >= 0 && B->batch0 != np->batch) { /* the batch changes the shape: its own row */
            const dt_tensor *T = &m->tensors[i];
            int64_t *row = shape_row(np, i);
            if (!row) return dfx_fail(DFX_ERR_NOMEM, "out of memory creating a session");
            memcpy(row, T->shape, sizeof np->rows[i]);
            row[0] = np->batch;
            np->shape[i] = row;
            c = 1;
            for (int d = 0; d < T->rank; d++) {
                if (row[d] && c > ((int64_t)1 << 40) / row[d]) return dfx_fail(DFX_ERR_ARGUMENT, "batch too large");
                c *= row[d];
            }
        }
        np->count[i] = c;
        if ((B->flags & DT_BRIEF_ALIAS) && !(flags & DFX_KEEP_ALL)) continue; /* placed below */
        uint64_t bytes = (uint64_t)c * B->esz;
        int last = B->last_use > B->producer ? B->last_use : B->producer;
        if ((B->flags & DT_BRIEF_OUTPUT) || (flags & DFX_KEEP_ALL)) last = m->n_layers;
        dfx_lifetime *x = &it[n++];
        x->t = i;
        x->a = B->producer + 1; /* producer -1: a graph input */
        x->b = last + 1;
        x->size = (bytes + 63) & ~(uint64_t)63;
        sum += bytes;
    }
    uint64_t total = dfx_plan(it, n, m->n_layers, (flags & DFX_KEEP_ALL) != 0, np->off);
    if (total == (uint64_t)-1) return dfx_fail(DFX_ERR_NOMEM, "out of memory planning");
    for (int i = 0; m->n_alias && !(flags & DFX_KEEP_ALL) && i < nt; i++) /* a ReLU's output: its input's memory */
        if (brief(m, i)->flags & DT_BRIEF_ALIAS) {
            np->off[i] = np->off[m->io_ints[m->lbrief[brief(m, i)->producer].io]];
            sum += (uint64_t)np->count[i] * brief(m, i)->esz;
        }
    np->plan_bytes = (size_t)total;
    np->sum_bytes = (size_t)sum;
    return DFX_OK;
}

/* Input p of layer L: its action, and the constant bytes it takes (*cbytes grows). */
static dfx_status plan_input(dfx_netplan *np, const lay *L, int p, int integer, int native, dfx_io_plan *io,
                             size_t *cbytes, size_t *conv)
{
    const dfx_model *m = np->m;
    int t = L->in[p], layout = dfx_op_layout_only(L->op);
    memset(io, 0, sizeof *io);
    io->act = DFX_IO_NONE;
    if (t < 0) return DFX_OK;
    const dt_tensor *T = &m->tensors[t];
    int q = has_q(m, t);
    io->t = T;
    if (!is_const(m, t)) { /* an activation: from the brief and the memory plan */
        if (p == 1 && is_linear(L->op))
            return dfx_fail(DFX_ERR_UNSUPPORTED,
                            "layer '%s': the weights '%s' are an activation; the native "
                            "runtime needs constant weights",
                            L->d->name, T->name);
        io->act = DFX_IO_DIRECT;
        io->esz = act_esz(m, t);
        io->shape = np->shape[t];
        io->count = np->count[t];
        io->off = np->off[t];
        if (native) return DFX_OK;
        if (!integer && !layout && q) io->act = DFX_IO_DEQUANT;
        else if (io->esz != 4) io->act = DFX_IO_WIDEN;
        if (io->act != DFX_IO_DIRECT) {
            io->conv = (int64_t)(np->scratch_base + *conv);
            *conv += fp_align64((size_t)io->count * 4);
        }
        return DFX_OK;
    }
    if (integer && !layout && !q)
        return dfx_fail(DFX_ERR_INVALID,
                        "layer '%s', tensor '%s': runs in integer form but its constant input is "
                        "float32; integer constants are required",
                        L->d->name, T->name);
    io->esz = 4;
    io->shape = T->shape;
    io->count = T->count;
    io->off = -1;
    if (p == 1 && is_linear(L->op)) {
        io->act = DFX_IO_WEIGHTS;
        io->data = T->data;
        return DFX_OK;
    }
    int as_int = layout ? q : integer;
    io->act = as_int ? DFX_IO_CONST_I32 : DFX_IO_CONST_F32;
    if (host_le() && T->dtype == (as_int ? DFX_INT32 : DFX_FLOAT32)) {
        io->data = T->data;
    } else {
        io->off = (int64_t)*cbytes; /* relative to const_base until dfx_netplan_build ends */
        *cbytes += fp_align64((size_t)T->count * 4);
        np->consts[np->n_consts++] = io;
    }
    return DFX_OK;
}

static void plan_output(dfx_netplan *np, const lay *L, int p, int integer, int native, dfx_io_plan *io, size_t *conv)
{
    int t = L->out[p];
    memset(io, 0, sizeof *io);
    io->act = DFX_IO_DIRECT;
    io->t = &np->m->tensors[t];
    io->esz = act_esz(np->m, t);
    io->shape = np->shape[t];
    io->count = np->count[t];
    io->off = np->off[t];
    io->conv = -1;
    if (native) return;
    int quant = !integer && !dfx_op_layout_only(L->op) && has_q(np->m, t);
    if (!quant && io->esz == 4) return;
    io->act = quant ? DFX_IO_QUANT : DFX_IO_NARROW;
    if (io->esz == 4) { /* quantized in place */
        if (quant) io->conv = io->off;
        return;
    }
    io->conv = (int64_t)(np->scratch_base + *conv);
    *conv += fp_align64((size_t)io->count * 4);
}

/* Kernel scratch beyond the wide copies. */
static size_t kernel_scratch(const dfx_netplan *np, const lay *L, int native, size_t fast)
{
    const dfx_model *m = np->m;
    rt a, b, c;
    if (is_linear(L->op) && native) return fast;
    if (is_linear(L->op)) {
        view(np, L->in[0], &a);
        view(np, L->out[0], &c);
        return fp_align64(dfx_linear_scratch(L->d, &a, &m->tensors[L->in[1]], &c)) + fast;
    }
    if (L->op == OP_DETECTION_OUTPUT) {
        view(np, L->in[0], &a);
        view(np, L->in[1], &b);
        view(np, L->in[2], &c);
        return fp_align64(dfx_detection_scratch(L->d, &a, &b, &c));
    }
    return 0;
}

static dfx_status plan_layer(dfx_netplan *np, int li, dfx_io_plan *io, size_t *cbytes, size_t *need)
{
    const dfx_model *m = np->m;
    const dt_layer_brief *B = &m->lbrief[li];
    const lay L = {B->op, B->n_in, B->n_out, m->io_ints + B->io, m->io_ints + B->io + B->n_in, &m->layers[li]};
    dfx_layer_plan *p = &np->layers[li];
    size_t fast = 0, conv = 0;
    dfx_linprep *lin = NULL;
    p->custom = NULL;
    if (L.op == OP_CUSTOM) {
        const dt_opts *o = &L.d->o;
        p->custom = dfx_custom_find(o->custom_name, o->custom_version);
        if (!p->custom)
            return dfx_fail(DFX_ERR_UNSUPPORTED,
                            "layer '%s': custom operator '%s' version %d has no C implementation "
                            "registered (dfx_register_custom_op)",
                            L.d->name, o->custom_name ? o->custom_name : "", o->custom_version);
    }
    if (L.n_in > DFX_MAX_IO || L.n_out > DFX_MAX_IO)
        return dfx_fail(DFX_ERR_UNSUPPORTED, "layer '%s': more than %d inputs or outputs", L.d->name, DFX_MAX_IO);
    if (is_linear(L.op) && !is_const(m, L.in[1]))
        return dfx_fail(DFX_ERR_UNSUPPORTED,
                        "layer '%s': the weights '%s' are an activation; the native runtime "
                        "needs constant weights",
                        L.d->name, m->tensors[L.in[1]].name);
    int integer = int_form(m, &L);
    /* the accumulator bound and the per-tensor fl of input 0 are checked at load (validate.c) */
    if (!integer && (L.op == OP_CONV2D || L.op == OP_FC)) { /* a slot for the float path's packing */
        np->lin_layer[np->n_lin] = li;
        memset(&np->lin[np->n_lin++], 0, sizeof *np->lin);
    }
    if (integer && (L.op == OP_CONV2D || L.op == OP_FC)) {
        rt x, y;
        view(np, L.in[0], &x);
        view(np, L.out[0], &y);
        const dt_tensor *b = L.n_in > 2 && L.in[2] >= 0 ? &m->tensors[L.in[2]] : NULL;
        np->lin_layer[np->n_lin] = li;
        lin = &np->lin[np->n_lin++];
        memset(lin, 0, sizeof *lin);
        dfx_status st = dfx_linear_prepare(L.d, &x, &m->tensors[L.in[1]], b, &y, lin, &fast);
        if (st) return st;
        if (!lin->fast) fast = 0;
    }
    int native = native_layer(np, &L, integer, lin && lin->fast);
    np->native[li] = (unsigned char)native;
    p->kernel = (int16_t)choose_kernel(L.op, integer, native);
    if (p->kernel == DFX_K_NONE)
        return dfx_fail(DFX_ERR_UNSUPPORTED, "layer '%s': operator %s is not implemented", L.d->name,
                        dfx_op_name(L.op));
    p->integer = (int16_t)integer;
    p->L = L.d;
    p->n_in = (int16_t)L.n_in;
    while (p->n_in > 0 && L.in[p->n_in - 1] < 0) p->n_in--;
    p->n_out = (int16_t)L.n_out;
    p->in = io;
    p->out = io + L.n_in;
    p->lin = native && lin && lin->fast ? lin : NULL;
    if (p->lin && p->n_in > 2) p->n_in = 2; /* the fast kernels take the bias from lin */
    for (int k = 0; k < p->n_in; k++) {
        dfx_status st = plan_input(np, &L, k, integer, native, &io[k], cbytes, &conv);
        if (st) return st;
    }
    for (int k = p->n_in; k < L.n_in; k++) memset(&io[k], 0, sizeof io[k]); /* omitted, or the fast path's bias */
    for (int k = 0; k < L.n_out; k++) plan_output(np, &L, k, integer, native, &io[L.n_in + k], &conv);
    p->scratch = (int64_t)(np->scratch_base + conv);
    *need = conv + kernel_scratch(np, &L, native, fast);
    return DFX_OK;
}

/* One allocation for every per-layer and per-tensor array of the plan: sizes in order, each rounded to 8 bytes. */
static void *carve(unsigned char **p, size_t bytes)
{
    void *r = *p;
    *p += (bytes + 7) & ~(size_t)7;
    return r;
}

dfx_status dfx_netplan_build(const dfx_model *m, int64_t batch, unsigned flags, dfx_netplan *np)
{
    int nt = m->n_tensors, nl = m->n_layers;
    memset(np, 0, sizeof *np);
    np->m = m;
    np->batch = batch;
    int slots = m->n_layer_io, n_lin = m->n_linear;
    /* every array is written before it is read: no zeroing */
    /* the io region holds the planner's lifetimes first (plan_memory) */
    size_t io_bytes = (size_t)slots * sizeof *np->io, it_bytes = (size_t)nt * sizeof(dfx_lifetime);
    size_t sizes[] = {(size_t)nl * sizeof *np->layers,
                      io_bytes > it_bytes ? io_bytes : it_bytes,
                      (size_t)slots * sizeof *np->consts,
                      (size_t)n_lin * sizeof *np->lin,
                      (size_t)n_lin * sizeof *np->lin_layer,
                      (size_t)nt * sizeof *np->off,
                      (size_t)nt * sizeof *np->shape,
                      (size_t)nt * sizeof *np->count,
                      (size_t)nl};
    size_t total = 8;
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) total += (sizes[k] + 7) & ~(size_t)7;
    unsigned char *p = (unsigned char *)malloc(total);
    if (!p) return dfx_fail(DFX_ERR_NOMEM, "out of memory creating a session");
    np->block = p;
    np->layers = (dfx_layer_plan *)carve(&p, sizes[0]);
    np->io = (dfx_io_plan *)carve(&p, sizes[1]);
    np->consts = (dfx_io_plan **)carve(&p, sizes[2]);
    np->lin = (dfx_linprep *)carve(&p, sizes[3]);
    np->lin_layer = (int *)carve(&p, sizes[4]);
    np->off = (int64_t *)carve(&p, sizes[5]);
    np->shape = (const int64_t **)carve(&p, sizes[6]);
    np->count = (int64_t *)carve(&p, sizes[7]);
    np->native = (unsigned char *)carve(&p, sizes[8]);
    dfx_status st = plan_memory(np, flags);
    if (st) return st;
    np->scratch_base = fp_align64(np->plan_bytes);
    size_t cbytes = 0, scratch = 0;
    dfx_io_plan *io = np->io;
    for (int li = 0; li < nl; li++) {
        size_t need = 0;
        st = plan_layer(np, li, io, &cbytes, &need);
        if (st) return st;
        io += m->lbrief[li].n_in + m->lbrief[li].n_out;
        if (need > scratch) scratch = need;
        int k = np->layers[li].kernel; /* kernels that split their work with scratch per thread (threads.h) */
        size_t own = need - ((size_t)np->layers[li].scratch - np->scratch_base); /* beyond the wide copies */
        if ((k == DFX_K_CONV2D_FAST || k == DFX_K_FC_FAST) && own > np->thread_scratch) np->thread_scratch = own;
    }
    np->scratch_bytes = scratch;
    np->const_base = fp_align64(np->scratch_base + scratch); /* scratch parts are multiples of 64 already */
    np->const_bytes = cbytes;
    np->arena_bytes = np->const_base + cbytes;
    for (int k = 0; k < np->n_consts; k++) np->consts[k]->off += (int64_t)np->const_base;
    return DFX_OK;
}

#define DFX_KERNEL(name, file, also) #name,
static const char *const kernel_names[] = {
    "NONE",
#include "ops.def"
};
static const char *const io_names[] = {"none",  "direct",  "const_i32", "const_f32", "weights",
                                       "widen", "dequant", "narrow",    "quant"};

const char *dfx_kernel_name(int k) { return k >= 0 && k < DFX_K_COUNT ? kernel_names[k] : "?"; }

int dfx_kernel_uses_set(int k)
{ return k == DFX_K_CONV2D_FAST || k == DFX_K_FC_FAST || k == DFX_K_MAXPOOL_S8 || k == DFX_K_RELU_S8; }
const char *dfx_io_action_name(int a) { return a >= 0 && a < DFX_IO_COUNT ? io_names[a] : "?"; }

void dfx_netplan_fill_constants(const dfx_netplan *np, uint8_t *arena)
{
    for (int k = 0; k < np->n_consts; k++) {
        const dfx_io_plan *io = np->consts[k];
        void *dst = arena + io->off;
        for (int64_t i = 0; i < io->count; i++) {
            if (io->act == DFX_IO_CONST_I32) ((int32_t *)dst)[i] = (int32_t)dfx_const_int(io->t, i);
            else ((float *)dst)[i] = dfx_const_float(io->t, i);
        }
    }
}

dfx_status dfx_netplan_pack(dfx_netplan *np, const struct dfx_kernels *kf)
{
    const dfx_model *m = np->m;
    size_t fwork = 0; /* float layers: one scratch buffer outside the arena, shared by all (ops/fast_f32.c) */
    int owner = -1;
    for (int i = 0; i < np->n_lin; i++) {
        int li = np->lin_layer[i];
        const dt_layer *L = &m->layers[li];
        int k = np->layers[li].kernel;
        if (k == DFX_K_CONV2D_F32 || k == DFX_K_FC_F32) { /* float layers: the set's float GEMM, if it has one */
            size_t need = 0;
            dfx_status st = dfx_linear_pack_f32(L, &m->tensors[L->in[1]], np->shape[L->in[0]], np->shape[L->out[0]],
                                                np->count[L->out[0]], kf, &np->lin[i], &need);
            if (st) return st;
            if (!np->lin[i].wpacked) continue;
            np->layers[li].lin = &np->lin[i];
            if (need > fwork) fwork = need;
            if (owner < 0) owner = i;
            continue;
        }
        if (k != DFX_K_CONV2D_FAST && k != DFX_K_FC_FAST) continue;
        const dt_tensor *w = &m->tensors[L->in[1]];
        int y = L->out[0];
        int64_t cols = k == DFX_K_CONV2D_FAST ? np->shape[y][2] * np->shape[y][3] : np->count[y] / w->shape[0];
        /* a ReLU's output is never negative (its codes, in any form) */
        int px = m->tensors[L->in[0]].producer, x_nonneg = px >= 0 && m->layers[px].op == OP_RELU;
        dfx_status st = dfx_linear_pack(L, w, cols, x_nonneg, kf, (dfx_linprep *)np->layers[li].lin);
        if (st) return st;
    }
    if (fwork > np->thread_scratch) np->thread_scratch = fwork; /* each thread has its own (threads.h) */
    if (owner >= 0) {
        void *buf = malloc(fwork ? fwork : 1);
        if (!buf) return dfx_fail(DFX_ERR_NOMEM, "out of memory creating a session");
        np->lin[owner].fwork_owner = 1;
        for (int i = 0; i < np->n_lin; i++)
            if (np->lin[i].wpacked == DFX_WPACK_F32 || np->lin[i].wpacked == DFX_WPACK_F32_ROWS) np->lin[i].fwork = buf;
    }
    return DFX_OK;
}

void dfx_netplan_free(dfx_netplan *np)
{
    for (int i = 0; i < np->n_lin; i++) {
        free(np->lin[i].bias);
        free(np->lin[i].lsh);
        free(np->lin[i].rsh);
        dfx_linear_release(&np->lin[i]);
    }
    free(np->block);
    free(np->rows);
    memset(np, 0, sizeof *np);
}

/* Internal structures of the dfx runtime (not part of the API). */
#ifndef DFX_INTERNAL_H
#define DFX_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dfx.h"

#define DFX_MAX_RANK 8
#define DFX_HEADER_SIZE 64
#define DFX_ALIGN 64

/* Operator codes: the schema's Op union discriminants (ops.def). */
enum {
    OP_NONE = 0,
#define DFX_OP(id, code, ...) OP_##id = code,
#include "ops.def"
    OP_COUNT
};

enum { RND_HALF_AWAY = 0, RND_HALF_EVEN = 1, RND_HALF_UP = 2, RND_FLOOR = 3 };

/* Little-endian reads that are safe on any host and alignment. */
static inline uint16_t rd_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t rd_u32(const uint8_t *p)
{ return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24); }
static inline int32_t rd_i32(const uint8_t *p) { return (int32_t)rd_u32(p); }
static inline uint64_t rd_u64(const uint8_t *p) { return rd_u32(p) | ((uint64_t)rd_u32(p + 4) << 32); }
static inline float rd_f32(const uint8_t *p)
{
    uint32_t u = rd_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* A verified FlatBuffer vector of scalars. */
typedef struct {
    const uint8_t *p;
    uint32_t n;
} dt_vec;
static inline int32_t vec_i32(dt_vec v, uint32_t i) { return rd_i32(v.p + 4 * i); }
static inline float vec_f32(dt_vec v, uint32_t i) { return rd_f32(v.p + 4 * i); }

/* m->tensors and m->layers are DT_RECORD_ALIGN-aligned arrays (model.c) and,
 * where the compiler allows, their records a multiple of it in size: the
 * fields planning reads then share one cache line. */
#define DT_RECORD_ALIGN 64
#if defined(__GNUC__) || defined(__clang__)
#define DT_RECORD_ALIGNED __attribute__((aligned(DT_RECORD_ALIGN)))
#else
#define DT_RECORD_ALIGNED
#endif

/* A tensor as decoded. Planning a session (plan.c) reads every tensor: what it
 * reads comes first and, for a rank of at most 4, fills one cache line; the
 * rest follows. */
typedef struct dt_tensor {
    int8_t rank;
    int8_t dtype; /* dfx_dtype */
    uint8_t has_q, bw;
    int16_t fl;
    int8_t rounding;
    uint8_t per_channel, is_const;
    unsigned char is_graph_output;
    unsigned char batch_fixed; /* its shape does not follow the batch (a PriorBox output) */
    int producer;              /* layer index, -1 for graph inputs / constants */
    int last_use;              /* last layer reading it, -1 if none */
    int ch_axis;
    int64_t count; /* elements of the declared shape */
    int64_t shape[DFX_MAX_RANK];
    const char *name;
    dt_vec cfl;          /* channel fl bytes (int8) */
    int64_t ch_inner;    /* product of dims after ch_axis */
    const uint8_t *data; /* constants: in place */
    uint64_t data_off, data_len;
    uint32_t crc;
} DT_RECORD_ALIGNED dt_tensor;

/* Options of every operator, flattened; defaults are the schema's. DT_OPTS
 * lists every field in order with its kind (I int, F float, V dt_vec of
 * int32 or float32 elements): the struct and the "opts" of
 * dfx_model_describe (describe.c) are both made from it. The options of a
 * Custom layer follow, outside the list. */
// clang-format off
#define DT_OPTS(X)                                                                                       \
    /* Conv2D / Deconv2D / Pool2D window */                                                              \
    X(I, kh) X(I, kw) X(I, sh) X(I, sw) X(I, pt) X(I, pl) X(I, pb) X(I, pr) X(I, dh) X(I, dw) X(I, group) \
    X(I, oph) X(I, opw) X(I, pool_type) X(I, global) X(I, ceil_mode) X(I, divisor)                       \
    X(I, axis) X(I, end_axis) X(I, num_axes) X(F, fmin) X(F, fmax) X(I, local_size) X(I, region)          \
    X(F, alpha) X(F, beta) X(F, k) X(I, operation) X(V, coeffs) X(F, power) X(F, scale) X(F, shift)        \
    X(I, mant_bits) X(I, exp_bits) X(V, order) X(V, points) X(V, pads) X(F, pad_value)                    \
    X(I, scale_h) X(I, scale_w) X(I, across_spatial) X(I, channel_shared) X(F, eps)                       \
    /* PriorBox, DetectionOutput */                                                                      \
    X(V, min_sizes) X(V, max_sizes) X(V, aspect_ratios) X(V, variances) X(I, flip) X(I, clip)             \
    X(I, img_h) X(I, img_w) X(F, step_h) X(F, step_w) X(F, offset) X(I, num_classes) X(I, share_location) \
    X(I, background_label_id) X(I, top_k) X(I, keep_top_k) X(I, code_type) X(I, variance_encoded_in_target) \
    X(F, nms_threshold) X(F, eta) X(F, confidence_threshold)
// clang-format on
#define DT_OPT_TYPE_I int
#define DT_OPT_TYPE_F float
#define DT_OPT_TYPE_V dt_vec
#define DT_OPT_FIELD(kind, name) DT_OPT_TYPE_##kind name;
typedef struct dt_opts {
    DT_OPTS(DT_OPT_FIELD)
    const char *custom_name;
    int custom_version;
    dt_vec custom_options; /* bytes */
} dt_opts;
#undef DT_OPT_FIELD

/* A layer as decoded: what planning reads first (one cache line), then the options. */
typedef struct dt_layer {
    const char *name;
    int op;
    int n_in, n_out;
    int version;
    int32_t *in, *out; /* tensor indices, -1 = omitted */
    int int_form;      /* runs in integer form */
    dt_opts o;
} DT_RECORD_ALIGNED dt_layer;

/* What planning a session reads of every tensor and layer, dense (model.c,
 * after validation): the decoded records are large and, in a model of many
 * layers, out of the caches. */
typedef struct dt_tensor_brief {
    int64_t count; /* elements of the declared shape */
    int32_t producer;
    int32_t last_use; /* the last layer that reads its memory (for a tensor that a DT_BRIEF_ALIAS one shares: that
                       * one's last use, when later) */
    int32_t batch0;   /* a shape that follows the batch (rank >= 1, not batch_fixed): its shape[0], else -1 */
    uint8_t flags;    /* DT_BRIEF_* */
    uint8_t esz;      /* dfx_store_bytes */
    uint8_t bw;
    int8_t fl;
} dt_tensor_brief;
/* DT_BRIEF_ALIAS: the output of a ReLU right after the Conv2D whose only reader is that ReLU, of the same size and
 * element bytes; it shares the memory of the Conv2D's output (the ReLU runs in place), so that the convolution
 * may apply the ReLU itself (exec.c dfx_exec_fuses_relu), except where every tensor keeps its own (DFX_KEEP_ALL). */
enum { DT_BRIEF_CONST = 1, DT_BRIEF_Q = 2, DT_BRIEF_PER_CHANNEL = 4, DT_BRIEF_OUTPUT = 8, DT_BRIEF_ALIAS = 16 };
typedef struct dt_layer_brief {
    int32_t op;
    int32_t n_in, n_out;
    int32_t io; /* its inputs, then its outputs, from m->io_ints + io */
} dt_layer_brief;

/* Stored preprocessing of a graph input (empty vectors and order 0 when none). */
typedef struct dt_prep {
    dt_vec mean, scale;
    int order;
} dt_prep;

struct dfx_model {
    const uint8_t *base; /* whole file */
    size_t size;
    int mapped; /* 1: munmap on close */
    const uint8_t *graph;
    size_t graph_len;
    const uint8_t *data;
    uint64_t data_len;
    int n_tensors, n_layers, n_inputs, n_outputs;
    int n_layer_io, n_linear; /* sum of the layers' inputs and outputs; Conv2D and FullyConnected layers */
    dt_tensor *tensors;       /* DT_RECORD_ALIGN-aligned, in tensors_mem */
    dt_layer *layers;         /* DT_RECORD_ALIGN-aligned, in layers_mem */
    void *tensors_mem, *layers_mem;
    dt_tensor_brief *tbrief; /* per tensor */
    dt_layer_brief *lbrief;  /* per layer */
    int n_alias;             /* tensors marked DT_BRIEF_ALIAS */
    int32_t *inputs, *outputs;
    int32_t *io_ints; /* storage of layer in/out lists */
    dt_prep *prep;    /* per graph input */
    int n_meta;
    const char **meta; /* key, value of each metadata entry */
    int n_labels;      /* metadata "labels" split into lines (metadata.c) */
    const char **labels;
    char *labels_buf;
};

/* errors */
dfx_status dfx_fail(dfx_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void dfx_clear_error(void);

/* graph verification and decoding */
dfx_status dfx_fb_verify(const uint8_t *buf, size_t len);
dfx_status dfx_decode_model(dfx_model *m);
dfx_status dfx_validate_model(dfx_model *m);
dfx_status dfx_model_briefs(dfx_model *m); /* m->tbrief, m->lbrief of a validated model */
dfx_status dfx_check_values(const dfx_model *m);
int dfx_infer_shapes(const dfx_model *m, const dt_layer *L, int64_t out[][DFX_MAX_RANK], int *out_rank, int *n_shapes,
                     char *why, size_t why_len);
const char *dfx_op_name(int op);
int dfx_op_is_integer(int op);
int dfx_op_layout_only(int op);

/* metadata.c: the "labels" entry split into m->labels */
dfx_status dfx_decode_labels(dfx_model *m);

/* session_io.c: raw inputs, views, constant outputs and session options */
typedef struct dfx_const_outputs {
    int n;
    const void **data;    /* per graph output: values of a constant (NULL for an activation) */
    dfx_dtype *dtype;     /* their storage type */
    unsigned char *owned; /* 1: data is a copy to free */
} dfx_const_outputs;
typedef void (*dfx_input_gen)(void *ctx, int64_t start, int64_t n, float *out);
dfx_status dfx_session_fill_input(dfx_session *s, int input, int64_t count, dfx_input_gen gen, void *ctx);
const dfx_model *dfx_session_model(const dfx_session *s);
dfx_status dfx_session_options_read(const dfx_session_options *o, dfx_session_options *out);
void dfx_view_format(const dt_tensor *T, dfx_view *v);
dfx_status dfx_const_outputs_init(const dfx_model *m, dfx_const_outputs *c);
void dfx_const_outputs_free(dfx_const_outputs *c);
dfx_status dfx_const_output_view(const dfx_model *m, const dfx_const_outputs *c, int i, dfx_view *v);

/* helpers */
int64_t dfx_const_int(const dt_tensor *t, int64_t i); /* integer code of constant element i */
float dfx_const_float(const dt_tensor *t, int64_t i); /* real value (dequantized) */
int dfx_prior_ratios(const dt_opts *o, double *ratios, int cap);
static inline int dfx_fl_at(const dt_tensor *t, int64_t i)
{
    if (!t->per_channel) return t->fl;
    return (int8_t)t->cfl.p[(i / t->ch_inner) % t->shape[t->ch_axis]];
}

#endif

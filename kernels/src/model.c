/* Opening a .dfx: header checks (sdk/dfxsdk/container.py), graph CRC,
 * structural verification (fbverify.c), decoding into plain C structures and
 * the data references (sdk/dfxsdk/io.py). Semantic rules are in validate.c. */
#include <errno.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>

#include "dfx_schema.h"
#include "kernels.h"

#if defined(__unix__) || defined(__APPLE__)
#define DFX_HAVE_MMAP 1
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

static const uint8_t MAGIC[8] = {0x89, 'D', 'F', 'X', '\r', '\n', 0x1a, '\n'};

/* ---- FlatBuffer access (only after dfx_fb_verify) ---- */
static uint32_t fb_field(const uint8_t *g, uint32_t t, int slot)
{
    uint32_t vt = (uint32_t)((int64_t)t - rd_i32(g + t));
    unsigned vt_size = rd_u16(g + vt);
    if (4u + 2u * (unsigned)slot >= vt_size) return 0;
    unsigned off = rd_u16(g + vt + 4 + 2 * slot);
    return off ? t + off : 0;
}
static int32_t fb_i32(const uint8_t *g, uint32_t t, int slot, int32_t def)
{
    uint32_t p = fb_field(g, t, slot);
    return p ? rd_i32(g + p) : def;
}
static int fb_i8(const uint8_t *g, uint32_t t, int slot, int def)
{
    uint32_t p = fb_field(g, t, slot);
    return p ? (int8_t)g[p] : def;
}
static int fb_u8(const uint8_t *g, uint32_t t, int slot, int def)
{
    uint32_t p = fb_field(g, t, slot);
    return p ? g[p] : def;
}
static float fb_f32(const uint8_t *g, uint32_t t, int slot, float def)
{
    uint32_t p = fb_field(g, t, slot);
    return p ? rd_f32(g + p) : def;
}
static uint32_t fb_ref(const uint8_t *g, uint32_t t, int slot)
{
    uint32_t p = fb_field(g, t, slot);
    return p ? p + rd_u32(g + p) : 0;
}
static dt_vec fb_vec(const uint8_t *g, uint32_t t, int slot)
{
    dt_vec v = {NULL, 0};
    uint32_t p = fb_ref(g, t, slot);
    if (p) {
        v.n = rd_u32(g + p);
        v.p = g + p + 4;
    }
    return v;
}
static int fb_has(const uint8_t *g, uint32_t t, int slot) { return fb_field(g, t, slot) != 0; }
static const char *fb_str(const uint8_t *g, uint32_t t, int slot)
{
    uint32_t p = fb_ref(g, t, slot);
    return p ? (const char *)(g + p + 4) : NULL;
}

/* A scalar field FB_<T>_<F> of the table at tbl, or its schema default (dfx_schema.h). */
#define GET_I32(tbl, T, F) fb_i32(g, tbl, FB_##T##_##F, FB_##T##_##F##_DEFAULT)
#define GET_I8(tbl, T, F) fb_i8(g, tbl, FB_##T##_##F, FB_##T##_##F##_DEFAULT)
#define GET_U8(tbl, T, F) fb_u8(g, tbl, FB_##T##_##F, FB_##T##_##F##_DEFAULT)
#define GET_BOOL(tbl, T, F) (fb_u8(g, tbl, FB_##T##_##F, FB_##T##_##F##_DEFAULT) != 0)
#define GET_F32(tbl, T, F) fb_f32(g, tbl, FB_##T##_##F, FB_##T##_##F##_DEFAULT)
/* the window fields of Conv2D, Deconv2D and Pool2D */
#define GET_WINDOW(T)                      \
    do {                                   \
        o->kh = GET_I32(t, T, KERNEL_H);   \
        o->kw = GET_I32(t, T, KERNEL_W);   \
        o->sh = GET_I32(t, T, STRIDE_H);   \
        o->sw = GET_I32(t, T, STRIDE_W);   \
        o->pt = GET_I32(t, T, PAD_TOP);    \
        o->pl = GET_I32(t, T, PAD_LEFT);   \
        o->pb = GET_I32(t, T, PAD_BOTTOM); \
        o->pr = GET_I32(t, T, PAD_RIGHT);  \
    } while (0)

static void decode_opts(const uint8_t *g, uint32_t t, int op, dt_opts *o)
{
    /* only the operator's own fields are set (to the stored value or the schema's default) */
    memset(o, 0, sizeof *o);
    switch (op) {
        case OP_CONV2D:
            GET_WINDOW(CONV2D);
            o->dh = GET_I32(t, CONV2D, DILATION_H);
            o->dw = GET_I32(t, CONV2D, DILATION_W);
            o->group = GET_I32(t, CONV2D, GROUP);
            break;
        case OP_DECONV2D:
            GET_WINDOW(DECONV2D);
            o->dh = GET_I32(t, DECONV2D, DILATION_H);
            o->dw = GET_I32(t, DECONV2D, DILATION_W);
            o->group = GET_I32(t, DECONV2D, GROUP);
            o->oph = GET_I32(t, DECONV2D, OUTPUT_PAD_H);
            o->opw = GET_I32(t, DECONV2D, OUTPUT_PAD_W);
            break;
        case OP_FC: o->axis = GET_I32(t, FULLYCONNECTED, AXIS); break;
        case OP_POOL2D:
            o->pool_type = GET_I8(t, POOL2D, TYPE);
            GET_WINDOW(POOL2D);
            o->global = GET_BOOL(t, POOL2D, GLOBAL);
            o->ceil_mode = GET_BOOL(t, POOL2D, CEIL_MODE);
            o->divisor = GET_I8(t, POOL2D, DIVISOR);
            break;
        case OP_CLIP:
            o->fmin = GET_F32(t, CLIP, MIN);
            o->fmax = GET_F32(t, CLIP, MAX);
            break;
        case OP_LRN:
            o->local_size = GET_I32(t, LRN, LOCAL_SIZE);
            o->alpha = GET_F32(t, LRN, ALPHA);
            o->beta = GET_F32(t, LRN, BETA);
            o->k = GET_F32(t, LRN, K);
            o->region = GET_I8(t, LRN, REGION);
            break;
        case OP_CONCAT: o->axis = GET_I32(t, CONCAT, AXIS); break;
        case OP_SOFTMAX: o->axis = GET_I32(t, SOFTMAX, AXIS); break;
        case OP_ELTWISE:
            o->operation = GET_I8(t, ELTWISE, OPERATION);
            o->coeffs = fb_vec(g, t, FB_ELTWISE_COEFFICIENTS);
            break;
        case OP_SCALE:
            o->axis = GET_I32(t, SCALE, AXIS);
            o->num_axes = GET_I32(t, SCALE, NUM_AXES);
            break;
        case OP_POWER:
            o->power = GET_F32(t, POWER, POWER);
            o->scale = GET_F32(t, POWER, SCALE);
            o->shift = GET_F32(t, POWER, SHIFT);
            break;
        case OP_FLATTEN:
            o->axis = GET_I32(t, FLATTEN, AXIS);
            o->end_axis = GET_I32(t, FLATTEN, END_AXIS);
            break;
        case OP_PERMUTE: o->order = fb_vec(g, t, FB_PERMUTE_ORDER); break;
        case OP_SLICE:
            o->axis = GET_I32(t, SLICE, AXIS);
            o->points = fb_vec(g, t, FB_SLICE_POINTS);
            break;
        case OP_PAD:
            o->pads = fb_vec(g, t, FB_PAD_PADS);
            o->pad_value = GET_F32(t, PAD, VALUE);
            break;
        case OP_UPSAMPLE:
            o->scale_h = GET_I32(t, UPSAMPLE, SCALE_H);
            o->scale_w = GET_I32(t, UPSAMPLE, SCALE_W);
            break;
        case OP_NORMALIZE:
            o->across_spatial = GET_BOOL(t, NORMALIZE, ACROSS_SPATIAL);
            o->channel_shared = GET_BOOL(t, NORMALIZE, CHANNEL_SHARED);
            o->eps = GET_F32(t, NORMALIZE, EPS);
            break;
        case OP_PRIORBOX:
            o->min_sizes = fb_vec(g, t, FB_PRIORBOX_MIN_SIZES);
            o->max_sizes = fb_vec(g, t, FB_PRIORBOX_MAX_SIZES);
            o->aspect_ratios = fb_vec(g, t, FB_PRIORBOX_ASPECT_RATIOS);
            o->flip = GET_BOOL(t, PRIORBOX, FLIP);
            o->clip = GET_BOOL(t, PRIORBOX, CLIP);
            o->variances = fb_vec(g, t, FB_PRIORBOX_VARIANCES);
            o->img_h = GET_I32(t, PRIORBOX, IMG_H);
            o->img_w = GET_I32(t, PRIORBOX, IMG_W);
            o->step_h = GET_F32(t, PRIORBOX, STEP_H);
            o->step_w = GET_F32(t, PRIORBOX, STEP_W);
            o->offset = GET_F32(t, PRIORBOX, OFFSET);
            break;
        case OP_DETECTION_OUTPUT:
            o->num_classes = GET_I32(t, DETECTIONOUTPUT, NUM_CLASSES);
            o->share_location = GET_BOOL(t, DETECTIONOUTPUT, SHARE_LOCATION);
            o->background_label_id = GET_I32(t, DETECTIONOUTPUT, BACKGROUND_LABEL_ID);
            o->nms_threshold = GET_F32(t, DETECTIONOUTPUT, NMS_THRESHOLD);
            o->top_k = GET_I32(t, DETECTIONOUTPUT, TOP_K);
            o->eta = GET_F32(t, DETECTIONOUTPUT, ETA);
            o->keep_top_k = GET_I32(t, DETECTIONOUTPUT, KEEP_TOP_K);
            o->confidence_threshold = GET_F32(t, DETECTIONOUTPUT, CONFIDENCE_THRESHOLD);
            o->code_type = GET_I8(t, DETECTIONOUTPUT, CODE_TYPE);
            o->variance_encoded_in_target = GET_BOOL(t, DETECTIONOUTPUT, VARIANCE_ENCODED_IN_TARGET);
            o->clip = GET_BOOL(t, DETECTIONOUTPUT, CLIP);
            break;
        case OP_CUSTOM:
            o->custom_name = fb_str(g, t, FB_CUSTOM_NAME);
            o->custom_version = GET_I32(t, CUSTOM, VERSION);
            o->custom_options = fb_vec(g, t, FB_CUSTOM_OPTIONS);
            break;
        case OP_MINIFLOAT:
            o->mant_bits = GET_I32(t, MINIFLOAT, MANT_BITS);
            o->exp_bits = GET_I32(t, MINIFLOAT, EXP_BITS);
            break;
        default: break;
    }
}

/* n zeroed records of `size` bytes, DT_RECORD_ALIGN-aligned, in the allocation *mem (NULL when out of memory). */
static void *records(uint32_t n, size_t size, void **mem)
{
    *mem = (size_t)n <= (SIZE_MAX - DT_RECORD_ALIGN) / size ? calloc((size_t)(n ? n : 1) * size + DT_RECORD_ALIGN, 1)
                                                            : NULL;
    return *mem ? (void *)(((uintptr_t)*mem + DT_RECORD_ALIGN - 1) & ~(uintptr_t)(DT_RECORD_ALIGN - 1)) : NULL;
}

static int cmp_ref(const void *a, const void *b)
{
    const dt_tensor *x = *(const dt_tensor *const *)a, *y = *(const dt_tensor *const *)b;
    return x->data_off < y->data_off ? -1 : x->data_off > y->data_off;
}

static int64_t storage_size(int dtype, int64_t count)
{
    static const int bits[] = {32, 8, 16, 32, 4, 2};
    return (count * bits[dtype] + 7) / 8;
}

/* Decode the verified graph into m->tensors / m->layers. */
dfx_status dfx_decode_model(dfx_model *m)
{
    const uint8_t *g = m->graph;
    uint32_t root = rd_u32(g);
    dt_vec tv = fb_vec(g, root, FB_MODEL_TENSORS), lv = fb_vec(g, root, FB_MODEL_LAYERS);
    dt_vec iv = fb_vec(g, root, FB_MODEL_INPUTS), ov = fb_vec(g, root, FB_MODEL_OUTPUTS);
    m->n_tensors = (int)tv.n;
    m->n_layers = (int)lv.n;
    m->n_inputs = (int)iv.n;
    m->n_outputs = (int)ov.n;
    if (tv.n > 0x7fffffff || lv.n > 0x7fffffff) return dfx_fail(DFX_ERR_FORMAT, "too many tensors or layers");
    m->tensors = (dt_tensor *)records(tv.n, sizeof(dt_tensor), &m->tensors_mem);
    m->layers = (dt_layer *)records(lv.n, sizeof(dt_layer), &m->layers_mem);
    size_t n_io = (size_t)iv.n + ov.n;
    for (uint32_t i = 0; i < lv.n; i++) {
        uint32_t lt = (uint32_t)(lv.p - g) + 4 * i;
        lt += rd_u32(g + lt);
        n_io += fb_vec(g, lt, FB_LAYER_INPUTS).n + (size_t)fb_vec(g, lt, FB_LAYER_OUTPUTS).n;
    }
    m->io_ints = (int32_t *)malloc((n_io ? n_io : 1) * sizeof(int32_t));
    if (!m->tensors || !m->layers || !m->io_ints) return dfx_fail(DFX_ERR_NOMEM, "out of memory decoding the graph");
    int32_t *io = m->io_ints;
    m->inputs = io;
    for (uint32_t i = 0; i < iv.n; i++) *io++ = vec_i32(iv, i);
    m->outputs = io;
    for (uint32_t i = 0; i < ov.n; i++) *io++ = vec_i32(ov, i);

    for (uint32_t i = 0; i < tv.n; i++) {
        dt_tensor *T = &m->tensors[i];
        uint32_t t = (uint32_t)(tv.p - g) + 4 * i;
        t += rd_u32(g + t);
        T->name = fb_str(g, t, FB_TENSOR_NAME);
        T->producer = -1;
        T->last_use = -1;
        dt_vec sh = fb_vec(g, t, FB_TENSOR_SHAPE);
        if (sh.n > DFX_MAX_RANK)
            return dfx_fail(DFX_ERR_INVALID, "tensor '%s', field shape: %u dimensions, at most %d allowed", T->name,
                            sh.n, DFX_MAX_RANK);
        T->rank = (int)sh.n;
        T->count = 1;
        for (uint32_t d = 0; d < sh.n; d++) {
            T->shape[d] = vec_i32(sh, d);
            if (T->shape[d] < 0)
                return dfx_fail(DFX_ERR_INVALID, "tensor '%s', field shape: dimension %u is negative", T->name, d);
            if (T->shape[d] && T->count > ((int64_t)1 << 40) / T->shape[d] + 1) T->count = ((int64_t)1 << 41);
            else T->count *= T->shape[d];
        }
        if (T->count > ((int64_t)1 << 40))
            return dfx_fail(DFX_ERR_INVALID, "tensor '%s', field shape: more than 2**40 elements", T->name);
        T->dtype = GET_I8(t, TENSOR, TYPE);
        if (T->dtype < 0 || T->dtype > 5)
            return dfx_fail(DFX_ERR_FORMAT, "tensor '%s', field type: unknown data type %d", T->name, T->dtype);
        uint32_t q = fb_ref(g, t, FB_TENSOR_QUANTIZATION);
        if (q) {
            T->has_q = 1;
            T->bw = GET_U8(q, QUANTIZATION, BW);
            T->fl = GET_I8(q, QUANTIZATION, FL);
            T->rounding = GET_I8(q, QUANTIZATION, ROUNDING);
            if (T->rounding < 0 || T->rounding > 3)
                return dfx_fail(DFX_ERR_FORMAT, "tensor '%s', field rounding: unknown rounding mode %d", T->name,
                                T->rounding);
            if (fb_has(g, q, FB_QUANTIZATION_CHANNEL_FL)) {
                T->per_channel = 1;
                T->cfl = fb_vec(g, q, FB_QUANTIZATION_CHANNEL_FL);
                T->fl = 0;
            }
            T->ch_axis = GET_I32(q, QUANTIZATION, CHANNEL_AXIS);
        }
        uint32_t dr = fb_field(g, t, FB_TENSOR_DATA);
        if (dr) {
            T->is_const = 1;
            T->data_off = rd_u64(g + dr);
            T->data_len = rd_u64(g + dr + 8);
            T->crc = rd_u32(g + dr + 16);
            if (T->data_off % DFX_ALIGN)
                return dfx_fail(DFX_ERR_FORMAT, "tensor '%s', field data: offset %llu is not a multiple of 64", T->name,
                                (unsigned long long)T->data_off);
            if (T->data_off > m->data_len || T->data_len > m->data_len - T->data_off)
                return dfx_fail(DFX_ERR_FORMAT,
                                "tensor '%s', field data: [%llu, +%llu) lies outside the %llu-byte data section",
                                T->name, (unsigned long long)T->data_off, (unsigned long long)T->data_len,
                                (unsigned long long)m->data_len);
            int64_t want = storage_size(T->dtype, T->count);
            if ((int64_t)T->data_len != want)
                return dfx_fail(DFX_ERR_FORMAT,
                                "tensor '%s', field data: length %llu != %lld bytes for its shape and type", T->name,
                                (unsigned long long)T->data_len, (long long)want);
            T->data = m->data + T->data_off;
        }
    }
    /* overlapping data */
    {
        dt_tensor **refs = (dt_tensor **)malloc((tv.n ? tv.n : 1) * sizeof(dt_tensor *));
        size_t n = 0;
        if (!refs) return dfx_fail(DFX_ERR_NOMEM, "out of memory");
        for (uint32_t i = 0; i < tv.n; i++)
            if (m->tensors[i].is_const) refs[n++] = &m->tensors[i];
        qsort(refs, n, sizeof *refs, cmp_ref);
        uint64_t end = 0;
        for (size_t i = 0; i < n; i++) {
            if (refs[i]->data_off < end) {
                const char *a = refs[i]->name, *b = refs[i - 1]->name;
                free(refs);
                return dfx_fail(DFX_ERR_FORMAT, "tensor '%s', field data: data overlaps tensor '%s'", a, b);
            }
            end = refs[i]->data_off + refs[i]->data_len;
        }
        free(refs);
    }
    for (uint32_t i = 0; i < lv.n; i++) {
        dt_layer *L = &m->layers[i];
        uint32_t lt = (uint32_t)(lv.p - g) + 4 * i;
        lt += rd_u32(g + lt);
        L->name = fb_str(g, lt, FB_LAYER_NAME);
        L->op = GET_U8(lt, LAYER, OP_TYPE);
        decode_opts(g, fb_ref(g, lt, FB_LAYER_OP), L->op, &L->o);
        dt_vec in = fb_vec(g, lt, FB_LAYER_INPUTS), out = fb_vec(g, lt, FB_LAYER_OUTPUTS);
        L->n_in = (int)in.n;
        L->n_out = (int)out.n;
        L->in = io;
        for (uint32_t k = 0; k < in.n; k++) *io++ = vec_i32(in, k);
        L->out = io;
        for (uint32_t k = 0; k < out.n; k++) *io++ = vec_i32(out, k);
        L->version = GET_U8(lt, LAYER, VERSION);
        m->n_layer_io += L->n_in + L->n_out;
        m->n_linear += L->op == OP_CONV2D || L->op == OP_FC;
    }
    /* preprocessing: index and enum checks (serialize.parse_graph), kept per graph input */
    dt_vec pv = fb_vec(g, root, FB_MODEL_PREPROCESSING);
    m->prep = (dt_prep *)calloc(m->n_inputs ? (size_t)m->n_inputs : 1, sizeof *m->prep);
    if (!m->prep) return dfx_fail(DFX_ERR_NOMEM, "out of memory decoding the graph");
    for (uint32_t i = 0; i < pv.n; i++) {
        uint32_t pt = (uint32_t)(pv.p - g) + 4 * i;
        pt += rd_u32(g + pt);
        int32_t input = GET_I32(pt, PREPROCESSING, INPUT);
        int order = GET_I8(pt, PREPROCESSING, CHANNEL_ORDER);
        if (input < 0 || input >= m->n_tensors)
            return dfx_fail(DFX_ERR_INVALID, "field preprocessing.input: tensor index %d out of range", input);
        if (order < 0 || order > 3)
            return dfx_fail(DFX_ERR_INVALID, "field preprocessing.channel_order: unknown channel order %d", order);
        int is_input = 0;
        for (int k = 0; k < m->n_inputs; k++)
            if (m->inputs[k] == input) {
                is_input = 1;
                m->prep[k].mean = fb_vec(g, pt, FB_PREPROCESSING_MEAN);
                m->prep[k].scale = fb_vec(g, pt, FB_PREPROCESSING_SCALE);
                m->prep[k].order = order;
            }
        if (!is_input)
            return dfx_fail(DFX_ERR_INVALID, "field preprocessing: preprocessing for '%s', which is not a graph input",
                            m->tensors[input].name);
        const dt_tensor *T = &m->tensors[input];
        int64_t ch = T->rank > 1 ? T->shape[1] : 1;
        uint32_t nm = fb_vec(g, pt, FB_PREPROCESSING_MEAN).n, ns = fb_vec(g, pt, FB_PREPROCESSING_SCALE).n;
        if ((nm > 1 && nm != ch) || (ns > 1 && ns != ch))
            return dfx_fail(DFX_ERR_INVALID,
                            "tensor '%s', field preprocessing: mean/scale count does not match %lld channels", T->name,
                            (long long)ch);
    }
    /* metadata: key and value strings, keys unique and sorted by their bytes (serialize.parse_graph) */
    dt_vec mv = fb_vec(g, root, FB_MODEL_METADATA);
    m->n_meta = (int)mv.n;
    m->meta = (const char **)calloc(2 * (size_t)mv.n + 1, sizeof *m->meta);
    if (!m->meta) return dfx_fail(DFX_ERR_NOMEM, "out of memory decoding the graph");
    for (uint32_t i = 0; i < mv.n; i++) {
        uint32_t kt = (uint32_t)(mv.p - g) + 4 * i;
        kt += rd_u32(g + kt);
        const char *value = fb_str(g, kt, FB_KEYVALUE_VALUE);
        m->meta[2 * i] = fb_str(g, kt, FB_KEYVALUE_KEY);
        m->meta[2 * i + 1] = value ? value : "";
        if (i > 0) {
            const uint8_t *k0 = (const uint8_t *)m->meta[2 * i - 2], *k1 = (const uint8_t *)m->meta[2 * i];
            uint32_t n0 = rd_u32(k0 - 4), n1 = rd_u32(k1 - 4);
            int c = memcmp(k0, k1, n0 < n1 ? n0 : n1);
            if (c > 0 || (c == 0 && n0 >= n1))
                return dfx_fail(DFX_ERR_FORMAT, "field metadata[%u].key: metadata keys must be unique and sorted", i);
        }
    }
    return dfx_decode_labels(m);
}

dfx_status dfx_model_briefs(dfx_model *m)
{
    m->n_alias = 0;
    m->tbrief = (dt_tensor_brief *)malloc((size_t)(m->n_tensors ? m->n_tensors : 1) * sizeof *m->tbrief);
    m->lbrief = (dt_layer_brief *)malloc((size_t)(m->n_layers ? m->n_layers : 1) * sizeof *m->lbrief);
    if (!m->tbrief || !m->lbrief) return dfx_fail(DFX_ERR_NOMEM, "out of memory decoding the graph");
    for (int i = 0; i < m->n_tensors; i++) {
        const dt_tensor *T = &m->tensors[i];
        dt_tensor_brief *b = &m->tbrief[i];
        b->count = T->count;
        b->producer = T->producer;
        b->last_use = T->last_use;
        b->batch0 = T->rank >= 1 && !T->batch_fixed ? (int32_t)T->shape[0] : -1; /* dimensions are int32 */
        b->flags = (uint8_t)((T->is_const ? DT_BRIEF_CONST : 0) | (T->has_q ? DT_BRIEF_Q : 0) |
                             (T->per_channel ? DT_BRIEF_PER_CHANNEL : 0) | (T->is_graph_output ? DT_BRIEF_OUTPUT : 0));
        b->esz = (uint8_t)dfx_store_bytes(T);
        b->bw = T->bw;
        b->fl = (int8_t)T->fl;
    }
    for (int li = 0; li < m->n_layers; li++) {
        const dt_layer *L = &m->layers[li];
        dt_layer_brief *b = &m->lbrief[li];
        b->op = L->op;
        b->n_in = L->n_in;
        b->n_out = L->n_out;
        b->io = (int32_t)(L->in - m->io_ints);
        if (L->op == OP_RELU && li > 0 && L->n_in == 1 && L->n_out == 1 && m->layers[li - 1].op == OP_CONV2D &&
            m->layers[li - 1].n_out == 1 && L->in[0] >= 0 && L->out[0] >= 0 && L->in[0] == m->layers[li - 1].out[0]) {
            dt_tensor_brief *o = &m->tbrief[L->in[0]], *r = &m->tbrief[L->out[0]];
            if (o->last_use == li && !(o->flags & DT_BRIEF_OUTPUT) && !((o->flags | r->flags) & DT_BRIEF_CONST) &&
                o->count == r->count && o->esz == r->esz && o->batch0 == r->batch0) {
                int32_t last = r->flags & DT_BRIEF_OUTPUT ? m->n_layers : r->last_use; /* a graph output: to the end */
                r->flags |= DT_BRIEF_ALIAS;
                if (last > o->last_use) o->last_use = last;
                m->n_alias++;
            }
        }
    }
    return DFX_OK;
}

static dfx_status open_mem(const uint8_t *base, size_t size, unsigned flags, dfx_model *m)
{
    dfx_status st;
    m->base = base;
    m->size = size;
    if (size < DFX_HEADER_SIZE) {
        if (size >= 8 && memcmp(base, MAGIC, 8) != 0)
            return dfx_fail(DFX_ERR_FORMAT, "field magic: not a .dfx file (wrong magic bytes)");
        return dfx_fail(DFX_ERR_FORMAT, "file is %zu bytes, shorter than the 64-byte header", size);
    }
    if (memcmp(base, MAGIC, 8) != 0)
        return dfx_fail(DFX_ERR_FORMAT, "field magic: not a .dfx file (wrong magic bytes)");
    if (dfx_crc32(0, base, 60) != rd_u32(base + 60))
        return dfx_fail(DFX_ERR_CHECKSUM, "field header_crc32: header checksum mismatch: the header is corrupted");
    unsigned major = rd_u16(base + 8), minor = rd_u16(base + 10);
    uint32_t header_size = rd_u32(base + 12);
    uint64_t g_off = rd_u64(base + 16), g_len = rd_u64(base + 24), d_off = rd_u64(base + 32), d_len = rd_u64(base + 40);
    uint32_t g_crc = rd_u32(base + 48), hflags = rd_u32(base + 52), align = rd_u32(base + 56);
    uint64_t fsize = size;
    if (major != 1)
        return dfx_fail(
            DFX_ERR_VERSION,
            "field version_major: format version %u.%u is not supported: this reader implements 1.x (up to 1.1)", major,
            minor);
    if (header_size != DFX_HEADER_SIZE)
        return dfx_fail(DFX_ERR_FORMAT, "field header_size: %u, expected 64", header_size);
    if (hflags != 0) return dfx_fail(DFX_ERR_FORMAT, "field flags: unknown feature flags 0x%08x", hflags);
    if (align != DFX_ALIGN) return dfx_fail(DFX_ERR_FORMAT, "field data_alignment: %u, expected 64", align);
    if (d_off > fsize || d_len > fsize - d_off)
        return dfx_fail(DFX_ERR_FORMAT,
                        "field data_length: file is truncated: the header says more bytes than the file's %zu", size);
    if (g_off != DFX_HEADER_SIZE)
        return dfx_fail(DFX_ERR_FORMAT, "field graph_offset: %llu, expected 64", (unsigned long long)g_off);
    if (g_len < 8 || g_len > fsize - g_off)
        return dfx_fail(DFX_ERR_FORMAT, "field graph_length: %llu does not fit a %zu-byte file",
                        (unsigned long long)g_len, size);
    if (d_off % DFX_ALIGN || d_off < g_off + g_len)
        return dfx_fail(DFX_ERR_FORMAT, "field data_offset: %llu is not a multiple of 64 after the graph",
                        (unsigned long long)d_off);
    if (d_len != fsize - d_off) return dfx_fail(DFX_ERR_FORMAT, "field data_length: file is followed by extra bytes");
    m->graph = base + g_off;
    m->graph_len = (size_t)g_len;
    m->data = base + d_off;
    m->data_len = d_len;
    if (dfx_crc32(0, m->graph, m->graph_len) != g_crc)
        return dfx_fail(DFX_ERR_CHECKSUM, "field graph_crc32: graph checksum mismatch: the graph region is corrupted");
    if ((st = dfx_fb_verify(m->graph, m->graph_len))) return st;
    if ((st = dfx_decode_model(m))) return st;
    if ((st = dfx_validate_model(m))) return st;
    if ((st = dfx_model_briefs(m))) return st;
    if (flags & DFX_VERIFY_CHECKSUMS) return dfx_check_values(m);
    return DFX_OK;
}

void dfx_model_close(dfx_model *m)
{
    if (!m) return;
#ifdef DFX_HAVE_MMAP
    if (m->mapped && m->base) munmap((void *)m->base, m->size);
#else
    if (m->mapped) free((void *)m->base);
#endif
    free(m->tensors_mem);
    free(m->layers_mem);
    free(m->tbrief);
    free(m->lbrief);
    free(m->io_ints);
    free(m->prep);
    free(m->meta);
    free(m->labels);
    free(m->labels_buf);
    free(m);
}

dfx_status dfx_model_open_buffer(const void *data, size_t size, unsigned flags, dfx_model **out)
{
    dfx_clear_error();
    if (!out || (!data && size)) return dfx_fail(DFX_ERR_ARGUMENT, "NULL argument");
    *out = NULL;
    if ((uintptr_t)data % DFX_ALIGN)
        return dfx_fail(DFX_ERR_ARGUMENT, "the model buffer must be 64-byte aligned (weights are used in place)");
    dfx_model *m = (dfx_model *)calloc(1, sizeof *m);
    if (!m) return dfx_fail(DFX_ERR_NOMEM, "out of memory");
    dfx_status st = open_mem((const uint8_t *)data, size, flags, m);
    if (st) {
        dfx_model_close(m);
        return st;
    }
    *out = m;
    return DFX_OK;
}

dfx_status dfx_model_open_file(const char *path, unsigned flags, dfx_model **out)
{
    dfx_clear_error();
    if (!out || !path) return dfx_fail(DFX_ERR_ARGUMENT, "NULL argument");
    *out = NULL;
    dfx_model *m = (dfx_model *)calloc(1, sizeof *m);
    if (!m) return dfx_fail(DFX_ERR_NOMEM, "out of memory");
#ifdef DFX_HAVE_MMAP
    /* O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below */
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        int err = errno;
        if (fd >= 0) close(fd);
        free(m);
        return dfx_fail(DFX_ERR_IO, "%s: cannot open: %s", path, strerror(err));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        free(m);
        return dfx_fail(DFX_ERR_IO, "%s: is not a regular file (a folder, FIFO or device)", path);
    }
    if (sb.st_size == 0) {
        close(fd);
        free(m);
        return dfx_fail(DFX_ERR_FORMAT, "%s: file is empty", path);
    }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    if (p == MAP_FAILED) {
        free(m);
        return dfx_fail(DFX_ERR_IO, "%s: cannot map: %s", path, strerror(err));
    }
    m->mapped = 1;
    m->size = (size_t)sb.st_size;
    m->base = (const uint8_t *)p;
    dfx_status st = open_mem((const uint8_t *)p, (size_t)sb.st_size, flags, m);
#else
    FILE *f = fopen(path, "rb");
    if (!f) {
        int err = errno;
        free(m);
        return dfx_fail(DFX_ERR_IO, "%s: cannot open: %s", path, strerror(err));
    }
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = NULL;
    /* 64-byte aligned copy */
    p = malloc((size_t)sz + 64);
    uint8_t *al = (uint8_t *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
    if (!p || fread(al, 1, (size_t)sz, f) != (size_t)sz) {
        fclose(f);
        free(p);
        free(m);
        return dfx_fail(DFX_ERR_IO, "%s: cannot read", path);
    }
    fclose(f);
    m->mapped = 1;
    m->base = p;
    dfx_status st = open_mem(al, (size_t)sz, flags, m);
    m->base = p;
#endif
    if (st) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", dfx_last_error());
        dfx_model_close(m);
        return dfx_fail(st, "%s: %s", path, msg);
    }
    *out = m;
    return DFX_OK;
}

/* dfx_const_int and dfx_const_float: ops/common.c (shared with compiled models) */

dfx_status dfx_check_values(const dfx_model *m)
{
    for (int i = 0; i < m->n_tensors; i++) {
        const dt_tensor *t = &m->tensors[i];
        if (!t->is_const) continue;
        if (dfx_crc32(0, t->data, (size_t)t->data_len) != t->crc)
            return dfx_fail(DFX_ERR_CHECKSUM,
                            "tensor '%s', field data.crc32: data checksum mismatch: the tensor's bytes are corrupted",
                            t->name);
        if (!t->has_q) continue;
        int64_t lo = -((int64_t)1 << (t->bw - 1)), hi = ((int64_t)1 << (t->bw - 1)) - 1;
        for (int64_t k = 0; k < t->count; k++) {
            int64_t v = dfx_const_int(t, k);
            if (v < lo || v > hi)
                return dfx_fail(DFX_ERR_INVALID, "tensor '%s', field data: value %lld exceeds bw %d range [%lld, %lld]",
                                t->name, (long long)v, t->bw, (long long)lo, (long long)hi);
        }
    }
    return DFX_OK;
}

dfx_status dfx_model_verify_data(const dfx_model *m)
{
    dfx_clear_error();
    if (!m) return dfx_fail(DFX_ERR_ARGUMENT, "NULL model");
    return dfx_check_values(m);
}

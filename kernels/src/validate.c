/* Semantic validation: the rules of sdk/dfxsdk/validate.py (spec/format.md,
 * "Validity") that the runtime relies on, with the shape inference of
 * sdk/dfxsdk/ops.py. All arithmetic is overflow-safe (saturating). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "dfx_internal.h"
#include "fixedpoint.h"

#define BIG ((int64_t)1 << 62)
static int64_t sadd(int64_t a, int64_t b)
{
    int64_t r = a + b; /* operands are always within +-2^62 here */
    return r > BIG ? BIG : (r < -BIG ? -BIG : r);
}
static int64_t smul(int64_t a, int64_t b)
{
    if (a == 0 || b == 0) return 0;
    double d = (double)a * (double)b;
    if (d >= 4.6e18 || d <= -4.6e18) return d > 0 ? BIG : -BIG;
    int64_t r = a * b;
    return r > BIG ? BIG : (r < -BIG ? -BIG : r);
}
static int64_t prod(const int64_t *s, int lo, int hi)
{
    int64_t p = 1;
    for (int i = lo; i < hi; i++) p = smul(p, s[i]);
    return p;
}

/* from the operator table (ops.def) */
static const char *const OP_NAMES[OP_COUNT] = {
    [OP_NONE] = "None",
#define DFX_OP(id, code, name, ...) [OP_##id] = name,
#include "ops.def"
};
/* min inputs, max inputs (-1 any), outputs (-1 any), integer, layout only */
static const signed char ARITY[OP_COUNT][5] = {
#define DFX_OP(id, code, name, min_in, max_in, n_out, integer, layout_only) \
    [OP_##id] = {min_in, max_in, n_out, integer, layout_only},
#include "ops.def"
};

const char *dfx_op_name(int op) { return op > 0 && op < OP_COUNT ? OP_NAMES[op] : "?"; }
int dfx_op_is_integer(int op) { return op > 0 && op < OP_COUNT && ARITY[op][3]; }
int dfx_op_layout_only(int op) { return op > 0 && op < OP_COUNT && ARITY[op][4]; }

static int norm_axis(int axis, int rank, int *out)
{
    int a = axis < 0 ? axis + rank : axis;
    if (a < 0 || a >= rank) return 0;
    *out = a;
    return 1;
}

/* dfx_prior_ratios: ops/common.c */

#define FAIL(...)                            \
    do {                                     \
        snprintf(why, why_len, __VA_ARGS__); \
        return 0;                            \
    } while (0)
#define SHAPE(i) (m->tensors[L->in[i]].shape)
#define RANK(i) (m->tensors[L->in[i]].rank)
#define HAS(i) (L->n_in > (i) && L->in[i] >= 0)

static int window_ok(const dt_opts *o, char *why, size_t why_len)
{
    if (o->kh < 1 || o->kw < 1 || o->sh < 1 || o->sw < 1) FAIL("kernel and stride must be >= 1");
    if (o->pt < 0 || o->pl < 0 || o->pb < 0 || o->pr < 0) FAIL("padding must be >= 0");
    return 1;
}

int64_t dfx_pool_out(int64_t size, int64_t k, int64_t s, int64_t p0, int64_t p1, int ceil_mode)
{
    int64_t span = size + p0 + p1 - k;
    int64_t out = (ceil_mode ? -fp_floordiv(-span, s) : fp_floordiv(span, s)) + 1;
    if (ceil_mode && (out - 1) * s >= size + p0) out--; /* never an empty window */
    return out;
}

static int64_t conv_out(int64_t size, int64_t k, int64_t s, int64_t p0, int64_t p1, int64_t d)
{
    int64_t extent = sadd(smul(d, k - 1), 1);
    return fp_floordiv(sadd(size + p0 + p1, -extent), s) + 1;
}

/* Infer output shapes; returns 1 and fills out/out_rank/n_shapes (n_shapes 0:
 * not inferable), or 0 with a reason. Inputs are checked to exist. */
int dfx_infer_shapes(const dfx_model *m, const dt_layer *L, int64_t out[][DFX_MAX_RANK], int *out_rank, int *n_shapes,
                     char *why, size_t why_len)
{
    const dt_opts *o = &L->o;
    *n_shapes = 1;
    if (L->op != OP_CUSTOM) {
        int lim = L->n_in;
        for (int i = 0; i < lim; i++) {
            int optional =
                (i == 2 && (L->op == OP_CONV2D || L->op == OP_DECONV2D || L->op == OP_FC || L->op == OP_SCALE)) ||
                (i == 1 && L->op == OP_NORMALIZE);
            if (L->in[i] < 0 && !optional) FAIL("input %d is omitted", i);
        }
    }
    const int64_t *x = L->n_in > 0 && L->in[0] >= 0 ? SHAPE(0) : NULL;
    int xr = x ? RANK(0) : 0;
    if (x) {
        memcpy(out[0], x, sizeof(int64_t) * DFX_MAX_RANK);
        out_rank[0] = xr;
    }
    switch (L->op) {
        case OP_CONV2D:
        case OP_DECONV2D: {
            if (!window_ok(o, why, why_len)) return 0;
            if (o->dh < 1 || o->dw < 1 || o->group < 1) FAIL("dilation and group must be >= 1");
            if (L->op == OP_DECONV2D && (o->oph < 0 || o->opw < 0)) FAIL("output_pad must be >= 0");
            if (xr != 4 || RANK(1) != 4) FAIL("input and weights must have rank 4");
            const int64_t *w = SHAPE(1);
            int64_t n = x[0], c = x[1], h = x[2], wd = x[3], oc, oh, ow;
            if (w[2] != o->kh || w[3] != o->kw)
                FAIL("weights kernel %lldx%lld != options %dx%d", (long long)w[2], (long long)w[3], o->kh, o->kw);
            if (L->op == OP_CONV2D) {
                if (c % o->group || w[0] % o->group || w[1] * o->group != c)
                    FAIL("weights do not fit %lld input channels in %d groups", (long long)c, o->group);
                oc = w[0];
                oh = conv_out(h, o->kh, o->sh, o->pt, o->pb, o->dh);
                ow = conv_out(wd, o->kw, o->sw, o->pl, o->pr, o->dw);
            } else {
                if (w[0] != c || c % o->group) FAIL("weights do not fit the input and the options");
                oc = smul(w[1], o->group);
                oh = sadd(sadd(smul(o->sh, h - 1), sadd(smul(o->dh, o->kh - 1), 1)), (int64_t)-o->pt - o->pb + o->oph);
                ow = sadd(sadd(smul(o->sw, wd - 1), sadd(smul(o->dw, o->kw - 1), 1)), (int64_t)-o->pl - o->pr + o->opw);
            }
            if (HAS(2) && m->tensors[L->in[2]].count != oc) FAIL("bias does not have %lld elements", (long long)oc);
            if (oh < 1 || ow < 1) FAIL("input %lldx%lld gives an empty output", (long long)h, (long long)wd);
            int64_t s[4] = {n, oc, oh, ow};
            memcpy(out[0], s, sizeof s);
            out_rank[0] = 4;
            return 1;
        }
        case OP_FC: {
            if (o->axis < 1 || o->axis > xr) FAIL("axis %d out of range", o->axis);
            if (RANK(1) != 2) FAIL("weights must have rank 2");
            const int64_t *w = SHAPE(1);
            if (prod(x, o->axis, xr) != w[1])
                FAIL("input flattens to %lld values, weights expect %lld", (long long)prod(x, o->axis, xr),
                     (long long)w[1]);
            if (HAS(2) && m->tensors[L->in[2]].count != w[0]) FAIL("bias does not have %lld elements", (long long)w[0]);
            out_rank[0] = o->axis + 1;
            out[0][o->axis] = w[0];
            return 1;
        }
        case OP_POOL2D: {
            if (!window_ok(o, why, why_len)) return 0;
            if (o->pool_type < 0 || o->pool_type > 1) FAIL("unknown pool type %d", o->pool_type);
            if (o->divisor < 0 || o->divisor > 1) FAIL("unknown divisor rule %d", o->divisor);
            if (o->pt >= o->kh || o->pl >= o->kw || o->pb >= o->kh || o->pr >= o->kw)
                FAIL("padding must be smaller than the kernel");
            if (xr != 4) FAIL("input must have rank 4");
            int64_t kh = o->global ? x[2] : o->kh, kw = o->global ? x[3] : o->kw;
            int64_t sh = o->global ? 1 : o->sh, sw = o->global ? 1 : o->sw;
            int64_t pt = o->global ? 0 : o->pt, pb = o->global ? 0 : o->pb, pl = o->global ? 0 : o->pl,
                    pr = o->global ? 0 : o->pr;
            int64_t oh = dfx_pool_out(x[2], kh, sh, pt, pb, o->ceil_mode),
                    ow = dfx_pool_out(x[3], kw, sw, pl, pr, o->ceil_mode);
            if (oh < 1 || ow < 1) FAIL("input is smaller than the window");
            out[0][2] = oh;
            out[0][3] = ow;
            return 1;
        }
        case OP_CLIP:
            if (!(o->fmin <= o->fmax)) FAIL("min %g > max %g", o->fmin, o->fmax);
            return 1;
        case OP_PRELU: {
            int64_t n = m->tensors[L->in[1]].count;
            if (xr < 2 || (n != 1 && n != x[1])) FAIL("slope must have 1 or C elements");
            return 1;
        }
        case OP_LRN:
            if (o->local_size < 1 || o->local_size % 2 == 0) FAIL("local_size must be odd and >= 1");
            if (o->region < 0 || o->region > 1) FAIL("unknown LRN region %d", o->region);
            if (xr != 4) FAIL("input must have rank 4");
            return 1;
        case OP_CONCAT: {
            int a;
            if (!norm_axis(o->axis, xr, &a)) FAIL("axis %d out of range", o->axis);
            int64_t total = 0;
            for (int i = 0; i < L->n_in; i++) {
                const dt_tensor *t = &m->tensors[L->in[i]];
                if (t->rank != xr) FAIL("inputs differ in rank");
                for (int d = 0; d < xr; d++)
                    if (d != a && t->shape[d] != x[d]) FAIL("inputs differ outside axis %d", o->axis);
                total = sadd(total, t->shape[a]);
            }
            out[0][a] = total;
            return 1;
        }
        case OP_ELTWISE: {
            if (o->operation < 0 || o->operation > 2) FAIL("unknown eltwise operation %d", o->operation);
            if (o->coeffs.n && o->operation != 0) FAIL("coefficients are only allowed with SUM");
            if (o->coeffs.n && (int)o->coeffs.n != L->n_in) FAIL("%u coefficients for %d inputs", o->coeffs.n, L->n_in);
            int rank = 0;
            for (int i = 0; i < L->n_in; i++)
                if (RANK(i) > rank) rank = RANK(i);
            for (int d = 0; d < rank; d++) {
                int64_t dim = 1;
                for (int i = 0; i < L->n_in; i++) {
                    int r = RANK(i), k = d - rank + r;
                    if (k < 0) continue;
                    int64_t v = SHAPE(i)[k];
                    if (v == 1) continue;
                    if (dim != 1 && dim != v) FAIL("inputs do not broadcast");
                    dim = v;
                }
                out[0][d] = dim;
            }
            out_rank[0] = rank;
            return 1;
        }
        case OP_SOFTMAX: {
            int a;
            if (!norm_axis(o->axis, xr, &a)) FAIL("axis %d out of range", o->axis);
            return 1;
        }
        case OP_SCALE: {
            int a;
            if (!norm_axis(o->axis, xr, &a)) FAIL("axis %d out of range", o->axis);
            if (o->num_axes < 0 || a + o->num_axes > xr) FAIL("num_axes %d not supported for rank %d", o->num_axes, xr);
            int64_t want = prod(x, a, a + o->num_axes);
            for (int i = 1; i < L->n_in; i++)
                if (L->in[i] >= 0 && m->tensors[L->in[i]].count != want)
                    FAIL("scale/bias must have %lld elements", (long long)want);
            return 1;
        }
        case OP_FLATTEN: {
            int a, e;
            if (!norm_axis(o->axis, xr, &a) || !norm_axis(o->end_axis, xr, &e)) FAIL("axis out of range");
            if (e < a) FAIL("end_axis before axis");
            out[0][a] = prod(x, a, e + 1);
            for (int d = e + 1; d < xr; d++) out[0][a + d - e] = x[d];
            out_rank[0] = xr - (e - a);
            return 1;
        }
        case OP_RESHAPE: *n_shapes = 0; return 1;
        case OP_PERMUTE: {
            if ((int)o->order.n != xr) FAIL("order is not a permutation of %d axes", xr);
            unsigned seen = 0;
            for (int i = 0; i < xr; i++) {
                int32_t v = vec_i32(o->order, i);
                if (v < 0 || v >= xr || (seen >> v & 1)) FAIL("order is not a permutation of %d axes", xr);
                seen |= 1u << v;
                out[0][i] = x[v];
            }
            if (xr && vec_i32(o->order, 0) != 0) FAIL("the batch axis (0) must stay first");
            return 1;
        }
        case OP_SLICE: {
            int a;
            if (!norm_axis(o->axis, xr, &a)) FAIL("axis %d out of range", o->axis);
            int64_t prev = 0;
            int np = (int)o->points.n;
            if (L->n_out != np + 1) FAIL("%d outputs, options give %d", L->n_out, np + 1);
            for (int i = 0; i <= np; i++) {
                int64_t b = i < np ? vec_i32(o->points, i) : x[a];
                if (b <= prev) FAIL("slice points are not increasing inside 0..%lld", (long long)x[a]);
                memcpy(out[i], x, sizeof(int64_t) * DFX_MAX_RANK);
                out_rank[i] = xr;
                out[i][a] = b - prev;
                prev = b;
            }
            *n_shapes = np + 1;
            return 1;
        }
        case OP_PAD: {
            if ((int)o->pads.n != 2 * xr) FAIL("pads must be 2*%d values", xr);
            for (int i = 0; i < 2 * xr; i++)
                if (vec_i32(o->pads, i) < 0) FAIL("pads must be non-negative");
            if (xr && (vec_i32(o->pads, 0) || vec_i32(o->pads, xr))) FAIL("the batch axis cannot be padded");
            for (int d = 0; d < xr; d++)
                out[0][d] = sadd(x[d], (int64_t)vec_i32(o->pads, d) + vec_i32(o->pads, xr + d));
            return 1;
        }
        case OP_UPSAMPLE:
            if (o->scale_h < 1 || o->scale_w < 1) FAIL("scales must be >= 1");
            if (xr != 4) FAIL("input must have rank 4");
            out[0][2] = smul(x[2], o->scale_h);
            out[0][3] = smul(x[3], o->scale_w);
            return 1;
        case OP_NORMALIZE:
            if (xr != 4) FAIL("input must have rank 4");
            if (HAS(1) && m->tensors[L->in[1]].count != (o->channel_shared ? 1 : x[1]))
                FAIL("scale has the wrong element count");
            return 1;
        case OP_PRIORBOX: {
            if (!o->min_sizes.n) FAIL("min_sizes must be non-empty and positive");
            for (uint32_t i = 0; i < o->min_sizes.n; i++)
                if (!(vec_f32(o->min_sizes, i) > 0)) FAIL("min_sizes must be non-empty and positive");
            if (o->max_sizes.n && o->max_sizes.n != o->min_sizes.n)
                FAIL("max_sizes must be empty or as long as min_sizes");
            for (uint32_t i = 0; i < o->max_sizes.n; i++)
                if (!(vec_f32(o->max_sizes, i) > 0)) FAIL("max_sizes must be positive");
            if (o->aspect_ratios.n > 31) FAIL("aspect_ratios must be at most 31 positive finite values");
            for (uint32_t i = 0; i < o->aspect_ratios.n; i++) {
                float ar = vec_f32(o->aspect_ratios, i);
                if (!(ar > 0 && ar < INFINITY)) FAIL("aspect_ratios must be at most 31 positive finite values");
            }
            if (o->variances.n != 0 && o->variances.n != 1 && o->variances.n != 4)
                FAIL("variances must have 0, 1 or 4 values");
            if (xr != 4) FAIL("feature map must have rank 4");
            if (RANK(1) != 4) FAIL("image must have rank 4");
            double r[64];
            int64_t np = (int64_t)dfx_prior_ratios(o, r, 64) * o->min_sizes.n + o->max_sizes.n;
            out_rank[0] = 3;
            out[0][0] = 1;
            out[0][1] = 2;
            out[0][2] = smul(smul(x[2], x[3]), np * 4);
            return 1;
        }
        case OP_DETECTION_OUTPUT: {
            if (o->num_classes < 1) FAIL("num_classes must be >= 1");
            if (o->code_type < 1 || o->code_type > 3) FAIL("unknown code_type %d", o->code_type);
            const dt_tensor *loc = &m->tensors[L->in[0]], *conf = &m->tensors[L->in[1]], *pri = &m->tensors[L->in[2]];
            if (pri->rank < 1 || loc->rank < 1 || conf->rank < 1) FAIL("inputs need rank >= 1");
            int64_t np = pri->shape[pri->rank - 1] / 4;
            int lc = o->share_location ? 1 : o->num_classes;
            if (prod(conf->shape, 1, conf->rank) != smul(np, o->num_classes))
                FAIL("conf does not hold %lld priors x %d classes", (long long)np, o->num_classes);
            if (prod(loc->shape, 1, loc->rank) != smul(np * 4, lc))
                FAIL("loc does not hold %lld priors x 4 coordinates", (long long)np);
            int64_t per_class = o->top_k <= 0 ? np : (o->top_k < np ? o->top_k : np);
            int64_t cap = o->keep_top_k > 0 ? o->keep_top_k : smul(per_class, o->num_classes);
            out_rank[0] = 4;
            out[0][0] = loc->shape[0];
            out[0][1] = 1;
            out[0][2] = cap;
            out[0][3] = 7;
            return 1;
        }
        case OP_CUSTOM:
            if (!o->custom_name || !o->custom_name[0]) FAIL("custom operator needs a name");
            *n_shapes = 0;
            return 1;
        case OP_MINIFLOAT:
            if (o->mant_bits < 0 || o->mant_bits > 23) FAIL("mant_bits must be in 0..23, got %d", o->mant_bits);
            if (o->exp_bits < 1 || o->exp_bits > 8) FAIL("exp_bits must be in 1..8, got %d", o->exp_bits);
            return 1;
        default: /* Relu, Sigmoid, Tanh, Power, Exp, Requantize: same shape */ return 1;
    }
}

static int same_qformat(const dt_tensor *a, const dt_tensor *b)
{
    if (a->dtype != b->dtype || a->has_q != b->has_q) return 0;
    if (!a->has_q) return 1;
    if (a->bw != b->bw || a->fl != b->fl || a->rounding != b->rounding || a->per_channel != b->per_channel ||
        a->ch_axis != b->ch_axis)
        return 0;
    if (a->per_channel && (a->cfl.n != b->cfl.n || memcmp(a->cfl.p, b->cfl.p, a->cfl.n))) return 0;
    return 1;
}

static int dtype_bits(int dt)
{
    static const int b[] = {32, 8, 16, 32, 4, 2};
    return b[dt];
}
static void fl_range(const dt_tensor *t, int *lo, int *hi)
{
    if (!t->per_channel) {
        *lo = *hi = t->fl;
        return;
    }
    *lo = 127;
    *hi = -128;
    for (uint32_t i = 0; i < t->cfl.n; i++) {
        int v = (int8_t)t->cfl.p[i];
        if (v < *lo) *lo = v;
        if (v > *hi) *hi = v;
    }
    if (!t->cfl.n) *lo = *hi = 0;
}

static dfx_status check_tensor(const dt_tensor *t)
{
    if (!t->name[0]) return dfx_fail(DFX_ERR_INVALID, "tensor with an empty name");
    if (t->dtype == DFX_FLOAT32) {
        if (t->has_q)
            return dfx_fail(DFX_ERR_INVALID, "tensor '%s', field quantization: FLOAT32 tensor has a quantization",
                            t->name);
    } else {
        if (!t->has_q)
            return dfx_fail(DFX_ERR_INVALID, "tensor '%s', field quantization: integer tensor has no quantization",
                            t->name);
        if (t->bw < 1 || t->bw > dtype_bits(t->dtype))
            return dfx_fail(DFX_ERR_INVALID, "tensor '%s', field quantization.bw: bw %d does not fit its type (1..%d)",
                            t->name, t->bw, dtype_bits(t->dtype));
        int lo, hi;
        fl_range(t, &lo, &hi);
        if (lo < -64 || hi > 64)
            return dfx_fail(DFX_ERR_INVALID, "tensor '%s', field quantization.fl: fl outside -64..64", t->name);
        if (t->per_channel) {
            if (t->ch_axis < 0 || t->ch_axis >= t->rank)
                return dfx_fail(DFX_ERR_INVALID,
                                "tensor '%s', field quantization.channel_axis: %d out of range for rank %d", t->name,
                                t->ch_axis, t->rank);
            if ((int64_t)t->cfl.n != t->shape[t->ch_axis])
                return dfx_fail(DFX_ERR_INVALID,
                                "tensor '%s', field quantization.channel_fl: %u channel fl values for %lld channels",
                                t->name, t->cfl.n, (long long)t->shape[t->ch_axis]);
        }
    }
    if (t->per_channel && !t->is_const)
        return dfx_fail(DFX_ERR_INVALID,
                        "tensor '%s', field quantization.channel_fl: per-channel fl is only allowed for constants",
                        t->name);
    if ((t->dtype == DFX_INT4 || t->dtype == DFX_INT2) && !t->is_const)
        return dfx_fail(DFX_ERR_INVALID, "tensor '%s', field type: packed types are only allowed for constants",
                        t->name);
    return DFX_OK;
}

static int cmp_names(const void *a, const void *b)
{ return strcmp(**(const char *const *const *)a, **(const char *const *const *)b); }

/* Duplicate names in an array of structs whose member at name_off is the name. */
static const char *duplicate(const void *items, size_t stride, size_t name_off, int n)
{
    const char ***p = (const char ***)malloc((n ? n : 1) * sizeof *p);
    const char *dup = NULL;
    if (!p) return NULL;
    for (int i = 0; i < n; i++) p[i] = (const char **)((const uint8_t *)items + stride * i + name_off);
    qsort(p, n, sizeof *p, cmp_names);
    for (int i = 1; i < n && !dup; i++)
        if (strcmp(*p[i], *p[i - 1]) == 0) dup = *p[i];
    free(p);
    return dup;
}

/* ---- integer width bounds: sdk/dfxsdk/bounds.py (spec/arithmetic.md, section 3.4) ---- */

#define ACC_LIMIT_BITS 62
typedef struct {
    int64_t bits, lo, hi;
} operand;

static operand operand_of(const dt_tensor *t)
{
    operand r;
    int lo, hi;
    fl_range(t, &lo, &hi);
    r.bits = t->is_const ? dtype_bits(t->dtype) : t->bw;
    r.lo = lo;
    r.hi = hi;
    return r;
}
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static int64_t linear_bits(operand x, operand w, const operand *b, int64_t k, int64_t w_shift)
{
    int64_t prod_bits = x.bits + w.bits + w_shift - 1 + fp_bitlen((uint64_t)(k > 1 ? k : 1));
    if (!b) return prod_bits;
    int64_t align_p = max64(0, b->hi - (x.lo + w.lo)), align_b = max64(0, x.hi + w.hi - b->lo);
    return max64(prod_bits + align_p, b->bits + align_b) + 1;
}

static int64_t integer_bits(const dfx_model *m, const dt_layer *L)
{
    const dt_tensor *x = &m->tensors[L->in[0]];
    operand ox = operand_of(x);
    switch (L->op) {
        case OP_CONV2D:
        case OP_DECONV2D:
        case OP_FC:
        case OP_SCALE: {
            const dt_tensor *w = &m->tensors[L->in[1]];
            operand ob, ow = operand_of(w);
            if (HAS(2)) ob = operand_of(&m->tensors[L->in[2]]);
            int64_t k = 1;
            int out_axis = L->op == OP_DECONV2D ? 1 : 0;
            if (L->op == OP_FC) k = w->shape[1];
            else if (L->op == OP_CONV2D) k = smul(smul(w->shape[1], w->shape[2]), w->shape[3]);
            else if (L->op == OP_DECONV2D) k = smul(smul(w->shape[0] / L->o.group, w->shape[2]), w->shape[3]);
            int64_t w_shift = L->op != OP_SCALE && w->per_channel && w->ch_axis != out_axis ? ow.hi - ow.lo : 0;
            return linear_bits(ox, ow, HAS(2) ? &ob : NULL, k, w_shift);
        }
        case OP_PRELU: {
            operand s = operand_of(&m->tensors[L->in[1]]);
            return max64(ox.bits + max64(s.hi, 0), ox.bits + s.bits - 1 + max64(0, -s.lo)) + 1;
        }
        case OP_POOL2D:
            if (L->o.pool_type != 1) return 0;
            return ox.bits +
                   fp_bitlen((uint64_t)(L->o.global ? smul(x->shape[2], x->shape[3]) : (int64_t)L->o.kh * L->o.kw));
        case OP_ELTWISE: {
            int64_t big = INT64_MIN, total = 0, term = INT64_MIN;
            for (int i = 0; i < L->n_in; i++) {
                operand o = operand_of(&m->tensors[L->in[i]]);
                int mm = 1, e = 0;
                if (L->o.coeffs.n && L->o.operation == 0) fp_dyadic(vec_f32(L->o.coeffs, i), &mm, &e);
                if (L->o.operation == 1) total += o.bits - 1;
                big = max64(big, o.hi + (L->o.operation == 0 ? e : 0));
            }
            if (L->o.operation == 1) return total + 2;
            for (int i = 0; i < L->n_in; i++) {
                operand o = operand_of(&m->tensors[L->in[i]]);
                int mm = 1, e = 0;
                if (L->o.operation == 0) {
                    if (L->o.coeffs.n) fp_dyadic(vec_f32(L->o.coeffs, i), &mm, &e);
                    term = max64(term, o.bits + fp_bitlen((uint64_t)(mm < 0 ? -mm : mm)) + big - (o.lo + e));
                } else term = max64(term, o.bits + big - o.lo);
            }
            return L->o.operation == 0 ? term + fp_bitlen((uint64_t)(L->n_in - 1)) + 1 : term + 1;
        }
        default: return 0;
    }
}

static dfx_status check_integer_bounds(const dfx_model *m, const dt_layer *L)
{
    const dt_tensor *x = &m->tensors[L->in[0]];
    if (x->per_channel && L->op != OP_CONCAT && L->op != OP_ELTWISE)
        return dfx_fail(DFX_ERR_INVALID,
                        "layer '%s', tensor '%s', field quantization.channel_fl: input 0 of an integer-form %s cannot "
                        "have per-channel fl",
                        L->name, x->name, dfx_op_name(L->op));
    int64_t total = integer_bits(m, L);
    if (total > ACC_LIMIT_BITS)
        return dfx_fail(DFX_ERR_INVALID,
                        "layer '%s', field quantization: accumulator may need %lld bits (limit %d): reduce bit widths "
                        "or the fl gaps between operands",
                        L->name, (long long)total, ACC_LIMIT_BITS);
    return DFX_OK;
}

static dfx_status check_integer_layer(const dfx_model *m, const dt_layer *L)
{
    if (L->op == OP_ELTWISE)
        for (uint32_t i = 0; i < L->o.coeffs.n; i++) {
            int mm, e;
            if (!fp_dyadic(vec_f32(L->o.coeffs, i), &mm, &e))
                return dfx_fail(DFX_ERR_INVALID,
                                "layer '%s', field coefficients: coefficient %g is not m*2^-e (|m| < 2^15, e <= 15), "
                                "as the integer form needs",
                                L->name, vec_f32(L->o.coeffs, i));
        }
    return check_integer_bounds(m, L);
}

/* No float option, scalar or vector element, is NaN (spec/format.md, section 6). */
static const char *nan_option(const dt_opts *o)
{
    const float sc[] = {
        o->fmin,      o->fmax, o->alpha,  o->beta,   o->k,      o->power,         o->scale, o->shift,
        o->pad_value, o->eps,  o->step_h, o->step_w, o->offset, o->nms_threshold, o->eta,   o->confidence_threshold};
    static const char *const sc_names[] = {
        "min",   "max", "alpha",  "beta",   "k",      "power",         "scale", "shift",
        "value", "eps", "step_h", "step_w", "offset", "nms_threshold", "eta",   "confidence_threshold"};
    const dt_vec vecs[] = {o->coeffs, o->min_sizes, o->max_sizes, o->aspect_ratios, o->variances};
    static const char *const vec_names[] = {"coefficients", "min_sizes", "max_sizes", "aspect_ratios", "variances"};
    for (size_t i = 0; i < sizeof sc / sizeof sc[0]; i++)
        if (sc[i] != sc[i]) return sc_names[i];
    for (size_t v = 0; v < sizeof vecs / sizeof vecs[0]; v++)
        for (uint32_t i = 0; i < vecs[v].n; i++)
            if (vec_f32(vecs[v], i) != vec_f32(vecs[v], i)) return vec_names[v];
    return NULL;
}

/* Every graph input of rank >= 1 stores the same batch (dimension 0). */
static dfx_status check_input_batch(const dfx_model *m)
{
    int first = -1;
    for (int i = 0; i < m->n_inputs; i++) {
        const dt_tensor *t = &m->tensors[m->inputs[i]];
        if (t->rank < 1) continue;
        if (first < 0) first = m->inputs[i];
        else if (t->shape[0] != m->tensors[first].shape[0])
            return dfx_fail(DFX_ERR_INVALID, "tensor '%s', field shape: graph inputs store different batch sizes",
                            t->name);
    }
    return DFX_OK;
}

dfx_status dfx_validate_model(dfx_model *m)
{
    dfx_status st;
    const char *dup;
    for (int i = 0; i < m->n_tensors; i++)
        if ((st = check_tensor(&m->tensors[i]))) return st;
    if ((dup = duplicate(m->tensors, sizeof(dt_tensor), offsetof(dt_tensor, name), m->n_tensors)))
        return dfx_fail(DFX_ERR_INVALID, "tensor '%s': duplicate tensor name", dup);
    if ((dup = duplicate(m->layers, sizeof(dt_layer), offsetof(dt_layer, name), m->n_layers)))
        return dfx_fail(DFX_ERR_INVALID, "layer '%s': duplicate layer name", dup);
    /* available: 1 = constant or graph input or produced so far */
    unsigned char *avail = (unsigned char *)calloc(m->n_tensors ? m->n_tensors : 1, 1);
    if (!avail) return dfx_fail(DFX_ERR_NOMEM, "out of memory");
#define OUT(...)                    \
    do {                            \
        st = dfx_fail(__VA_ARGS__); \
        goto done;                  \
    } while (0)
    for (int i = 0; i < m->n_tensors; i++) avail[i] = m->tensors[i].is_const ? 1 : 0;
    for (int i = 0; i < m->n_inputs; i++) {
        int32_t k = m->inputs[i];
        if (k < 0 || k >= m->n_tensors) OUT(DFX_ERR_INVALID, "field inputs: tensor index %d out of range", k);
        if (m->tensors[k].is_const)
            OUT(DFX_ERR_INVALID, "tensor '%s', field inputs: graph input is a constant", m->tensors[k].name);
        if (avail[k] == 2) OUT(DFX_ERR_INVALID, "field inputs: a graph input is listed twice");
        avail[k] = 2;
    }
    if ((st = check_input_batch(m))) goto done;
    for (int li = 0; li < m->n_layers; li++) {
        dt_layer *L = &m->layers[li];
        if (!L->name[0]) OUT(DFX_ERR_INVALID, "layer %d has an empty name", li);
        if (L->version != 1)
            OUT(DFX_ERR_VERSION,
                "layer '%s', field version: %s version %d is not implemented (this reader knows version 1)", L->name,
                dfx_op_name(L->op), L->version);
        const signed char *ar = ARITY[L->op];
        if (L->n_in > 64 || L->n_out > 64)
            OUT(DFX_ERR_INVALID, "layer '%s', field %s: %d inputs and %d outputs: a layer has at most 64 of each",
                L->name, L->n_in > 64 ? "inputs" : "outputs", L->n_in, L->n_out);
        if (L->n_in < ar[0] || (ar[1] >= 0 && L->n_in > ar[1]))
            OUT(DFX_ERR_INVALID, "layer '%s', field inputs: %s takes %d..%d inputs, got %d", L->name,
                dfx_op_name(L->op), ar[0], ar[1], L->n_in);
        if (L->n_out < 1 || (ar[2] >= 0 && L->n_out != ar[2]))
            OUT(DFX_ERR_INVALID, "layer '%s', field outputs: %s has %d outputs, got %d", L->name, dfx_op_name(L->op),
                ar[2], L->n_out);
        for (int p = 0; p < L->n_in; p++) {
            int32_t k = L->in[p];
            if (k == -1) {
                if (p < ar[0]) OUT(DFX_ERR_INVALID, "layer '%s', field inputs: input %d is required", L->name, p);
                continue;
            }
            if (k < 0 || k >= m->n_tensors)
                OUT(DFX_ERR_INVALID, "layer '%s', field inputs: tensor index %d out of range", L->name, k);
            if (!avail[k])
                OUT(DFX_ERR_INVALID, "layer '%s', field inputs: input '%s' is not computed before this layer", L->name,
                    m->tensors[k].name);
            m->tensors[k].last_use = li;
        }
        for (int p = 0; p < L->n_out; p++) {
            int32_t k = L->out[p];
            if (k < 0 || k >= m->n_tensors)
                OUT(DFX_ERR_INVALID, "layer '%s', field outputs: tensor index %d out of range", L->name, k);
            dt_tensor *t = &m->tensors[k];
            if (t->is_const || avail[k] == 2)
                OUT(DFX_ERR_INVALID, "layer '%s', field outputs: output '%s' is a constant or graph input", L->name,
                    t->name);
            if (t->producer >= 0)
                OUT(DFX_ERR_INVALID, "layer '%s', field outputs: output '%s' is also written by layer '%s'", L->name,
                    t->name, m->layers[t->producer].name);
            t->producer = li;
            t->batch_fixed = L->op == OP_PRIORBOX; /* (1, 2, ...) from the shapes only */
            avail[k] = 3;
        }
        const char *nan_field = nan_option(&L->o);
        if (nan_field) OUT(DFX_ERR_INVALID, "layer '%s', field %s: option %s is NaN", L->name, nan_field, nan_field);
        /* shapes */
        int64_t shapes[64][DFX_MAX_RANK];
        int ranks[64], ns;
        char why[200];
        if (L->op == OP_SLICE && L->o.points.n + 1 > 64)
            OUT(DFX_ERR_INVALID, "layer '%s', field outputs: %u slice points give more than 64 outputs", L->name,
                L->o.points.n);
        if (!dfx_infer_shapes(m, L, shapes, ranks, &ns, why, sizeof why))
            OUT(DFX_ERR_INVALID, "layer '%s', field options: %s", L->name, why);
        for (int p = 0; p < L->n_out && ns; p++) {
            const dt_tensor *t = &m->tensors[L->out[p]];
            int s = ns == 1 ? 0 : p;
            if (t->rank != ranks[s] || memcmp(t->shape, shapes[s], sizeof(int64_t) * t->rank))
                OUT(DFX_ERR_INVALID,
                    "layer '%s', tensor '%s', field shape: output shape differs from the one computed from the inputs "
                    "and options",
                    L->name, t->name);
        }
        if (L->op == OP_RESHAPE) {
            const dt_tensor *a = &m->tensors[L->in[0]], *b = &m->tensors[L->out[0]];
            if (a->count != b->count || a->rank < 1 || b->rank < 1 || (a->rank && a->shape[0] != b->shape[0]))
                if (!(a->rank == 0 && b->rank == 0))
                    OUT(DFX_ERR_INVALID, "layer '%s', field shape: cannot reshape (element count and batch must match)",
                        L->name);
        }
        if (ar[4])
            for (int p = 0; p < L->n_out; p++)
                if (!same_qformat(&m->tensors[L->out[p]], &m->tensors[L->in[0]]))
                    OUT(DFX_ERR_INVALID,
                        "layer '%s', tensor '%s', field quantization: %s only moves values: output format must equal "
                        "the input format",
                        L->name, m->tensors[L->out[p]].name, dfx_op_name(L->op));
        /* integer form as validate.py defines it (constants included) */
        int all_q = ar[3];
        for (int p = 0; p < L->n_in && all_q; p++)
            if (L->in[p] >= 0 && !m->tensors[L->in[p]].has_q) all_q = 0;
        for (int p = 0; p < L->n_out && all_q; p++)
            if (!m->tensors[L->out[p]].has_q) all_q = 0;
        if (all_q && (st = check_integer_layer(m, L))) goto done;
    }
    for (int i = 0; i < m->n_outputs; i++) {
        int32_t k = m->outputs[i];
        if (k < 0 || k >= m->n_tensors) OUT(DFX_ERR_INVALID, "field outputs: tensor index %d out of range", k);
        if (!avail[k]) OUT(DFX_ERR_INVALID, "field outputs: graph output '%s' is never computed", m->tensors[k].name);
        m->tensors[k].is_graph_output = 1;
    }
    for (int i = 0; i < m->n_tensors; i++)
        if (!avail[i])
            OUT(DFX_ERR_INVALID, "tensor '%s': activation is neither a graph input nor written by a layer",
                m->tensors[i].name);
    for (int i = 0; i < m->n_tensors; i++) {
        dt_tensor *t = &m->tensors[i];
        t->ch_inner = 1;
        if (t->per_channel)
            for (int d = t->ch_axis + 1; d < t->rank; d++) t->ch_inner *= t->shape[d] ? t->shape[d] : 1;
    }
    st = DFX_OK;
done:
    free(avail);
    return st;
}

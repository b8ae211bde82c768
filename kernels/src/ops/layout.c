/* Operators that move values: Concat (which may also rescale), Flatten and
 * Reshape (copy), Permute, Slice, Pad, Upsample. Elements are esz bytes
 * (int8/int16/int32 codes or float32); Pad and a rescaling Concat get int32. */
#include "../kernels.h"

#if DFX_ALL_KERNELS || defined(DFX_USE_CONCAT)
typedef struct concat_job {
    const rt *const *x;
    rt *y;
    int n, a, integer;
    int64_t outer, inner;
} concat_job;

/* Whether input x is copied as it is (else rescaled to y's format). */
static int concat_plain(const rt *x, const rt *y, int integer)
{ return !integer || (!x->t->per_channel && x->t->fl == y->t->fl && x->t->bw <= y->t->bw && x->esz == y->esz); }

/* Output elements [a, b) (threads.h): the parts of the pieces (one input's slice of one outer index) there. */
static void concat_range(void *ctx, int64_t a, int64_t b, int thread)
{
    const concat_job *j = (const concat_job *)ctx;
    const rt *y = j->y;
    const dt_tensor *ty = y->t;
    int64_t pos = 0;
    (void)thread;
    for (int64_t o = 0; o < j->outer && pos < b; o++)
        for (int k = 0; k < j->n && pos < b; k++) {
            const rt *x = j->x[k];
            int64_t len = x->shape[j->a] * j->inner, base = o * len;
            int64_t lo = a > pos ? a - pos : 0, hi = b - pos < len ? b - pos : len;
            if (hi > lo) {
                if (!concat_plain(x, y, j->integer)) {
                    for (int64_t i = lo; i < hi; i++) {
                        int64_t shift = (int64_t)dfx_fl_at(x->t, base + i) - ty->fl;
                        I32(y)
                        [pos + i] = (int32_t)fp_saturate(fp_round_shift(I32(x)[base + i], shift, ty->rounding), ty->bw);
                    }
                } else {
                    memcpy((char *)y->p + (pos + lo) * y->esz, (const char *)x->p + (base + lo) * y->esz,
                           (size_t)(hi - lo) * y->esz);
                }
            }
            pos += len;
        }
}

void dfx_concat(const dt_layer *L, const rt *const *x, int n, rt *y, int integer, const dfx_par *par)
{
    concat_job j = {x, y, n, L->o.axis < 0 ? L->o.axis + y->rank : L->o.axis, integer, 1, 1};
    for (int d = 0; d < j.a; d++) j.outer *= y->shape[d];
    for (int d = j.a + 1; d < y->rank; d++) j.inner *= y->shape[d];
    int plain = 1;
    for (int k = 0; k < n; k++) plain &= concat_plain(x[k], y, integer);
    dfx_par_range(par, y->count, plain ? 16384 : 2048, 64, concat_range, &j); /* output ranges over the threads */
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_COPY)
void dfx_copy(const rt *x, rt *y)
{
    if (x->p != y->p) memmove(y->p, x->p, (size_t)y->count * y->esz);
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_PERMUTE) || defined(DFX_USE_PAD)
static void strides(const int64_t *shape, int rank, int64_t *s)
{
    int64_t v = 1;
    for (int d = rank - 1; d >= 0; d--) {
        s[d] = v;
        v *= shape[d];
    }
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_PERMUTE)
typedef struct permute_job {
    const dt_layer *L;
    const rt *x;
    rt *y;
} permute_job;

/* n elements of e bytes from s (stride st elements) to d (contiguous). */
static void gather(char *d, const char *s, int64_t st, int64_t n, int e)
{
    switch (e) {
        case 1:
            for (int64_t i = 0; i < n; i++) d[i] = s[i * st];
            break;
        case 2:
            for (int64_t i = 0; i < n; i++) memcpy(d + 2 * i, s + 2 * i * st, 2);
            break;
        case 4:
            for (int64_t i = 0; i < n; i++) memcpy(d + 4 * i, s + 4 * i * st, 4);
            break;
        default:
            for (int64_t i = 0; i < n; i++) memcpy(d + i * e, s + i * st * e, (size_t)e);
            break;
    }
}

/* Output elements [a, b) (threads.h), a run along the last output axis at a time. */
static void permute_range(void *ctx, int64_t a, int64_t b, int thread)
{
    const permute_job *j = (const permute_job *)ctx;
    const rt *x = j->x, *y = j->y;
    int r = y->rank;
    int64_t xs[DFX_MAX_RANK], st[DFX_MAX_RANK], ctr[DFX_MAX_RANK] = {0}, src = 0, rest = a;
    (void)thread;
    strides(x->shape, r, xs);
    for (int d = 0; d < r; d++) st[d] = xs[vec_i32(j->L->o.order, d)];
    for (int d = r - 1; d >= 0; d--) { /* the counter of element a */
        ctr[d] = rest % y->shape[d];
        rest /= y->shape[d];
        src += ctr[d] * st[d];
    }
    const char *X = (const char *)x->p;
    char *Y = (char *)y->p;
    int e = y->esz;
    int64_t last = r > 0 ? y->shape[r - 1] : 1, lst = r > 0 ? st[r - 1] : 0;
    for (int64_t i = a; i < b;) {
        int64_t n = last - (r > 0 ? ctr[r - 1] : 0);
        if (n > b - i) n = b - i;
        gather(Y + i * e, X + src * e, lst, n, e);
        i += n;
        src += (n - 1) * lst;
        if (r > 0) ctr[r - 1] += n - 1;
        for (int d = r - 1; d >= 0; d--) { /* one more element */
            src += st[d];
            if (++ctr[d] < y->shape[d]) break;
            src -= st[d] * y->shape[d];
            ctr[d] = 0;
        }
    }
}

void dfx_permute(const dt_layer *L, const rt *x, rt *y, const dfx_par *par)
{
    permute_job j = {L, x, y};
    dfx_par_range(par, y->count, 4096, 64, permute_range, &j); /* element ranges over the threads */
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_SLICE)
void dfx_slice(const dt_layer *L, const rt *x, rt *const *y, int n)
{
    int a = L->o.axis < 0 ? L->o.axis + x->rank : L->o.axis;
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < a; d++) outer *= x->shape[d];
    for (int d = a + 1; d < x->rank; d++) inner *= x->shape[d];
    const char *X = (const char *)x->p;
    int e = x->esz;
    for (int64_t o = 0; o < outer; o++) {
        int64_t start = 0;
        for (int k = 0; k < n; k++) {
            int64_t len = y[k]->shape[a] * inner;
            memcpy((char *)y[k]->p + o * len * e, X + ((o * x->shape[a]) * inner + start) * e, (size_t)(len * e));
            start += len;
        }
    }
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_PAD)
void dfx_pad(const dt_layer *L, const rt *x, rt *y, int integer)
{
    int r = y->rank;
    uint32_t fill;
    if (integer) {
        int32_t q = fp_quantize((double)L->o.pad_value, x->t->fl, x->t->bw, x->t->rounding);
        memcpy(&fill, &q, 4);
    } else {
        float f = L->o.pad_value;
        memcpy(&fill, &f, 4);
    }
    uint32_t *Y = (uint32_t *)y->p;
    const uint32_t *X = (const uint32_t *)x->p;
    for (int64_t i = 0; i < y->count; i++) Y[i] = fill;
    int64_t ys[DFX_MAX_RANK], ctr[DFX_MAX_RANK] = {0}, dst = 0;
    strides(y->shape, r, ys);
    for (int d = 0; d < r; d++) dst += vec_i32(L->o.pads, d) * ys[d];
    for (int64_t i = 0; i < x->count; i++) {
        Y[dst] = X[i];
        for (int d = r - 1; d >= 0; d--) {
            dst += ys[d];
            if (++ctr[d] < x->shape[d]) break;
            dst -= ys[d] * x->shape[d];
            ctr[d] = 0;
        }
    }
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_UPSAMPLE)
void dfx_upsample(const dt_layer *L, const rt *x, rt *y)
{
    int64_t NC = x->shape[0] * x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t sh = L->o.scale_h, sw = L->o.scale_w, OW = W * sw;
    const char *X = (const char *)x->p;
    char *Y = (char *)y->p;
    int e = y->esz;
    for (int64_t nc = 0; nc < NC; nc++)
        for (int64_t oy = 0; oy < H * sh; oy++)
            for (int64_t ox = 0; ox < OW; ox++)
                memcpy(Y + ((nc * H * sh + oy) * OW + ox) * e, X + ((nc * H + oy / sh) * W + ox / sw) * e, (size_t)e);
}
#endif

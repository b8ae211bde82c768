/* SSD PriorBox and DetectionOutput (caffe-ssd semantics, float64 inside),
 * a port of plugins/dfx_numpy/detection.py. */
#include <stdlib.h>

#include "../arch/x86/x86.h" /* DFX_X86_SIMD, dfx_x86_avx2, DFX_ALWAYS_INLINE, DFX_NO_TRAPPING_MATH */
#include "../kernels.h"

#if DFX_ALL_KERNELS || defined(DFX_USE_PRIORBOX_F32)
void dfx_priorbox_f32(const dt_layer *L, const rt *fmap, const rt *img, rt *y)
{
    const dt_opts *o = &L->o;
    int64_t h = fmap->shape[2], w = fmap->shape[3];
    double img_h = o->img_h ? o->img_h : (double)img->shape[2], img_w = o->img_w ? o->img_w : (double)img->shape[3];
    double step_h = o->step_h != 0 ? o->step_h : img_h / h, step_w = o->step_w != 0 ? o->step_w : img_w / w;
    double ratios[64], bw[256], bh[256];
    int nr = dfx_prior_ratios(o, ratios, 64), np = 0;
    for (uint32_t i = 0; i < o->min_sizes.n && np < 250; i++) {
        double mn = vec_f32(o->min_sizes, i);
        bw[np] = mn;
        bh[np++] = mn;
        if (o->max_sizes.n) {
            double s = sqrt(mn * vec_f32(o->max_sizes, i));
            bw[np] = s;
            bh[np++] = s;
        }
        for (int r = 0; r < nr && np < 250; r++) {
            if (fabs(ratios[r] - 1.0) < 1e-6) continue;
            bw[np] = mn * sqrt(ratios[r]);
            bh[np++] = mn / sqrt(ratios[r]);
        }
    }
    int64_t total = h * w * np * 4;
    float *out = F32(y);
    int64_t k = 0;
    for (int64_t r = 0; r < h; r++)
        for (int64_t c = 0; c < w; c++) {
            double cy = (r + o->offset) * step_h, cx = (c + o->offset) * step_w;
            for (int p = 0; p < np; p++) {
                double v[4] = {(cx - bw[p] / 2) / img_w, (cy - bh[p] / 2) / img_h, (cx + bw[p] / 2) / img_w,
                               (cy + bh[p] / 2) / img_h};
                for (int q = 0; q < 4; q++) {
                    double b = v[q];
                    if (o->clip) b = b < 0 ? 0 : (b > 1 ? 1 : b);
                    out[k++] = (float)b;
                }
            }
        }
    for (int64_t i = 0; i < total; i++) {
        double var = o->variances.n == 0   ? 0.1
                     : o->variances.n == 1 ? vec_f32(o->variances, 0)
                                           : vec_f32(o->variances, (uint32_t)(i % 4));
        out[total + i] = (float)var;
    }
    for (int64_t i = 2 * total; i < y->count; i++) out[i] = out[i % (2 * total)]; /* batch copies */
}
#endif

typedef struct {
    double neg;
    int c;
    int i;
    double box[4];
} det_row;
typedef struct {
    double neg;
    int i;
} cand;

#if DFX_ALL_KERNELS || defined(DFX_USE_DETECTION_OUTPUT_F32)
static int cmp_cand(const void *a, const void *b)
{
    const cand *x = (const cand *)a, *y = (const cand *)b;
    if (x->neg != y->neg) return x->neg < y->neg ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}
#endif
#if DFX_ALL_KERNELS || defined(DFX_USE_DETECTION_OUTPUT_F32)
static int cmp_row(const void *a, const void *b)
{
    const det_row *x = (const det_row *)a, *y = (const det_row *)b;
    if (x->neg != y->neg) return x->neg < y->neg ? -1 : 1;
    if (x->c != y->c) return x->c < y->c ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_DETECTION_OUTPUT_F32)
static double area(const double *b) { return (b[2] < b[0] || b[3] < b[1]) ? 0.0 : (b[2] - b[0]) * (b[3] - b[1]); }

/* Intersection over union of the boxes (a0, a1, a2, a3) and (b0, b1, b2, b3), whose areas are aa and ab;
 * branch-free, so that nms_hit's loop over it vectorises. */
DFX_NO_TRAPPING_MATH static DFX_ALWAYS_INLINE double iou(double a0, double a1, double a2, double a3, double aa,
                                                         double b0, double b1, double b2, double b3, double ab)
{
    double ix0 = a0 > b0 ? a0 : b0, iy0 = a1 > b1 ? a1 : b1;
    double ix1 = a2 < b2 ? a2 : b2, iy1 = a3 < b3 ? a3 : b3;
    double inter = (ix1 > ix0) & (iy1 > iy0) ? (ix1 - ix0) * (iy1 - iy0) : 0.0;
    double uni = aa + ab - inter;
    return uni > 0 ? inter / uni : 0.0;
}

/* 1 when the box b (area ab) overlaps one of the n kept boxes (corners kx0[q], ky0[q], kx1[q], ky1[q], area
 * ka[q]) by an iou above thr (x86-64: in AVX2, chosen at run time, where SSE2 does not vectorise it). */
#define NMS_HIT_PARAMS                                                                                       \
    const double *kx0, const double *ky0, const double *kx1, const double *ky1, const double *ka, int64_t n, \
        const double *b, double ab, double thr
DFX_NO_TRAPPING_MATH static DFX_ALWAYS_INLINE int nms_hit_body(NMS_HIT_PARAMS)
{
    int64_t hit = 0;
    const double b0 = b[0], b1 = b[1], b2 = b[2], b3 = b[3];
    for (int64_t q = 0; q < n; q++)
        hit |= (int64_t)(iou(b0, b1, b2, b3, ab, kx0[q], ky0[q], kx1[q], ky1[q], ka[q]) > thr);
    return hit != 0;
}
#if DFX_X86_SIMD
__attribute__((target("avx2"))) DFX_NO_TRAPPING_MATH static int nms_hit_avx2(NMS_HIT_PARAMS)
{ return nms_hit_body(kx0, ky0, kx1, ky1, ka, n, b, ab, thr); }
#endif
DFX_NO_TRAPPING_MATH static int nms_hit(NMS_HIT_PARAMS)
{
#if DFX_X86_SIMD
    if (dfx_x86_avx2()) return nms_hit_avx2(kx0, ky0, kx1, ky1, ka, n, b, ab, thr);
#endif
    return nms_hit_body(kx0, ky0, kx1, ky1, ka, n, b, ab, thr);
}

#define NMS_SOA 128 /* kept boxes held in columns for nms_hit; past them, iou one by one */

/* cmp_cand's order: x before y */
static int cand_before(const cand *x, const cand *y) { return x->neg < y->neg || (x->neg == y->neg && x->i < y->i); }

/* Reorders c[0, n) so that c[0, k) are its k first in cand_before's order (in any order), 0 < k < n:
 * quickselect, median of three. The order is total (ties broken by index), so the k are unique. */
static void select_first(cand *c, int64_t n, int64_t k)
{
    int64_t lo = 0, hi = n - 1;
    while (hi > lo) {
        int64_t mid = lo + (hi - lo) / 2;
        cand t;
        if (cand_before(&c[mid], &c[lo])) t = c[mid], c[mid] = c[lo], c[lo] = t;
        if (cand_before(&c[hi], &c[lo])) t = c[hi], c[hi] = c[lo], c[lo] = t;
        if (cand_before(&c[hi], &c[mid])) t = c[hi], c[hi] = c[mid], c[mid] = t;
        cand pivot = c[mid];
        int64_t i = lo, j = hi;
        while (i <= j) { /* Hoare partition around the pivot's value */
            while (cand_before(&c[i], &pivot)) i++;
            while (cand_before(&pivot, &c[j])) j--;
            if (i <= j) {
                t = c[i], c[i] = c[j], c[j] = t;
                i++;
                j--;
            }
        }
        if (k - 1 <= j) hi = j; /* c[lo, j] <= pivot <= c[i, hi]: the k-th lies on one side */
        else if (k - 1 >= i) lo = i;
        else return;
    }
}
#endif

#if defined(DFX_USE_PREPARE)
size_t dfx_detection_scratch(const dt_layer *L, const rt *loc, const rt *conf, const rt *pri)
{
    (void)loc;
    (void)conf;
    int64_t P = pri->shape[pri->rank - 1] / 4, lc = L->o.share_location ? 1 : L->o.num_classes;
    return (size_t)(P * lc * 4 * 8 + (int64_t)L->o.num_classes * (16 + P * (int64_t)sizeof(det_row) + P * 4) + 256);
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_DETECTION_OUTPUT_F32)
/* One sample of a DetectionOutput layer, split over the threads (threads.h): boxes decoded in ranges of
 * priors, then one task per class (candidates, sort, NMS) that leaves its kept rows, in order, at the start
 * of its own P rows; the calling thread then merges the best of them into the output. */
typedef struct det_job {
    const dt_opts *o;
    int64_t P, lc, nc;
    const float *pr, *var, *lb, *cb; /* priors, variances, this sample's locations and scores */
    float *st;                       /* the scores by class: st[c * P + p] = cb[p * nc + c] */
    double *boxes;                   /* lc x P x 4 */
    int64_t *kept;                   /* rows kept per class, then a cursor per class */
    det_row *rows;                   /* nc x P */
} det_job;

/* Decoded boxes [a, b) of lc x P (threads.h). */
static void decode_range(void *ctx, int64_t a, int64_t b, int thread)
{
    const det_job *d = (const det_job *)ctx;
    const dt_opts *o = d->o;
    int64_t P = d->P, lc = d->lc;
    (void)thread;
    for (int64_t jp = a; jp < b; jp++) {
        int64_t j = jp / P, p = jp % P;
        const float *pp = d->pr + p * 4, *vv = d->var + p * 4, *l = d->lb + (p * lc + j) * 4;
        double v[4], pw = (double)pp[2] - pp[0], ph = (double)pp[3] - pp[1], out[4];
        for (int q = 0; q < 4; q++) v[q] = o->variance_encoded_in_target ? 1.0 : vv[q];
        if (o->code_type == 1) {
            for (int q = 0; q < 4; q++) out[q] = pp[q] + v[q] * l[q];
        } else if (o->code_type == 3) {
            double sz[4] = {pw, ph, pw, ph};
            for (int q = 0; q < 4; q++) out[q] = pp[q] + v[q] * l[q] * sz[q];
        } else {
            double pcx = ((double)pp[0] + pp[2]) / 2, pcy = ((double)pp[1] + pp[3]) / 2;
            double cx = v[0] * l[0] * pw + pcx, cy = v[1] * l[1] * ph + pcy;
            double bw = exp(v[2] * l[2]) * pw, bh = exp(v[3] * l[3]) * ph;
            out[0] = cx - bw / 2;
            out[1] = cy - bh / 2;
            out[2] = cx + bw / 2;
            out[3] = cy + bh / 2;
        }
        for (int q = 0; q < 4; q++) {
            if (o->clip) out[q] = out[q] < 0 ? 0 : (out[q] > 1 ? 1 : out[q]);
            d->boxes[(j * P + p) * 4 + q] = out[q];
        }
    }
}

/* Class c: candidates above the threshold, best first, NMS; kept rows at rows[c * P ...]. The candidate
 * list lives in the same rows (16 of their 56+ bytes each), the kept indices at its start. */
static void class_task(void *ctx, int64_t c, int thread)
{
    const det_job *d = (const det_job *)ctx;
    const dt_opts *o = d->o;
    int64_t P = d->P, nk = 0, ncand = 0;
    det_row *rows = d->rows + c * P;
    cand *cands = (cand *)rows;
    (void)thread;
    d->kept[c] = 0;
    if (c == o->background_label_id) return;
    const double *bx = d->boxes + (o->share_location ? 0 : c) * P * 4;
    const float *sc = d->st + c * P;
    double conf_thr = (double)o->confidence_threshold;
    for (int64_t p = 0; p < P; p++) { /* branch-free: every score written, kept when above the threshold */
        double s = sc[p];
        cands[ncand].neg = -s;
        cands[ncand].i = (int)p;
        ncand += s > conf_thr;
    }
    if (o->top_k > -1 && ncand > o->top_k) { /* the top_k best only, then sorted */
        if (o->top_k > 0) select_first(cands, ncand, o->top_k);
        ncand = o->top_k;
    }
    qsort(cands, (size_t)ncand, sizeof *cands, cmp_cand);
    double thr = o->nms_threshold;
    double kx0[NMS_SOA], ky0[NMS_SOA], kx1[NMS_SOA], ky1[NMS_SOA], ka[NMS_SOA];
    for (int64_t k = 0; k < ncand; k++) {
        int i = cands[k].i;
        const double *b = bx + (int64_t)i * 4;
        double ab = area(b);
        int64_t ns = nk < NMS_SOA ? nk : NMS_SOA;
        int ok = !nms_hit(kx0, ky0, kx1, ky1, ka, ns, b, ab, thr);
        for (int64_t q = ns; q < nk && ok; q++) { /* a kept candidate's neg holds its box's area */
            const double *k = bx + (int64_t)cands[q].i * 4;
            if (iou(b[0], b[1], b[2], b[3], ab, k[0], k[1], k[2], k[3], cands[q].neg) > thr) ok = 0;
        }
        if (!ok) continue;
        if (nk < NMS_SOA) {
            kx0[nk] = b[0], ky0[nk] = b[1], kx1[nk] = b[2], ky1[nk] = b[3];
            ka[nk] = ab;
        }
        cands[nk].i = i; /* nk <= k: a candidate already passed */
        cands[nk++].neg = ab;
        if (o->eta < 1 && thr > 0.5) thr *= o->eta;
    }
    for (int64_t q = nk - 1; q >= 0; q--) { /* last first: row q lies past the indices [0, q) still to read */
        int i = cands[q].i;
        det_row *r = &rows[q];
        r->neg = -(double)sc[i];
        r->c = (int)c;
        r->i = i;
        memcpy(r->box, bx + (int64_t)i * 4, sizeof r->box);
    }
    d->kept[c] = nk;
}

void dfx_detection_output_f32(const dt_layer *L, const rt *loc, const rt *conf, const rt *pri, rt *y, void *scratch,
                              const dfx_par *par)
{
    const dt_opts *o = &L->o;
    int64_t N = loc->shape[0], P = pri->shape[pri->rank - 1] / 4, nc = o->num_classes;
    int64_t lc = o->share_location ? 1 : nc, cap = y->shape[2];
    det_job d = {o, P, lc, nc, F32(pri), F32(pri) + P * 4, NULL, NULL, NULL, (double *)scratch, NULL, NULL};
    d.kept = (int64_t *)(d.boxes + P * lc * 4);
    d.rows = (det_row *)(((uintptr_t)(d.kept + 2 * nc) + 15) & ~(uintptr_t)15);
    d.st = (float *)(d.rows + nc * P);
    for (int64_t i = 0; i < y->count; i++) F32(y)[i] = -1.0f;
    for (int64_t b = 0; b < N; b++) {
        d.lb = F32(loc) + b * P * lc * 4;
        d.cb = F32(conf) + b * P * nc;
        dfx_par_range(par, lc * P, 256, 1, decode_range, &d); /* an exponential or two per box */
        for (int64_t p = 0; p < P; p++) /* the scores by class: each class task then reads one row */
            for (int64_t c = 0; c < nc; c++) d.st[c * P + p] = d.cb[p * nc + c];
        dfx_par_for(par, nc, class_task, &d);
        int64_t nrows = 0;
        for (int64_t c = 0; c < nc; c++) nrows += d.kept[c];
        if (o->keep_top_k > -1 && nrows > o->keep_top_k) nrows = o->keep_top_k;
        if (nrows > cap) nrows = cap;
        /* the best nrows of all classes in cmp_row order: each class's rows are in that order already (best
         * first, then by index), so a merge of the class lists (next: each list's first row not taken) */
        int64_t *next = d.kept + nc;
        for (int64_t c = 0; c < nc; c++) next[c] = 0;
        for (int64_t k = 0; k < nrows; k++) {
            const det_row *best = NULL;
            int64_t bc = 0;
            for (int64_t c = 0; c < nc; c++) {
                if (next[c] >= d.kept[c]) continue;
                const det_row *r = d.rows + c * P + next[c];
                if (!best || cmp_row(r, best) < 0) {
                    best = r;
                    bc = c;
                }
            }
            next[bc]++;
            float *dst = F32(y) + (b * cap + k) * 7;
            dst[0] = (float)b;
            dst[1] = (float)best->c;
            dst[2] = (float)-best->neg;
            for (int q = 0; q < 4; q++) dst[3 + q] = (float)best->box[q];
        }
    }
}
#endif

/* The vectorised float path of Conv2D and FullyConnected (layers in float
 * form, spec/arithmetic.md §3.1), library sessions only: when the kernel set
 * has float entries (dispatch.h) a session packs each float layer's weights
 * once (dfx_linear_pack_f32), allocates one scratch buffer for all float
 * layers (outside the arena, which stays as the plan made it) and points
 * the layer plans at them; the executor then calls the functions below
 * instead of the scalar kernels of ops/conv.c and ops/fc.c. Convolution is im2col (into scratch; none for 1x1
 * stride-1 unpadded convolutions) + GEMM with the bias fused into the GEMM,
 * depthwise convolution the set's own kernel, FC a GEMM over the batch rows.
 * Without packed weights (other CPUs, compiled models) the scalar loops run:
 * they are the reference the tests compare this path with. */
#include <stdlib.h>

#include "../kernels.h"

#if defined(DFX_USE_PREPARE)
/* Columns per GEMM call: the im2col block of K rows stays within 512 KB. */
static int64_t f32_block(int64_t K, int64_t cols)
{
    int64_t nb = ((int64_t)131072 / (K ? K : 1)) & ~(int64_t)15;
    if (nb < 16) nb = 16;
    if (nb > 256) nb = 256;
    return nb < cols ? nb : cols < 1 ? 1 : cols;
}

static int f32_depthwise(const dt_layer *L, const dt_tensor *w)
{ return L->op == OP_CONV2D && w->shape[1] == 1 && w->shape[0] == L->o.group; }

static int f32_direct(const dt_layer *L, const int64_t *xs, const int64_t *ys)
{
    const dt_opts *o = &L->o;
    return o->kh == 1 && o->kw == 1 && o->sh == 1 && o->sw == 1 && o->pt == 0 && o->pl == 0 && xs[2] == ys[2] &&
           xs[3] == ys[3];
}

dfx_status dfx_linear_pack_f32(const dt_layer *L, const dt_tensor *w, const int64_t *xs, const int64_t *ys,
                               int64_t ycount, const struct dfx_kernels *kf, dfx_linprep *lp, size_t *work)
{
    *work = 0;
    if ((L->op != OP_CONV2D && L->op != OP_FC) || !kf->packed_f32_bytes || !kf->pack_f32 || !kf->gemm_f32_packed ||
        !kf->dwconv_f32 || !w->is_const || !w->data)
        return DFX_OK;
    int64_t O = w->shape[0], K = O ? w->count / O : 0, G = L->op == OP_CONV2D ? L->o.group : 1, og = O / G;
    if (O <= 0 || K <= 0 || K > (1 << 24) || O > (1 << 24)) return DFX_OK;
    int dw = f32_depthwise(L, w);
    size_t gb = kf->packed_f32_bytes(dw ? 1 : (int)og, (int)K);
    if (!gb) return DFX_OK; /* not on this CPU */
    if (!dw) {              /* GEMM scratch; FC: x^T and the result; convolution: the im2col block */
        int64_t cols = L->op == OP_CONV2D ? ys[2] * ys[3] : ycount / O, nb = f32_block(K, cols);
        *work = fp_align64(DFX_F32_WORK(nb, K) * sizeof(float));
        if (L->op == OP_FC) *work += fp_align64((size_t)(K * nb) * sizeof(float)) + fp_align64((size_t)(O * nb) * 4);
        else if (!f32_direct(L, xs, ys)) *work += fp_align64((size_t)(K * nb) * sizeof(float));
    }
    float *rows = (float *)malloc((size_t)(O * K) * sizeof *rows);
    void *buf = dw ? rows : malloc(gb * (size_t)G);
    if (!rows || !buf) {
        free(rows);
        free(buf);
        return dfx_fail(DFX_ERR_NOMEM, "out of memory packing the weights of layer '%s'", L->name);
    }
    for (int64_t i = 0; i < O * K; i++) rows[i] = dfx_const_float(w, i);
    if (!dw) {
        for (int64_t g = 0; g < G; g++)
            kf->pack_f32((int)og, (int)K, rows + g * og * K, (int)K, (uint8_t *)buf + (size_t)g * gb);
        free(rows);
    }
    lp->K = K;
    lp->dw = dw;
    lp->wpacked = dw ? DFX_WPACK_F32_ROWS : DFX_WPACK_F32;
    lp->wpack = buf;
    lp->wpack_group = gb;
    return DFX_OK;
}

/* Threads (threads.h): a float layer is split into the calls one thread makes (depthwise planes, GEMM column
 * blocks of a group and sample, FC blocks of batch rows), so every thread count makes the same calls; each
 * thread uses its own copy of the float scratch (lp->fwork for thread 0, the session's per-thread scratch
 * for the others). */
typedef struct f32_job {
    const dt_layer *L;
    const dfx_linprep *lp;
    const struct dfx_kernels *kf;
    const rt *x, *b;
    rt *y;
    const dt_tensor *w;
    const dfx_par *par;
    int64_t nb, blocks; /* columns per GEMM call; calls per group and sample (FC: in all) */
    int direct;
} f32_job;

/* Depthwise planes [c0, c1) of N x O. */
static void f32_dw_planes(void *ctx, int64_t c0, int64_t c1, int thread)
{
    const f32_job *j = (const f32_job *)ctx;
    const dt_opts *o = &j->L->o;
    const rt *x = j->x, *y = j->y;
    int64_t C = x->shape[1], H = x->shape[2], W = x->shape[3], O = y->shape[1], OH = y->shape[2], OW = y->shape[3];
    const float *k = (const float *)j->lp->wpack, *bias = j->b ? F32(j->b) : NULL;
    (void)thread;
    for (int64_t nc = c0; nc < c1; nc++) {
        int64_t n = nc / O, c = nc % O;
        j->kf->dwconv_f32(F32(x) + (n * C + c) * H * W, (int)H, (int)W, k + c * j->lp->K, o->kh, o->kw, o->sh, o->sw,
                          o->pt, o->pl, o->dh, o->dw, bias ? bias[c] : 0.0f, F32(y) + nc * OH * OW, (int)OH, (int)OW);
    }
}

/* GEMM call `task` of a convolution: column block task % blocks of group and sample task / blocks. */
static void f32_conv_task(void *ctx, int64_t task, int thread)
{
    const f32_job *j = (const f32_job *)ctx;
    const dt_opts *o = &j->L->o;
    const dfx_linprep *lp = j->lp;
    const rt *x = j->x, *y = j->y;
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t O = y->shape[1], OW = y->shape[3], P = y->shape[2] * OW;
    int64_t G = o->group, cg = C / G, og = O / G, K = lp->K, nb = j->nb;
    int64_t gn = task / j->blocks, g = gn / N, n = gn % N, p0 = task % j->blocks * nb;
    int64_t cols = P - p0 < nb ? P - p0 : nb;
    float *col = (float *)dfx_par_scratch(j->par, lp->fwork, thread), *work = col;
    const void *A = (const uint8_t *)lp->wpack + (size_t)g * lp->wpack_group;
    const float *bg = j->b ? F32(j->b) + g * og : NULL;
    const float *xg = F32(x) + (n * C + g * cg) * H * W;
    float *yg = F32(y) + (n * O + g * og) * P;
    if (j->direct) {
        j->kf->gemm_f32_packed((int)og, (int)cols, (int)K, A, xg + p0, (int)P, yg + p0, (int)P, bg, work);
        return;
    }
    work = col + fp_align64((size_t)(K * nb) * sizeof(float)) / sizeof(float);
    dfx_im2col_f32(o, xg, cg, H, W, OW, p0, cols, col);
    j->kf->gemm_f32_packed((int)og, (int)cols, (int)K, A, col, (int)cols, yg + p0, (int)P, bg, work);
}

void dfx_conv2d_f32_fast(const dt_layer *L, const dfx_linprep *lp, const struct dfx_kernels *kf, const rt *x,
                         const rt *b, rt *y, const dfx_par *par)
{
    int64_t N = x->shape[0], O = y->shape[1], P = y->shape[2] * y->shape[3], K = lp->K;
    f32_job j = {L, lp, kf, x, b, y, NULL, par, f32_block(K, P), 1, f32_direct(L, x->shape, y->shape)};
    if (lp->dw) { /* planes, 16 K multiply-adds a task at least */
        dfx_par_range(par, N * O, 1 + 16384 / (P * K > 0 ? P * K : 1), 1, f32_dw_planes, &j);
        return;
    }
    j.blocks = (P + j.nb - 1) / j.nb;
    dfx_par_for(par, L->o.group * N * j.blocks, f32_conv_task, &j);
}

/* Batch rows [r0, r0 + nb) of a float FC layer (task r0 / nb). */
static void f32_fc_task(void *ctx, int64_t task, int thread)
{
    const f32_job *j = (const f32_job *)ctx;
    const dfx_linprep *lp = j->lp;
    int64_t K = lp->K, O = j->w->shape[0], M = O ? j->y->count / O : 0, nb = j->nb, r0 = task * nb;
    int64_t rows = M - r0 < nb ? M - r0 : nb;
    const float *X = F32(j->x);
    float *Y = F32(j->y);
    float *work = (float *)dfx_par_scratch(j->par, lp->fwork, thread);
    float *xt = work + fp_align64(DFX_F32_WORK(nb, K) * sizeof(float)) / sizeof(float);
    float *tmp = xt + fp_align64((size_t)(K * nb) * sizeof(float)) / sizeof(float);
    for (int64_t r = 0; r < rows; r++) /* B = x^T: K x rows */
        for (int64_t k = 0; k < K; k++) xt[k * rows + r] = X[(r0 + r) * K + k];
    j->kf->gemm_f32_packed((int)O, (int)rows, (int)K, lp->wpack, xt, (int)rows, tmp, (int)rows, j->b ? F32(j->b) : NULL,
                           work);
    for (int64_t oc = 0; oc < O; oc++)
        for (int64_t r = 0; r < rows; r++) Y[(r0 + r) * O + oc] = tmp[oc * rows + r];
}

void dfx_fc_f32_fast(const dfx_linprep *lp, const struct dfx_kernels *kf, const rt *x, const dt_tensor *w, const rt *b,
                     rt *y, const dfx_par *par)
{
    int64_t K = lp->K, O = w->shape[0];
    int64_t M = O ? y->count / O : 0;
    if (M == 1) { /* y = W x: x is a K x 1 matrix, y an O x 1 one */
        kf->gemm_f32_packed((int)O, 1, (int)K, lp->wpack, F32(x), 1, F32(y), 1, b ? F32(b) : NULL, (float *)lp->fwork);
        return;
    }
    f32_job j = {NULL, lp, kf, x, b, y, w, par, f32_block(K, M), 1, 0};
    dfx_par_for(par, (M + j.nb - 1) / j.nb, f32_fc_task, &j);
}

/* im2col of columns [p0, p0 + n) of one group in float: col[k * n + (p - p0)], k = (c*kh + i)*kw + j; taps
 * outside the input read 0. */
void dfx_im2col_f32(const dt_opts *o, const float *x, int64_t cg, int64_t H, int64_t W, int64_t OW, int64_t p0,
                    int64_t n, float *col)
{
    int64_t kh = o->kh, kw = o->kw, sh = o->sh, sw = o->sw;
    for (int64_t c = 0; c < cg; c++)
        for (int64_t i = 0; i < kh; i++)
            for (int64_t j = 0; j < kw; j++) {
                float *d = col + ((c * kh + i) * kw + j) * n;
                int64_t base = j * o->dw - o->pl; /* output column ox reads input column ox*sw + base */
                int64_t lo = base >= 0 ? 0 : (-base + sw - 1) / sw, hi = W - base <= 0 ? 0 : (W - base - 1) / sw + 1;
                for (int64_t p = p0; p < p0 + n;) {
                    int64_t oy = p / OW, ox = p % OW, end = OW - ox < p0 + n - p ? OW : ox + (p0 + n - p);
                    int64_t iy = oy * sh - o->pt + i * o->dh;
                    float *dr = d + (p - p0) - ox; /* dr[ox]: this output row's column ox */
                    if (iy < 0 || iy >= H) {
                        memset(dr + ox, 0, (size_t)(end - ox) * sizeof *dr);
                    } else {
                        const float *xr = x + (c * H + iy) * W + base;
                        int64_t a = lo > ox ? lo : ox, z = hi < end ? hi : end;
                        if (z < a) z = a;
                        for (int64_t t = ox; t < a && t < end; t++) dr[t] = 0;
                        if (sw == 1) memcpy(dr + a, xr + a, (size_t)(z - a) * sizeof *dr);
                        else
                            for (int64_t t = a; t < z; t++) dr[t] = xr[t * sw];
                        for (int64_t t = z > ox ? z : ox; t < end; t++) dr[t] = 0;
                    }
                    p += end - ox;
                }
            }
}
#endif

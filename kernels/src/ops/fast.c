/* The fast integer path of Conv2D and FullyConnected (spec/arithmetic.md
 * "Conv2D", §3.3): int8 activations and int8 weights (sub-byte weights are
 * unpacked per block of output channels into scratch), int32 accumulators
 * where the accumulator bound allows, then one requantization call per output
 * row (or the kernel set's entry that requantizes in the kernel's own pass).
 * Convolution is im2col (into scratch; none for 1x1 stride-1 unpadded
 * convolutions) + GEMM, depthwise convolution its own kernel, FC a GEMM over
 * the batch. The inner loops are those of the dispatch table (dispatch.h).
 * When the kernel set packs weights, a library session packs them once
 * (dfx_linear_pack) and the GEMM reads that copy instead of unpacking.
 * Bit-exact to the generic kernels of ops/conv.c / ops/fc.c, which handle every
 * other case. Also here: max pooling and ReLU of int8 codes without a format
 * change, which call the kernel set too. */
#include <stdlib.h>

#include "../kernels.h"

#if defined(DFX_USE_PREPARE)
dfx_status dfx_linear_prepare(const dt_layer *L, const rt *x, const dt_tensor *w, const dt_tensor *b, const rt *y,
                              dfx_linprep *lp, size_t *scratch)
{
    memset(lp, 0, sizeof *lp);
    *scratch = 0;
    if (L->op != OP_CONV2D && L->op != OP_FC) return DFX_OK;
    const dt_tensor *tx = x->t, *ty = y->t;
    if (!w->is_const || !w->data || !w->has_q || !tx->has_q || tx->per_channel || tx->bw > 8 || w->bw > 8 ||
        w->dtype == DFX_FLOAT32)
        return DFX_OK;
    int64_t O = w->shape[0], K = O ? w->count / O : 0;
    if (O <= 0 || K <= 0 || K > (1 << 24) || O > (1 << 24)) return DFX_OK;
    if (tx->bw + w->bw + fp_clog2(K) + 1 > 31) return DFX_OK;
    int64_t *bias = (int64_t *)malloc((size_t)O * sizeof *bias);
    int8_t *lsh = (int8_t *)malloc((size_t)O);
    int16_t *rsh = (int16_t *)malloc((size_t)O * sizeof *rsh);
    if (!bias || !lsh || !rsh) {
        free(bias);
        free(lsh);
        free(rsh);
        return dfx_fail(DFX_ERR_NOMEM, "out of memory preparing layer '%s'", L->name);
    }
    for (int64_t o = 0; o < O; o++) {
        int shift, fw = dfx_weight_align(L, w, (int)o, &shift);
        int fp = tx->fl + fw, F = fp;
        int64_t bv = 0;
        if (b) {
            int flb = dfx_fl_at(b, o);
            F = fp > flb ? fp : flb;
            bv = fp_shl(dfx_const_int(b, o), F - flb);
        }
        int r = F - ty->fl;
        if (shift != 0 || F - fp > 31) {
            free(bias);
            free(lsh);
            free(rsh);
            return DFX_OK;
        }
        bias[o] = bv;
        lsh[o] = (int8_t)(F - fp);
        rsh[o] = (int16_t)(r > 62 ? 62 : r < -1000 ? -1000 : r);
    }
    lp->fast = 1;
    lp->bias = bias;
    lp->lsh = lsh;
    lp->rsh = rsh;
    lp->K = K;
    lp->w_in_place = w->dtype == DFX_INT8 && (!w->per_channel || w->ch_axis == 0);
    const dt_opts *op = &L->o;
    int64_t cols, og;
    if (L->op == OP_CONV2D) {
        int64_t C = x->shape[1], G = op->group;
        og = O / G;
        cols = y->shape[2] * y->shape[3];
        lp->dw = C / G == 1 && og == 1;
        lp->direct = op->kh == 1 && op->kw == 1 && op->sh == 1 && op->sw == 1 && op->pt == 0 && op->pl == 0 &&
                     y->shape[2] == x->shape[2] && y->shape[3] == x->shape[3];
    } else {
        og = O;
        cols = O ? y->count / O : 0;
    }
    if (lp->dw) {
        *scratch = fp_align64((size_t)cols * 4) + fp_align64((size_t)K);
        return DFX_OK;
    }
    /* 128 KB of im2col columns, but at least 64 columns (a GEMM column block: narrower blocks of a long K
     * cost more in per-block work than their columns save in cache) */
    int64_t nb = (131072 / K) & ~(int64_t)15;
    if (nb < 64) nb = 64;
    if (nb > 1024) nb = 1024;
    if (L->op == OP_CONV2D && !lp->direct && op->sw == 1 && nb < cols) {
        /* column blocks of whole output rows: im2col then copies rows, not pieces (nearest multiple) */
        int64_t OW = y->shape[3], rows = (nb + OW / 2) / OW;
        if (rows >= 1 && OW <= 1024) nb = (rows * OW > 1024 ? 1024 / OW : rows) * OW;
    }
    if (nb > cols) nb = cols;
    if (nb < 1) nb = 1;
    int64_t ob = lp->w_in_place ? og : (og < 48 ? og : 48); /* 48: packed row blocks (dispatch.h) */
    lp->nb = (int)nb;
    lp->ob = (int)ob;
    size_t need = fp_align64((size_t)(ob * nb * 4));
    if (!lp->w_in_place) need += fp_align64((size_t)(ob * K));
    if (L->op == OP_FC) need += fp_align64((size_t)(K * nb)) + fp_align64((size_t)nb * 4);
    else if (!lp->direct) need += fp_align64((size_t)(K * nb));
    *scratch = need;
    return DFX_OK;
}
#endif

/* Weights of output channels [o0, o0 + rows) as int8 rows of K (in place or unpacked). */
#if DFX_ALL_KERNELS || defined(DFX_USE_CONV2D_FAST) || defined(DFX_USE_FC_FAST)
static const int8_t *weight_rows(const dfx_linprep *lp, const dt_tensor *w, int64_t o0, int64_t rows, int8_t *buf)
{
    int64_t K = lp->K;
    if (lp->w_in_place) return (const int8_t *)w->data + o0 * K;
    if (lp->wpacked == 2) return (const int8_t *)lp->wpack + o0 * K;
    const uint8_t *d = w->data;
    int64_t i0 = o0 * K, n = rows * K;
    switch (w->dtype) { /* packed little-endian, first element in the low bits (spec/format.md) */
        case DFX_INT8: memcpy(buf, d + i0, (size_t)n); break;
        case DFX_INT4:
            if (!(i0 & 1) && !(n & 1)) { /* whole bytes: sign-extend both nibbles */
                const uint8_t *src = d + (i0 >> 1);
                for (int64_t i = 0; i < n / 2; i++) {
                    buf[2 * i] = (int8_t)((int8_t)(uint8_t)(src[i] << 4) >> 4);
                    buf[2 * i + 1] = (int8_t)((int8_t)src[i] >> 4);
                }
                break;
            }
            for (int64_t i = 0; i < n; i++) {
                int64_t e = i0 + i;
                int v = (d[e >> 1] >> ((e & 1) * 4)) & 15;
                buf[i] = (int8_t)(v >= 8 ? v - 16 : v);
            }
            break;
        case DFX_INT2:
            for (int64_t i = 0; i < n; i++) {
                int64_t e = i0 + i;
                int v = (d[e >> 2] >> ((e & 3) * 2)) & 3;
                buf[i] = (int8_t)(v >= 2 ? v - 4 : v);
            }
            break;
        default: /* int16 / int32 storage of codes within 8 bits */
            for (int64_t i = 0; i < n; i++) buf[i] = (int8_t)dfx_const_int(w, i0 + i);
            break;
    }
    return buf;
}
#endif

#if defined(DFX_USE_PREPARE)
dfx_status dfx_linear_pack(const dt_layer *L, const dt_tensor *w, int64_t cols, int x_nonneg,
                           const struct dfx_kernels *kf, dfx_linprep *lp)
{
    if (!lp->fast || lp->dw || !kf->packed_a_bytes || !kf->pack_a || !kf->gemm_s8_packed) return DFX_OK;
    int64_t K = lp->K, O = w->shape[0], G = L->op == OP_CONV2D ? L->o.group : 1, og = O / G;
    if (cols >= 4) { /* the set's GEMM layout, one packing per group */
        size_t gb = kf->packed_a_bytes((int)og, (int)K, x_nonneg);
        if (!gb) return DFX_OK;
        uint8_t *buf = (uint8_t *)malloc(gb * (size_t)G);
        int8_t *rows = lp->w_in_place ? NULL : (int8_t *)malloc((size_t)(og * K));
        if (!buf || (!lp->w_in_place && !rows)) {
            free(buf);
            free(rows);
            return dfx_fail(DFX_ERR_NOMEM, "out of memory packing the weights of layer '%s'", L->name);
        }
        for (int64_t g = 0; g < G; g++)
            kf->pack_a((int)og, (int)K, weight_rows(lp, w, g * og, og, rows), (int)K, buf + (size_t)g * gb, x_nonneg);
        free(rows);
        lp->wpacked = 1;
        lp->b_nonneg = x_nonneg;
        lp->wpack = buf;
        lp->wpack_group = gb;
    } else if (!lp->w_in_place) { /* matrix times vector: int8 rows, unpacked once */
        int8_t *rows = (int8_t *)malloc((size_t)(O * K));
        if (!rows) return dfx_fail(DFX_ERR_NOMEM, "out of memory unpacking the weights of layer '%s'", L->name);
        weight_rows(lp, w, 0, O, rows);
        lp->wpacked = 2;
        lp->wpack = rows;
    }
    return DFX_OK;
}

void dfx_linear_release(dfx_linprep *lp)
{
    free(lp->wpack);
    if (lp->fwork_owner) free(lp->fwork); /* the float path's shared scratch (ops/fast_f32.c) */
    lp->wpack = lp->fwork = NULL;
    lp->wpacked = lp->fwork_owner = 0;
}
#endif

/* im2col of columns [p0, p0 + n) of one group: col[k * n + (p - p0)], k = (c*kh + i)*kw + j.
 * Tap column j reads input column ox*sw + j*dw - pl, inside the row for output columns [lo, hi);
 * tap row i reads input row oy*sh - pt + i*dh, inside the plane for output rows [ya, yb). */
#if DFX_ALL_KERNELS || defined(DFX_USE_CONV2D_FAST)
/* Short runs of bytes inline (8-byte moves, the last one overlapping the one before; bytes below 8):
 * im2col rows are often shorter than a libc call is worth. */
static inline void copy_run(int8_t *d, const int8_t *s, int64_t n)
{
    if (n < 8) {
        for (int64_t t = 0; t < n; t++) d[t] = s[t];
        return;
    }
    for (int64_t t = 0; t + 8 < n; t += 8) memcpy(d + t, s + t, 8);
    memcpy(d + n - 8, s + n - 8, 8);
}

/* Keeps compilers from turning a loop that zeroes bytes back into a memset call. */
#if defined(__GNUC__)
#define NOT_MEMSET(p) __asm__("" : : "r"(p) : "memory")
#else
#define NOT_MEMSET(p) ((void)(p))
#endif

static inline void zero_run(int8_t *d, int64_t n)
{
    const uint64_t z = 0;
    if (n < 8) {
        for (int64_t t = 0; t < n; t++) {
            d[t] = 0;
            NOT_MEMSET(d);
        }
        return;
    }
    for (int64_t t = 0; t + 8 < n; t += 8) {
        memcpy(d + t, &z, 8);
        NOT_MEMSET(d);
    }
    memcpy(d + n - 8, &z, 8);
}

/* d[t] = s[2 * t] for t < n: a plain loop, which compilers vectorise (SSE2: PAND + PACKUSWB of the even
 * bytes; NEON: LD2), reading nothing past s[2 * n - 2] (the last value may end the plane). */
static inline void copy_run_s2(int8_t *restrict d, const int8_t *restrict s, int64_t n)
{
    for (int64_t t = 0; t < n; t++) d[t] = s[2 * t];
}

/* rows output rows of OW columns (stride 1): d[t] = s[t + base] for t in [lo, hi), else 0 (s: the
 * input row; the next row is ds further on). Where the input rows are as long as the output rows ("same"
 * width, ds == OW), the rows follow each other in both: one copy from row 0's column lo to the last row's
 * column hi - 1 (reading inside the rows only), then the few columns outside [lo, hi) of every row zeroed,
 * instead of three short runs a row. */
static void rows_s1(int8_t *d, const int8_t *s, int64_t ds, int64_t base, int64_t rows, int64_t OW, int64_t lo,
                    int64_t hi)
{
    if (ds == OW && rows > 1 && hi > lo && lo + (OW - hi) <= 8) {
        memcpy(d + lo, s + lo + base, (size_t)((rows - 1) * OW + hi - lo));
        for (int64_t r = 0; r < rows; r++, d += OW) {
            for (int64_t t = 0; t < lo; t++) d[t] = 0;
            for (int64_t t = hi; t < OW; t++) d[t] = 0;
        }
        return;
    }
    for (int64_t r = 0; r < rows; r++, d += OW, s += ds) {
        zero_run(d, lo);
        copy_run(d + lo, s + lo + base, hi - lo);
        zero_run(d + hi, OW - hi);
    }
}

/* planes x rows rows of OW bytes: plane c's row r goes from s + c*ds + r*dr to d + c*dd + r*OW. */
static void copy_rows(int8_t *d, int64_t dd, const int8_t *s, int64_t ds, int64_t dr, int64_t planes, int64_t rows,
                      int64_t OW)
{
    for (int64_t c = 0; c < planes; c++, d += dd, s += ds) {
        int8_t *dp = d;
        const int8_t *sp = s;
        for (int64_t r = 0; r < rows; r++, dp += OW, sp += dr) { copy_run(dp, sp, OW); }
    }
}

static void im2col(const dt_opts *o, const int8_t *x, int64_t cg, int64_t H, int64_t W, int64_t OW, int64_t p0,
                   int64_t n, int8_t *col)
{
    int64_t kh = o->kh, kw = o->kw, sw = o->sw, sh = o->sh, oy0 = p0 / OW, oy1 = (p0 + n - 1) / OW;
    for (int64_t i = 0; i < kh; i++) {
        int64_t rb = i * o->dh - o->pt; /* input row of output row oy: oy*sh + rb */
        int64_t ya = rb >= 0 ? 0 : (-rb + sh - 1) / sh, yb = H - rb <= 0 ? 0 : (H - rb - 1) / sh + 1;
        for (int64_t j = 0; j < kw; j++) {
            int64_t base = j * o->dw - o->pl;
            int64_t lo = base >= 0 ? 0 : (-base + sw - 1) / sw, hi = W - base <= 0 ? 0 : (W - base - 1) / sw + 1;
            if (lo > OW) lo = OW;
            if (hi > OW) hi = OW;
            if (hi < lo) hi = lo;
            int64_t whole = sw == 1 && p0 % OW == 0 && n % OW == 0; /* the block is whole output rows */
            int64_t ra = ya < oy0 ? oy0 : ya > oy1 + 1 ? oy1 + 1 : ya, rz = yb > oy1 + 1 ? oy1 + 1 : yb < ra ? ra : yb;
            if (whole && ra == oy0 && rz == oy1 + 1 && lo == 0 && hi == OW) { /* no padding at all: plain copies */
                copy_rows(col + (i * kw + j) * n, kh * kw * n, x + (oy0 * sh + rb) * W + base, H * W, sh * W, cg,
                          rz - ra, OW);
                continue;
            }
            for (int64_t c = 0; c < cg; c++) {
                int8_t *dst = col + ((c * kh + i) * kw + j) * n;
                const int8_t *xc = x + c * H * W;
                if (whole) { /* rows [oy0, ra) and [rz, oy1] read padding only */
                    zero_run(dst, (ra - oy0) * OW);
                    if (rz > ra)
                        rows_s1(dst + (ra - oy0) * OW, xc + (ra * sh + rb) * W, sh * W, base, rz - ra, OW, lo, hi);
                    zero_run(dst + (rz - oy0) * OW, (oy1 + 1 - rz) * OW);
                    continue;
                }
                for (int64_t oy = oy0; oy <= oy1; oy++) {
                    int64_t a = oy * OW, xa = a < p0 ? p0 - a : 0, xb = a + OW > p0 + n ? p0 + n - a : OW;
                    int8_t *d = dst + (a + xa - p0); /* output column xa of row oy */
                    if (oy < ya || oy >= yb) {
                        zero_run(d, xb - xa);
                        continue;
                    }
                    const int8_t *xr = xc + (oy * sh + rb) * W; /* input row; output column t reads xr[t*sw + base] */
                    int64_t l = lo < xa ? xa : lo > xb ? xb : lo, h = hi > xb ? xb : hi < l ? l : hi;
                    zero_run(d, l - xa);
                    if (sw == 1) copy_run(d + (l - xa), xr + l + base, h - l);
                    else if (sw == 2) copy_run_s2(d + (l - xa), xr + 2 * l + base, h - l);
                    else
                        for (int64_t t = l; t < h; t++) d[t - xa] = xr[t * sw + base];
                    zero_run(d + (h - xa), xb - h);
                }
            }
        }
    }
}
#endif

/* Packed weights of rows [o0, ...) of group g (o0: a multiple of the block lp->ob), or NULL. */
#if DFX_ALL_KERNELS || defined(DFX_USE_CONV2D_FAST) || defined(DFX_USE_FC_FAST)
static const void *packed(const dfx_linprep *lp, const struct dfx_kernels *kf, int64_t g, int64_t o0)
{
    if (lp->wpacked != 1) return NULL;
    return (const uint8_t *)lp->wpack + (size_t)g * lp->wpack_group +
           kf->packed_a_bytes((int)o0, (int)lp->K, lp->b_nonneg);
}
#endif

/* Threads (threads.h): a convolution is split into tasks of whole depthwise planes, or of GEMM blocks: a
 * group and sample, output channels in multiples of 48 (the packed row blocks) and pixels in multiples
 * of 16; each task does its own im2col and requantization. One thread runs one task with everything. */
#if DFX_ALL_KERNELS || defined(DFX_USE_CONV2D_FAST) || defined(DFX_USE_FC_FAST)
#define ROW_UNIT 48       /* output channels: packed row blocks (dispatch.h) */
#define COL_UNIT 16       /* pixels or batch rows */
#define MIN_COLS 48       /* a column block is not cut below this */
#define TASK_COST 50000.0 /* the fixed cost of a task, in multiply-adds */
#define COPY_COST 8.0     /* an im2col (or x^T) byte of a task, in multiply-adds */
#define MAX_GRID_THREADS 64

/* Edge i of n chunks of `total` items: i * total / n rounded to a multiple of `unit` (the last: total), so
 * that the chunks differ by about one unit at most and no chunk is a small remainder. */
static int64_t split_edge(int64_t total, int64_t n, int64_t unit, int64_t i)
{
    if (i >= n) return total;
    int64_t e = (total * i + n / 2) / n;
    e = (e + unit / 2) / unit * unit;
    return e < total ? e : total;
}

/* How a GEMM of `units` independent parts (groups and samples), each rows x cols with reduction length K,
 * is cut for the threads: *nr row chunks times *nc column chunks per part (split_edge, a multiple of
 * `threads` chunks), the grid whose tasks, taken in order by equally fast threads, finish first (equal
 * work per thread; past 64 tasks the bound total / threads + the largest task stands in for the order);
 * `copy`: each task copies K x its columns first (im2col, x^T). Fewer tasks where grids tie. */
static void gemm_grid(const dfx_par *par, int64_t units, int64_t rows, int64_t cols, int64_t K, int copy, int64_t *nr,
                      int64_t *nc)
{
    int64_t T = dfx_par_threads(par);
    *nr = *nc = 1;
    if (T < 2 || units >= T * DFX_PAR_SPLIT || T > MAX_GRID_THREADS) return;
    int64_t rmax = rows / ROW_UNIT > 1 ? rows / ROW_UNIT : 1, cmax = cols / MIN_COLS > 1 ? cols / MIN_COLS : 1;
    double best = 0, load[MAX_GRID_THREADS];
    for (int64_t m = T; m <= T * DFX_PAR_SPLIT; m += T)
        for (int64_t r = 1; r <= m && r <= rmax; r++) {
            int64_t c = m / r, sim = units * m <= 64;
            if (m % r || c > cmax) continue;
            double total = 0, most = 0, span = 0;
            for (int64_t t = 0; t < T; t++) load[t] = 0;
            for (int64_t u = 0; u < (sim ? units : 1); u++)
                for (int64_t ri = 0; ri < r; ri++)
                    for (int64_t ci = 0; ci < c; ci++) {
                        double h = (double)(split_edge(rows, r, ROW_UNIT, ri + 1) - split_edge(rows, r, ROW_UNIT, ri));
                        int64_t w = split_edge(cols, c, COL_UNIT, ci + 1) - split_edge(cols, c, COL_UNIT, ci);
                        double wc = (double)((w + COL_UNIT - 1) / COL_UNIT * COL_UNIT) * (double)K;
                        double cost = h * wc + (copy ? COPY_COST * wc : 0) + TASK_COST;
                        total += cost;
                        most = cost > most ? cost : most;
                        if (!sim) continue;
                        int64_t least = 0;
                        for (int64_t t = 1; t < T; t++)
                            if (load[t] < load[least]) least = t;
                        load[least] += cost;
                    }
            for (int64_t t = 0; t < T; t++) span = load[t] > span ? load[t] : span;
            if (!sim) span = total * (double)units / (double)T + most;
            if (best == 0 || span < best * 0.995) {
                best = span;
                *nr = r;
                *nc = c;
            }
        }
}

/* A split Conv2D or FC layer. */
typedef struct lin_job {
    const dt_layer *L;
    const dfx_linprep *lp;
    const struct dfx_kernels *kf;
    const rt *x;
    const dt_tensor *w;
    rt *y;
    void *scratch;
    const dfx_par *par;
    int64_t planes; /* depthwise: planes (N x O) per task */
    int64_t nr, nc; /* GEMM: row and column chunks (gemm_grid) per group and sample */
    int8_t *col;    /* a convolution of one group and sample cut by rows only: its im2col, made once */
    int relu;       /* a convolution: apply the next layer's int8 ReLU to the output (dfx_conv2d_fast) */
} lin_job;

/* A thread's GEMM scratch: accumulators, unpacked weights; returns what follows them. */
static uint8_t *lin_scratch(const dfx_linprep *lp, void *scratch, int32_t **acc, int8_t **wbuf)
{
    uint8_t *sp = (uint8_t *)scratch;
    *acc = (int32_t *)sp;
    sp += fp_align64((size_t)lp->ob * (size_t)lp->nb * 4);
    *wbuf = NULL;
    if (!lp->w_in_place) {
        *wbuf = (int8_t *)sp;
        sp += fp_align64((size_t)(lp->ob * lp->K));
    }
    return sp;
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_CONV2D_FAST)
/* A thread's scratch of a GEMM convolution: lin_scratch, then the im2col block. */
static void conv_scratch(const dfx_linprep *lp, void *scratch, int32_t **acc, int8_t **wbuf, int8_t **col)
{
    uint8_t *sp = lin_scratch(lp, scratch, acc, wbuf);
    *col = lp->direct ? NULL : (int8_t *)sp;
}

/* The shared im2col of input channels [c0, c1) (the whole of one group and sample). */
static void col_channels(void *ctx, int64_t c0, int64_t c1, int thread)
{
    const lin_job *j = (const lin_job *)ctx;
    const dt_opts *o = &j->L->o;
    int64_t H = j->x->shape[2], W = j->x->shape[3], OW = j->y->shape[3], P = j->y->shape[2] * OW;
    (void)thread;
    im2col(o, (const int8_t *)j->x->p + c0 * H * W, c1 - c0, H, W, OW, 0, P, j->col + c0 * o->kh * o->kw * P);
}

/* The layer of a convolution job J as local variables: options, constants, kernel set, tensors. */
#define CONV_JOB_VARS(J)                                       \
    const dt_opts *o = &(J)->L->o;                             \
    const dfx_linprep *lp = (J)->lp;                           \
    const struct dfx_kernels *kf = (J)->kf;                    \
    const rt *x = (J)->x, *y = (J)->y;                         \
    int64_t C = x->shape[1], H = x->shape[2], W = x->shape[3]; \
    const int8_t *X = (const int8_t *)x->p;                    \
    const dt_tensor *ty = y->t;                                \
    int esz = y->esz;                                          \
    char *Y = (char *)y->p

/* Output channel c's n sums at acc requantized into out, then the job's ReLU: in one pass where the set has
 * requant_relu_s8, else the two steps. */
static void requant_out(const lin_job *j, const int32_t *acc, int n, int64_t c, char *out)
{
    const dfx_linprep *lp = j->lp;
    const struct dfx_kernels *kf = j->kf;
    const dt_tensor *ty = j->y->t;
    if (j->relu && kf->requant_relu_s8 &&
        kf->requant_relu_s8(acc, n, lp->bias[c], lp->lsh[c], lp->rsh[c], ty->rounding, ty->bw, (int8_t *)out))
        return;
    kf->requant_s32(acc, n, lp->bias[c], lp->lsh[c], lp->rsh[c], ty->rounding, ty->bw, out, j->y->esz);
    if (j->relu) kf->relu_s8((int8_t *)out, (int8_t *)out, n);
}

/* Depthwise planes [c0, c1) of N x O (sample n, channel c). */
static void dw_planes(const lin_job *j, int64_t c0, int64_t c1, void *scratch)
{
    CONV_JOB_VARS(j);
    int64_t O = y->shape[1], OH = y->shape[2], OW = y->shape[3], P = OH * OW;
    int32_t *acc = (int32_t *)scratch;
    int8_t *kbuf = (int8_t *)scratch + fp_align64((size_t)P * 4);
    for (int64_t nc = c0; nc < c1; nc++) {
        int64_t n = nc / O, c = nc % O;
        const int8_t *k = weight_rows(lp, j->w, c, 1, kbuf);
        int8_t *yc = (int8_t *)Y + (n * O + c) * P * esz;
        if (esz == 1 && kf->dwconv_requant_s8 &&
            kf->dwconv_requant_s8(X + (n * C + c) * H * W, (int)H, (int)W, k, o->kh, o->kw, o->sh, o->sw, o->pt, o->pl,
                                  o->dh, o->dw, lp->bias[c], lp->lsh[c], lp->rsh[c], ty->rounding, ty->bw, j->relu, yc,
                                  (int)OH, (int)OW, acc))
            continue; /* requantized (and the ReLU) in the same pass */
        kf->dwconv_s8(X + (n * C + c) * H * W, (int)H, (int)W, k, o->kh, o->kw, o->sh, o->sw, o->pt, o->pl, o->dh,
                      o->dw, acc, (int)OH, (int)OW);
        requant_out(j, acc, (int)P, c, (char *)yc);
    }
}

/* The GEMM of group g for samples [n0, n1), output channels [oa, oz) of the group (oa: a multiple of
 * the block lp->ob or of ROW_UNIT), pixels [pa, pz). */
static void conv_block(const lin_job *j, int64_t g, int64_t n0, int64_t n1, int64_t oa, int64_t oz, int64_t pa,
                       int64_t pz, void *scratch)
{
    CONV_JOB_VARS(j);
    int64_t O = y->shape[1], OW = y->shape[3], P = y->shape[2] * OW;
    int64_t G = o->group, cg = C / G, og = O / G, K = lp->K;
    int64_t nb = lp->nb, ob = lp->ob;
    int32_t *acc;
    int8_t *wbuf, *col;
    conv_scratch(lp, scratch, &acc, &wbuf, &col);
    for (int64_t o0 = oa; o0 < oz; o0 += ob) { /* weights unpacked once per block of output channels */
        int64_t mb = oz - o0 < ob ? oz - o0 : ob;
        const void *Ap = packed(lp, kf, g, o0);
        const int8_t *A = Ap ? NULL : weight_rows(lp, j->w, g * og + o0, mb, wbuf);
        for (int64_t n = n0; n < n1; n++) {
            const int8_t *xg = X + (n * C + g * cg) * H * W;
            for (int64_t p0 = pa; p0 < pz; p0 += nb) {
                int64_t cols = pz - p0 < nb ? pz - p0 : nb;
                const int8_t *B;
                int64_t ldb;
                if (lp->direct) {
                    B = xg + p0;
                    ldb = H * W;
                } else if (j->col) { /* made once for every task (pa = 0, pz = P <= nb) */
                    B = j->col;
                    ldb = cols;
                } else {
                    im2col(o, xg, cg, H, W, OW, p0, cols, col);
                    B = col;
                    ldb = cols;
                }
                int64_t oc0 = g * og + o0;
                if (Ap && esz == 1 && kf->gemm_s8_packed_requant &&
                    kf->gemm_s8_packed_requant((int)mb, (int)cols, (int)K, Ap, B, (int)ldb, lp->b_nonneg,
                                               lp->bias + oc0, lp->lsh + oc0, lp->rsh + oc0, ty->rounding, ty->bw,
                                               j->relu, (int8_t *)Y + (n * O + oc0) * P + p0, (int)P))
                    continue; /* requantized (and the ReLU) in the GEMM's store */
                if (Ap) kf->gemm_s8_packed((int)mb, (int)cols, (int)K, Ap, B, (int)ldb, acc, (int)cols, lp->b_nonneg);
                else kf->gemm_s8((int)mb, (int)cols, (int)K, A, (int)K, B, (int)ldb, acc, (int)cols);
                for (int64_t r = 0; r < mb; r++) {
                    int64_t oc = g * og + o0 + r;
                    requant_out(j, acc + r * cols, (int)cols, oc, Y + ((n * O + oc) * P + p0) * esz);
                }
            }
        }
    }
}

static void conv_task(void *ctx, int64_t task, int thread)
{
    const lin_job *j = (const lin_job *)ctx;
    void *sc = dfx_par_scratch(j->par, j->scratch, thread);
    int64_t N = j->x->shape[0], O = j->y->shape[1];
    if (j->lp->dw) {
        int64_t c0 = task * j->planes, c1 = c0 + j->planes < N * O ? c0 + j->planes : N * O;
        dw_planes(j, c0, c1, sc);
        return;
    }
    int64_t og = O / j->L->o.group, P = j->y->shape[2] * j->y->shape[3];
    int64_t ci = task % j->nc, ri = task / j->nc % j->nr, gn = task / j->nc / j->nr, g = gn / N, n = gn % N;
    int64_t oa = split_edge(og, j->nr, ROW_UNIT, ri), oz = split_edge(og, j->nr, ROW_UNIT, ri + 1);
    int64_t pa = split_edge(P, j->nc, COL_UNIT, ci), pz = split_edge(P, j->nc, COL_UNIT, ci + 1);
    if (oz > oa && pz > pa) conv_block(j, g, n, n + 1, oa, oz, pa, pz, sc);
}

dfx_status dfx_conv2d_fast(const dt_layer *L, const dfx_linprep *lp, const struct dfx_kernels *kf, const rt *x,
                           const dt_tensor *w, rt *y, void *scratch, const dfx_par *par, int relu)
{
    int64_t N = x->shape[0], O = y->shape[1], P = y->shape[2] * y->shape[3], G = L->o.group;
    lin_job j = {L, lp, kf, x, w, y, scratch, par, 0, 1, 1, NULL, relu && y->esz == 1 && kf->relu_s8};
    int threads = dfx_par_threads(par);
    if (lp->dw) {
        int64_t want = threads < 2 ? 1 : threads * DFX_PAR_SPLIT, tasks = N * O < want ? N * O : want;
        j.planes = (N * O + tasks - 1) / tasks;
        dfx_par_for(threads > 1 ? par : NULL, (N * O + j.planes - 1) / j.planes, conv_task, &j);
        return DFX_OK;
    }
    if (threads < 2) { /* one block loop over everything: weights unpacked once for all samples */
        for (int64_t g = 0; g < G; g++) conv_block(&j, g, 0, N, 0, O / G, 0, P, scratch);
        return DFX_OK;
    }
    gemm_grid(par, G * N, O / G, P, lp->K, !lp->direct, &j.nr, &j.nc);
    if (G * N == 1 && j.nr > 1 && j.nc == 1 && !lp->direct && P <= lp->nb) {
        /* every task would make the same im2col: make it once, cut by channels, in thread 0's block */
        int32_t *acc;
        int8_t *wbuf;
        conv_scratch(lp, scratch, &acc, &wbuf, &j.col);
        int64_t per_channel = (int64_t)L->o.kh * L->o.kw * P;
        dfx_par_range(par, x->shape[1], 1 + 16384 / per_channel, 1, col_channels, &j);
    }
    dfx_par_for(par, G * N * j.nr * j.nc, conv_task, &j);
    return DFX_OK;
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_FC_FAST)
/* Output channels [oa, oz) (oa: a multiple of the block lp->ob or of ROW_UNIT) for batch rows [ra, rz). */
static void fc_block(const lin_job *j, int64_t oa, int64_t oz, int64_t ra, int64_t rz, void *scratch)
{
    const dfx_linprep *lp = j->lp;
    const struct dfx_kernels *kf = j->kf;
    const rt *y = j->y;
    int64_t O = j->w->shape[0], K = lp->K;
    int64_t nb = lp->nb, ob = lp->ob;
    const int8_t *X = (const int8_t *)j->x->p;
    const dt_tensor *ty = y->t;
    int esz = y->esz;
    int32_t *acc;
    int8_t *wbuf;
    uint8_t *sp = lin_scratch(lp, scratch, &acc, &wbuf);
    int8_t *xt = (int8_t *)sp;
    sp += fp_align64((size_t)(K * nb));
    void *tmp = sp;
    int one_block = rz - ra <= nb;             /* then x^T is made once, not once per block of output channels */
    for (int64_t o0 = oa; o0 < oz; o0 += ob) { /* weights unpacked once per block of output channels */
        int64_t mb = oz - o0 < ob ? oz - o0 : ob;
        const void *Ap = packed(lp, kf, 0, o0);
        const int8_t *A = Ap ? NULL : weight_rows(lp, j->w, o0, mb, wbuf);
        for (int64_t r0 = ra; r0 < rz; r0 += nb) {
            int64_t rows = rz - r0 < nb ? rz - r0 : nb;
            const int8_t *B = X + r0 * K;
            if (rows > 1) { /* B = x^T: K x rows */
                if (!one_block || o0 == oa)
                    for (int64_t r = 0; r < rows; r++)
                        for (int64_t k = 0; k < K; k++) xt[k * rows + r] = B[r * K + k];
                B = xt;
            }
            if (Ap) kf->gemm_s8_packed((int)mb, (int)rows, (int)K, Ap, B, (int)rows, acc, (int)rows, lp->b_nonneg);
            else kf->gemm_s8((int)mb, (int)rows, (int)K, A, (int)K, B, (int)rows, acc, (int)rows);
            if (rows == 1) { /* one value per output channel: the requant_s32 formula inline, not a call each */
                for (int64_t r = 0; r < mb; r++) {
                    int64_t oc = o0 + r, v = (int64_t)acc[r] * ((int64_t)1 << lp->lsh[oc]) + lp->bias[oc];
                    dfx_st(y->p, esz, r0 * O + oc,
                           (int32_t)fp_saturate(fp_round_shift(v, lp->rsh[oc], ty->rounding), ty->bw));
                }
                continue;
            }
            for (int64_t r = 0; r < mb; r++) {
                int64_t oc = o0 + r;
                kf->requant_s32(acc + r * rows, (int)rows, lp->bias[oc], lp->lsh[oc], lp->rsh[oc], ty->rounding, ty->bw,
                                tmp, esz);
                for (int64_t t = 0; t < rows; t++) dfx_st(y->p, esz, (r0 + t) * O + oc, dfx_ld(tmp, esz, t));
            }
        }
    }
}

static void fc_task(void *ctx, int64_t task, int thread)
{
    const lin_job *j = (const lin_job *)ctx;
    int64_t O = j->w->shape[0], M = O ? j->y->count / O : 0, ri = task / j->nc, ci = task % j->nc;
    int64_t oa = split_edge(O, j->nr, ROW_UNIT, ri), oz = split_edge(O, j->nr, ROW_UNIT, ri + 1);
    int64_t ra = split_edge(M, j->nc, COL_UNIT, ci), rz = split_edge(M, j->nc, COL_UNIT, ci + 1);
    if (oz > oa && rz > ra) fc_block(j, oa, oz, ra, rz, dfx_par_scratch(j->par, j->scratch, thread));
}

dfx_status dfx_fc_fast(const dt_layer *L, const dfx_linprep *lp, const struct dfx_kernels *kf, const rt *x,
                       const dt_tensor *w, rt *y, void *scratch, const dfx_par *par)
{
    int64_t O = w->shape[0], M = O ? y->count / O : 0;
    lin_job j = {L, lp, kf, x, w, y, scratch, par, 0, 1, 1, NULL, 0};
    if (dfx_par_threads(par) < 2) {
        fc_block(&j, 0, O, 0, M, scratch);
        return DFX_OK;
    }
    gemm_grid(par, 1, O, M, lp->K, M > 1, &j.nr, &j.nc);
    dfx_par_for(par, j.nr * j.nc, fc_task, &j);
    return DFX_OK;
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_MAXPOOL_S8)
typedef struct maxpool_job {
    const struct dfx_kernels *kf;
    const rt *x;
    rt *y;
    int kh, kw, sh, sw, pt, pl;
    int8_t empty;
} maxpool_job;

static void maxpool_planes(void *ctx, int64_t c0, int64_t c1, int thread)
{
    const maxpool_job *j = (const maxpool_job *)ctx;
    int64_t H = j->x->shape[2], W = j->x->shape[3], OH = j->y->shape[2], OW = j->y->shape[3];
    (void)thread;
    for (int64_t c = c0; c < c1; c++)
        j->kf->maxpool_s8((const int8_t *)j->x->p + c * H * W, (int)H, (int)W, j->kh, j->kw, j->sh, j->sw, j->pt, j->pl,
                          (int8_t *)j->y->p + c * OH * OW, (int)OH, (int)OW, j->empty);
}

/* Max pooling of int8 codes without a format change, one plane at a time in the kernel set (planes split
 * over the threads). */
void dfx_maxpool_s8(const dt_layer *L, const struct dfx_kernels *kf, const rt *x, rt *y, const dfx_par *par)
{
    const dt_opts *o = &L->o;
    maxpool_job j = {kf, x, y, (int)o->kh, (int)o->kw, (int)o->sh, (int)o->sw, (int)o->pt, (int)o->pl, 0};
    int64_t NC = x->shape[0] * x->shape[1], HW = x->shape[2] * x->shape[3];
    if (o->global) {
        j.kh = (int)x->shape[2];
        j.kw = (int)x->shape[3];
        j.sh = j.sw = 1;
        j.pt = j.pl = 0;
    }
    j.empty = (int8_t)(-(1 << (y->t->bw - 1)));
    dfx_par_range(par, NC, HW > 0 ? 1 + 16384 / HW : NC, 1, maxpool_planes, &j); /* at least 16 K inputs a task */
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_RELU_S8)
typedef struct relu_job {
    const struct dfx_kernels *kf;
    const rt *x;
    rt *y;
} relu_job;

static void relu_range(void *ctx, int64_t a, int64_t b, int thread)
{
    const relu_job *j = (const relu_job *)ctx;
    (void)thread;
    j->kf->relu_s8((const int8_t *)j->x->p + a, (int8_t *)j->y->p + a, (int)(b - a));
}

/* ReLU of int8 codes without a format change, in the kernel set. */
void dfx_relu_s8(const struct dfx_kernels *kf, const rt *x, rt *y, const dfx_par *par)
{
    relu_job j = {kf, x, y};
    dfx_par_range(par, y->count, 65536, 64, relu_range, &j);
}
#endif

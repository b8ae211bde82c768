/* The portable (plain C99) set of the dispatch table (dispatch.h): reference
 * style loops, register blocked so that compilers keep the accumulators in
 * registers and vectorise the inner loops (on x86-64 the loops are compiled
 * twice, for the baseline ISA and for AVX2, DFX_MULTIVERSION). No intrinsics:
 * the x86 sets (arch/x86/set.c) call these functions where their own decline. */
#include "portable.h"

#include "../../fixedpoint.h"
#include "../x86/x86.h" /* DFX_MULTIVERSION, DFX_ALWAYS_INLINE */

/* GEMM in dot-product form: B is packed, a block of GEMM_KC rows x GEMM_NC
 * columns at a time, transposed and widened to int16 in a stack buffer
 * (16 KB); each row of A (int8, in place) is then multiplied with 4 packed
 * columns at once. The products of int8 codes fit int16 and their pairwise
 * sums int32, which compilers turn into multiply-add instructions
 * (pmaddwd on x86, smlal on ARM). */
#define GEMM_KC 128
#define GEMM_NC 64

static inline void dot4(int k, const int8_t *a, const int16_t *b0, const int16_t *b1, const int16_t *b2,
                        const int16_t *b3, int32_t *c)
{
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int p = 0; p < k; p++) {
        int16_t av = a[p];
        s0 += av * b0[p];
        s1 += av * b1[p];
        s2 += av * b2[p];
        s3 += av * b3[p];
    }
    c[0] += s0;
    c[1] += s1;
    c[2] += s2;
    c[3] += s3;
}

static inline void dot1(int k, const int8_t *a, const int16_t *b, int32_t *c)
{
    int32_t s = 0;
    for (int p = 0; p < k; p++) s += (int16_t)a[p] * b[p];
    *c += s;
}

static DFX_ALWAYS_INLINE void gemm_s8_body(int m, int n, int k, const int8_t *a, int lda, const int8_t *b, int ldb,
                                           int32_t *c, int ldc)
{
    int16_t bt[GEMM_NC * GEMM_KC];
    if (n == 1 && ldb == 1) { /* matrix times vector: no packing */
        for (int i = 0; i < m; i++) {
            const int8_t *ar = a + (int64_t)i * lda;
            int32_t s = 0;
            for (int p = 0; p < k; p++) s += (int16_t)ar[p] * (int16_t)b[p];
            c[(int64_t)i * ldc] = s;
        }
        return;
    }
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) c[(int64_t)i * ldc + j] = 0;
    for (int k0 = 0; k0 < k; k0 += GEMM_KC) {
        int kc = k - k0 < GEMM_KC ? k - k0 : GEMM_KC;
        for (int j0 = 0; j0 < n; j0 += GEMM_NC) {
            int nc = n - j0 < GEMM_NC ? n - j0 : GEMM_NC;
            for (int p = 0; p < kc; p++) {
                const int8_t *br = b + (int64_t)(k0 + p) * ldb + j0;
                for (int j = 0; j < nc; j++) bt[j * kc + p] = br[j];
            }
            for (int i = 0; i < m; i++) {
                const int8_t *ar = a + (int64_t)i * lda + k0;
                int32_t *cr = c + (int64_t)i * ldc + j0;
                int j = 0;
                for (; j + 4 <= nc; j += 4)
                    dot4(kc, ar, bt + j * kc, bt + (j + 1) * kc, bt + (j + 2) * kc, bt + (j + 3) * kc, cr + j);
                for (; j < nc; j++) dot1(kc, ar, bt + j * kc, cr + j);
            }
        }
    }
}

#define gemm_s8_portable_body gemm_s8_body
DFX_MULTIVERSION(gemm_s8_portable,
                 (int m, int n, int k, const int8_t *a, int lda, const int8_t *b, int ldb, int32_t *c, int ldc),
                 (m, n, k, a, lda, b, ldb, c, ldc))

/* Output columns [lo, hi) whose input column ox*s + base lies in [0, size). */
static void col_range(int size, int out, int s, int base, int *lo, int *hi)
{
    int a = base >= 0 ? 0 : (-base + s - 1) / s;
    int b = size - base <= 0 ? 0 : (size - base - 1) / s + 1;
    *lo = a;
    *hi = b < out ? b : out;
    if (*hi < *lo) *hi = *lo;
}

static DFX_ALWAYS_INLINE void dwconv_generic(const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int sh,
                                             int sw, int pt, int pl, int dh, int dw, int32_t *out, int oh, int ow)
{
    for (int oy = 0; oy < oh; oy++) {
        int32_t *o = out + (int64_t)oy * ow;
        for (int ox = 0; ox < ow; ox++) o[ox] = 0;
        for (int i = 0; i < kh; i++) {
            int iy = oy * sh - pt + i * dh;
            if (iy < 0 || iy >= h) continue;
            const int8_t *xr = x + (int64_t)iy * w;
            for (int j = 0; j < kw; j++) {
                int32_t wv = k[i * kw + j];
                int lo, hi, base = j * dw - pl;
                if (!wv) continue;
                col_range(w, ow, sw, base, &lo, &hi);
                if (sw == 1)
                    for (int ox = lo; ox < hi; ox++) o[ox] += wv * xr[ox + base];
                else if (sw == 2)
                    for (int ox = lo; ox < hi; ox++) o[ox] += wv * xr[2 * ox + base];
                else
                    for (int ox = lo; ox < hi; ox++) o[ox] += wv * xr[ox * sw + base];
            }
        }
    }
}

/* Depthwise with the input row copied, zero padded, into a buffer (and split
 * into even and odd columns for stride 2), so that every tap is a plain
 * stride-1 loop over the output row that compilers vectorise; the products of
 * int8 codes are formed in int16 (exact). Other strides, or rows too long for
 * the buffer, take the generic loop. */
#define DW_ROW 4096

static DFX_ALWAYS_INLINE void dw_taps(int32_t *o, const int8_t *r, const int8_t *kr, int kw, int step, int ow)
{
    if (kw == 3 && step == 1) { /* the common 3x3 case: one pass over the output row */
        int16_t w0 = kr[0], w1 = kr[1], w2 = kr[2];
        for (int ox = 0; ox < ow; ox++)
            o[ox] += (int32_t)(int16_t)(w0 * r[ox]) + (int16_t)(w1 * r[ox + 1]) + (int16_t)(w2 * r[ox + 2]);
        return;
    }
    for (int j = 0; j < kw; j++) {
        int16_t wv = kr[j];
        const int8_t *rj = r + j * step;
        if (!wv) continue;
        for (int ox = 0; ox < ow; ox++) o[ox] += (int16_t)(wv * rj[ox]);
    }
}

static DFX_ALWAYS_INLINE void dwconv_fast_body(const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int sh,
                                               int sw, int pt, int pl, int dh, int dw, int32_t *out, int oh, int ow)
{
    int span = (ow - 1) * sw + (kw - 1) * dw + 1; /* padded input columns [-pl, span - pl) */
    if ((sw != 1 && sw != 2) || span + 2 > DW_ROW) {
        dwconv_generic(x, h, w, k, kh, kw, sh, sw, pt, pl, dh, dw, out, oh, ow);
        return;
    }
    int8_t row[DW_ROW], ev[DW_ROW / 2 + 1], od[DW_ROW / 2 + 1];
    int lo = pl < span ? pl : span, hi = w + pl < span ? w + pl : span; /* copied part [lo, hi) of the padded row */
    if (hi < lo) hi = lo;
    for (int oy = 0; oy < oh; oy++) {
        int32_t *o = out + (int64_t)oy * ow;
        for (int ox = 0; ox < ow; ox++) o[ox] = 0;
        for (int i = 0; i < kh; i++) {
            int iy = oy * sh - pt + i * dh;
            if (iy < 0 || iy >= h) continue;
            const int8_t *xr = x + (int64_t)iy * w;
            for (int t = 0; t < lo; t++) row[t] = 0;
            for (int t = lo; t < hi; t++) row[t] = xr[t - pl];
            for (int t = hi; t < span + 1; t++) row[t] = 0;
            if (sw == 1) {
                dw_taps(o, row, k + i * kw, kw, dw, ow);
            } else { /* tap j reads column 2*ox + j*dw: ev or od by its parity */
                int half = (span + 1) / 2;
                for (int t = 0; t < half; t++) {
                    ev[t] = row[2 * t];
                    od[t] = row[2 * t + 1];
                }
                if (dw == 0) dw_taps(o, ev, k + i * kw, kw, 0, ow);
                else if (kw == 3 && dw == 1) { /* taps 0, 1, 2: ev[ox], od[ox], ev[ox + 1] */
                    int16_t w0 = k[i * kw], w1 = k[i * kw + 1], w2 = k[i * kw + 2];
                    for (int ox = 0; ox < ow; ox++)
                        o[ox] += (int32_t)(int16_t)(w0 * ev[ox]) + (int16_t)(w1 * od[ox]) + (int16_t)(w2 * ev[ox + 1]);
                } else {
                    for (int j = 0; j < kw; j++) {
                        int16_t wv = k[i * kw + j];
                        int s = j * dw;
                        const int8_t *rj = (s & 1 ? od : ev) + s / 2;
                        if (!wv) continue;
                        for (int ox = 0; ox < ow; ox++) o[ox] += (int16_t)(wv * rj[ox]);
                    }
                }
            }
        }
    }
}

#define dwconv_loop_body dwconv_fast_body
DFX_MULTIVERSION(dwconv_loop,
                 (const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int sh, int sw, int pt, int pl,
                  int dh, int dw, int32_t *out, int oh, int ow),
                 (x, h, w, k, kh, kw, sh, sw, pt, pl, dh, dw, out, oh, ow))

static void dwconv_s8_portable(const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int sh, int sw, int pt,
                               int pl, int dh, int dw, int32_t *out, int oh, int ow)
{ dwconv_loop(x, h, w, k, kh, kw, sh, sw, pt, pl, dh, dw, out, oh, ow); }

#define REQUANT_LOOP(EXPR)                                                         \
    switch (out_bytes) {                                                           \
        case 1:                                                                    \
            for (int i = 0; i < n; i++) {                                          \
                int64_t v = (int64_t)((uint64_t)(int64_t)acc[i] << lshift) + bias; \
                int64_t r = (EXPR);                                                \
                ((int8_t *)out)[i] = (int8_t)(r < lo ? lo : r > hi ? hi : r);      \
            }                                                                      \
            break;                                                                 \
        case 2:                                                                    \
            for (int i = 0; i < n; i++) {                                          \
                int64_t v = (int64_t)((uint64_t)(int64_t)acc[i] << lshift) + bias; \
                int64_t r = (EXPR);                                                \
                ((int16_t *)out)[i] = (int16_t)(r < lo ? lo : r > hi ? hi : r);    \
            }                                                                      \
            break;                                                                 \
        default:                                                                   \
            for (int i = 0; i < n; i++) {                                          \
                int64_t v = (int64_t)((uint64_t)(int64_t)acc[i] << lshift) + bias; \
                int64_t r = (EXPR);                                                \
                ((int32_t *)out)[i] = (int32_t)(r < lo ? lo : r > hi ? hi : r);    \
            }                                                                      \
            break;                                                                 \
    }

static DFX_ALWAYS_INLINE void requant64_body(const int32_t *acc, int n, int64_t bias, int lshift, int shift,
                                             int rounding, int bw, void *out, int out_bytes)
{
    const int64_t hi = ((int64_t)1 << (bw - 1)) - 1, lo = -hi - 1;
    if (shift <= 0) {
        REQUANT_LOOP(fp_round_shift(v, shift, rounding))
        return;
    }
    const int64_t half = (int64_t)1 << (shift - 1);
    switch (rounding) {
        case RND_FLOOR: REQUANT_LOOP(v >> shift) break;
        case RND_HALF_UP: REQUANT_LOOP((v + half) >> shift) break;
        case RND_HALF_AWAY: REQUANT_LOOP(v >= 0 ? (v + half) >> shift : -((half - v) >> shift)) break;
        default: REQUANT_LOOP(fp_round_right(v, shift, rounding)) break;
    }
}

/* int32 form: with lshift <= 29, |bias| <= 2^29 and 0 <= shift, shift + bw <= 29,
 * clamping acc to +-2^(30 - lshift) first changes no result (a clamped value
 * gives |v| >= 2^29, which saturates: |v| / 2^shift >= 2^(bw-1) either way),
 * and then |v| <= 2^30 + 2^29 and every step below fits int32. The tie rules
 * are HALF_UP of a corrected value (as arch/neon/requant.c):
 * HALF_AWAY_FROM_ZERO: v - 1 for v < 0; HALF_TO_EVEN: v - 1 + bit_shift(v). */
#define RQ32_LOOP(T, EXPR)                                   \
    for (int i = 0; i < n; i++) {                            \
        int32_t a = acc[i];                                  \
        a = a < -cap ? -cap : a > cap ? cap : a;             \
        int32_t v = (int32_t)((uint32_t)a << lshift) + bias; \
        int32_t r = (EXPR);                                  \
        ((T *)out)[i] = (T)(r < lo ? lo : r > hi ? hi : r);  \
    }
#define RQ32_MODES(T)                                              \
    if (shift == 0) {                                              \
        RQ32_LOOP(T, v)                                            \
    } else if (rounding == RND_FLOOR) {                            \
        RQ32_LOOP(T, v >> shift)                                   \
    } else if (rounding == RND_HALF_UP) {                          \
        RQ32_LOOP(T, (v + half) >> shift)                          \
    } else if (rounding == RND_HALF_AWAY) {                        \
        RQ32_LOOP(T, (v + half - (v < 0)) >> shift)                \
    } else {                                                       \
        RQ32_LOOP(T, (v + half - 1 + ((v >> shift) & 1)) >> shift) \
    }

static DFX_ALWAYS_INLINE void requant32_body(const int32_t *acc, int n, int32_t bias, int lshift, int shift,
                                             int rounding, int32_t lo, int32_t hi, void *out, int out_bytes)
{
    const int32_t cap = (int32_t)1 << (30 - lshift), half = shift > 0 ? (int32_t)1 << (shift - 1) : 0;
    if (out_bytes == 1) {
        RQ32_MODES(int8_t)
    } else if (out_bytes == 2) {
        RQ32_MODES(int16_t)
    } else {
        RQ32_MODES(int32_t)
    }
}

static DFX_ALWAYS_INLINE void requant_body(const int32_t *acc, int n, int64_t bias, int lshift, int shift, int rounding,
                                           int bw, void *out, int out_bytes)
{
    if (dfx_requant_int32_form(bias, lshift, shift, bw)) {
        const int32_t hi = (int32_t)(((int64_t)1 << (bw - 1)) - 1), lo = -hi - 1;
        requant32_body(acc, n, (int32_t)bias, lshift, shift, rounding, lo, hi, out, out_bytes);
        return;
    }
    requant64_body(acc, n, bias, lshift, shift, rounding, bw, out, out_bytes);
}

#define requant_s32_portable_body requant_body
DFX_MULTIVERSION(requant_s32_portable,
                 (const int32_t *acc, int n, int64_t bias, int lshift, int shift, int rounding, int bw, void *out,
                  int out_bytes),
                 (acc, n, bias, lshift, shift, rounding, bw, out, out_bytes))

static DFX_ALWAYS_INLINE void relu_s8_body(const int8_t *x, int8_t *y, int n)
{
    for (int i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0;
}

#define relu_s8_portable_body relu_s8_body
DFX_MULTIVERSION(relu_s8_portable, (const int8_t *x, int8_t *y, int n), (x, y, n))

static DFX_ALWAYS_INLINE void maxpool_s8_body(const int8_t *x, int h, int w, int kh, int kw, int sh, int sw, int pt,
                                              int pl, int8_t *out, int oh, int ow, int8_t empty, dfx_max2x2_row_fn row2)
{
    for (int oy = 0; oy < oh; oy++) {
        int y0 = oy * sh - pt, ya = y0 < 0 ? 0 : y0, yb = y0 + kh > h ? h : y0 + kh;
        int8_t *o = out + (int64_t)oy * ow;
        if (kh == 2 && kw == 2 && sw == 2 && yb - ya == 2) { /* the common 2x2/2 window: interior columns */
            const int8_t *r0 = x + (int64_t)ya * w, *r1 = r0 + w;
            int lo = 0, hi;
            col_range(w - 1, ow, 2, -pl, &lo, &hi);        /* columns whose two taps lie inside */
            for (int ox = 0; ox < lo; ox++) o[ox] = empty; /* recomputed below */
            int done = lo;
            if (row2) /* a kernel set's vector loop: the first columns */
                done += row2(r0 + 2 * lo - pl, r1 + 2 * lo - pl, w - (2 * lo - pl), o + lo, hi - lo);
            for (int ox = done; ox < hi; ox++) {
                int ix = 2 * ox - pl;
                int8_t a = r0[ix] > r0[ix + 1] ? r0[ix] : r0[ix + 1], b = r1[ix] > r1[ix + 1] ? r1[ix] : r1[ix + 1];
                o[ox] = a > b ? a : b;
            }
            for (int ox = 0; ox < ow; ox++) {
                if (ox == lo) ox = hi;
                if (ox >= ow) break;
                int x0 = ox * sw - pl, xa = x0 < 0 ? 0 : x0, xb = x0 + kw > w ? w : x0 + kw;
                int m = -1000;
                for (int iy = ya; iy < yb; iy++)
                    for (int ix = xa; ix < xb; ix++) m = x[(int64_t)iy * w + ix] > m ? x[(int64_t)iy * w + ix] : m;
                o[ox] = m == -1000 ? empty : (int8_t)m;
            }
            continue;
        }
        for (int ox = 0; ox < ow; ox++) {
            int x0 = ox * sw - pl, xa = x0 < 0 ? 0 : x0, xb = x0 + kw > w ? w : x0 + kw;
            int m = -1000;
            for (int iy = ya; iy < yb; iy++)
                for (int ix = xa; ix < xb; ix++) m = x[(int64_t)iy * w + ix] > m ? x[(int64_t)iy * w + ix] : m;
            o[ox] = m == -1000 ? empty : (int8_t)m;
        }
    }
}

#define maxpool_s8_portable_body(x, h, w, kh, kw, sh, sw, pt, pl, out, oh, ow, empty) \
    maxpool_s8_body(x, h, w, kh, kw, sh, sw, pt, pl, out, oh, ow, empty, NULL)
DFX_MULTIVERSION(maxpool_s8_portable,
                 (const int8_t *x, int h, int w, int kh, int kw, int sh, int sw, int pt, int pl, int8_t *out, int oh,
                  int ow, int8_t empty),
                 (x, h, w, kh, kw, sh, sw, pt, pl, out, oh, ow, empty))

#define maxpool_s8_rows_body maxpool_s8_body
DFX_MULTIVERSION(maxpool_s8_rows,
                 (const int8_t *x, int h, int w, int kh, int kw, int sh, int sw, int pt, int pl, int8_t *out, int oh,
                  int ow, int8_t empty, dfx_max2x2_row_fn row2),
                 (x, h, w, kh, kw, sh, sw, pt, pl, out, oh, ow, empty, row2))

void dfx_portable_maxpool_s8_rows(const int8_t *x, int h, int w, int kh, int kw, int sh, int sw, int pt, int pl,
                                  int8_t *out, int oh, int ow, int8_t empty, dfx_max2x2_row_fn row2)
{ maxpool_s8_rows(x, h, w, kh, kw, sh, sw, pt, pl, out, oh, ow, empty, row2); }

const struct dfx_kernels dfx_kernels_portable = {
    "portable",
    gemm_s8_portable,
    dwconv_s8_portable,
    requant_s32_portable,
    relu_s8_portable,
    maxpool_s8_portable,
    NULL, /* no packed weights: the session calls gemm_s8 */
    NULL,
    NULL,
    NULL, /* no float entries: float layers run the scalar loops of ops/conv.c and ops/fc.c */
    NULL,
    NULL,
    NULL,
    NULL, /* quantize_f32: the caller's fp_quantize_row */
    NULL, /* dwconv_requant_s8, gemm_s8_packed_requant, requant_relu_s8: two steps */
    NULL,
    NULL,
};

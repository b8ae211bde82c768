/* The portable (plain C99) set of the dispatch table (dispatch.h): reference
 * style loops, register blocked so that compilers keep the accumulators in
 * registers and vectorise the inner loops. */
#include "dispatch.h"
#include "fixedpoint.h"

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

static void gemm_s8_portable(int m, int n, int k, const int8_t *a, int lda, const int8_t *b, int ldb, int32_t *c, int ldc)
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

/* Output columns [lo, hi) whose input column ox*s + base lies in [0, size). */
static void col_range(int size, int out, int s, int base, int *lo, int *hi)
{
    int a = base >= 0 ? 0 : (-base + s - 1) / s;
    int b = size - base <= 0 ? 0 : (size - base - 1) / s + 1;
    *lo = a;
    *hi = b < out ? b : out;
    if (*hi < *lo) *hi = *lo;
}

static void dwconv_s8_portable(const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int sh, int sw, int pt,
                               int pl, int dh, int dw, int32_t *out, int oh, int ow)
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

#define REQUANT_LOOP(EXPR)                                                                            \
    switch (out_bytes) {                                                                          \
    case 1: for (int i = 0; i < n; i++) { int64_t v = (int64_t)((uint64_t)(int64_t)acc[i] << lshift) + bias; int64_t r = (EXPR); \
                ((int8_t *)out)[i] = (int8_t)(r < lo ? lo : r > hi ? hi : r); } break;            \
    case 2: for (int i = 0; i < n; i++) { int64_t v = (int64_t)((uint64_t)(int64_t)acc[i] << lshift) + bias; int64_t r = (EXPR); \
                ((int16_t *)out)[i] = (int16_t)(r < lo ? lo : r > hi ? hi : r); } break;          \
    default: for (int i = 0; i < n; i++) { int64_t v = (int64_t)((uint64_t)(int64_t)acc[i] << lshift) + bias; int64_t r = (EXPR); \
                ((int32_t *)out)[i] = (int32_t)(r < lo ? lo : r > hi ? hi : r); } break;          \
    }

static void requant_s32_portable(const int32_t *acc, int n, int64_t bias, int lshift, int shift, int rounding, int bw,
                                 void *out, int out_bytes)
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

static void relu_s8_portable(const int8_t *x, int8_t *y, int n)
{
    for (int i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0;
}

const struct dfx_kernels dfx_kernels_portable = {
    "portable", gemm_s8_portable, dwconv_s8_portable, requant_s32_portable, relu_s8_portable,
};

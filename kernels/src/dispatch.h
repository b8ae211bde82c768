/* The hot inner functions of the integer kernels, behind one table so that
 * SIMD versions (NEON, dotprod) can replace the portable C ones.
 *
 * Contract of every implementation (all must be bit-exact to the portable
 * set; tests compare them on the same inputs):
 *  - no allocation, no global state, any alignment of the pointers;
 *  - int32 accumulation is exact: callers only use these functions when the
 *    accumulator bound of spec/arithmetic.md §3.3 fits 32 bits
 *    (bw_x + bw_w + ceil(log2 K) + 1 <= 31), so no sum can overflow;
 *  - sizes are > 0 unless stated.
 *
 * Selection: dfx_select_kernels() returns the best set for this CPU (the
 * portable set, unless a NEON build adds "neon"/"dotprod" or an x86-64 one
 * "avx2"), unless the environment variable DFX_KERNELS=NAME names another;
 * a set that is unknown or not available falls back to portable, and
 * dfx_kernels_name() then says so ("portable (DFX_KERNELS=neon unavailable)").
 * The choice is made once, on first use, and is the same for every session. */
#ifndef DFX_DISPATCH_H
#define DFX_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "dfx.h"

struct dfx_kernels {
    const char *name;

    /* C = A(m x k) * B(k x n), int32 accumulate, C overwritten.
     * A row-major with row stride lda (>= k): the weights of m output channels.
     * B row-major with row stride ldb (>= n): k rows of n columns (im2col
     * block, or the input itself for 1x1 stride-1 convolutions).
     * C row-major with row stride ldc (>= n). */
    void (*gemm_s8)(int m, int n, int k, const int8_t *a, int lda, const int8_t *b, int ldb, int32_t *c, int ldc);

    /* Depthwise (one channel) 2-D correlation with zero padding:
     * out[oy*ow + ox] = sum_{i<kh, j<kw} k[i*kw + j] * x[iy*w + ix],
     *   iy = oy*sh - pt + i*dh, ix = ox*sw - pl + j*dw, taps outside the h x w
     *   plane contribute 0; out (oh x ow, contiguous) overwritten. */
    void (*dwconv_s8)(const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int sh, int sw, int pt, int pl,
                      int dh, int dw, int32_t *out, int oh, int ow);

    /* Requantize a row of accumulators (spec/arithmetic.md §3.3 final step):
     * out[i] = saturate_bw(round_shift(((int64_t)acc[i] << lshift) + bias, shift, rounding))
     * with 0 <= lshift <= 31, shift in -31..62 (negative: exact left shift as
     * fp_round_shift), rounding one of RND_* (0 half away from zero, 1 half to
     * even, 2 half up, 3 floor), 2 <= bw <= 32, out_bytes 1, 2 or 4 (int8_t,
     * int16_t, int32_t elements; bw fits the type); out does not overlap acc. */
    void (*requant_s32)(const int32_t *acc, int n, int64_t bias, int lshift, int shift, int rounding, int bw, void *out,
                        int out_bytes);

    /* y[i] = max(x[i], 0) for int8 codes (ReLU without a format change). */
    void (*relu_s8)(const int8_t *x, int8_t *y, int n);

    /* Entries below were appended later; every set fills maxpool_s8 (the
     * portable function is a valid fallback). */

    /* Max pooling of one int8 plane (Caffe geometry, padding taps ignored):
     * out[oy*ow + ox] = max over i < kh, j < kw of x[iy*w + ix],
     *   iy = oy*sh - pt + i, ix = ox*sw - pl + j, taps inside the h x w plane
     *   only; a window with no tap inside gives `empty`. */
    void (*maxpool_s8)(const int8_t *x, int h, int w, int kh, int kw, int sh, int sw, int pt, int pl, int8_t *out,
                       int oh, int ow, int8_t empty);

    /* Weights packed once per session into the set's own GEMM layout. These
     * three may be NULL (the set has no packed form), and packed_a_bytes may
     * return 0 (not on this CPU); the session then calls gemm_s8.
     * b_nonneg: 1 when every B value the GEMM will see is >= 0 (the caller
     *   knows it, e.g. the layer's input is a ReLU output), which lets a set
     *   use unsigned x signed products; the same value must be passed to all
     *   three functions for one packing.
     * packed_a_bytes: bytes of m rows x k packed; for row counts that are
     *   multiples of 48 it is additive (rows [r, r + m) of a packing start at
     *   byte packed_a_bytes(r, k, b_nonneg)), so a caller may run a row block.
     * pack_a: packs A (m x k, row stride lda) into dst (packed_a_bytes bytes,
     *   any alignment).
     * gemm_s8_packed: gemm_s8 with A given packed. */
    size_t (*packed_a_bytes)(int m, int k, int b_nonneg);
    void (*pack_a)(int m, int k, const int8_t *a, int lda, void *dst, int b_nonneg);
    void (*gemm_s8_packed)(int m, int n, int k, const void *ap, const int8_t *b, int ldb, int32_t *c, int ldc,
                           int b_nonneg);

    /* Float32 Conv2D and FullyConnected (layers in float form). Float results
     * are not bit-exact: they keep the tolerance of spec/arithmetic.md §3.1
     * against the scalar loops of ops/conv.c and ops/fc.c (the reference),
     * which run when these are NULL or packed_f32_bytes returns 0.
     * packed_f32_bytes: bytes of m x k weights packed (0: not on this CPU).
     * pack_f32: packs A (m x k, row stride lda) into dst (packed_f32_bytes
     *   bytes, float aligned).
     * gemm_f32_packed: C = A * B + bias[row] (bias NULL: no bias), A packed,
     *   B k x n with row stride ldb, C m x n with row stride ldc overwritten;
     *   work: DFX_F32_WORK(n, k) floats of scratch.
     * dwconv_f32: dwconv_s8's geometry on float32, out = bias + the sum. */
    size_t (*packed_f32_bytes)(int m, int k);
    void (*pack_f32)(int m, int k, const float *a, int lda, void *dst);
    void (*gemm_f32_packed)(int m, int n, int k, const void *ap, const float *b, int ldb, float *c, int ldc,
                            const float *bias, float *work);
    void (*dwconv_f32)(const float *x, int h, int w, const float *k, int kh, int kw, int sh, int sw, int pt, int pl,
                       int dh, int dw, float bias, float *out, int oh, int ow);

    /* Entries appended for issue 15; NULL: the caller runs its own C. */

    /* Quantize float32 values (fp_quantize_row of fixedpoint.h, bit-exact):
     * out[i] = saturate_bw(round(x[i] * 2^fl)) with rounding one of RND_*,
     * NaN -> 0; |fl| <= 800, 2 <= bw <= 32, out_bytes 1, 2 or 4. */
    void (*quantize_f32)(const float *x, int64_t n, int fl, int bw, int rounding, void *out, int out_bytes);

    /* Requantization fused into the kernel (issues 14 and 15); NULL, or a return of 0 (nothing written to
     * out): the caller runs the two steps itself. Both give int8 outputs, bit-exact to the two steps.
     * dwconv_requant_s8: dwconv_s8 of one plane, then requant_s32 of every output with (bias, lshift,
     *   shift, rounding, bw) into out (oh x ow int8_t, contiguous), then, when relu != 0, relu_s8 of those
     *   codes; work: oh * ow int32 of scratch (any content on entry, undefined after).
     * gemm_s8_packed_requant: gemm_s8_packed, then requant_s32 of row i of C with (bias[i], lshift[i],
     *   shift[i], rounding, bw) into out[i * ldo + j], j < n (int8_t), then, when relu != 0, relu_s8 of
     *   those codes (max(0, code)). */
    int (*dwconv_requant_s8)(const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int sh, int sw, int pt,
                             int pl, int dh, int dw, int64_t bias, int lshift, int shift, int rounding, int bw,
                             int relu, int8_t *out, int oh, int ow, int32_t *work);
    int (*gemm_s8_packed_requant)(int m, int n, int k, const void *ap, const int8_t *b, int ldb, int b_nonneg,
                                  const int64_t *bias, const int8_t *lshift, const int16_t *shift, int rounding, int bw,
                                  int relu, int8_t *out, int ldo);

    /* Appended for issue 14. requant_relu_s8: requant_s32 into int8 codes, then relu_s8 of them, in one pass
     * (out[i] = max(0, the requantized acc[i])), bit-exact to the two steps; NULL, or a return of 0 (nothing
     * written): the caller runs the two. */
    int (*requant_relu_s8)(const int32_t *acc, int n, int64_t bias, int lshift, int shift, int rounding, int bw,
                           int8_t *out);
};

/* Scratch floats of gemm_f32_packed for n columns and reduction length k. */
#define DFX_F32_WORK(n, k) (((size_t)(n) + 15) / 16 * 16 * (size_t)((k) < 256 ? (k) : 256))

extern const struct dfx_kernels dfx_kernels_portable;

/* The selected set (see above). Thread-safe after the first call returns;
 * dfx_session_create calls it. */
const struct dfx_kernels *dfx_select_kernels(void);

/* The set called `name` (NULL or "": dfx_select_kernels()); DFX_ERR_ARGUMENT
 * for an unknown name, DFX_ERR_UNSUPPORTED for a set this build or CPU lacks. */
dfx_status dfx_find_kernels(const char *name, const struct dfx_kernels **out);

#endif

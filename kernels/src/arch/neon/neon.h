/* NEON (AArch64 Advanced SIMD) kernels of the dispatch table (../dispatch.h).
 *
 * Two sets: "neon" runs on every ARMv8.0-A core (Cortex-A53/A72: Raspberry
 * Pi 3, 4, Zero 2), "dotprod" adds the ARMv8.2 SDOT instruction (Cortex-A76:
 * Raspberry Pi 5) and is chosen only when the kernel reports the feature
 * (getauxval(AT_HWCAP) & HWCAP_ASIMDDP). Every function is bit-exact to the
 * portable set; tests/test_neon.c checks that under qemu.
 *
 * Compiled only for AArch64 (cmake/simd.cmake); gemm_dot.c alone is compiled
 * with -march=armv8.2-a+dotprod. */
#ifndef DFX_NEON_H
#define DFX_NEON_H

#include <stddef.h>
#include <stdint.h>

#include "../../dispatch.h"

extern const struct dfx_kernels dfx_kernels_neon;
extern const struct dfx_kernels dfx_kernels_dotprod;

/* 1 when the CPU executes SDOT (Linux: HWCAP_ASIMDDP). */
int dfx_neon_has_dotprod(void);

/* GEMM driver (gemm.c): packs A and B into 8-row / 8-column panels of
 * 4-deep k groups (32 bytes per group) on the stack and calls a micro-kernel
 * per 8x8 tile of C. */
#define DFX_GEMM_MR 8
#define DFX_GEMM_NR 8
/* C tile (mr x nr valid of 8 x 8) = (accumulate ? C : 0) + Ap * Bp over kg groups of 4. */
typedef void (*dfx_gemm_tile_fn)(int kg, const int8_t *ap, const int8_t *bp, int32_t *c, int ldc, int mr, int nr,
                                 int accumulate);
/* c[i * ldc] = sum_p a[i * lda + p] * x[p], for i < m (x contiguous, k values). */
typedef void (*dfx_gemv_fn)(int m, int k, const int8_t *a, int lda, const int8_t *x, int32_t *c, int ldc,
                            int accumulate);

void dfx_neon_gemm_driver(int m, int n, int k, const int8_t *a, int lda, const int8_t *b, int ldb, int32_t *c, int ldc,
                          dfx_gemm_tile_fn tile, dfx_gemv_fn gemv);
void dfx_neon_tile_v80(int kg, const int8_t *ap, const int8_t *bp, int32_t *c, int ldc, int mr, int nr, int accumulate);
void dfx_neon_gemv_v80(int m, int k, const int8_t *a, int lda, const int8_t *x, int32_t *c, int ldc, int accumulate);
void dfx_neon_tile_dot(int kg, const int8_t *ap, const int8_t *bp, int32_t *c, int ldc, int mr, int nr, int accumulate);
void dfx_neon_gemv_dot(int m, int k, const int8_t *a, int lda, const int8_t *x, int32_t *c, int ldc, int accumulate);

void dfx_neon_gemm_s8(int m, int n, int k, const int8_t *a, int lda, const int8_t *b, int ldb, int32_t *c, int ldc);
/* ARMv8.0 GEMM over 16-deep k chunks (SMULL + SMLAL2 + SADALP; gemm.c) */
void dfx_neon_gemm_s8_k16(int m, int n, int k, const int8_t *a, int lda, const int8_t *b, int ldb, int32_t *c, int ldc);
/* A rows [0, m) x k -> panels of `rows` rows: [panel][group of `depth` k][rows][depth], zero padded (gemm.c). */
void dfx_neon_pack_panels(int m, int k, const int8_t *a, int lda, int8_t *dst, int rows, int depth);
/* Packed weights (dispatch.h): 4-row panels of 16-deep chunks, SMULL/SMLAL2/SADALP kernels (gemm.c). */
size_t dfx_neon_packed_a_bytes(int m, int k, int b_nonneg);
void dfx_neon_pack_a(int m, int k, const int8_t *a, int lda, void *dst, int b_nonneg);
void dfx_neon_gemm_s8_packed(int m, int n, int k, const void *ap, const int8_t *b, int ldb, int32_t *c, int ldc,
                             int b_nonneg);
/* Packed weights of the dotprod set: 8-row panels of 4-deep groups, SDOT 8 x 8 kernel (gemm_dot.c). */
size_t dfx_dot_packed_a_bytes(int m, int k, int b_nonneg);
void dfx_dot_pack_a(int m, int k, const int8_t *a, int lda, void *dst, int b_nonneg);
void dfx_dot_gemm_s8_packed(int m, int n, int k, const void *ap, const int8_t *b, int ldb, int32_t *c, int ldc,
                            int b_nonneg);
/* Rows [iy0, iy0 + rows) of the h x w plane x into buf (row stride wp >= pl + w, 16 bytes of slack after the
 * last row) as pl zeros, the row, zeros up to wp; rows outside the plane all zeros (dwconv.c). */
void dfx_neon_pad_rows(const int8_t *x, int h, int w, int iy0, int rows, int pl, int wp, int8_t *buf);
/* Requantization fused into the kernel, dotprod set (gemm_dot.c; dispatch.h dwconv_requant_s8 and
 * gemm_s8_packed_requant): the 3 x 3 depthwise convolution (stride 1 or 2) and the packed GEMM. */
int dfx_dot_dwconv_requant_s8(const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int sh, int sw, int pt,
                              int pl, int dh, int dw, int64_t bias, int lshift, int shift, int rounding, int bw,
                              int relu, int8_t *out, int oh, int ow, int32_t *work);
int dfx_dot_gemm_s8_packed_requant(int m, int n, int k, const void *ap, const int8_t *b, int ldb, int b_nonneg,
                                   const int64_t *bias, const int8_t *lshift, const int16_t *shift, int rounding,
                                   int bw, int relu, int8_t *out, int ldo);
void dfx_neon_gemm_s8_dot(int m, int n, int k, const int8_t *a, int lda, const int8_t *b, int ldb, int32_t *c, int ldc);
void dfx_neon_dwconv_s8(const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int sh, int sw, int pt, int pl,
                        int dh, int dw, int32_t *out, int oh, int ow);
void dfx_neon_requant_s32(const int32_t *acc, int n, int64_t bias, int lshift, int shift, int rounding, int bw,
                          void *out, int out_bytes);
void dfx_neon_relu_s8(const int8_t *x, int8_t *y, int n);
void dfx_neon_maxpool_s8(const int8_t *x, int h, int w, int kh, int kw, int sh, int sw, int pt, int pl, int8_t *out,
                         int oh, int ow, int8_t empty);

void dfx_neon_quantize_f32(const float *x, int64_t n, int fl, int bw, int rounding, void *out, int out_bytes);

/* Building blocks (misc.c); the maxpool row is used by dfx_neon_maxpool_s8. */
/* y[i] = max over the r rows rows[t][i * stride] (stride 1 or 2), int8 codes. */
void dfx_neon_maxpool_row_s8(const int8_t *const *rows, int r, int stride, int8_t *y, int n);
/* acc[i] += sum over the r rows rows[t][i * stride] (stride 1 or 2). */
void dfx_neon_sumpool_row_s8(const int8_t *const *rows, int r, int stride, int32_t *acc, int n);
/* y[i] = saturate_bw(round_shift((a[i] << la) + (b[i] << lb), shift, rounding)): eltwise SUM of two
 * aligned int8 rows, 0 <= la, lb <= 24, shift in 0..31, 2 <= bw <= 8. */
void dfx_neon_add_s8(const int8_t *a, int la, const int8_t *b, int lb, int shift, int rounding, int bw, int8_t *y,
                     int n);

#endif

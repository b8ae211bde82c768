/* ARMv7 NEON kernels of the dispatch table (../../dispatch.h) for 32-bit ARM
 * (armhf: Raspberry Pi 2 and later on a 32-bit OS).
 *
 * The set is called "neon", like the AArch64 one (arch/neon), and is chosen at
 * run time only when the kernel reports NEON (getauxval(AT_HWCAP) &
 * HWCAP_NEON), so one armhf library built for the ARMv6 baseline runs the
 * portable kernels on ARMv6 (Pi 1, Zero) and these from the Pi 2 on. Only the
 * files of DFX_NEON32_SIMD_SOURCES (cmake/sources.cmake) are compiled with
 * DFX_NEON32_FLAGS (-mfpu=neon); select.c, which holds the check and the
 * table, is not. Every function is bit-exact to the portable set
 * (tests/test_neon32.c checks that under qemu-arm). */
#ifndef DFX_NEON32_H
#define DFX_NEON32_H

#include <stddef.h>
#include <stdint.h>

#include "../../dispatch.h"

extern const struct dfx_kernels dfx_kernels_neon32;

/* 1 when the CPU executes NEON (Linux: HWCAP_NEON). */
int dfx_neon32_available(void);

/* GEMM (gemm.c). A is packed into 4-row panels of 16-deep k chunks (a 16-byte
 * header, then [chunk][4 rows][16 k], zero padded), B per call into 8-column
 * panels ([chunk][8 columns][16 k]); a 4 x 2 micro-kernel multiplies them with
 * VMULL.S8 + VMLAL.S8 (two products per int16 lane) + VPADAL.S16. */
void dfx_neon32_gemm_s8(int m, int n, int k, const int8_t *a, int lda, const int8_t *b, int ldb, int32_t *c, int ldc);
size_t dfx_neon32_packed_a_bytes(int m, int k, int b_nonneg);
void dfx_neon32_pack_a(int m, int k, const int8_t *a, int lda, void *dst, int b_nonneg);
void dfx_neon32_gemm_s8_packed(int m, int n, int k, const void *ap, const int8_t *b, int ldb, int32_t *c, int ldc,
                               int b_nonneg);

/* depthwise convolution (dwconv.c) */
void dfx_neon32_dwconv_s8(const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int sh, int sw, int pt,
                          int pl, int dh, int dw, int32_t *out, int oh, int ow);

/* requantization, ReLU and max pooling (misc.c) */
void dfx_neon32_requant_s32(const int32_t *acc, int n, int64_t bias, int lshift, int shift, int rounding, int bw,
                            void *out, int out_bytes);
void dfx_neon32_relu_s8(const int8_t *x, int8_t *y, int n);
void dfx_neon32_maxpool_s8(const int8_t *x, int h, int w, int kh, int kw, int sh, int sw, int pt, int pl, int8_t *out,
                           int oh, int ow, int8_t empty);

#endif

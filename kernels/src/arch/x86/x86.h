/* Run-time selected x86-64 kernel sets (arch/x86/set.c) and their AVX2 code
 * (arch/x86/x86.c, dwconv.c, float.c). DFX_X86_SIMD is 1 on x86-64 with GCC or Clang
 * (target attributes, __builtin_cpu_supports), unless -DDFX_NO_X86_SIMD;
 * the default code paths stay plain C for the baseline ISA. */
#ifndef DFX_K_X86_H
#define DFX_K_X86_H

#include <stddef.h>
#include <stdint.h>

#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__) && !defined(DFX_NO_X86_SIMD)
#define DFX_X86_SIMD 1
struct dfx_kernels;
/* The x86 kernel sets (set.c), best first, as dispatch.c lists them; DFX_X86_SETS is that list's items
 * (each followed by a comma) and dfx_x86_sets the same, NULL terminated. */
extern const struct dfx_kernels dfx_kernels_avx512vnni, dfx_kernels_avxvnni, dfx_kernels_avx2,
    dfx_kernels_avxvnni_emulated;
#define DFX_X86_SETS &dfx_kernels_avx512vnni, &dfx_kernels_avxvnni, &dfx_kernels_avx2, &dfx_kernels_avxvnni_emulated,
extern const struct dfx_kernels *const dfx_x86_sets[];
/* 1 when this CPU (CPUID) and OS (XGETBV) can run the x86 set k */
int dfx_x86_usable(const struct dfx_kernels *k);
/* the first usable set of dfx_x86_sets, else the portable set (what compiled models call) */
const struct dfx_kernels *dfx_x86_best(void);
/* CPU features (bits) of the sets: dfx_x86_has(bits) is 1 when CPUID and XCR0 report all of them */
#define DFX_X86_AVX2 1u
#define DFX_X86_FMA 2u
#define DFX_X86_AVXVNNI 4u    /* CPUID.(7,1):EAX[4] */
#define DFX_X86_AVX512VNNI 8u /* AVX512F, AVX512VL, AVX512_VNNI and the OS's ZMM and opmask state */
int dfx_x86_has(unsigned features);
/* 1 when the CPU executes AVX2 (__builtin_cpu_supports: the loops of DFX_MULTIVERSION) */
static inline int dfx_x86_avx2(void) { return __builtin_cpu_supports("avx2") ? 1 : 0; }
/* gemm_s8 of dispatch.h for AVX2 CPUs */
void dfx_x86_gemm_s8_avx2(int m, int n, int k, const int8_t *a, int lda, const int8_t *b, int ldb, int32_t *c, int ldc);
/* dwconv_s8 of dispatch.h for AVX2 CPUs (arch/x86/dwconv.c): 1 when done, 0 when the
 * geometry is not one it handles (the caller then runs the portable loop) */
int dfx_x86_dwconv_s8_avx2(const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int sh, int sw, int pt,
                           int pl, int dh, int dw, int32_t *out, int oh, int ow);
/* dwconv_requant_s8 of dispatch.h for AVX2 CPUs (arch/x86/dwconv.c): 0 when the geometry is not one that
 * dfx_x86_dwconv_s8_avx2 handles or the requantization not one in its int32 form for int8 */
int dfx_x86_dwconv_rq_s8_avx2(const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int sh, int sw, int pt,
                              int pl, int dh, int dw, int oh, int ow, int64_t bias, int lshift, int shift, int rounding,
                              int bw, int relu, int8_t *out, int32_t *work);
/* the packed-weights entries of dispatch.h for AVX2 CPUs (6-row panels: int16 pairs, or int8 quads when
 * b_nonneg) */
size_t dfx_x86_packed_a_bytes(int m, int k, int b_nonneg);
void dfx_x86_pack_a(int m, int k, const int8_t *a, int lda, void *dst, int b_nonneg);
void dfx_x86_gemm_s8_packed(int m, int n, int k, const void *ap, const int8_t *b, int ldb, int32_t *c, int ldc,
                            int b_nonneg);
/* A 4 x 16 tile of the B >= 0 GEMM: C rows [0, mr) x columns [0, nr) (row stride ldc) = kq quads of the A
 * panel ap ([quad][4 rows][4] int8) times the B panel bp ([quad][16 columns][4] unsigned bytes); acc: add to
 * C instead of overwriting it; safe: the panel's pair_safe flag (x86.c), which a tile may ignore. */
typedef void (*dfx_x86_tile_u8)(int kq, const int8_t *ap, const int8_t *bp, int32_t *c, int ldc, int mr, int nr,
                                int acc, int safe);
/* gemm_s8_packed on A packed as quads (dfx_x86_pack_a(..., 1) or dfx_x86_pack_quads) with each tile computed
 * by `tile`; flip = 0: B >= 0; flip = 1: any B, offset by 128 (exact only with tiles without an int16 limit:
 * the VNNI ones) */
void dfx_x86_gemm_u8_packed(int m, int n, int k, const void *ap, const int8_t *b, int ldb, int32_t *c, int ldc,
                            dfx_x86_tile_u8 tile, int flip);
/* packed_a_bytes and pack_a of dispatch.h that pack quads whatever b_nonneg (the VNNI sets) */
size_t dfx_x86_packed_quads_bytes(int m, int k, int b_nonneg);
void dfx_x86_pack_quads(int m, int k, const int8_t *a, int lda, void *dst, int b_nonneg);
/* gemm_s8_packed_requant of dispatch.h on A packed as quads for k <= 512, with each tile computed by `tile`
 * and requantized from it (flip as dfx_x86_gemm_u8_packed); relu: max(0, .) of the int8 codes; returns 0
 * (nothing written) outside that case or requant_s32's int32 form */
int dfx_x86_gemm_u8_packed_rq(int m, int n, int k, const void *ap, const int8_t *b, int ldb, const int64_t *bias,
                              const int8_t *lshift, const int16_t *shift, int rounding, int bw, int relu, int8_t *out,
                              int ldo, dfx_x86_tile_u8 tile, int flip);
/* gemm_s8_packed_requant of dispatch.h for AVX2 CPUs: the above with the avx2 tile (0 when b_nonneg is 0) */
int dfx_x86_gemm_s8_packed_rq(int m, int n, int k, const void *ap, const int8_t *b, int ldb, int b_nonneg,
                              const int64_t *bias, const int8_t *lshift, const int16_t *shift, int rounding, int bw,
                              int relu, int8_t *out, int ldo);
/* the tiles and 3 x 3 depthwise convolutions of the VNNI sets (vnni.c): VPDPBUSD in its AVX-VNNI and
 * AVX512-VNNI (256-bit) forms, and its exact AVX2 emulation; DFX_X86_VNNI is 1 when the compiler knows the
 * instruction (GCC 11, Clang 12 and later), else the two real forms are not built and their sets are never
 * usable */
#if (defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && __GNUC__ >= 11)
#define DFX_X86_VNNI 1
#else
#define DFX_X86_VNNI 0
#define dfx_x86_tile_avxvnni dfx_x86_tile_vnni_emulated
#define dfx_x86_tile_avx512vnni dfx_x86_tile_vnni_emulated
#define dfx_x86_dw3x3_avxvnni dfx_x86_dw3x3_vnni_emulated
#define dfx_x86_dw3x3_avx512vnni dfx_x86_dw3x3_vnni_emulated
#endif
void dfx_x86_tile_avxvnni(int kq, const int8_t *ap, const int8_t *bp, int32_t *c, int ldc, int mr, int nr, int acc,
                          int safe);
void dfx_x86_tile_avx512vnni(int kq, const int8_t *ap, const int8_t *bp, int32_t *c, int ldc, int mr, int nr, int acc,
                             int safe);
void dfx_x86_tile_vnni_emulated(int kq, const int8_t *ap, const int8_t *bp, int32_t *c, int ldc, int mr, int nr,
                                int acc, int safe);
/* dwconv_s8 of dispatch.h for a 3 x 3 kernel, stride s (1 or 2) both ways, dilation 1 (vnni_dw.h); returns 0
 * (nothing written) for other cases */
typedef int (*dfx_x86_dw3x3)(const int8_t *x, int h, int w, const int8_t *k, int s, int pt, int pl, int32_t *out,
                             int oh, int ow);
int dfx_x86_dw3x3_avxvnni(const int8_t *x, int h, int w, const int8_t *k, int s, int pt, int pl, int32_t *out, int oh,
                          int ow);
int dfx_x86_dw3x3_avx512vnni(const int8_t *x, int h, int w, const int8_t *k, int s, int pt, int pl, int32_t *out,
                             int oh, int ow);
int dfx_x86_dw3x3_vnni_emulated(const int8_t *x, int h, int w, const int8_t *k, int s, int pt, int pl, int32_t *out,
                                int oh, int ow);
/* requant_s32 of dispatch.h for int8 outputs in its int32 form (arch/portable/portable.c requant_body's conditions);
 * relu: then max(0, code), as requant_relu_s8 */
void dfx_x86_requant_s8_avx2(const int32_t *acc, int n, int32_t bias, int lshift, int shift, int rounding, int bw,
                             int relu, int8_t *out);
/* 2 x 2, stride 2 max pooling of rows r0 and r1 (avail bytes readable in each): o[t] = max of r0[2t],
 * r0[2t + 1], r1[2t], r1[2t + 1] for t < n, 16, 8 (the last 8 again) or 4 at a time as far as the rows allow; returns
 * how many outputs it wrote (the caller does the rest) */
int dfx_x86_max2x2_row(const int8_t *r0, const int8_t *r1, int avail, int8_t *o, int n);
/* relu_s8 of dispatch.h for AVX2 CPUs (y == x allowed) */
void dfx_x86_relu_s8(const int8_t *x, int8_t *y, int n);
/* quantize_f32 of dispatch.h for AVX2 CPUs */
void dfx_x86_quantize_f32(const float *x, int64_t n, int fl, int bw, int rounding, void *out, int out_bytes);
/* the float entries of dispatch.h for CPUs with AVX2 and FMA (arch/x86/float.c; packed_f32_bytes is 0 on
 * other CPUs) */
int dfx_x86_fma(void);
size_t dfx_x86_packed_f32_bytes(int m, int k);
void dfx_x86_pack_f32(int m, int k, const float *a, int lda, void *dst);
void dfx_x86_gemm_f32_packed(int m, int n, int k, const void *ap, const float *b, int ldb, float *c, int ldc,
                             const float *bias, float *work);
void dfx_x86_dwconv_f32(const float *x, int h, int w, const float *k, int kh, int kw, int sh, int sw, int pt, int pl,
                        int dh, int dw, float bias, float *out, int oh, int ow);
/* Two versions of a static function from one always-inline body NAME##_body:
 * NAME##_avx2 (compiled for AVX2) and NAME##_base, and NAME choosing at run time. */
#define DFX_MULTIVERSION(NAME, PARAMS, ARGS)                                             \
    __attribute__((target("avx2"))) static void NAME##_avx2 PARAMS { NAME##_body ARGS; } \
    static void NAME##_base PARAMS { NAME##_body ARGS; }                                 \
    static void NAME PARAMS                                                              \
    {                                                                                    \
        if (dfx_x86_avx2()) NAME##_avx2 ARGS;                                            \
        else NAME##_base ARGS;                                                           \
    }
#else
#define DFX_X86_SIMD 0
#define DFX_MULTIVERSION(NAME, PARAMS, ARGS) \
    static void NAME PARAMS { NAME##_body ARGS; }
#endif

#if defined(__GNUC__)
#define DFX_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define DFX_ALWAYS_INLINE inline
#endif

/* GCC if-converts (and so vectorises) loops with float selects only without trapping math (clang's
 * default): for functions whose loops are written branch-free for that (ops/fexp.h, ops/detection.c) */
#if defined(__GNUC__) && !defined(__clang__)
#define DFX_NO_TRAPPING_MATH __attribute__((optimize("no-trapping-math")))
#else
#define DFX_NO_TRAPPING_MATH
#endif

#endif

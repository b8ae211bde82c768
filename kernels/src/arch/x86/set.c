/* The x86-64 kernel sets (x86.h): "avx2", the AVX2 code of x86.c, dwconv.c and float.c, with the
 * portable set's functions wherever an AVX2 function declines a case, usable when CPUID and the OS's
 * XSAVE state (XGETBV) say AVX2 (the float entries also need FMA: float.c checks it); and the VNNI sets,
 * the same with VPDPBUSD tiles in the GEMM after a ReLU (vnni.c): "avx512vnni" and "avxvnni" where the CPU
 * has the instruction, "avxvnni-emulated" (its exact AVX2 emulation) on any AVX2 CPU, for testing. */
#include "x86.h"

#include "../portable/portable.h"

#if DFX_X86_SIMD
#include <cpuid.h>

/* The features of the x86 sets (DFX_X86_*), from CPUID and XCR0, read once. */
static unsigned cpu_features(void)
{
    static volatile int known;
    static volatile unsigned features;
    if (known) return features;
    unsigned a, b, c, d, f = 0;
    if (__get_cpuid(1, &a, &b, &c, &d) && (c & bit_OSXSAVE)) {
        unsigned lo, hi;
        __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        int ymm = (lo & 0x6) == 0x6; /* the OS saves XMM and YMM state */
        int fma = (c & bit_FMA) != 0;
        int zmm = (lo & 0xE6) == 0xE6; /* and opmask, ZMM_Hi256, Hi16_ZMM state */
        if (ymm && __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_AVX2)) {
            f |= DFX_X86_AVX2 | (fma ? DFX_X86_FMA : 0);
            if (zmm && (b & (1u << 16)) && (b & (1u << 31)) && (c & (1u << 11))) f |= DFX_X86_AVX512VNNI;
            if (a >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4))) f |= DFX_X86_AVXVNNI;
        }
    }
    features = f;
    known = 1;
    return f;
}

int dfx_x86_has(unsigned features) { return (cpu_features() & features) == features; }

static void gemm_s8_avx2(int m, int n, int k, const int8_t *a, int lda, const int8_t *b, int ldb, int32_t *c, int ldc)
{ dfx_x86_gemm_s8_avx2(m, n, k, a, lda, b, ldb, c, ldc); }

static void dwconv_s8_avx2(const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int sh, int sw, int pt,
                           int pl, int dh, int dw, int32_t *out, int oh, int ow)
{
    if (!dfx_x86_dwconv_s8_avx2(x, h, w, k, kh, kw, sh, sw, pt, pl, dh, dw, out, oh, ow))
        dfx_kernels_portable.dwconv_s8(x, h, w, k, kh, kw, sh, sw, pt, pl, dh, dw, out, oh, ow);
}

static void requant_s32_avx2(const int32_t *acc, int n, int64_t bias, int lshift, int shift, int rounding, int bw,
                             void *out, int out_bytes)
{
    if (out_bytes == 1 && dfx_requant_int32_form(bias, lshift, shift, bw))
        dfx_x86_requant_s8_avx2(acc, n, (int32_t)bias, lshift, shift, rounding, bw, 0, (int8_t *)out);
    else dfx_kernels_portable.requant_s32(acc, n, bias, lshift, shift, rounding, bw, out, out_bytes);
}

static int requant_relu_s8_avx2(const int32_t *acc, int n, int64_t bias, int lshift, int shift, int rounding, int bw,
                                int8_t *out)
{
    if (!dfx_requant_int32_form(bias, lshift, shift, bw)) return 0;
    dfx_x86_requant_s8_avx2(acc, n, (int32_t)bias, lshift, shift, rounding, bw, 1, out);
    return 1;
}

static void maxpool_s8_avx2(const int8_t *x, int h, int w, int kh, int kw, int sh, int sw, int pt, int pl, int8_t *out,
                            int oh, int ow, int8_t empty)
{ dfx_portable_maxpool_s8_rows(x, h, w, kh, kw, sh, sw, pt, pl, out, oh, ow, empty, dfx_x86_max2x2_row); }

static int dwconv_rq_s8_avx2(const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int sh, int sw, int pt,
                             int pl, int dh, int dw, int64_t bias, int lshift, int shift, int rounding, int bw,
                             int relu, int8_t *out, int oh, int ow, int32_t *work)
{
    return dfx_x86_dwconv_rq_s8_avx2(x, h, w, k, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, bias, lshift, shift, rounding,
                                     bw, relu, out, work);
}

/* The table of an x86 set whose weights are packed by PACK_BYTES, PACK for the GEMM GEMM_PACKED (GEMM_RQ with
 * requantization), with depthwise convolutions DW, DW_RQ (the rest: the avx2 set's). */
#define X86_SET(NAME, PACK_BYTES, PACK, GEMM_PACKED, GEMM_RQ, DW, DW_RQ) \
    {NAME,                                                               \
     gemm_s8_avx2,                                                       \
     DW,                                                                 \
     requant_s32_avx2,                                                   \
     dfx_x86_relu_s8,                                                    \
     maxpool_s8_avx2,                                                    \
     PACK_BYTES,                                                         \
     PACK,                                                               \
     GEMM_PACKED,                                                        \
     dfx_x86_packed_f32_bytes,                                           \
     dfx_x86_pack_f32,                                                   \
     dfx_x86_gemm_f32_packed,                                            \
     dfx_x86_dwconv_f32,                                                 \
     dfx_x86_quantize_f32,                                               \
     DW_RQ,                                                              \
     GEMM_RQ,                                                            \
     requant_relu_s8_avx2}

/* avx2: the float entries return 0 from packed_f32_bytes without FMA (the scalar loops then run) */
const struct dfx_kernels dfx_kernels_avx2 =
    X86_SET("avx2", dfx_x86_packed_a_bytes, dfx_x86_pack_a, dfx_x86_gemm_s8_packed, dfx_x86_gemm_s8_packed_rq,
            dwconv_s8_avx2, dwconv_rq_s8_avx2);

/* The VNNI sets: the avx2 set with the GEMM's tiles on VPDPBUSD (vnni.c) on weights packed as quads for
 * every input (a B that may be negative is offset by 128: x86.c's flip), and the 3 x 3 depthwise convolution
 * on VPDPBUSD. */
#define VNNI_GEMM(NAME, TILE)                                                                                        \
    static void NAME(int m, int n, int k, const void *ap, const int8_t *b, int ldb, int32_t *c, int ldc, int nonneg) \
    { dfx_x86_gemm_u8_packed(m, n, k, ap, b, ldb, c, ldc, TILE, !nonneg); }
#define VNNI_GEMM_RQ(NAME, TILE)                                                                                       \
    static int NAME(int m, int n, int k, const void *ap, const int8_t *b, int ldb, int nonneg, const int64_t *bias,    \
                    const int8_t *lshift, const int16_t *shift, int rounding, int bw, int relu, int8_t *out, int ldo)  \
    {                                                                                                                  \
        return dfx_x86_gemm_u8_packed_rq(m, n, k, ap, b, ldb, bias, lshift, shift, rounding, bw, relu, out, ldo, TILE, \
                                         !nonneg);                                                                     \
    }
#define VNNI_SET(NAME, GEMM, GEMM_RQ, DW, DW_RQ) \
    X86_SET(NAME, dfx_x86_packed_quads_bytes, dfx_x86_pack_quads, GEMM, GEMM_RQ, DW, DW_RQ)
/* The VNNI sets' depthwise convolutions: 3 x 3 with equal strides 1 or 2 and dilation 1 on VPDPBUSD (DW3),
 * the rest the avx2 set's; requantized (int32 form) over the plane's sums in work. */
#define VNNI_DW(NAME, DW3)                                                                                            \
    static int NAME##_3x3(const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int sh, int sw, int pt,     \
                          int pl, int dh, int dw, int32_t *out, int oh, int ow)                                       \
    { return kh == 3 && kw == 3 && sh == sw && dh == 1 && dw == 1 && DW3(x, h, w, k, sw, pt, pl, out, oh, ow); }      \
    static void NAME(const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int sh, int sw, int pt, int pl,  \
                     int dh, int dw, int32_t *out, int oh, int ow)                                                    \
    {                                                                                                                 \
        if (!NAME##_3x3(x, h, w, k, kh, kw, sh, sw, pt, pl, dh, dw, out, oh, ow))                                     \
            dwconv_s8_avx2(x, h, w, k, kh, kw, sh, sw, pt, pl, dh, dw, out, oh, ow);                                  \
    }                                                                                                                 \
    static int NAME##_rq(const int8_t *x, int h, int w, const int8_t *k, int kh, int kw, int sh, int sw, int pt,      \
                         int pl, int dh, int dw, int64_t bias, int lshift, int shift, int rounding, int bw, int relu, \
                         int8_t *out, int oh, int ow, int32_t *work)                                                  \
    {                                                                                                                 \
        if (bw >= 2 && bw <= 8 && dfx_requant_int32_form(bias, lshift, shift, bw) &&                                  \
            NAME##_3x3(x, h, w, k, kh, kw, sh, sw, pt, pl, dh, dw, work, oh, ow)) {                                   \
            dfx_x86_requant_s8_avx2(work, oh * ow, (int32_t)bias, lshift, shift, rounding, bw, relu, out);            \
            return 1;                                                                                                 \
        }                                                                                                             \
        return dwconv_rq_s8_avx2(x, h, w, k, kh, kw, sh, sw, pt, pl, dh, dw, bias, lshift, shift, rounding, bw, relu, \
                                 out, oh, ow, work);                                                                  \
    }
VNNI_DW(dwconv_avx512vnni, dfx_x86_dw3x3_avx512vnni)
VNNI_DW(dwconv_avxvnni, dfx_x86_dw3x3_avxvnni)
VNNI_DW(dwconv_vnni_emulated, dfx_x86_dw3x3_vnni_emulated)
VNNI_GEMM(gemm_packed_avx512vnni, dfx_x86_tile_avx512vnni)
VNNI_GEMM(gemm_packed_avxvnni, dfx_x86_tile_avxvnni)
VNNI_GEMM(gemm_packed_vnni_emulated, dfx_x86_tile_vnni_emulated)
VNNI_GEMM_RQ(gemm_rq_avx512vnni, dfx_x86_tile_avx512vnni)
VNNI_GEMM_RQ(gemm_rq_avxvnni, dfx_x86_tile_avxvnni)
VNNI_GEMM_RQ(gemm_rq_vnni_emulated, dfx_x86_tile_vnni_emulated)
const struct dfx_kernels dfx_kernels_avx512vnni =
    VNNI_SET("avx512vnni", gemm_packed_avx512vnni, gemm_rq_avx512vnni, dwconv_avx512vnni, dwconv_avx512vnni_rq);
const struct dfx_kernels dfx_kernels_avxvnni =
    VNNI_SET("avxvnni", gemm_packed_avxvnni, gemm_rq_avxvnni, dwconv_avxvnni, dwconv_avxvnni_rq);
/* for conformance tests of the VNNI code on CPUs without VNNI (slower than avx2; never chosen by itself) */
const struct dfx_kernels dfx_kernels_avxvnni_emulated =
    VNNI_SET("avxvnni-emulated", gemm_packed_vnni_emulated, gemm_rq_vnni_emulated, dwconv_vnni_emulated,
             dwconv_vnni_emulated_rq);

const struct dfx_kernels *const dfx_x86_sets[] = {DFX_X86_SETS NULL};

int dfx_x86_usable(const struct dfx_kernels *k)
{
    if (k == &dfx_kernels_avx2 || k == &dfx_kernels_avxvnni_emulated) return dfx_x86_has(DFX_X86_AVX2);
    if (k == &dfx_kernels_avxvnni) return DFX_X86_VNNI && dfx_x86_has(DFX_X86_AVX2 | DFX_X86_AVXVNNI);
    if (k == &dfx_kernels_avx512vnni) return DFX_X86_VNNI && dfx_x86_has(DFX_X86_AVX2 | DFX_X86_AVX512VNNI);
    return 0;
}

const struct dfx_kernels *dfx_x86_best(void)
{
    for (int i = 0; dfx_x86_sets[i]; i++)
        if (dfx_x86_usable(dfx_x86_sets[i])) return dfx_x86_sets[i];
    return &dfx_kernels_portable;
}
#endif

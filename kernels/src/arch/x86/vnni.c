/* The VNNI code of the x86 sets "avx512vnni", "avxvnni" and "avxvnni-emulated" (set.c): the GEMM tiles on
 * unsigned B (activations after a ReLU, or any activations offset by 128: x86.c's flip; the weights packed as
 * int8 quads: x86.c's pack_a_u8) with one VPDPBUSD per 32 products instead of VPMADDUBSW + VPMADDWD + VPADDD,
 * and no int16 saturation limit; and
 * the 3 x 3 depthwise convolution on codes offset to unsigned bytes (vnni_dw.h). One body each, three forms
 * of the instruction:
 *  - AVX-VNNI (VEX, CPUID.(EAX=7,ECX=1):EAX[4]) and AVX512-VNNI with AVX512VL (EVEX, 256-bit registers);
 *  - an exact AVX2 emulation, for testing the VNNI code on any AVX2 CPU (slower than the avx2 set): the
 *    even and odd bytes of each 16-bit lane widened to int16 (B zero-extended, A sign-extended), two
 *    VPMADDWD (products of at most 255 * 128 in magnitude, pairs of them fit int32) and two adds, int32
 *    wrapping as VPDPBUSD's sum. */
#include "x86.h"

#if DFX_X86_SIMD
#include <immintrin.h>
#include <string.h>

__attribute__((target("avx2"), always_inline)) static inline __m256i dpbusd_avx2(__m256i acc, __m256i u, __m256i s)
{
    const __m256i low = _mm256_set1_epi16(0xFF);
    __m256i ue = _mm256_and_si256(u, low), uo = _mm256_srli_epi16(u, 8);
    __m256i se = _mm256_srai_epi16(_mm256_slli_epi16(s, 8), 8), so = _mm256_srai_epi16(s, 8);
    return _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_madd_epi16(ue, se), _mm256_madd_epi16(uo, so)));
}

#define DW_VNNI_BUF 32768 /* bytes of padded input rows on the stack (vnni_dw.h) */

#define VNNI_TILE dfx_x86_tile_vnni_emulated
#define VNNI_DW dfx_x86_dw3x3_vnni_emulated
#define VNNI_TARGET __attribute__((target("avx2")))
#define VNNI_DPBUSD dpbusd_avx2
#include "vnni_tile.h"
#include "vnni_dw.h"
#undef VNNI_TILE
#undef VNNI_DW
#undef VNNI_TARGET
#undef VNNI_DPBUSD

#if DFX_X86_VNNI
#define VNNI_TILE dfx_x86_tile_avxvnni
#define VNNI_DW dfx_x86_dw3x3_avxvnni
#define VNNI_TARGET __attribute__((target("avx2,avxvnni")))
#define VNNI_DPBUSD _mm256_dpbusd_avx_epi32
#include "vnni_tile.h"
#include "vnni_dw.h"
#undef VNNI_TILE
#undef VNNI_DW
#undef VNNI_TARGET
#undef VNNI_DPBUSD

#define VNNI_TILE dfx_x86_tile_avx512vnni
#define VNNI_DW dfx_x86_dw3x3_avx512vnni
#define VNNI_TARGET __attribute__((target("avx2,avx512f,avx512vl,avx512vnni")))
#define VNNI_DPBUSD _mm256_dpbusd_epi32
#include "vnni_tile.h"
#include "vnni_dw.h"
#undef VNNI_TILE
#undef VNNI_DW
#undef VNNI_TARGET
#undef VNNI_DPBUSD

#endif
#endif

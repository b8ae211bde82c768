/* The NEON kernel sets and the run-time CPU check (neon.h). */
#include "neon.h"

#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20) /* arch/arm64/include/uapi/asm/hwcap.h */
#endif
#endif

int dfx_neon_has_dotprod(void)
{
#if defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__APPLE__)
    return 1; /* every Apple arm64 core has it */
#else
    return 0;
#endif
}

const struct dfx_kernels dfx_kernels_neon = {
    "neon",
    dfx_neon_gemm_s8_k16,
    dfx_neon_dwconv_s8,
    dfx_neon_requant_s32,
    dfx_neon_relu_s8,
    dfx_neon_maxpool_s8,
    dfx_neon_packed_a_bytes,
    dfx_neon_pack_a,
    dfx_neon_gemm_s8_packed,
    NULL,
    NULL,
    NULL,
    NULL, /* no float entries: float layers run the scalar loops */
    dfx_neon_quantize_f32,
    NULL,
    NULL, /* fused requantization: the dotprod set only */
    NULL, /* requant_relu_s8: two steps */
};

const struct dfx_kernels dfx_kernels_dotprod = {
    "dotprod",
    dfx_neon_gemm_s8_dot,
    dfx_neon_dwconv_s8,
    dfx_neon_requant_s32,
    dfx_neon_relu_s8,
    dfx_neon_maxpool_s8,
    dfx_dot_packed_a_bytes,
    dfx_dot_pack_a,
    dfx_dot_gemm_s8_packed,
    NULL,
    NULL,
    NULL,
    NULL, /* no float entries: float layers run the scalar loops */
    dfx_neon_quantize_f32,
    dfx_dot_dwconv_requant_s8,
    dfx_dot_gemm_s8_packed_requant,
    NULL, /* requant_relu_s8: two steps */
};

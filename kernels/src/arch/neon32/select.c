/* The ARMv7 NEON kernel set and its run-time CPU check (neon32.h). Compiled
 * for the baseline (no -mfpu=neon): it runs on every ARM CPU. */
#include "neon32.h"

#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_NEON
#define HWCAP_NEON (1UL << 12) /* arch/arm/include/uapi/asm/hwcap.h */
#endif
#endif

int dfx_neon32_available(void)
{
#if defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_NEON) != 0;
#else
    return 0;
#endif
}

const struct dfx_kernels dfx_kernels_neon32 = {
    "neon",
    dfx_neon32_gemm_s8,
    dfx_neon32_dwconv_s8,
    dfx_neon32_requant_s32,
    dfx_neon32_relu_s8,
    dfx_neon32_maxpool_s8,
    dfx_neon32_packed_a_bytes,
    dfx_neon32_pack_a,
    dfx_neon32_gemm_s8_packed,
    NULL,
    NULL,
    NULL,
    NULL, /* no float entries: the float layers run the portable loops */
    NULL, /* quantize_f32: fp_quantize_row */
    NULL,
    NULL, /* no fused requantization: two steps */
    NULL,
};

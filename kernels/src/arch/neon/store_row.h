/* Storing one row of a GEMM micro-kernel's C tile (shared by gemm.c and gemm_dot.c). */
#ifndef DFX_NEON_STORE_ROW_H
#define DFX_NEON_STORE_ROW_H

#include <arm_neon.h>
#include <stdint.h>

/* Assembly text that zeroes v16..v31, the accumulators of both packed-weights micro-kernels. */
#define DFX_NEON_ZERO_V16_V31                                                                         \
    "movi v16.4s, #0\n\tmovi v17.4s, #0\n\tmovi v18.4s, #0\n\tmovi v19.4s, #0\n\tmovi v20.4s, #0\n\t" \
    "movi v21.4s, #0\n\tmovi v22.4s, #0\n\tmovi v23.4s, #0\n\tmovi v24.4s, #0\n\tmovi v25.4s, #0\n\t" \
    "movi v26.4s, #0\n\tmovi v27.4s, #0\n\tmovi v28.4s, #0\n\tmovi v29.4s, #0\n\tmovi v30.4s, #0\n\t" \
    "movi v31.4s, #0\n\t"

/* c[0..nr) = (accumulate ? c : 0) + [lo, hi][0..nr), for nr <= 8. */
static inline void dfx_neon_store_row(int32_t *c, int32x4_t lo, int32x4_t hi, int nr, int accumulate)
{
    if (nr == 8) {
        if (accumulate) {
            lo = vaddq_s32(lo, vld1q_s32(c));
            hi = vaddq_s32(hi, vld1q_s32(c + 4));
        }
        vst1q_s32(c, lo);
        vst1q_s32(c + 4, hi);
        return;
    }
    int32_t t[8];
    vst1q_s32(t, lo);
    vst1q_s32(t + 4, hi);
    for (int j = 0; j < nr; j++) c[j] = accumulate ? c[j] + t[j] : t[j];
}

#endif

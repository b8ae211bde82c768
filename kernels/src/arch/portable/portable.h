/* What the portable set (portable.c) shares with the sets that fall back to it (arch/x86/set.c). */
#ifndef DFX_K_PORTABLE_H
#define DFX_K_PORTABLE_H

#include <stdint.h>

#include "../../dispatch.h"

/* 1 when requant_s32 of dispatch.h may run in its int32 form (portable.c, requant32_body): every step of
 * the shift, bias and tie rule then fits int32 (lshift <= 29, |bias| <= 2^29, 0 <= shift, shift + bw <= 29). */
static inline int dfx_requant_int32_form(int64_t bias, int lshift, int shift, int bw)
{ return lshift <= 29 && bias >= -((int64_t)1 << 29) && bias <= ((int64_t)1 << 29) && shift >= 0 && shift + bw <= 29; }

/* A vector loop over 2 x 2, stride 2 max pooling of rows r0 and r1 (avail bytes readable in each): o[t] =
 * max of r0[2t], r0[2t + 1], r1[2t], r1[2t + 1] for the first t < n it can do; returns how many it wrote. */
typedef int (*dfx_max2x2_row_fn)(const int8_t *r0, const int8_t *r1, int avail, int8_t *o, int n);

/* maxpool_s8 of the portable set with the interior of 2 x 2 / 2 windows done first by row2 (NULL: none). */
void dfx_portable_maxpool_s8_rows(const int8_t *x, int h, int w, int kh, int kw, int sh, int sw, int pt, int pl,
                                  int8_t *out, int oh, int ow, int8_t empty, dfx_max2x2_row_fn row2);

#endif

/* Requantization of an int32 accumulator row (dispatch.h, requant_s32):
 * out[i] = saturate_bw(round_shift((acc[i] << lshift) + bias, shift, rounding)).
 *
 * The sum is formed in int64 lanes (two per register) exactly as the portable
 * code does. NEON's rounding shift SRSHL computes floor((v + 2^(s-1)) / 2^s)
 * exactly (no intermediate overflow): that is HALF_UP. The other modes are
 * HALF_UP of a corrected value, valid for every v and 1 <= s <= 62:
 *   HALF_AWAY_FROM_ZERO: v' = v - 1 for v < 0, so ties of negative values
 *       go down (away from zero) and nothing else changes;
 *   HALF_TO_EVEN:        v' = v - 1 + bit_s(v), so a tie goes up exactly when
 *       floor(v / 2^s) is odd;
 *   FLOOR:               SSHL by -s (arithmetic shift).
 * v' is formed with a saturating add: it saturates only for v = INT64_MIN,
 * which is a multiple of 2^s and rounds the same either way. Negative shifts
 * are saturating left shifts (SQSHL): the result saturates to bw <= 32 in
 * exactly the cases where fp_round_shift's capped shift does. The int64
 * result saturates to int32 (SQXTN), then to bw (SMIN/SMAX), then narrows.
 *
 * Int8 outputs with 0 <= shift <= 30 - bw and |bias| <= 2^30 (the usual
 * case) take int32 lanes, four per register: acc << lshift saturates (SQSHL)
 * and + bias saturates (SQADD). A saturated value v stands for a true value
 * of the same sign with |true| >= 2^30 - 1 after the bias (|bias| <= 2^30),
 * and so does v itself; both round to at least 2^(30 - shift) - 1 >= 2^bw - 1
 * in magnitude and saturate to the same bound, so the result is exact. */
#include <arm_neon.h>

#include "../../fixedpoint.h"
#include "neon.h"

enum { M_ZERO, M_LEFT, M_FLOOR, M_UP, M_AWAY, M_EVEN };

static inline int64x2_t round64(int64x2_t v, int mode, int64x2_t sh, int64x2_t one)
{
    switch (mode) {
        case M_ZERO: return v;
        case M_LEFT: return vqshlq_s64(v, sh);
        case M_FLOOR: return vshlq_s64(v, sh);
        case M_UP: return vrshlq_s64(v, sh);
        case M_AWAY: return vrshlq_s64(vqaddq_s64(v, vshrq_n_s64(v, 63)), sh);
        default: {
            int64x2_t odd = vandq_s64(vshlq_s64(v, sh), one);
            return vrshlq_s64(vqaddq_s64(v, vsubq_s64(odd, one)), sh);
        }
    }
}

static inline int32x4_t step4(int32x4_t a, int mode, int64x2_t ls, int64x2_t vb, int64x2_t sh, int64x2_t one)
{
    int64x2_t lo = vaddq_s64(vshlq_s64(vmovl_s32(vget_low_s32(a)), ls), vb);
    int64x2_t hi = vaddq_s64(vshlq_s64(vmovl_high_s32(a), ls), vb);
    return vqmovn_high_s64(vqmovn_s64(round64(lo, mode, sh, one)), round64(hi, mode, sh, one));
}

/* One mode, one output width: the mode is a constant after inlining. */
#define LOOP(MODE)                                                                             \
    for (; i + 8 <= n; i += 8) {                                                               \
        int32x4_t r0 = step4(vld1q_s32(acc + i), MODE, ls, vb, sh, one);                       \
        int32x4_t r1 = step4(vld1q_s32(acc + i + 4), MODE, ls, vb, sh, one);                   \
        if (clamp) {                                                                           \
            r0 = vmaxq_s32(vminq_s32(r0, vhi), vlo);                                           \
            r1 = vmaxq_s32(vminq_s32(r1, vhi), vlo);                                           \
        }                                                                                      \
        if (out_bytes == 1) {                                                                  \
            vst1_s8((int8_t *)out + i, vmovn_s16(vcombine_s16(vmovn_s32(r0), vmovn_s32(r1)))); \
        } else if (out_bytes == 2) {                                                           \
            vst1q_s16((int16_t *)out + i, vcombine_s16(vmovn_s32(r0), vmovn_s32(r1)));         \
        } else {                                                                               \
            vst1q_s32((int32_t *)out + i, r0);                                                 \
            vst1q_s32((int32_t *)out + i + 4, r1);                                             \
        }                                                                                      \
    }

static inline int32x4_t round32(int32x4_t v, int mode, int32x4_t sh, int32x4_t one)
{
    switch (mode) {
        case M_ZERO: return v;
        case M_FLOOR: return vshlq_s32(v, sh);
        case M_UP: return vrshlq_s32(v, sh);
        case M_AWAY: return vrshlq_s32(vqaddq_s32(v, vshrq_n_s32(v, 31)), sh);
        default: {
            int32x4_t odd = vandq_s32(vshlq_s32(v, sh), one);
            return vrshlq_s32(vqaddq_s32(v, vsubq_s32(odd, one)), sh);
        }
    }
}

static inline int16x8_t step8_32(const int32_t *a, int mode, int lsh, int32x4_t ls, int32x4_t vb, int32x4_t sh,
                                 int32x4_t one)
{
    int32x4_t v0 = vld1q_s32(a), v1 = vld1q_s32(a + 4);
    if (lsh) {
        v0 = vqshlq_s32(v0, ls);
        v1 = vqshlq_s32(v1, ls);
    }
    v0 = vqaddq_s32(v0, vb);
    v1 = vqaddq_s32(v1, vb);
    return vqmovn_high_s32(vqmovn_s32(round32(v0, mode, sh, one)), round32(v1, mode, sh, one));
}

#define LOOP32(MODE, LSH, CLAMP)                                                                 \
    for (; i + 16 <= n; i += 16) {                                                               \
        int8x16_t r = vqmovn_high_s16(vqmovn_s16(step8_32(acc + i, MODE, LSH, ls, vb, sh, one)), \
                                      step8_32(acc + i + 8, MODE, LSH, ls, vb, sh, one));        \
        vst1q_s8(o + i, CLAMP ? vmaxq_s8(vminq_s8(r, vhi), vlo) : r);                            \
    }                                                                                            \
    for (; i + 8 <= n; i += 8) {                                                                 \
        int8x8_t r = vqmovn_s16(step8_32(acc + i, MODE, LSH, ls, vb, sh, one));                  \
        vst1_s8(o + i, CLAMP ? vmax_s8(vmin_s8(r, vget_low_s8(vhi)), vget_low_s8(vlo)) : r);     \
    }
/* CLAMP: bw < 8 (SQXTN already saturates to 8 bits) */
#define MODES32(LSH, CLAMP)                              \
    switch (mode) {                                      \
        case M_ZERO: LOOP32(M_ZERO, LSH, CLAMP) break;   \
        case M_FLOOR: LOOP32(M_FLOOR, LSH, CLAMP) break; \
        case M_UP: LOOP32(M_UP, LSH, CLAMP) break;       \
        case M_AWAY: LOOP32(M_AWAY, LSH, CLAMP) break;   \
        default: LOOP32(M_EVEN, LSH, CLAMP) break;       \
    }

/* The int32-lane path (see the top of the file); returns how many leading elements it wrote. */
static int requant_s8_lanes32(const int32_t *acc, int n, int64_t bias, int lshift, int s, int mode, int bw, int8_t *o)
{
    int32x4_t ls = vdupq_n_s32(lshift), vb = vdupq_n_s32((int32_t)bias), sh = vdupq_n_s32(-s), one = vdupq_n_s32(1);
    int8x16_t vhi = vdupq_n_s8((int8_t)((1 << (bw - 1)) - 1)), vlo = vdupq_n_s8((int8_t)-(1 << (bw - 1)));
    int i = 0;
    if (lshift) MODES32(1, 1)
    else if (bw < 8) MODES32(0, 1)
    else MODES32(0, 0)
    return i;
}

void dfx_neon_requant_s32(const int32_t *acc, int n, int64_t bias, int lshift, int shift, int rounding, int bw,
                          void *out, int out_bytes)
{
    const int64_t hi = ((int64_t)1 << (bw - 1)) - 1, lo = -hi - 1;
    int s = shift > FP_MAX_RIGHT_SHIFT ? FP_MAX_RIGHT_SHIFT : shift;
    int mode;
    if (s == 0) mode = M_ZERO;
    else if (s < 0) mode = M_LEFT;
    else if (rounding == RND_FLOOR) mode = M_FLOOR;
    else if (rounding == RND_HALF_UP) mode = M_UP;
    else if (rounding == RND_HALF_AWAY) mode = M_AWAY;
    else mode = M_EVEN;
    /* SSHL/SRSHL/SQSHL take the shift from the low byte of each lane: -s shifts right */
    int64x2_t sh = vdupq_n_s64(s < 0 ? (-s > FP_LEFT_SHIFT_CAP ? FP_LEFT_SHIFT_CAP : -s) : -s);
    int64x2_t ls = vdupq_n_s64(lshift), vb = vdupq_n_s64(bias), one = vdupq_n_s64(1);
    int clamp = bw < 32;
    int32x4_t vhi = vdupq_n_s32((int32_t)hi), vlo = vdupq_n_s32((int32_t)lo);
    int i = 0;
    if (out_bytes == 1 && mode != M_LEFT && s <= 30 - bw && bias >= -((int64_t)1 << 30) && bias <= ((int64_t)1 << 30))
        i = requant_s8_lanes32(acc, n, bias, lshift, s, mode, bw, (int8_t *)out);
    else switch (mode) {
            case M_ZERO: LOOP(M_ZERO) break;
            case M_LEFT: LOOP(M_LEFT) break;
            case M_FLOOR: LOOP(M_FLOOR) break;
            case M_UP: LOOP(M_UP) break;
            case M_AWAY: LOOP(M_AWAY) break;
            default: LOOP(M_EVEN) break;
        }
    for (; i < n; i++) {
        int64_t v = (int64_t)((uint64_t)(int64_t)acc[i] << lshift) + bias;
        int64_t r = fp_round_shift(v, shift, rounding);
        r = r < lo ? lo : r > hi ? hi : r;
        if (out_bytes == 1) ((int8_t *)out)[i] = (int8_t)r;
        else if (out_bytes == 2) ((int16_t *)out)[i] = (int16_t)r;
        else ((int32_t *)out)[i] = (int32_t)r;
    }
}

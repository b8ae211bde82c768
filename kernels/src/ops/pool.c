/* Max and average pooling (Caffe geometry; ops.pool_out_size). The integer
 * average divides the exact window sum by the divisor D with one rational
 * rounding: y = round(sum * 2^(fl_y - fl_x) / D) (spec/arithmetic.md, "Pool2D"). */
#include "../kernels.h"

typedef struct {
    int64_t kh, kw, sh, sw, pt, pl, pb, pr;
} window;

#if DFX_ALL_KERNELS || defined(DFX_USE_POOL_INT) || defined(DFX_USE_POOL_F32)
/* Planes [c0, c1) of N x C are one task (threads.h). */
typedef struct pool_job {
    const dt_layer *L;
    const rt *x;
    rt *y;
} pool_job;

/* Planes per task: at least 16 K input values. */
static int64_t plane_grain(const rt *x)
{
    int64_t hw = x->shape[2] * x->shape[3];
    return hw > 0 ? 1 + 16384 / hw : 1;
}

static window get_window(const dt_opts *o, int64_t h, int64_t w)
{
    window g = {o->kh, o->kw, o->sh, o->sw, o->pt, o->pl, o->pb, o->pr};
    if (o->global) {
        window z = {h, w, 1, 1, 0, 0, 0, 0};
        g = z;
    }
    return g;
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_POOL_INT)
static int64_t round_up(int64_t q, int64_t r, int64_t den, int nonneg, int rounding)
{
    if (rounding == RND_FLOOR) return q;
    int64_t twice = 2 * r;
    int up = twice > den || (twice == den && (rounding == RND_HALF_UP || (rounding == RND_HALF_AWAY && nonneg) ||
                                              (rounding == RND_HALF_EVEN && (q & 1))));
    return q + up;
}
#endif

/* Exact round(s * 2^up / (d * 2^down)) for d >= 1; at most one of up, down is non-zero. */
#if DFX_ALL_KERNELS || defined(DFX_USE_POOL_INT)
static int64_t avg_div(int64_t s, int64_t d, int up, int down, int rounding)
{
    uint64_t mag = s < 0 ? (uint64_t)(-(s + 1)) + 1 : (uint64_t)s;
    if (down > 0) {
        if (fp_bitlen((uint64_t)d) + down > 61) { /* |s| < den / 2 */
            return (s < 0 && rounding == RND_FLOOR) ? -1 : 0;
        }
        int64_t den = d << down, q = fp_floordiv(s, den);
        return round_up(q, s - q * den, den, s >= 0, rounding);
    }
    if (fp_bitlen(mag) + up <= 62) {
        int64_t num = s * ((int64_t)1 << up), q = fp_floordiv(num, d);
        return round_up(q, num - q * d, d, num >= 0, rounding);
    }
    /* long division, one bit at a time; stop once the result saturates anyway */
    int64_t q = fp_floordiv(s, d), r = s - q * d;
    for (int i = 0; i < up; i++) {
        q *= 2;
        r *= 2;
        if (r >= d) {
            q++;
            r -= d;
        }
        if (q > ((int64_t)1 << 40) || q < -((int64_t)1 << 40)) return q;
    }
    return round_up(q, r, d, s >= 0, rounding);
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_POOL_INT)
static void pool_int_planes(void *ctx, int64_t c0, int64_t c1, int thread)
{
    const pool_job *j = (const pool_job *)ctx;
    const dt_opts *o = &j->L->o;
    const rt *x = j->x, *y = j->y;
    int64_t H = x->shape[2], W = x->shape[3], OH = y->shape[2], OW = y->shape[3];
    window g = get_window(o, H, W);
    const dt_tensor *tx = x->t, *ty = y->t;
    int up = ty->fl > tx->fl ? ty->fl - tx->fl : 0, down = tx->fl > ty->fl ? tx->fl - ty->fl : 0;
    int64_t lo = -((int64_t)1 << (ty->bw - 1)), hi = ((int64_t)1 << (ty->bw - 1)) - 1;
    (void)thread;
    for (int64_t nc = c0; nc < c1; nc++) {
        const int32_t *xp = I32(x) + nc * H * W;
        int32_t *yp = I32(y) + nc * OH * OW;
        for (int64_t oy = 0; oy < OH; oy++) {
            int64_t y0 = oy * g.sh - g.pt, y1 = y0 + g.kh;
            int64_t ya = y0 < 0 ? 0 : y0, yb = y1 > H ? H : y1;
            for (int64_t ox = 0; ox < OW; ox++) {
                int64_t x0 = ox * g.sw - g.pl, x1 = x0 + g.kw;
                int64_t xa = x0 < 0 ? 0 : x0, xb = x1 > W ? W : x1;
                if (o->pool_type == 0) {
                    int64_t m = INT64_MIN;
                    for (int64_t iy = ya; iy < yb; iy++)
                        for (int64_t ix = xa; ix < xb; ix++)
                            if (xp[iy * W + ix] > m) m = xp[iy * W + ix];
                    yp[oy * OW + ox] = fp_requant(m, tx->fl, ty->fl, ty->bw, ty->rounding);
                } else {
                    int64_t s = 0, d;
                    for (int64_t iy = ya; iy < yb; iy++)
                        for (int64_t ix = xa; ix < xb; ix++) s += xp[iy * W + ix];
                    if (o->divisor == 0) {
                        int64_t eh = (y1 < H + g.pb ? y1 : H + g.pb) - y0, ew = (x1 < W + g.pr ? x1 : W + g.pr) - x0;
                        d = eh * ew;
                    } else d = (yb - ya) * (xb - xa);
                    int64_t v = d > 0 ? avg_div(s, d, up, down, ty->rounding) : 0;
                    yp[oy * OW + ox] = (int32_t)(v < lo ? lo : (v > hi ? hi : v));
                }
            }
        }
    }
}

void dfx_pool_int(const dt_layer *L, const rt *x, rt *y, const dfx_par *par)
{
    pool_job j = {L, x, y};
    dfx_par_range(par, x->shape[0] * x->shape[1], plane_grain(x), 1, pool_int_planes, &j);
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_POOL_F32)
static void pool_f32_planes(void *ctx, int64_t c0, int64_t c1, int thread)
{
    const pool_job *j = (const pool_job *)ctx;
    const dt_opts *o = &j->L->o;
    const rt *x = j->x, *y = j->y;
    int64_t H = x->shape[2], W = x->shape[3], OH = y->shape[2], OW = y->shape[3];
    window g = get_window(o, H, W);
    (void)thread;
    for (int64_t nc = c0; nc < c1; nc++) {
        const float *xp = F32(x) + nc * H * W;
        float *yp = F32(y) + nc * OH * OW;
        for (int64_t oy = 0; oy < OH; oy++) {
            int64_t y0 = oy * g.sh - g.pt, y1 = y0 + g.kh;
            int64_t ya = y0 < 0 ? 0 : y0, yb = y1 > H ? H : y1;
            for (int64_t ox = 0; ox < OW; ox++) {
                int64_t x0 = ox * g.sw - g.pl, x1 = x0 + g.kw;
                int64_t xa = x0 < 0 ? 0 : x0, xb = x1 > W ? W : x1;
                if (o->pool_type == 0) {
                    float m = -INFINITY;
                    for (int64_t iy = ya; iy < yb; iy++)
                        for (int64_t ix = xa; ix < xb; ix++)
                            if (xp[iy * W + ix] > m) m = xp[iy * W + ix];
                    yp[oy * OW + ox] = m;
                } else {
                    float s = 0;
                    int64_t d;
                    for (int64_t iy = ya; iy < yb; iy++)
                        for (int64_t ix = xa; ix < xb; ix++) s += xp[iy * W + ix];
                    if (o->divisor == 0) {
                        int64_t eh = (y1 < H + g.pb ? y1 : H + g.pb) - y0, ew = (x1 < W + g.pr ? x1 : W + g.pr) - x0;
                        d = eh * ew;
                    } else d = (yb - ya) * (xb - xa);
                    yp[oy * OW + ox] = s / (float)d;
                }
            }
        }
    }
}

void dfx_pool_f32(const dt_layer *L, const rt *x, rt *y, const dfx_par *par)
{
    pool_job j = {L, x, y};
    dfx_par_range(par, x->shape[0] * x->shape[1], plane_grain(x), 1, pool_f32_planes, &j);
}
#endif

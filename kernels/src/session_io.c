/* Session inputs and outputs beyond session.c: raw 8-bit pixels with the
 * stored preprocessing, the format of views, constant graph outputs, and the
 * options of dfx_session_create_ex. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "kernels.h"

/* ---- options ---- */

/* Size of the first version of dfx_session_options (through `kernels`). */
#define OPTIONS_V1_SIZE (offsetof(dfx_session_options, kernels) + sizeof(const char *))

dfx_status dfx_session_options_read(const dfx_session_options *o, dfx_session_options *out)
{
    dfx_session_options_init(out);
    if (!o) return DFX_OK;
    if (o->size < OPTIONS_V1_SIZE)
        return dfx_fail(DFX_ERR_ARGUMENT,
                        "dfx_session_options.size is %zu: initialise the options with "
                        "dfx_session_options_init",
                        o->size);
    /* fields appended later are read only when o->size covers them */
    memcpy(out, o, sizeof *out < o->size ? sizeof *out : o->size);
    out->size = sizeof *out;
    return DFX_OK;
}

/* ---- views ---- */

void dfx_view_format(const dt_tensor *T, dfx_view *v)
{
    v->bw = T->has_q ? T->bw : 0;
    v->fl = T->has_q && !T->per_channel ? T->fl : 0;
    v->per_channel = T->has_q && T->per_channel;
    v->channel_axis = v->per_channel ? T->ch_axis : 0;
    v->channel_fl = v->per_channel ? (const int8_t *)T->cfl.p : NULL;
}

double dfx_view_value(const dfx_view *v, int64_t i)
{
    if (!v || !v->data || i < 0 || i >= v->count) return 0.0;
    if (v->is_float) return ((const float *)v->data)[i];
    int fl = v->fl;
    if (v->per_channel && v->channel_fl && v->channel_axis >= 0 && v->channel_axis < v->rank) {
        int64_t inner = 1;
        for (int d = v->channel_axis + 1; d < v->rank; d++) inner *= v->shape[d];
        int64_t n = v->shape[v->channel_axis];
        fl = inner > 0 && n > 0 ? v->channel_fl[(i / inner) % n] : 0;
    }
    return ldexp((double)dfx_view_code(v, i), -fl);
}

/* ---- constant graph outputs: in place when the stored type is a view type on a
 * little-endian host, else as int32 codes (or float32 values) copied once ---- */

static int host_little_endian(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

dfx_status dfx_const_outputs_init(const dfx_model *m, dfx_const_outputs *c)
{
    int n = m->n_outputs;
    c->n = n;
    c->data = (const void **)calloc(n ? (size_t)n : 1, sizeof *c->data);
    c->dtype = (dfx_dtype *)calloc(n ? (size_t)n : 1, sizeof *c->dtype);
    c->owned = (unsigned char *)calloc(n ? (size_t)n : 1, 1);
    if (!c->data || !c->dtype || !c->owned) return dfx_fail(DFX_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        const dt_tensor *T = &m->tensors[m->outputs[i]];
        if (!T->is_const) continue;
        int view_type =
            T->dtype == DFX_FLOAT32 || T->dtype == DFX_INT8 || T->dtype == DFX_INT16 || T->dtype == DFX_INT32;
        if (view_type && host_little_endian()) {
            c->data[i] = T->data;
            c->dtype[i] = (dfx_dtype)T->dtype;
            continue;
        }
        void *p = malloc(T->count ? (size_t)T->count * 4 : 4);
        if (!p) return dfx_fail(DFX_ERR_NOMEM, "out of memory copying constant output '%s'", T->name);
        for (int64_t k = 0; k < T->count; k++) {
            if (T->dtype == DFX_FLOAT32) ((float *)p)[k] = dfx_const_float(T, k);
            else ((int32_t *)p)[k] = (int32_t)dfx_const_int(T, k);
        }
        c->data[i] = p;
        c->dtype[i] = T->dtype == DFX_FLOAT32 ? DFX_FLOAT32 : DFX_INT32;
        c->owned[i] = 1;
    }
    return DFX_OK;
}

void dfx_const_outputs_free(dfx_const_outputs *c)
{
    if (c->data && c->owned)
        for (int i = 0; i < c->n; i++)
            if (c->owned[i]) free((void *)c->data[i]);
    free((void *)c->data);
    free(c->dtype);
    free(c->owned);
    c->data = NULL;
    c->dtype = NULL;
    c->owned = NULL;
}

dfx_status dfx_const_output_view(const dfx_model *m, const dfx_const_outputs *c, int i, dfx_view *v)
{
    const dt_tensor *T = &m->tensors[m->outputs[i]];
    if (!c->data || i >= c->n || !c->data[i])
        return dfx_fail(DFX_ERR_STATE, "constant output '%s' is not prepared", T->name);
    v->data = c->data[i];
    v->count = T->count;
    v->is_float = c->dtype[i] == DFX_FLOAT32;
    v->dtype = c->dtype[i];
    v->rank = T->rank;
    memset(v->shape, 0, sizeof v->shape);
    memcpy(v->shape, T->shape, sizeof v->shape);
    dfx_view_format(T, v);
    return DFX_OK;
}

/* ---- raw 8-bit pixels ---- */

typedef struct {
    const uint8_t *px;
    int64_t c, hw;           /* channels, pixels per channel */
    int hwc, swap;           /* interleaved input; reverse the channel order */
    float mean[3], scale[3]; /* per channel when c <= 3 */
    const dfx_model *m;
    int input;
} pixel_src;

/* Value of element k of the channels-first input, as the SDK computes it:
 * float32 (pixel - mean) then float32 times scale (graph.Preprocessing.apply). */
static void gen_pixels(void *ctx, int64_t start, int64_t n, float *out)
{
    const pixel_src *p = (const pixel_src *)ctx;
    for (int64_t k = start; k < start + n; k++) {
        int64_t per = p->c * p->hw, b = k / per, r = k % per, ch = r / p->hw, i = r % p->hw;
        int64_t sc = p->swap ? p->c - 1 - ch : ch; /* channel of the caller's pixels */
        uint8_t v = p->hwc ? p->px[b * per + i * p->c + sc] : p->px[b * per + sc * p->hw + i];
        float mean, scale;
        if (ch < 3) {
            mean = p->mean[ch];
            scale = p->scale[ch];
        } else {
            dfx_model_input_preprocessing(p->m, p->input, ch, &mean, &scale, NULL);
        }
        float d = (float)v - mean;
        out[k - start] = d * scale;
    }
}

dfx_status dfx_session_set_input_u8(dfx_session *s, int input, const uint8_t *pixels, int64_t count,
                                    dfx_pixel_layout layout, dfx_channel_order order)
{
    dfx_clear_error();
    if (!s || (!pixels && count)) return dfx_fail(DFX_ERR_ARGUMENT, "NULL argument");
    if (layout != DFX_PIXELS_CHW && layout != DFX_PIXELS_HWC)
        return dfx_fail(DFX_ERR_ARGUMENT, "unknown pixel layout %d", (int)layout);
    if ((unsigned)order > DFX_ORDER_GRAY) return dfx_fail(DFX_ERR_ARGUMENT, "unknown channel order %d", (int)order);
    const dfx_model *m = dfx_session_model(s);
    pixel_src p;
    int64_t h = 0, w = 0;
    dfx_channel_order want = DFX_ORDER_UNSPECIFIED;
    dfx_status st = dfx_model_input_layout(m, input, &p.c, &h, &w);
    if (st) return st;
    p.px = pixels;
    p.hw = h * w;
    p.hwc = layout == DFX_PIXELS_HWC;
    p.m = m;
    p.input = input;
    for (int64_t ch = 0; ch < 3 && ch < p.c; ch++)
        dfx_model_input_preprocessing(m, input, ch, &p.mean[ch], &p.scale[ch], &want);
    p.swap = (order == DFX_ORDER_RGB && want == DFX_ORDER_BGR) || (order == DFX_ORDER_BGR && want == DFX_ORDER_RGB);
    if (p.c < 1 || p.hw < 1)
        return dfx_fail(DFX_ERR_ARGUMENT, "input '%s' has no elements", m->tensors[m->inputs[input]].name);
    return dfx_session_fill_input(s, input, count, gen_pixels, &p);
}

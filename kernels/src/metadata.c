/* Model metadata, class labels and stored preprocessing (dfx.h, "preprocessing
 * and metadata"; spec/format.md 7.2). */
#include <stdlib.h>

#include "dfx_internal.h"

int dfx_model_num_metadata(const dfx_model *m) { return m ? m->n_meta : 0; }

dfx_status dfx_model_metadata_at(const dfx_model *m, int i, const char **key, const char **value)
{
    dfx_clear_error();
    if (!m || i < 0 || i >= m->n_meta) return dfx_fail(DFX_ERR_ARGUMENT, "no metadata entry %d", i);
    if (key) *key = m->meta[2 * i];
    if (value) *value = m->meta[2 * i + 1];
    return DFX_OK;
}

const char *dfx_model_metadata(const dfx_model *m, const char *key)
{
    if (!m || !key) return NULL;
    for (int i = 0; i < m->n_meta; i++)
        if (strcmp(m->meta[2 * i], key) == 0) return m->meta[2 * i + 1];
    return NULL;
}

/* "labels": UTF-8 text, one label per line ("\n"), label i names class i. */
dfx_status dfx_decode_labels(dfx_model *m)
{
    const char *text = dfx_model_metadata(m, "labels");
    if (!text || !*text) return DFX_OK;
    size_t len = strlen(text);
    int n = 1;
    for (size_t i = 0; i < len; i++) {
        if (text[i] != '\n') continue;
        if (n == 0x7fffffff) return dfx_fail(DFX_ERR_FORMAT, "field metadata.labels: too many labels");
        n++;
    }
    m->labels_buf = (char *)malloc(len + 1);
    m->labels = (const char **)malloc((size_t)n * sizeof *m->labels);
    if (!m->labels_buf || !m->labels) return dfx_fail(DFX_ERR_NOMEM, "out of memory reading the labels");
    memcpy(m->labels_buf, text, len + 1);
    m->labels[0] = m->labels_buf;
    for (size_t i = 0, k = 1; i < len; i++)
        if (m->labels_buf[i] == '\n') {
            m->labels_buf[i] = 0;
            m->labels[k++] = m->labels_buf + i + 1;
        }
    m->n_labels = n;
    return DFX_OK;
}

int dfx_model_num_labels(const dfx_model *m) { return m ? m->n_labels : 0; }

const char *dfx_model_label(const dfx_model *m, int i) { return m && i >= 0 && i < m->n_labels ? m->labels[i] : NULL; }

dfx_status dfx_model_input_layout(const dfx_model *m, int input, int64_t *channels, int64_t *height, int64_t *width)
{
    dfx_clear_error();
    if (!m || input < 0 || input >= m->n_inputs) return dfx_fail(DFX_ERR_ARGUMENT, "no graph input %d", input);
    const dt_tensor *T = &m->tensors[m->inputs[input]];
    int64_t c = T->rank > 1 ? T->shape[1] : 1, h = T->rank > 2 ? T->shape[2] : 1, w = 1;
    for (int d = 3; d < T->rank; d++) w *= T->shape[d];
    if (channels) *channels = c;
    if (height) *height = h;
    if (width) *width = w;
    return DFX_OK;
}

dfx_status dfx_model_input_preprocessing(const dfx_model *m, int input, int64_t channel, float *mean, float *scale,
                                         dfx_channel_order *order)
{
    int64_t c = 0;
    dfx_status st = dfx_model_input_layout(m, input, &c, NULL, NULL);
    if (st) return st;
    if (channel < 0 || channel >= c)
        return dfx_fail(DFX_ERR_ARGUMENT, "input '%s' has %lld channels, not channel %lld",
                        m->tensors[m->inputs[input]].name, (long long)c, (long long)channel);
    const dt_prep *p = &m->prep[input];
    if (mean) *mean = p->mean.n == 0 ? 0.0f : vec_f32(p->mean, p->mean.n == 1 ? 0 : (uint32_t)channel);
    if (scale) *scale = p->scale.n == 0 ? 1.0f : vec_f32(p->scale, p->scale.n == 1 ? 0 : (uint32_t)channel);
    if (order) *order = (dfx_channel_order)p->order;
    return DFX_OK;
}

/* Model accessors of the public API (dfx.h): counts, graph inputs and outputs, names, tensor info. */
#include "kernels.h"

int dfx_model_num_tensors(const dfx_model *m) { return m ? m->n_tensors : 0; }
int dfx_model_num_layers(const dfx_model *m) { return m ? m->n_layers : 0; }
int dfx_model_num_inputs(const dfx_model *m) { return m ? m->n_inputs : 0; }
int dfx_model_num_outputs(const dfx_model *m) { return m ? m->n_outputs : 0; }
int dfx_model_input(const dfx_model *m, int i) { return m && i >= 0 && i < m->n_inputs ? m->inputs[i] : -1; }
int dfx_model_output(const dfx_model *m, int i) { return m && i >= 0 && i < m->n_outputs ? m->outputs[i] : -1; }
int dfx_model_find_tensor(const dfx_model *m, const char *name)
{
    if (!m || !name) return -1;
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return i;
    return -1;
}
const char *dfx_model_layer_name(const dfx_model *m, int i)
{ return m && i >= 0 && i < m->n_layers ? m->layers[i].name : NULL; }
const char *dfx_model_layer_type(const dfx_model *m, int i)
{ return m && i >= 0 && i < m->n_layers ? dfx_op_name(m->layers[i].op) : NULL; }
dfx_status dfx_model_tensor_info(const dfx_model *m, int t, dfx_tensor_info *info)
{
    if (!m || !info || t < 0 || t >= m->n_tensors) return dfx_fail(DFX_ERR_ARGUMENT, "no tensor %d", t);
    const dt_tensor *T = &m->tensors[t];
    info->name = T->name;
    info->rank = T->rank;
    memcpy(info->shape, T->shape, sizeof info->shape);
    info->dtype = (dfx_dtype)T->dtype;
    info->quantized = T->has_q;
    info->bw = T->bw;
    info->fl = T->fl;
    info->rounding = T->rounding;
    info->per_channel = T->per_channel;
    info->is_constant = T->is_const;
    return DFX_OK;
}

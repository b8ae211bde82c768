/* Custom operators (dfx.h, dfx_register_custom_op): the registry of C
 * implementations (library only) and the kernel that calls one (sessions and
 * compiled models). A custom layer runs in float form: the layer plan
 * dequantizes its integer inputs and quantizes its outputs (plan.c). */
#include "../plan.h"

#if !defined(DFX_COMPILED_MODEL)
#define MAX_CUSTOM 64
#define MAX_NAME 128

static dfx_custom_op registry[MAX_CUSTOM];
static char names[MAX_CUSTOM][MAX_NAME];
static int n_registered;

dfx_status dfx_register_custom_op(const char *name, int version, dfx_custom_fn fn, void *user)
{
    dfx_clear_error();
    if (!name || !name[0] || !fn) return dfx_fail(DFX_ERR_ARGUMENT, "a custom operator needs a name and a function");
    if (strlen(name) >= MAX_NAME)
        return dfx_fail(DFX_ERR_ARGUMENT, "custom operator name '%.40s...' is longer than %d bytes", name,
                        MAX_NAME - 1);
    int i = 0;
    while (i < n_registered && (registry[i].version != version || strcmp(names[i], name) != 0)) i++;
    if (i == MAX_CUSTOM) return dfx_fail(DFX_ERR_NOMEM, "more than %d custom operators registered", MAX_CUSTOM);
    memcpy(names[i], name, strlen(name) + 1);
    dfx_custom_op op = {names[i], version, fn, user};
    registry[i] = op;
    if (i == n_registered) n_registered++;
    return DFX_OK;
}

const dfx_custom_op *dfx_custom_find(const char *name, int version)
{
    for (int i = 0; name && i < n_registered; i++)
        if (registry[i].version == version && strcmp(names[i], name) == 0) return &registry[i];
    return NULL;
}
#endif

#if DFX_ALL_KERNELS || defined(DFX_USE_CUSTOM)
static void as_custom(const rt *r, dfx_custom_tensor *c)
{
    memset(c, 0, sizeof *c);
    if (!r) return;
    c->data = (float *)r->p;
    c->count = r->count;
    c->rank = r->rank;
    memcpy(c->shape, r->shape, sizeof c->shape);
}

dfx_status dfx_custom(const dt_layer *L, const dfx_custom_op *op, const rt *const *x, int n_in, rt *const *y, int n_out)
{
    dfx_custom_tensor in[DFX_MAX_IO], out[DFX_MAX_IO];
    for (int k = 0; k < n_in; k++) as_custom(x[k], &in[k]);
    for (int k = 0; k < n_out; k++) as_custom(y[k], &out[k]);
    return op->fn(in, n_in, out, n_out, L->o.custom_options.p, L->o.custom_options.n, op->user);
}
#endif

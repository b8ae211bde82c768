/* npzgraph.Clamp (version 1) in C, for libdfx and for models compiled with
 * `dfxsdk compile`: y = min(max(x, lo), hi), bit-exact with the plugin's NumPy
 * reference (src/dfx_npzgraph/clamp.py). The runtime hands it float32 values
 * and quantizes what it writes (dfx.h, dfx_custom_fn).
 *
 * A program using libdfx registers it once, before creating sessions:
 *     dfx_register_custom_op("npzgraph.Clamp", 1, dfx_custom_npzgraph_Clamp_v1, NULL);
 * a compiled model calls dfx_custom_npzgraph_Clamp_v1 directly: link this file in. */
#include <string.h>

#include "dfx.h"

dfx_status dfx_custom_npzgraph_Clamp_v1(const dfx_custom_tensor *in, int n_in, dfx_custom_tensor *out, int n_out,
                                        const uint8_t *options, size_t options_len, void *user)
{
    float lo, hi;
    (void)user;
    if (n_in != 1 || n_out != 1 || options_len != 8 || in[0].count != out[0].count) return DFX_ERR_INVALID;
    memcpy(&lo, options, 4); /* little-endian float32 as stored: this assumes a little-endian host */
    memcpy(&hi, options + 4, 4);
    for (int64_t i = 0; i < out[0].count; i++) {
        float v = in[0].data[i];
        out[0].data[i] = v < lo ? lo : v > hi ? hi : v;
    }
    return DFX_OK;
}

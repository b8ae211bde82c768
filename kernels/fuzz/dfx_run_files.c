/* Run .dfx files and print a digest of every integer activation, to compare
 * kernel sets (host x86 against NEON under qemu) bit for bit.
 *
 *   dfx-run-files FILE...
 *
 * For each file: open it (no checksum verification), create a session with
 * DFX_KEEP_ALL at batch 1, set every input from a fixed pattern of exactly
 * representable floats, run, and print "FILE STATUS DIGEST" where DIGEST is an
 * FNV-1a hash of the integer codes of every integer activation (float
 * activations are left out: float forms are not bit-exact across libms).
 * Built for aarch64 with -fsanitize=undefined -fsanitize-trap=undefined, any
 * undefined behaviour stops the program with SIGILL (no runtime needed under
 * qemu-user). kernels/fuzz/dfx_sweep.py --neon drives it. */
#include <stdio.h>
#include <stdlib.h>

#include "dfx.h"

static uint64_t fnv(uint64_t h, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        h ^= (v >> (8 * i)) & 0xFF;
        h *= 1099511628211ULL;
    }
    return h;
}

static int run_one(const char *path, uint64_t *digest)
{
    dfx_model *m = NULL;
    dfx_session *s = NULL;
    dfx_status st = dfx_model_open_file(path, 0, &m);
    if (!st) st = dfx_session_create(m, 1, NULL, 0, DFX_KEEP_ALL, &s);
    for (int i = 0; !st && i < dfx_model_num_inputs(m); i++) {
        dfx_tensor_info info;
        st = dfx_model_tensor_info(m, dfx_model_input(m, i), &info);
        int64_t n = 1;
        for (int d = 1; !st && d < info.rank; d++) n *= info.shape[d];
        if (st || n > (1 << 24)) {
            st = st ? st : DFX_ERR_UNSUPPORTED;
            break;
        }
        float *x = (float *)malloc((size_t)(n ? n : 1) * sizeof *x);
        if (!x) {
            st = DFX_ERR_NOMEM;
            break;
        }
        for (int64_t k = 0; k < n; k++) x[k] = (float)((k * 37 + i * 11) % 33 - 16) * 0.25f;
        st = dfx_session_set_input_f32(s, i, x, n);
        free(x);
    }
    if (!st) st = dfx_session_run(s);
    uint64_t h = 1469598103934665603ULL;
    for (int t = 0; !st && t < dfx_model_num_tensors(m); t++) {
        dfx_tensor_info info;
        dfx_view v;
        if (dfx_model_tensor_info(m, t, &info) || info.is_constant || !info.quantized) continue;
        if (dfx_session_get_tensor(s, t, &v)) continue;
        for (int64_t k = 0; k < v.count; k++) h = fnv(h, (uint32_t)dfx_view_code(&v, k));
    }
    *digest = h;
    dfx_session_destroy(s);
    dfx_model_close(m);
    return (int)st;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        uint64_t digest = 0;
        int st = run_one(argv[i], &digest);
        printf("%s %d %016llx\n", argv[i], st, st ? 0ULL : (unsigned long long)digest);
        fflush(stdout);
    }
    return 0;
}

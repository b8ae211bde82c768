/* dfx-run: run a .dfx model on a board.
 *
 *   dfx-run [--codes | --in-codes | --out-codes] [--verbose] [--repeat N] model.dfx input.bin output.bin
 *
 * input.bin holds the float32 values (little-endian, row-major) of every graph
 * input, one after the other; the batch size follows from the size of the
 * first input. output.bin receives every graph output as float32 real values
 * (integer codes are dequantized: code * 2^-fl), one after the other.
 *
 * --codes: integer tensors are exchanged as int32 codes instead: input.bin
 * holds int32 codes for every integer graph input (float32 values for float
 * inputs) and output.bin receives int32 codes for every integer output
 * (float32 values for float outputs). Bit-exact checks use this form (the
 * conformance vectors give integer inputs as codes). --in-codes and
 * --out-codes do this for the inputs or the outputs only.
 * --verbose: also print the kernel set in use (portable, neon, dotprod) on
 * stderr. --repeat N: set the inputs and run the model N times (benchmarks:
 * the difference of two counts is the cost of one inference). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dfx.h"

static int die(const char *what) { fprintf(stderr, "dfx-run: %s: %s\n", what, dfx_last_error()); return 1; }

static int usage(void)
{
    fprintf(stderr, "usage: dfx-run [--codes | --in-codes | --out-codes] [--verbose] [--repeat N] model.dfx input.bin output.bin\n");
    return 2;
}

int main(int argc, char **argv)
{
    int in_codes = 0, out_codes = 0, verbose = 0, repeat = 1, a = 1;
    for (; a < argc && argv[a][0] == '-' && argv[a][1] == '-'; a++) {
        if (!strcmp(argv[a], "--codes")) in_codes = out_codes = 1;
        else if (!strcmp(argv[a], "--in-codes")) in_codes = 1;
        else if (!strcmp(argv[a], "--out-codes")) out_codes = 1;
        else if (!strcmp(argv[a], "--verbose")) verbose = 1;
        else if (!strcmp(argv[a], "--repeat") && a + 1 < argc && atoi(argv[a + 1]) >= 1) repeat = atoi(argv[++a]);
        else return usage();
    }
    if (argc - a != 3) return usage();
    const char *model_path = argv[a], *in_path = argv[a + 1], *out_path = argv[a + 2];
    dfx_model *m;
    if (dfx_model_open_file(model_path, 0, &m)) return die("open");
    if (verbose) fprintf(stderr, "dfx-run: kernels: %s\n", dfx_kernels_name());
    FILE *f = fopen(in_path, "rb");
    if (!f) { fprintf(stderr, "dfx-run: cannot read %s\n", in_path); return 1; }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    float *in = (float *)malloc(size > 0 ? (size_t)size : 1);
    if (!in || fread(in, 1, (size_t)size, f) != (size_t)size) { fprintf(stderr, "dfx-run: cannot read %s\n", in_path); return 1; }
    fclose(f);
    int64_t per_sample = 0;
    for (int i = 0; i < dfx_model_num_inputs(m); i++) {
        dfx_tensor_info ti;
        dfx_model_tensor_info(m, dfx_model_input(m, i), &ti);
        int64_t c = 1;
        for (int d = 1; d < ti.rank; d++) c *= ti.shape[d];
        per_sample += c;
    }
    int64_t batch = per_sample ? (int64_t)(size / 4) / per_sample : 1;
    if (batch < 1 || batch * per_sample * 4 != size) { fprintf(stderr, "dfx-run: %s has %ld bytes, not a whole number of samples\n", in_path, size); return 1; }
    dfx_session *s;
    if (dfx_session_create(m, batch, NULL, 0, 0, &s)) return die("session");
    for (int r = 0; r < repeat; r++) { /* the arena may reuse input memory: set the inputs every time */
        int64_t pos = 0;
        for (int i = 0; i < dfx_model_num_inputs(m); i++) {
            dfx_tensor_info ti;
            dfx_model_tensor_info(m, dfx_model_input(m, i), &ti);
            int64_t c = batch;
            for (int d = 1; d < ti.rank; d++) c *= ti.shape[d];
            if (in_codes && ti.dtype != DFX_FLOAT32) {
                if (dfx_session_set_input_codes(s, i, (const int32_t *)(const void *)(in + pos), c)) return die("input");
            } else if (dfx_session_set_input_f32(s, i, in + pos, c)) {
                return die("input");
            }
            pos += c;
        }
        if (dfx_session_run(s)) return die("run");
    }
    FILE *o = fopen(out_path, "wb");
    if (!o) { fprintf(stderr, "dfx-run: cannot write %s\n", out_path); return 1; }
    for (int i = 0; i < dfx_model_num_outputs(m); i++) {
        dfx_view v;
        dfx_tensor_info ti;
        dfx_session_get_output(s, i, &v);
        dfx_model_tensor_info(m, dfx_model_output(m, i), &ti);
        if (out_codes && !v.is_float) {
            for (int64_t k = 0; k < v.count; k++) {
                int32_t q = dfx_view_code(&v, k);
                fwrite(&q, 4, 1, o);
            }
        } else {
            for (int64_t k = 0; k < v.count; k++) {
                float x = v.is_float ? ((const float *)v.data)[k] : (float)ldexp(dfx_view_code(&v, k), -ti.fl);
                fwrite(&x, 4, 1, o);
            }
        }
        printf("%s: %lld values\n", ti.name, (long long)v.count);
    }
    fclose(o);
    dfx_session_destroy(s);
    dfx_model_close(m);
    free(in);
    return 0;
}

/* C test: load a model from a memory buffer (as a const array in flash would
 * be), check the arena plan, run it on the input stored next to it and compare
 * every output code with the NumPy reference's result.
 *
 *   test_buffer model.dfx model.dfx.expected
 *
 * The .expected file: int64 n, n float32 input values, int64 m, m int32
 * output codes (little-endian), written by tests/make_test_model.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dfx.h"

static unsigned char *read_all(const char *path, size_t *size, size_t align)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *raw = (unsigned char *)malloc(*size + align);
    unsigned char *p = (unsigned char *)(((size_t)raw + align - 1) / align * align);
    if (!raw || fread(p, 1, *size, f) != *size) {
        fclose(f);
        return NULL;
    }
    fclose(f);
    return p;
}

#define CHECK(cond, ...)                                  \
    do {                                                  \
        if (!(cond)) {                                    \
            fprintf(stderr, __VA_ARGS__);                 \
            fprintf(stderr, " [%s]\n", dfx_last_error()); \
            return 1;                                     \
        }                                                 \
    } while (0)

int main(int argc, char **argv)
{
    size_t msize, esize;
    CHECK(argc == 3, "usage: test_buffer model.dfx expected");
    unsigned char *model = read_all(argv[1], &msize, 64), *exp = read_all(argv[2], &esize, 8);
    CHECK(model && exp, "cannot read the test files");
    dfx_model *m;
    CHECK(dfx_model_open_buffer(model, msize, DFX_VERIFY_CHECKSUMS, &m) == DFX_OK, "open_buffer failed");
    CHECK(dfx_model_open_buffer(model + 1, msize - 1, 0, &(dfx_model *){0}) == DFX_ERR_ARGUMENT,
          "misaligned buffer accepted");

    /* a corrupted copy must be refused with a message */
    unsigned char *bad = (unsigned char *)malloc(msize + 64), *b = (unsigned char *)(((size_t)bad + 63) / 64 * 64);
    memcpy(b, model, msize);
    b[100] ^= 0x55;
    dfx_model *m2 = NULL;
    CHECK(dfx_model_open_buffer(b, msize, 0, &m2) != DFX_OK && m2 == NULL && dfx_last_error()[0],
          "corruption not detected");
    free(bad);

    int64_t n_in, n_out;
    memcpy(&n_in, exp, 8);
    const float *x = (const float *)(exp + 8);
    memcpy(&n_out, exp + 8 + 4 * n_in, 8);
    const int32_t *want = (const int32_t *)(exp + 16 + 4 * n_in);

    size_t arena, total;
    CHECK(dfx_model_arena_size(m, 1, 0, &arena, &total) == DFX_OK, "arena_size failed");
    printf("arena %zu bytes, activations %zu bytes\n", arena, total);
    void *mem = malloc(arena + 16);
    void *al = (void *)(((size_t)mem + 15) / 16 * 16);
    dfx_session *s;
    CHECK(dfx_session_create(m, 1, al, arena - 1, 0, &s) == DFX_ERR_NOMEM, "a too small arena was accepted");
    CHECK(dfx_session_create(m, 1, al, arena, 0, &s) == DFX_OK, "session_create failed");
    CHECK(dfx_session_run(s) == DFX_ERR_STATE, "ran without inputs");
    CHECK(dfx_session_set_input_f32(s, 0, x, n_in) == DFX_OK, "set_input failed");
    CHECK(dfx_session_run(s) == DFX_OK, "run failed");
    dfx_view v;
    CHECK(dfx_session_get_output(s, 0, &v) == DFX_OK, "get_output failed");
    CHECK(v.count == n_out && !v.is_float, "output has %lld values, expected %lld codes", (long long)v.count,
          (long long)n_out);
    for (int64_t i = 0; i < n_out; i++)
        CHECK(dfx_view_code(&v, i) == want[i], "output %lld: %d != %d", (long long)i, dfx_view_code(&v, i), want[i]);
    printf("%lld output codes equal the reference\n", (long long)n_out);
    dfx_session_destroy(s);
    dfx_model_close(m);
    free(mem);
    return 0;
}

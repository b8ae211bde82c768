/* Mutation fuzzer for the loader and verifier (no libFuzzer needed).
 *
 *   dfx-fuzz ITERATIONS SEED file.dfx [file.dfx ...]
 *
 * Each iteration takes one of the seed files, applies 1..8 random mutations
 * (bit flips, interesting bytes and 32-bit values, chunk copies, truncation,
 * extension), mostly inside the graph region, and re-computes the header and
 * graph CRCs in 7 of 8 cases so that the FlatBuffer verifier, the decoder and
 * the semantic checks see the damage instead of a checksum error. Every file
 * the library accepts is also planned and run once on zero inputs (arena up
 * to 64 MB). Built with AddressSanitizer and UBSan; an alarm aborts on a hang.
 * Prints the number of files accepted and refused per status. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dfx.h"

static uint64_t rng_state;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static size_t mutate(unsigned char *buf, size_t size, size_t cap)
{
    uint64_t g_len = size >= 64 ? get64(buf + 24) : 0;
    size_t lo = 64, hi = size;
    if (g_len && 64 + g_len <= size && rnd() % 8) hi = 64 + (size_t)g_len; /* mostly the graph */
    if (hi <= lo) {
        lo = 0;
        hi = size;
    }
    int n = 1 + rnd() % 8;
    for (int k = 0; k < n && size > 0; k++) {
        size_t pos = lo + rnd() % (hi - lo);
        static const uint32_t interesting[] = {0,           1,           2,      4,      8,      0x7f,
                                               0x80,        0xff,        0x7fff, 0x8000, 0xffff, 0x7fffffff,
                                               0x80000000u, 0xffffffffu, 64,     63,     1000000};
        switch (rnd() % 7) {
            case 0: buf[pos] ^= (unsigned char)(1u << (rnd() % 8)); break;
            case 1: buf[pos] = (unsigned char)interesting[rnd() % 8]; break;
            case 2:
                if (pos + 4 <= size) put32(buf + pos, interesting[rnd() % 17]);
                break;
            case 3:
                if (pos + 4 <= size) put32(buf + pos, rnd());
                break;
            case 4: {
                size_t src = lo + rnd() % (hi - lo), len = 1 + rnd() % 16;
                if (src + len <= size && pos + len <= size) memmove(buf + pos, buf + src, len);
                break;
            }
            case 5:
                if (rnd() % 4 == 0) size = pos;
                break; /* truncate */
            case 6:
                if (size + 64 <= cap && rnd() % 4 == 0) {
                    memset(buf + size, (int)(rnd() & 0xff), 64);
                    size += 64;
                }
                break;
        }
    }
    return size;
}

static void fix_crcs(unsigned char *buf, size_t size)
{
    if (size < 64) return;
    uint64_t g_off = get64(buf + 16), g_len = get64(buf + 24);
    if (g_off == 64 && g_len <= size - 64) put32(buf + 48, dfx_crc32(0, buf + 64, (size_t)g_len));
    put32(buf + 60, dfx_crc32(0, buf, 60));
}

static void on_alarm(int sig)
{
    (void)sig;
    fprintf(stderr, "dfx-fuzz: HANG (an iteration took more than 20 s)\n");
    abort();
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: dfx-fuzz ITERATIONS SEED file.dfx...\n");
        return 2;
    }
    long iters = atol(argv[1]);
    rng_state = (uint64_t)atoll(argv[2]) * 2654435761u + 88172645463325252ull;
    int nseeds = argc - 3;
    unsigned char **seeds = calloc((size_t)nseeds, sizeof *seeds);
    size_t *sizes = calloc((size_t)nseeds, sizeof *sizes), maxsize = 0;
    for (int i = 0; i < nseeds; i++) {
        FILE *f = fopen(argv[3 + i], "rb");
        if (!f) {
            fprintf(stderr, "cannot read %s\n", argv[3 + i]);
            return 2;
        }
        fseek(f, 0, SEEK_END);
        sizes[i] = (size_t)ftell(f);
        fseek(f, 0, SEEK_SET);
        seeds[i] = malloc(sizes[i]);
        if (fread(seeds[i], 1, sizes[i], f) != sizes[i]) return 2;
        fclose(f);
        if (sizes[i] > maxsize) maxsize = sizes[i];
    }
    size_t cap = maxsize + 64 * 16;
    unsigned char *raw = malloc(cap + 64), *buf = (unsigned char *)(((size_t)raw + 63) / 64 * 64);
    long counts[16] = {0}, ran = 0;
    int run_models = getenv("DFX_FUZZ_NO_RUN") == NULL;
    signal(SIGALRM, on_alarm);
    long save_from = -1;
    const char *save_path = NULL, *save_env = getenv("DFX_FUZZ_SAVE");
    if (save_env && strchr(save_env, ':')) {
        save_from = atol(save_env);
        save_path = strchr(save_env, ':') + 1;
    }
    for (long it = 0; it < iters; it++) {
        int s = (int)(rnd() % (unsigned)nseeds);
        memcpy(buf, seeds[s], sizes[s]);
        size_t size = mutate(buf, sizes[s], cap);
        if (rnd() % 8) fix_crcs(buf, size);
        if (getenv("DFX_FUZZ_TRACE")) { fprintf(stderr, "iteration %ld seed %d\n", it, s); }
        if (save_from >= 0 && it >= save_from) { /* DFX_FUZZ_SAVE=ITER:PATH keeps the current input in PATH */
            FILE *f = fopen(save_path, "wb");
            if (f) {
                fwrite(buf, 1, size, f);
                fclose(f);
            }
        }
        alarm(20);
        dfx_model *m = NULL;
        dfx_status st = dfx_model_open_buffer(buf, size, (rnd() & 1) ? DFX_VERIFY_CHECKSUMS : 0, &m);
        counts[st < 16 ? st : 15]++;
        if (st == DFX_OK && !run_models) {
            dfx_model_close(m);
        } else if (st == DFX_OK) {
            size_t arena = 0, sum = 0;
            dfx_session *sess = NULL;
            if (dfx_model_arena_size(m, 1, 0, &arena, &sum) == DFX_OK && arena <= (64u << 20) &&
                dfx_session_create(m, 1, NULL, 0, 0, &sess) == DFX_OK) {
                for (int i = 0; i < dfx_model_num_inputs(m); i++) {
                    dfx_view v;
                    (void)v;
                    dfx_tensor_info ti;
                    dfx_model_tensor_info(m, dfx_model_input(m, i), &ti);
                    int64_t c = 1;
                    for (int d = 1; d < ti.rank; d++) c *= ti.shape[d];
                    float *z = calloc((size_t)(c ? c : 1), sizeof *z);
                    dfx_session_set_input_f32(sess, i, z, c);
                    free(z);
                }
                if (dfx_session_run(sess) == DFX_OK) ran++;
                dfx_session_destroy(sess);
            }
            dfx_model_close(m);
        } else if (!dfx_last_error()[0]) {
            fprintf(stderr, "dfx-fuzz: status %d without a message\n", st);
            abort();
        }
        alarm(0);
    }
    printf("dfx-fuzz: %ld iterations, %ld accepted (%ld run), refused:", iters, counts[0], ran);
    for (int k = 1; k < 16; k++)
        if (counts[k]) printf(" %s=%ld", dfx_status_name((dfx_status)k), counts[k]);
    printf("\n");
    fflush(stdout);
    for (int i = 0; i < nseeds; i++) free(seeds[i]);
    free(seeds);
    free(sizes);
    free(raw);
    return 0;
}

/* The random inputs of the C kernel tests (test_neon.c, test_x86.c): a
 * seeded xorshift generator, so that every run checks the same cases, and
 * int8 codes with runs of the extremes. */
#ifndef DFX_TEST_RANDOM_H
#define DFX_TEST_RANDOM_H

#include <stddef.h>
#include <stdint.h>

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd64(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static int rndi(int lo, int hi) { return lo + (int)(rnd64() % (uint64_t)(hi - lo + 1)); }

/* int8 codes: mostly uniform, with runs of the extremes */
static void fill_s8(int8_t *p, size_t n)
{
    int mode = rndi(0, 5);
    for (size_t i = 0; i < n; i++) {
        int v = rndi(-128, 127);
        if (mode == 0) v = -128;
        else if (mode == 1) v = rndi(0, 1) ? -128 : 127;
        else if (mode == 2 && rndi(0, 3) == 0) v = -128;
        else if (mode == 3 && rndi(0, 3) == 0) v = 127;
        p[i] = (int8_t)v;
    }
}

#endif

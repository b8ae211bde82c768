/* The 4 x 16 tile of the VNNI sets' B >= 0 GEMM (dfx_x86_tile_u8 of x86.h), written once and included by
 * vnni.c once per form of VPDPBUSD, with:
 *   VNNI_TILE   the function's name;
 *   VNNI_TARGET its target attribute;
 *   VNNI_DPBUSD(acc, u, s): acc + in each int32 lane the sum of the 4 products of unsigned bytes of u and
 *               signed bytes of s (int32 wrapping, no saturation: what VPDPBUSD does).
 * A row's quad of weights (4 int8) is broadcast to every lane, the B panel's quad of 16 columns is two
 * registers of unsigned bytes (columns 0-7, 8-15): one VPDPBUSD per row and half adds 32 products. */
VNNI_TARGET void VNNI_TILE(int kq, const int8_t *ap, const int8_t *bp, int32_t *c, int ldc, int mr, int nr, int acc,
                           int safe)
{
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    (void)safe;
    for (int q = 0; q < kq; q++, ap += 16, bp += 64) {
        __m256i b0 = _mm256_loadu_si256((const __m256i *)bp), b1 = _mm256_loadu_si256((const __m256i *)(bp + 32));
        int32_t w[4];
        memcpy(w, ap, sizeof w);
        __m256i a0 = _mm256_set1_epi32(w[0]), a1 = _mm256_set1_epi32(w[1]);
        __m256i a2 = _mm256_set1_epi32(w[2]), a3 = _mm256_set1_epi32(w[3]);
        c00 = VNNI_DPBUSD(c00, b0, a0);
        c01 = VNNI_DPBUSD(c01, b1, a0);
        c10 = VNNI_DPBUSD(c10, b0, a1);
        c11 = VNNI_DPBUSD(c11, b1, a1);
        c20 = VNNI_DPBUSD(c20, b0, a2);
        c21 = VNNI_DPBUSD(c21, b1, a2);
        c30 = VNNI_DPBUSD(c30, b0, a3);
        c31 = VNNI_DPBUSD(c31, b1, a3);
    }
    __m256i t[8] = {c00, c01, c10, c11, c20, c21, c30, c31};
    for (int r = 0; r < mr; r++) {
        int32_t *cr = c + (size_t)r * ldc;
        if (nr == 16) {
            __m256i lo = t[2 * r], hi = t[2 * r + 1];
            if (acc) {
                lo = _mm256_add_epi32(lo, _mm256_loadu_si256((const __m256i *)cr));
                hi = _mm256_add_epi32(hi, _mm256_loadu_si256((const __m256i *)(cr + 8)));
            }
            _mm256_storeu_si256((__m256i *)cr, lo);
            _mm256_storeu_si256((__m256i *)(cr + 8), hi);
        } else {
            int32_t v[16];
            _mm256_storeu_si256((__m256i *)v, t[2 * r]);
            _mm256_storeu_si256((__m256i *)(v + 8), t[2 * r + 1]);
            for (int j = 0; j < nr; j++) cr[j] = acc ? (int32_t)((uint32_t)cr[j] + (uint32_t)v[j]) : v[j];
        }
    }
}

/* The 3 x 3 depthwise convolution of the VNNI sets (dwconv_s8 of dispatch.h for kh = kw = 3, stride 1 or 2
 * both ways, dilation 1), written once and included by vnni.c once per form of VPDPBUSD, with:
 *   VNNI_DW     the function's name;
 *   VNNI_TARGET its target attribute;
 *   VNNI_DPBUSD(acc, u, s): as in vnni_tile.h.
 * The int8 codes are offset by 128 (XOR 0x80) into unsigned bytes, padding included (a zero code becomes
 * 128), so sum k * (x + 128) - 128 * sum k = sum k * x for every output, edges too: the sums start from
 * -128 * sum k. A tap row (k0, k1, k2, 0) is broadcast to every int32 lane; a 32-byte load of a padded row
 * at column c holds in lane j the window of columns c + 4j .. c + 4j + 3, so one VPDPBUSD adds a tap row of
 * 8 outputs whose windows start 4 apart:
 *  - stride 1: loads at c, c + 1, c + 2, c + 3 give outputs c + 4j + o (o = 0..3): 32 outputs from 12
 *    VPDPBUSD, put back in order by a 4 x 4 transpose of each 128-bit half;
 *  - stride 2: loads at 2c and 2c + 2 give outputs c + 2j and c + 2j + 1: 16 outputs from 6 VPDPBUSD,
 *    interleaved as dwconv.c's even and odd sums.
 * Products of unsigned bytes (at most 255) and int8 codes, and their sums, are exact in int32. Strips of
 * output rows read a padded copy of the input rows they need (DW_VNNI_BUF bytes on the stack); returns 0
 * (nothing written) for other geometry, or a row too long for the buffer. */
VNNI_TARGET int VNNI_DW(const int8_t *x, int h, int w, const int8_t *k, int s, int pt, int pl, int32_t *out, int oh,
                        int ow)
{
    int step = s == 1 ? 32 : 16;                       /* outputs per block */
    int blocks = (ow + step - 1) / step;               /* the last block may compute columns past ow */
    int pitch = ((blocks * step * s + 40) + 31) & ~31; /* padded row: every load of every block in bounds */
    if ((s != 1 && s != 2) || oh < 1 || ow < 1 || pt < 0 || pl < 0 || 3 * pitch > DW_VNNI_BUF) return 0;
    uint8_t buf[DW_VNNI_BUF] __attribute__((aligned(32)));
    int rows = (DW_VNNI_BUF / pitch - 3) / s + 1; /* output rows per strip */
    int sum = 0;
    int32_t taps[3];
    for (int i = 0; i < 3; i++) {
        taps[i] = (int32_t)((uint32_t)(uint8_t)k[3 * i] | (uint32_t)(uint8_t)k[3 * i + 1] << 8 |
                            (uint32_t)(uint8_t)k[3 * i + 2] << 16);
        sum += k[3 * i] + k[3 * i + 1] + k[3 * i + 2];
    }
    const __m256i w0 = _mm256_set1_epi32(taps[0]), w1 = _mm256_set1_epi32(taps[1]), w2 = _mm256_set1_epi32(taps[2]);
    const __m256i base = _mm256_set1_epi32(-128 * sum), flip = _mm256_set1_epi8((char)0x80);
    for (int oy0 = 0; oy0 < oh; oy0 += rows) {
        int nr = oh - oy0 < rows ? oh - oy0 : rows, need = (nr - 1) * s + 3;
        for (int r = 0; r < need; r++) { /* padded row r: input row oy0 * s - pt + r, columns from -pl */
            uint8_t *d = buf + (size_t)r * pitch;
            int64_t iy = (int64_t)oy0 * s - pt + r;
            for (int c = 0; c < pitch; c += 32) _mm256_store_si256((__m256i *)(d + c), flip);
            if (iy < 0 || iy >= h || pl >= pitch) continue;
            const int8_t *src = x + iy * w;
            int n = w < pitch - pl ? w : pitch - pl, c = 0;
            for (; c + 32 <= n; c += 32)
                _mm256_storeu_si256((__m256i *)(d + pl + c),
                                    _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(src + c)), flip));
            for (; c < n; c++) d[pl + c] = (uint8_t)(src[c] ^ 0x80);
        }
        for (int y = 0; y < nr; y++) {
            const uint8_t *r0 = buf + (size_t)y * s * pitch, *r1 = r0 + pitch, *r2 = r1 + pitch;
            int32_t *o = out + (size_t)(oy0 + y) * ow;
            for (int b = 0; b < blocks; b++) {
                int x0 = b * step, n = ow - x0 < step ? ow - x0 : step;
                __m256i v[4];
                if (s == 1) {
                    __m256i a[4];
                    for (int t = 0; t < 4; t++) {
                        const size_t c = (size_t)x0 + (size_t)t;
                        a[t] = VNNI_DPBUSD(base, _mm256_loadu_si256((const __m256i *)(r0 + c)), w0);
                        a[t] = VNNI_DPBUSD(a[t], _mm256_loadu_si256((const __m256i *)(r1 + c)), w1);
                        a[t] = VNNI_DPBUSD(a[t], _mm256_loadu_si256((const __m256i *)(r2 + c)), w2);
                    }
                    /* a[t] lane j: output 4j + t; per 128-bit half, a 4 x 4 transpose */
                    __m256i l01 = _mm256_unpacklo_epi32(a[0], a[1]), h01 = _mm256_unpackhi_epi32(a[0], a[1]);
                    __m256i l23 = _mm256_unpacklo_epi32(a[2], a[3]), h23 = _mm256_unpackhi_epi32(a[2], a[3]);
                    __m256i q0 = _mm256_unpacklo_epi64(l01, l23), q1 = _mm256_unpackhi_epi64(l01, l23); /* 0-3, 4-7 */
                    __m256i q2 = _mm256_unpacklo_epi64(h01, h23), q3 = _mm256_unpackhi_epi64(h01, h23); /* 8-15 */
                    v[0] = _mm256_permute2x128_si256(q0, q1, 0x20);
                    v[1] = _mm256_permute2x128_si256(q2, q3, 0x20);
                    v[2] = _mm256_permute2x128_si256(q0, q1, 0x31);
                    v[3] = _mm256_permute2x128_si256(q2, q3, 0x31);
                } else {
                    __m256i a[2];
                    for (int t = 0; t < 2; t++) {
                        const size_t c = 2 * (size_t)x0 + 2 * (size_t)t;
                        a[t] = VNNI_DPBUSD(base, _mm256_loadu_si256((const __m256i *)(r0 + c)), w0);
                        a[t] = VNNI_DPBUSD(a[t], _mm256_loadu_si256((const __m256i *)(r1 + c)), w1);
                        a[t] = VNNI_DPBUSD(a[t], _mm256_loadu_si256((const __m256i *)(r2 + c)), w2);
                    }
                    /* a[0] lane j: output 2j, a[1]: 2j + 1 */
                    __m256i lo = _mm256_unpacklo_epi32(a[0], a[1]), hi = _mm256_unpackhi_epi32(a[0], a[1]);
                    v[0] = _mm256_permute2x128_si256(lo, hi, 0x20);
                    v[1] = _mm256_permute2x128_si256(lo, hi, 0x31);
                }
                if (n == step) {
                    for (int t = 0; t < step / 8; t++) _mm256_storeu_si256((__m256i *)(o + x0 + 8 * t), v[t]);
                } else {
                    int32_t tmp[32] __attribute__((aligned(32)));
                    for (int t = 0; t < step / 8; t++) _mm256_store_si256((__m256i *)(tmp + 8 * t), v[t]);
                    memcpy(o + x0, tmp, sizeof(int32_t) * (size_t)n);
                }
            }
        }
    }
    return 1;
}

/* classify: the class of a raw 8-bit image, with the model's stored preprocessing and labels.
 *   classify model.dfx image.u8      (image: H x W x C bytes, RGB; the model's input size) */
#include <stdio.h>

#include "dfx.h"

int main(int argc, char **argv)
{
    static uint8_t pixels[1 << 22];
    dfx_model *m = NULL;
    dfx_session *s = NULL;
    dfx_view out;
    int64_t best = 0;
    FILE *f = argc == 3 ? fopen(argv[2], "rb") : NULL;
    if (!f) {
        fprintf(stderr, "usage: classify model.dfx image.u8 (a readable H x W x C image)\n");
        return 2;
    }
    size_t n = fread(pixels, 1, sizeof pixels, f);
    fclose(f);
    dfx_status st = dfx_model_open_file(argv[1], DFX_VERIFY_CHECKSUMS, &m);
    if (!st) st = dfx_session_create(m, 1, NULL, 0, 0, &s);
    if (!st) st = dfx_session_set_input_u8(s, 0, pixels, (int64_t)n, DFX_PIXELS_HWC, DFX_ORDER_RGB);
    if (!st) st = dfx_session_run(s);
    if (!st) st = dfx_session_get_output(s, 0, &out);
    if (st) {
        fprintf(stderr, "classify: %s\n", dfx_last_error());
        return 1;
    }
    for (int64_t i = 1; i < out.count; i++)
        if (dfx_view_value(&out, i) > dfx_view_value(&out, best)) best = i;
    const char *label = dfx_model_label(m, (int)best);
    printf("class %lld: %s (score %g)\n", (long long)best, label ? label : "(no label)", dfx_view_value(&out, best));
    dfx_session_destroy(s);
    dfx_model_close(m);
    return 0;
}

/* dfx-run: run a .dfx model on a board (usage: dfx-run --help, or HELP below). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dfx.h"

static const char HELP[] = "usage: dfx-run [options] model.dfx input.bin [output.bin]\n"
                           "\n"
                           "Run a .dfx model with the dfx C library. input.bin holds every graph input, one after\n"
                           "the other, row-major in the input's own layout (N, C, H, W); the batch size follows\n"
                           "from its size. output.bin (optional) receives every graph output, one after the other.\n"
                           "\n"
                           "input and output:\n"
                           "  (default)        input: float32 values (little-endian); output: float32 real values\n"
                           "                   (integer codes are dequantized: code * 2^-fl)\n"
                           "  --raw            input: raw 8-bit pixels (uint8); the model's stored preprocessing\n"
                           "                   (channel order, mean, scale) is applied, as `dfxsdk run` does\n"
                           "  --hwc            with --raw: pixels interleaved (H, W, C) instead of planes (C, H, W)\n"
                           "  --bgr            with --raw: pixels in BGR order (default RGB); reordered to the\n"
                           "                   model's stored channel order\n"
                           "  --codes          integer inputs and outputs as int32 codes (float ones stay float32);\n"
                           "                   bit-exact checks use this form\n"
                           "  --in-codes, --out-codes   the same for the inputs or the outputs only\n"
                           "\n"
                           "checks and choices:\n"
                           "  --verify         also check every tensor's CRC-32 and value range (reads all weights);\n"
                           "                   use it once after copying a model to a board, or on every start when\n"
                           "                   the storage may corrupt files. Without it the header and graph\n"
                           "                   checksums and the whole structure are still verified.\n"
                           "  --kernels NAME   kernel set of this run: portable, avx2, avxvnni, neon, ... (what this\n"
                           "                   build and CPU have: %s); default: the library's choice (DFX_KERNELS)\n"
                           "  --threads N      threads of this run (results are the same for every N); 0 (default):\n"
                           "                   automatic, the environment variable DFX_THREADS (a number, or\n"
                           "                   \"cores\" for every online CPU), else 1\n"
                           "\n"
                           "reports (stdout):\n"
                           "  --top K          the K best classes of output 0 for every sample, with the model's\n"
                           "                   labels (dfxsdk convert --labels) when it stores them\n"
                           "  --time N         run N more times and print the median and minimum run time; a\n"
                           "                   library built with -DDFX_PROFILE=ON adds the mean time of every layer\n"
                           "  --repeat N       set the inputs and run N times (instruction counts in benchmarks)\n"
                           "  --verbose        print the kernel set and the thread count in use on stderr\n"
                           "  --help           this text\n"
                           "\n"
                           "The output file is written atomically (a temporary file renamed over it) with the\n"
                           "mode a new file gets (umask); a device or FIFO given as output is written directly.\n"
                           "Exit codes: 0 ok, 1 internal error, 2 bad input (files, arguments, data, a failed\n"
                           "write), 3 unsupported (a valid model this library cannot run).\n";

#define DFX_STR2(x) #x
#define DFX_STR(x) DFX_STR2(x)

enum { EXIT_OK = 0, EXIT_INTERNAL = 1, EXIT_INPUT = 2, EXIT_UNSUPPORTED = 3 };

static int exit_code(dfx_status st)
{
    switch (st) {
        case DFX_OK: return EXIT_OK;
        case DFX_ERR_VERSION:
        case DFX_ERR_UNSUPPORTED: return EXIT_UNSUPPORTED;
        case DFX_ERR_IO:
        case DFX_ERR_FORMAT:
        case DFX_ERR_CHECKSUM:
        case DFX_ERR_INVALID:
        case DFX_ERR_ARGUMENT: return EXIT_INPUT;
        default: return EXIT_INTERNAL;
    }
}

static int fail(dfx_status st, const char *what)
{
    fprintf(stderr, "dfx-run: %s: %s (%s)\n", what, dfx_last_error(), dfx_status_name(st));
    return exit_code(st);
}

static int usage(const char *why)
{
    fprintf(stderr, "dfx-run: %s\nusage: dfx-run [options] model.dfx input.bin [output.bin] (see dfx-run --help)\n",
            why);
    return EXIT_INPUT;
}

typedef struct {
    int in_codes, out_codes, raw, hwc, bgr, verify, verbose, top, time_runs, repeat, threads;
    const char *kernels, *model, *input, *output;
} args_t;

static int parse_count(const char *s, int *out)
{
    char *end;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || *end || v < 1 || v > INT_MAX) return 0;
    *out = (int)v;
    return 1;
}

/* 0 when the arguments are good, else the exit code (after a message). */
static int parse_args(int argc, char **argv, args_t *a)
{
    int k = 1;
    memset(a, 0, sizeof *a);
    a->repeat = 1;
    for (; k < argc && argv[k][0] == '-' && argv[k][1] == '-'; k++) {
        const char *o = argv[k], *v = k + 1 < argc ? argv[k + 1] : NULL;
        if (!strcmp(o, "--codes")) a->in_codes = a->out_codes = 1;
        else if (!strcmp(o, "--in-codes")) a->in_codes = 1;
        else if (!strcmp(o, "--out-codes")) a->out_codes = 1;
        else if (!strcmp(o, "--raw")) a->raw = 1;
        else if (!strcmp(o, "--hwc")) a->hwc = 1;
        else if (!strcmp(o, "--bgr")) a->bgr = 1;
        else if (!strcmp(o, "--verify")) a->verify = 1;
        else if (!strcmp(o, "--verbose")) a->verbose = 1;
        else if (!strcmp(o, "--kernels") && v) {
            a->kernels = v;
            k++;
        } else if (!strcmp(o, "--top")) {
            if (!parse_count(v, &a->top)) return usage("--top needs a count >= 1");
            k++;
        } else if (!strcmp(o, "--time")) {
            if (!parse_count(v, &a->time_runs)) return usage("--time needs a count >= 1");
            k++;
        } else if (!strcmp(o, "--repeat")) {
            if (!parse_count(v, &a->repeat)) return usage("--repeat needs a count >= 1");
            k++;
        } else if (!strcmp(o, "--threads")) {
            if (v && !strcmp(v, "0")) a->threads = 0;
            else if (!parse_count(v, &a->threads) || a->threads > DFX_MAX_SESSION_THREADS)
                return usage("--threads needs a count from 0 (automatic) to " DFX_STR(DFX_MAX_SESSION_THREADS));
            k++;
        } else {
            char msg[160];
            snprintf(msg, sizeof msg, "unknown option or missing value: %.100s", o);
            return usage(msg);
        }
    }
    if (argc - k != 2 && argc - k != 3) return usage("expected model.dfx input.bin [output.bin]");
    if (a->raw && a->in_codes) return usage("--raw and --codes/--in-codes exclude each other");
    if ((a->hwc || a->bgr) && !a->raw) return usage("--hwc and --bgr describe --raw pixels");
    a->model = argv[k];
    a->input = argv[k + 1];
    a->output = argc - k == 3 ? argv[k + 2] : NULL;
    return 0;
}

/* A regular file (or a message and 0): FIFOs and devices would block or never end. */
static int regular_input(const char *path, const char *what)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "dfx-run: %s %s: %s\n", what, path, strerror(errno));
        return 0;
    }
    if (!S_ISREG(sb.st_mode)) {
        fprintf(stderr, "dfx-run: %s %s: not a regular file\n", what, path);
        return 0;
    }
    return 1;
}

static int read_file(const char *path, unsigned char **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "dfx-run: input %s: %s\n", path, strerror(errno));
        return EXIT_INPUT;
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *p = (unsigned char *)malloc(cap);
    for (;;) {
        if (!p) {
            fclose(f);
            fprintf(stderr, "dfx-run: out of memory reading %s\n", path);
            return EXIT_INTERNAL;
        }
        n += fread(p + n, 1, cap - n, f);
        if (n < cap) break;
        unsigned char *q = cap > ((size_t)-1) / 2 ? NULL : (unsigned char *)realloc(p, cap * 2);
        if (!q) free(p);
        p = q;
        cap *= 2;
    }
    int err = ferror(f) ? errno : 0;
    fclose(f);
    if (err) {
        free(p);
        fprintf(stderr, "dfx-run: input %s: %s\n", path, strerror(err));
        return EXIT_INPUT;
    }
    *data = p;
    *size = n;
    return EXIT_OK;
}

/* ---- output: atomically replaced regular file, or written through to a device or FIFO ---- */

typedef struct {
    FILE *f;
    char target[4096], tmp[4200];
    int direct;
} out_file;

static int out_open(out_file *o, const char *path)
{
    struct stat sb;
    memset(o, 0, sizeof *o);
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        if (S_ISDIR(sb.st_mode)) {
            fprintf(stderr, "dfx-run: output %s: is a directory\n", path);
            return EXIT_INPUT;
        }
        o->f = fopen(path, "wb"); /* a device or FIFO: write through, never replace it */
        if (!o->f) {
            fprintf(stderr, "dfx-run: output %s: %s\n", path, strerror(errno));
            return EXIT_INPUT;
        }
        o->direct = 1;
        snprintf(o->target, sizeof o->target, "%s", path);
        return EXIT_OK;
    }
    /* a symbolic link: replace its target, not the link */
    char *real = realpath(path, NULL);
    snprintf(o->target, sizeof o->target, "%s", real ? real : path);
    free(real);
    snprintf(o->tmp, sizeof o->tmp, "%s.tmp.XXXXXX", o->target);
    int fd = mkstemp(o->tmp);
    if (fd < 0) {
        fprintf(stderr, "dfx-run: output %s: %s\n", path, strerror(errno));
        return EXIT_INPUT;
    }
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) != 0 || !(o->f = fdopen(fd, "wb"))) {
        fprintf(stderr, "dfx-run: output %s: %s\n", path, strerror(errno));
        close(fd);
        unlink(o->tmp);
        return EXIT_INPUT;
    }
    return EXIT_OK;
}

static void out_abort(out_file *o)
{
    if (o->f) fclose(o->f);
    if (!o->direct && o->tmp[0]) unlink(o->tmp);
    o->f = NULL;
}

static int out_commit(out_file *o)
{
    int err = ferror(o->f) ? EIO : 0;
    if (!err && fflush(o->f) != 0) err = errno;
    if (!err && !o->direct && fsync(fileno(o->f)) != 0) err = errno;
    if (fclose(o->f) != 0 && !err) err = errno;
    o->f = NULL;
    if (!err && !o->direct && rename(o->tmp, o->target) != 0) err = errno;
    if (err) {
        if (!o->direct) unlink(o->tmp);
        fprintf(stderr, "dfx-run: cannot write %s: %s\n", o->target, strerror(err));
        return EXIT_INPUT;
    }
    return EXIT_OK;
}

/* ---- reports ---- */

static int write_outputs(dfx_session *s, const dfx_model *m, const args_t *a, out_file *o)
{
    for (int i = 0; i < dfx_model_num_outputs(m); i++) {
        dfx_view v;
        dfx_tensor_info ti;
        dfx_status st = dfx_session_get_output(s, i, &v);
        if (!st) st = dfx_model_tensor_info(m, dfx_model_output(m, i), &ti);
        if (st) return fail(st, "output");
        for (int64_t k = 0; k < v.count; k++) {
            if (a->out_codes && !v.is_float) {
                int32_t q = dfx_view_code(&v, k);
                fwrite(&q, 4, 1, o->f);
            } else {
                float x = (float)dfx_view_value(&v, k);
                fwrite(&x, 4, 1, o->f);
            }
        }
    }
    return EXIT_OK;
}

static void print_outputs(dfx_session *s, const dfx_model *m)
{
    for (int i = 0; i < dfx_model_num_outputs(m); i++) {
        dfx_view v;
        dfx_tensor_info ti;
        if (!dfx_session_get_output(s, i, &v) && !dfx_model_tensor_info(m, dfx_model_output(m, i), &ti))
            printf("%s: %lld values\n", ti.name, (long long)v.count);
    }
}

static int print_top(dfx_session *s, const dfx_model *m, int64_t batch, int top)
{
    dfx_view v;
    dfx_tensor_info ti;
    dfx_status st = dfx_session_get_output(s, 0, &v);
    if (!st) st = dfx_model_tensor_info(m, dfx_model_output(m, 0), &ti);
    if (st) return fail(st, "output");
    int64_t n = v.count / (v.shape[0] == batch && batch > 0 ? batch : 1), samples = v.count / (n ? n : 1);
    int k = top < n ? top : (int)n;
    int64_t *best = (int64_t *)malloc((size_t)(k ? k : 1) * sizeof *best);
    if (!best) {
        fprintf(stderr, "dfx-run: out of memory\n");
        return EXIT_INTERNAL;
    }
    for (int64_t b = 0; b < samples; b++) {
        int have = 0;
        for (int64_t c = 0; c < n; c++) { /* insertion into the k best, ties to the lower class */
            double x = dfx_view_value(&v, b * n + c);
            int pos = have;
            while (pos > 0 && dfx_view_value(&v, b * n + best[pos - 1]) < x) pos--;
            if (pos >= k) continue;
            for (int j = (have < k ? have : k - 1); j > pos; j--) best[j] = best[j - 1];
            best[pos] = c;
            if (have < k) have++;
        }
        printf("%s, sample %lld:\n", ti.name, (long long)b);
        for (int j = 0; j < have; j++) {
            const char *label = dfx_model_label(m, (int)best[j]);
            printf("  %d. class %lld %-20s %.6g\n", j + 1, (long long)best[j], label ? label : "",
                   dfx_view_value(&v, b * n + best[j]));
        }
    }
    free(best);
    return EXIT_OK;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- running ---- */

static int64_t per_sample(const dfx_model *m, int i)
{
    dfx_tensor_info ti;
    int64_t c = 1;
    if (dfx_model_tensor_info(m, dfx_model_input(m, i), &ti)) return -1;
    for (int d = 1; d < ti.rank; d++) c *= ti.shape[d];
    return c;
}

static int set_inputs(dfx_session *s, const dfx_model *m, const args_t *a, const unsigned char *in, int64_t batch)
{
    int64_t pos = 0; /* bytes */
    for (int i = 0; i < dfx_model_num_inputs(m); i++) {
        dfx_tensor_info ti;
        dfx_status st = dfx_model_tensor_info(m, dfx_model_input(m, i), &ti);
        int64_t c = batch * per_sample(m, i);
        if (st) return fail(st, "input");
        if (a->raw) {
            st = dfx_session_set_input_u8(s, i, in + pos, c, a->hwc ? DFX_PIXELS_HWC : DFX_PIXELS_CHW,
                                          a->bgr ? DFX_ORDER_BGR : DFX_ORDER_RGB);
            pos += c;
        } else if (a->in_codes && ti.dtype != DFX_FLOAT32) {
            st = dfx_session_set_input_codes(s, i, (const int32_t *)(const void *)(in + pos), c);
            pos += 4 * c;
        } else {
            st = dfx_session_set_input_f32(s, i, (const float *)(const void *)(in + pos), c);
            pos += 4 * c;
        }
        if (st) return fail(st, "input");
    }
    return EXIT_OK;
}

static int time_runs(dfx_session *s, const dfx_model *m, const args_t *a, const unsigned char *in, int64_t batch)
{
    double *t = (double *)malloc((size_t)a->time_runs * sizeof *t);
    if (!t) {
        fprintf(stderr, "dfx-run: out of memory\n");
        return EXIT_INTERNAL;
    }
    for (int r = 0; r < a->time_runs; r++) {
        int rc = set_inputs(s, m, a, in, batch);
        if (rc) {
            free(t);
            return rc;
        }
        double t0 = now_s();
        dfx_status st = dfx_session_run(s);
        t[r] = now_s() - t0;
        if (st) {
            free(t);
            return fail(st, "run");
        }
    }
    qsort(t, (size_t)a->time_runs, sizeof *t, cmp_double);
    int n = a->time_runs;
    double median = n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
    printf("time: %d runs of batch %lld: median %.3f ms, min %.3f ms\n", n, (long long)batch, median * 1e3, t[0] * 1e3);
    free(t);
    double sec;
    int64_t runs;
    dfx_status st = dfx_session_layer_time(s, 0, &sec, &runs);
    if (st == DFX_ERR_UNSUPPORTED) {
        printf("per-layer times: build the library with -DDFX_PROFILE=ON\n");
        return EXIT_OK;
    }
    double total = 0;
    for (int li = 0; li < dfx_model_num_layers(m); li++)
        if (!dfx_session_layer_time(s, li, &sec, &runs)) total += sec;
    printf("per layer (mean of %lld runs):\n", (long long)runs);
    for (int li = 0; li < dfx_model_num_layers(m); li++) {
        if ((st = dfx_session_layer_time(s, li, &sec, &runs))) return fail(st, "profile");
        printf("  %-28s %-18s %9.3f ms %5.1f%%\n", dfx_model_layer_name(m, li), dfx_model_layer_type(m, li),
               runs ? sec / (double)runs * 1e3 : 0.0, total > 0 ? 100.0 * sec / total : 0.0);
    }
    return EXIT_OK;
}

static int run(const args_t *a, dfx_model *m, const unsigned char *in, size_t size)
{
    int64_t sample_bytes = 0, unit = a->raw ? 1 : 4;
    for (int i = 0; i < dfx_model_num_inputs(m); i++) {
        int64_t c = per_sample(m, i);
        if (c < 0) return fail(DFX_ERR_ARGUMENT, "input");
        sample_bytes += c * unit;
    }
    int64_t batch = sample_bytes ? (int64_t)size / sample_bytes : 1;
    if (batch < 1 || batch * sample_bytes != (int64_t)size) {
        fprintf(stderr, "dfx-run: input %s has %zu bytes, not a whole number of %lld-byte samples%s\n", a->input, size,
                (long long)sample_bytes, a->raw ? " (uint8 pixels)" : " (4-byte values)");
        return EXIT_INPUT;
    }
    dfx_session_options opt;
    dfx_session_options_init(&opt);
    opt.batch = batch;
    opt.kernels = a->kernels;
    opt.threads = a->threads;
    dfx_session *s = NULL;
    dfx_status st = dfx_session_create_ex(m, &opt, &s);
    if (st) return fail(st, "session");
    if (a->verbose) {
        fprintf(stderr, "dfx-run: kernels: %s\n", a->kernels ? dfx_session_kernels_name(s) : dfx_kernels_name());
        fprintf(stderr, "dfx-run: threads: %d\n", dfx_session_threads(s));
    }
    int rc = EXIT_OK;
    for (int r = 0; r < a->repeat && !rc; r++) { /* the arena may reuse input memory: set the inputs every time */
        rc = set_inputs(s, m, a, in, batch);
        if (!rc && (st = dfx_session_run(s))) rc = fail(st, "run");
    }
    if (!rc && a->output) {
        out_file o;
        rc = out_open(&o, a->output);
        if (!rc) {
            rc = write_outputs(s, m, a, &o);
            if (rc) out_abort(&o);
            else rc = out_commit(&o);
        }
        if (!rc) print_outputs(s, m);
    }
    if (!rc && a->top) rc = print_top(s, m, batch, a->top);
    if (!rc && a->time_runs) rc = time_runs(s, m, a, in, batch);
    dfx_session_destroy(s);
    return rc;
}

int main(int argc, char **argv)
{
    for (int k = 1; k < argc; k++)
        if (!strcmp(argv[k], "--help") || !strcmp(argv[k], "-h")) {
            char sets[128] = "";
            for (int i = 0; dfx_kernels_available(i); i++)
                snprintf(sets + strlen(sets), sizeof sets - strlen(sets), "%s%s", i ? ", " : "",
                         dfx_kernels_available(i));
            printf(HELP, sets);
            return EXIT_OK;
        }
    args_t a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    if (!regular_input(a.model, "model") || !regular_input(a.input, "input")) return EXIT_INPUT;
    dfx_model *m = NULL;
    dfx_status st = dfx_model_open_file(a.model, a.verify ? DFX_VERIFY_CHECKSUMS : 0, &m);
    if (st) return fail(st, "model");
    unsigned char *in = NULL;
    size_t size = 0;
    rc = read_file(a.input, &in, &size);
    if (!rc) rc = run(&a, m, in, size);
    if (fflush(stdout) != 0 && !rc) {
        fprintf(stderr, "dfx-run: cannot write the standard output: %s\n", strerror(errno));
        rc = EXIT_INPUT;
    }
    free(in);
    dfx_model_close(m);
    return rc;
}

/*
 * dfx.h - the C API of the dfx runtime (one header, C99).
 *
 * A .dfx file is a 64-byte header, a FlatBuffer graph and a data section of
 * 64-byte aligned tensors (spec/format.md). This library opens such a file
 * from a path (read-only mmap) or from a caller's memory buffer (for example a
 * const array in flash), verifies it completely before any use, and runs it
 * with integer kernels that are bit-exact to spec/arithmetic.md. Weights are
 * used in place; activations live in one arena computed by a memory planner.
 * Nothing is allocated on the heap while a session runs.
 *
 * Typical use (error checks shortened; kernels/examples/classify.c is a
 * complete program):
 *
 *     dfx_model *m; dfx_session *s; dfx_view out; dfx_status st;
 *     st = dfx_model_open_file("net.dfx", DFX_VERIFY_CHECKSUMS, &m);
 *     if (st) { fprintf(stderr, "%s\n", dfx_last_error()); return 1; }
 *     st = dfx_session_create(m, 1, NULL, 0, 0, &s);      // library allocates the arena
 *     st = dfx_session_set_input_u8(s, 0, pixels, n, DFX_PIXELS_HWC, DFX_ORDER_RGB);
 *                                                          // stored preprocessing + quantization
 *     st = dfx_session_run(s);
 *     st = dfx_session_get_output(s, 0, &out);
 *     // out.dtype: DFX_INT8 for an output of bw <= 8 (int16 for bw <= 16, int32
 *     // above, float32 for a float output); dfx_view_value(&out, i) dequantizes
 *     dfx_session_destroy(s); dfx_model_close(m);
 *
 * Every function returns DFX_OK (0) or an error code; dfx_last_error() gives
 * a message naming the file region, tensor, layer and field concerned. The
 * message buffer is per thread where the compiler supports thread-local
 * storage, else global.
 */
#ifndef DFX_H
#define DFX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(DFX_BUILD_SHARED)
#define DFX_API __declspec(dllexport)
#elif defined(__GNUC__)
#define DFX_API __attribute__((visibility("default")))
#else
#define DFX_API
#endif

#define DFX_VERSION_MAJOR 0
#define DFX_VERSION_MINOR 2

/** Error codes. */
typedef enum dfx_status {
    DFX_OK = 0,
    DFX_ERR_IO = 1,          /**< the file cannot be opened, sized or mapped (the message gives the OS reason) */
    DFX_ERR_FORMAT = 2,      /**< the file is malformed (header, graph, data) */
    DFX_ERR_CHECKSUM = 3,    /**< a CRC-32 does not match */
    DFX_ERR_VERSION = 4,     /**< unsupported format or operator version */
    DFX_ERR_INVALID = 5,     /**< a semantic rule is broken (shapes, formats, order) */
    DFX_ERR_UNSUPPORTED = 6, /**< an operator this runtime does not implement (Custom) */
    DFX_ERR_ARGUMENT = 7,    /**< bad argument (index, size, NULL, alignment) */
    DFX_ERR_NOMEM = 8,       /**< allocation failed, or the caller's arena is too small */
    DFX_ERR_STATE = 9        /**< e.g. running before every input is set */
} dfx_status;

/** Element types, equal to the schema's DataType. */
typedef enum dfx_dtype {
    DFX_FLOAT32 = 0,
    DFX_INT8 = 1,
    DFX_INT16 = 2,
    DFX_INT32 = 3,
    DFX_INT4 = 4,
    DFX_INT2 = 5
} dfx_dtype;

/** Flags of dfx_model_open_*. */
#define DFX_VERIFY_CHECKSUMS 1u /**< also check every tensor's CRC-32 and value range (reads all data) */

/** Flags of dfx_session_create. */
#define DFX_KEEP_ALL 1u /**< no reuse of activation memory: every tensor stays readable after a run */

typedef struct dfx_model dfx_model;
typedef struct dfx_session dfx_session;

/** Description of a tensor (pointers stay valid while the model is open). */
typedef struct dfx_tensor_info {
    const char *name; /**< zero-terminated */
    int rank;
    int64_t shape[8]; /**< dimension 0 of an activation is the batch */
    dfx_dtype dtype;
    int quantized;        /**< 1 when the tensor has a dynamic fixed point format */
    int bw, fl, rounding; /**< valid when quantized and not per-channel */
    int per_channel;
    int is_constant;
} dfx_tensor_info;

/** A tensor's values in a session, `count` elements, row-major. Integer
 *  tensors are codes (value = code * 2^-fl) stored in the narrowest type of
 *  their bit width: int8_t for bw <= 8, int16_t for bw <= 16, int32_t
 *  otherwise (`dtype` says which; dfx_view_code reads any of them); float
 *  tensors are float32. A graph output that is a constant (the format allows
 *  it) is viewed in place, or as int32 codes when stored packed (2 or 4 bits).
 *
 *  ABI: the caller allocates this struct and the library fills it whole.
 *  Fields are only ever appended; a version that appends fields raises
 *  DFX_VERSION_MINOR and the shared library's soname (libdfx.so.0.MINOR), so a
 *  program built against an older dfx.h never runs with a library that writes
 *  a larger struct. The fields from `bw` on were added in 0.2. */
typedef struct dfx_view {
    const void *data;
    int64_t count;
    int is_float; /**< 1: float32 values, 0: integer codes */
    int rank;
    int64_t shape[8];
    dfx_dtype dtype; /**< storage: DFX_FLOAT32, DFX_INT8, DFX_INT16 or DFX_INT32 */
    /* -- since 0.2: the dynamic fixed point format (integer views) -- */
    int bw;                   /**< bit width of the codes (0 for float views) */
    int fl;                   /**< value = code * 2^-fl (0 when per_channel or float) */
    int per_channel;          /**< 1: element i of channel c has fl channel_fl[c] */
    int channel_axis;         /**< per_channel: the axis of the channels */
    const int8_t *channel_fl; /**< per_channel: shape[channel_axis] values, else NULL */
} dfx_view;

/** Real value of element i of a view: float views as stored, integer views
 *  code * 2^-fl (the element's channel fl when per-channel), exact in double. */
DFX_API double dfx_view_value(const dfx_view *v, int64_t i);

/** Integer code i of an integer view (any storage type). */
static inline int32_t dfx_view_code(const dfx_view *v, int64_t i)
{
    return v->dtype == DFX_INT8    ? ((const int8_t *)v->data)[i]
           : v->dtype == DFX_INT16 ? ((const int16_t *)v->data)[i]
                                   : ((const int32_t *)v->data)[i];
}

/** Message of the last error in this thread ("" if none). */
DFX_API const char *dfx_last_error(void);
/** Short name of a status code. */
DFX_API const char *dfx_status_name(dfx_status st);

/** CRC-32 (IEEE 802.3, as zlib.crc32); pass crc = 0 to start. */
DFX_API uint32_t dfx_crc32(uint32_t crc, const void *data, size_t len);

/** Open and verify a .dfx file through a read-only memory mapping. */
DFX_API dfx_status dfx_model_open_file(const char *path, unsigned flags, dfx_model **out);
/** Open and verify a model in the caller's memory. `data` must be 64-byte
 *  aligned (for example `static const uint8_t net[] __attribute__((aligned(64)))`)
 *  and stay valid and unchanged until dfx_model_close; nothing is copied. */
DFX_API dfx_status dfx_model_open_buffer(const void *data, size_t size, unsigned flags, dfx_model **out);
/** Check every tensor's CRC-32 and value range of an open model. */
DFX_API dfx_status dfx_model_verify_data(const dfx_model *m);
DFX_API void dfx_model_close(dfx_model *m);

DFX_API int dfx_model_num_tensors(const dfx_model *m);
DFX_API int dfx_model_num_layers(const dfx_model *m);
DFX_API int dfx_model_num_inputs(const dfx_model *m);
DFX_API int dfx_model_num_outputs(const dfx_model *m);
/** Tensor index of graph input / output i. */
DFX_API int dfx_model_input(const dfx_model *m, int i);
DFX_API int dfx_model_output(const dfx_model *m, int i);
/** Index of the tensor called `name`, or -1. */
DFX_API int dfx_model_find_tensor(const dfx_model *m, const char *name);
DFX_API dfx_status dfx_model_tensor_info(const dfx_model *m, int tensor, dfx_tensor_info *info);
/** Name of layer i and of its operator. */
DFX_API const char *dfx_model_layer_name(const dfx_model *m, int layer);
DFX_API const char *dfx_model_layer_type(const dfx_model *m, int layer);

/** Bytes of the arena a session of this batch size (and session `flags`)
 *  needs: the planned activations, the constants prepared for the kernels
 *  (widened or reordered copies) and the largest scratch of any layer, each
 *  64-byte aligned. `sum_bytes` (optional) receives the sum of all activation
 *  sizes (what no reuse of activation memory would need for them). */
DFX_API dfx_status dfx_model_arena_size(const dfx_model *m, int64_t batch, unsigned flags, size_t *arena_bytes,
                                        size_t *sum_bytes);

/* ---- preprocessing and metadata ---------------------------------------- */

/** Channel order of pixels (the schema's ChannelOrder). */
typedef enum dfx_channel_order {
    DFX_ORDER_UNSPECIFIED = 0,
    DFX_ORDER_RGB = 1,
    DFX_ORDER_BGR = 2,
    DFX_ORDER_GRAY = 3
} dfx_channel_order;

/** Memory layout of raw pixels given to dfx_session_set_input_u8: channels
 *  first (planes, the graph input's own layout) or interleaved. */
typedef enum dfx_pixel_layout { DFX_PIXELS_CHW = 0, DFX_PIXELS_HWC = 1 } dfx_pixel_layout;

/** Layout of graph input i: the format stores activations channels first
 *  (N, C, H, W). `channels` is dimension 1 (1 for rank < 2); `height` is
 *  dimension 2 and `width` the product of the dimensions after it (1 where
 *  there are none), so one sample has channels * height * width values. Any
 *  pointer may be NULL. */
DFX_API dfx_status dfx_model_input_layout(const dfx_model *m, int input, int64_t *channels, int64_t *height,
                                          int64_t *width);
/** Stored preprocessing of graph input i for channel c: the graph input is
 *  x = (raw - mean) * scale, in float32, after reordering the channels to
 *  the stored channel order (spec/format.md 7.2). Without a stored entry (or
 *  with empty mean/scale lists) mean is 0 and scale 1. `order` receives the
 *  channel order the network expects (DFX_ORDER_UNSPECIFIED when none is
 *  stored). Any output pointer may be NULL. */
DFX_API dfx_status dfx_model_input_preprocessing(const dfx_model *m, int input, int64_t channel, float *mean,
                                                 float *scale, dfx_channel_order *order);
/** Number of metadata entries, and entry i (keys sorted; pointers stay valid
 *  while the model is open; strings are UTF-8, zero-terminated). */
DFX_API int dfx_model_num_metadata(const dfx_model *m);
DFX_API dfx_status dfx_model_metadata_at(const dfx_model *m, int i, const char **key, const char **value);
/** Value of metadata `key`, or NULL when the model has no such entry. */
DFX_API const char *dfx_model_metadata(const dfx_model *m, const char *key);
/** Class labels: the metadata entry "labels" (spec/format.md 7.2: one label
 *  per line, label i names output class i). dfx_model_num_labels is 0 without
 *  labels; dfx_model_label returns NULL for an index out of range. */
DFX_API int dfx_model_num_labels(const dfx_model *m);
DFX_API const char *dfx_model_label(const dfx_model *m, int i);

/* ---- sessions -------------------------------------------------------------- */

/** Create a session for `batch` samples. With arena == NULL the library
 *  allocates the arena (once, here); otherwise the caller's arena (16-byte
 *  aligned, at least dfx_model_arena_size bytes) is used. */
DFX_API dfx_status dfx_session_create(const dfx_model *m, int64_t batch, void *arena, size_t arena_bytes,
                                      unsigned flags, dfx_session **out);
DFX_API void dfx_session_destroy(dfx_session *s);

/** Options of dfx_session_create_ex. Initialise with dfx_session_options_init
 *  (which records sizeof the struct as this header declares it), then change
 *  fields. ABI: fields are only ever appended; the library reads a field only
 *  when `size` covers it and uses its default otherwise, so a program built
 *  against an older dfx.h keeps working with a newer library. */
typedef struct dfx_session_options {
    size_t size;         /**< sizeof(dfx_session_options) of the caller's dfx.h */
    int64_t batch;       /**< samples per run (default 1) */
    void *arena;         /**< NULL: the library allocates the arena (default) */
    size_t arena_bytes;  /**< size of `arena` */
    unsigned flags;      /**< DFX_KEEP_ALL or 0 (default) */
    const char *kernels; /**< kernel set of this session: NULL or "" = the library's choice
                              (dfx_kernels_name), else a name of dfx_kernels_available */
    /* -- since 0.2: threads -- */
    int threads; /**< threads that run this session: 1 .. DFX_MAX_SESSION_THREADS, or 0 = automatic
                      (default): the environment variable DFX_THREADS, else 1 (see below) */
} dfx_session_options;

/** Most threads of one session. */
#define DFX_MAX_SESSION_THREADS 64

/** Defaults: batch 1, library arena, no flags, the library's kernel set,
 *  automatic threads. */
static inline void dfx_session_options_init(dfx_session_options *o)
{
    o->size = sizeof *o;
    o->batch = 1;
    o->arena = NULL;
    o->arena_bytes = 0;
    o->flags = 0;
    o->kernels = NULL;
    o->threads = 0;
}

/** dfx_session_create with options. A kernel set that is unknown gives
 *  DFX_ERR_ARGUMENT, one that this build or CPU does not have
 *  DFX_ERR_UNSUPPORTED (no fallback). o == NULL means the defaults.
 *
 *  Threads: a session of N > 1 threads creates N - 1 POSIX threads here
 *  (they wait between runs and are joined by dfx_session_destroy) and
 *  splits the work of its layers over them and the thread that calls
 *  dfx_session_run; nothing is allocated and no thread is created per run.
 *  Results are bit-identical for every N. The workers' scratch memory
 *  (N - 1 times the largest scratch of a split layer) is allocated here
 *  too, besides the arena, also when the caller gives the arena.
 *  N = 0 (automatic; dfx_session_create always) reads the environment
 *  variable DFX_THREADS when the session is created: a number (capped at
 *  DFX_MAX_SESSION_THREADS), or "cores" for the number of online CPUs; when
 *  it is unset or not valid, the session runs on 1 thread. One thread is
 *  the default on purpose: a library that takes every core unasked
 *  surprises embedded programs (which size their memory and CPU time) and
 *  programs that already run several sessions side by side, which would
 *  then compete for the same cores. */
DFX_API dfx_status dfx_session_create_ex(const dfx_model *m, const dfx_session_options *o, dfx_session **out);
/** Name of the kernel set a session runs with. */
DFX_API const char *dfx_session_kernels_name(const dfx_session *s);
/** Number of threads a session runs on (1 or more; 0 for NULL). */
DFX_API int dfx_session_threads(const dfx_session *s);

/** Set graph input i from float32 values (quantized with the input's
 *  format and rounding, as spec/arithmetic.md says). `count` must equal the
 *  input's element count for the session's batch. */
DFX_API dfx_status dfx_session_set_input_f32(dfx_session *s, int input, const float *values, int64_t count);
/** Set graph input i from raw 8-bit pixels with the model's stored
 *  preprocessing: channels are reordered when the pixels' `order` (RGB or
 *  BGR) differs from the stored one (RGB or BGR), HWC pixels are rearranged
 *  to the input's channels-first layout, then x = (pixel - mean[c]) *
 *  scale[c] in float32 and x is quantized as by dfx_session_set_input_f32.
 *  The codes equal those of the Python SDK (`dfxsdk run` on the same raw
 *  image). `count` = batch * channels * height * width
 *  (dfx_model_input_layout); DFX_ORDER_UNSPECIFIED or DFX_ORDER_GRAY: the
 *  pixels are already in the network's order. No heap allocation. */
DFX_API dfx_status dfx_session_set_input_u8(dfx_session *s, int input, const uint8_t *pixels, int64_t count,
                                            dfx_pixel_layout layout, dfx_channel_order order);
/** Set graph input i from integer codes (integer inputs only). */
DFX_API dfx_status dfx_session_set_input_codes(dfx_session *s, int input, const int32_t *codes, int64_t count);
/** Run every layer. No heap allocation. */
DFX_API dfx_status dfx_session_run(dfx_session *s);
/** View of graph output i after a run (a constant output is valid at once). */
DFX_API dfx_status dfx_session_get_output(dfx_session *s, int output, dfx_view *view);
/** View of any activation tensor after a run (reliable for non-outputs only
 *  with DFX_KEEP_ALL). Constants other than graph outputs are refused. */
DFX_API dfx_status dfx_session_get_tensor(dfx_session *s, int tensor, dfx_view *view);
/** Name of the kernel set the library chooses for sessions created without
 *  one: the best set this build and CPU run (dfx_kernels_available(0), e.g.
 *  "avx2", "dotprod", "portable"; the names are dfx_kernels_known's). The
 *  environment variable DFX_KERNELS=NAME, read once, chooses another; an
 *  unknown or unavailable set falls back to portable and the name says so,
 *  e.g. "portable (DFX_KERNELS=neon unavailable)". dfx_session_options.kernels
 *  chooses per session. */
DFX_API const char *dfx_kernels_name(void);
/** Name of kernel set i that this build and CPU can run (i = 0, 1, ...), or
 *  NULL past the last; the first is the library's default choice. */
DFX_API const char *dfx_kernels_available(int i);

/** Per-layer time: seconds spent in layer `layer` over every run of this
 *  session, and the number of runs. Only a library built with profiling
 *  (CMake -DDFX_PROFILE=ON) measures them; otherwise DFX_ERR_UNSUPPORTED. */
DFX_API dfx_status dfx_session_layer_time(const dfx_session *s, int layer, double *seconds, int64_t *runs);

/** How a session of `batch` samples (and session `flags`) would run the model,
 *  as JSON text, for code generators (`dfxsdk compile`): the memory plan
 *  (arena offsets, sizes of the activation, constant and scratch regions),
 *  every tensor, and per layer its plan (spec/c-library.md, "Layer plan"):
 *  the planned kernel, the action, offsets and prepared values of every input
 *  and output, the scratch, and the constants of the fast Conv2D/FC path
 *  (aligned bias, shifts, blocking). Writes at most `cap` bytes, zero-terminated, into
 *  `buf`, and the full length (without the terminator) into `*len`: call with
 *  cap = 0 first to size the buffer. Refuses what dfx_session_create refuses. */
DFX_API dfx_status dfx_model_describe(const dfx_model *m, int64_t batch, unsigned flags, char *buf, size_t cap,
                                      size_t *len);

/** A tensor as a custom operator sees it: float32 values, batch first. */
typedef struct dfx_custom_tensor {
    float *data; /**< inputs: read only; outputs: to be written, count values */
    int64_t count;
    int rank;
    int64_t shape[8];
} dfx_custom_tensor;

/** A custom operator's C implementation (the schema's Custom operator;
 *  spec/c-library.md, "Custom operators"). It runs in float form, as the
 *  plugin's NumPy reference does: every input arrives as float32 values (integer
 *  inputs dequantized, value = code * 2^-fl), and every output is written as
 *  float32 values, which the runtime then quantizes to the output tensor's
 *  format (its rounding, saturated). `options` are the layer's opaque option
 *  bytes, `user` the pointer given at registration. No allocation is needed:
 *  outputs are preallocated. Returns DFX_OK, or an error status (the run stops). */
typedef dfx_status (*dfx_custom_fn)(const dfx_custom_tensor *in, int n_in, dfx_custom_tensor *out, int n_out,
                                    const uint8_t *options, size_t options_len, void *user);

/** Register the C implementation of custom operator `name` ("package.Operator")
 *  at `version`, for every session created afterwards in this process (up to
 *  64 operators; registering a name and version again replaces it). `name` is
 *  copied. A model compiled with `dfxsdk compile` calls the function
 *  `dfx_custom_<name>_v<version>` instead (name with every character that is
 *  not a letter or digit as '_'), which the program links in. */
DFX_API dfx_status dfx_register_custom_op(const char *name, int version, dfx_custom_fn fn, void *user);

/** Bytes of the arena the session uses. */
DFX_API size_t dfx_session_arena_bytes(const dfx_session *s);

/** Name of kernel set i of every build (i = 0, 1, ...: "portable", then the
 *  ARM and x86 sets), or NULL past the last; dfx_kernels_available lists the
 *  ones this build and CPU run. */
DFX_API const char *dfx_kernels_known(int i);

#ifdef __cplusplus
}
#endif
#endif /* DFX_H */

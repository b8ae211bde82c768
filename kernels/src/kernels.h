/* Kernel interface: one function per operator and arithmetic. */
#ifndef DFX_KERNELS_H
#define DFX_KERNELS_H

#include "dfx_internal.h"
#include "fixedpoint.h"
#include "dispatch.h"
#include "kselect.h"
#include "threads.h"

/* A tensor as a kernel sees it: integer codes (int8/int16/int32, esz bytes)
 * or float32 values, runtime shape. Kernels other than the fast ones (and the
 * layout kernels, which move esz-byte elements) are given int32 codes: the
 * layer plan widens narrow activations for them (plan.c, exec.c). */
typedef struct rt {
    void *p;
    int64_t count;
    int rank;
    int64_t shape[DFX_MAX_RANK];
    const dt_tensor *t; /* format (bw, fl, rounding, per-channel fl) */
    int esz;            /* bytes per element: 1, 2 or 4 */
} rt;

/* Storage of an activation: the narrowest integer type of its bit width
 * (int8 for bw <= 8, int16 for bw <= 16, int32 otherwise), float32 for float
 * tensors. */
static inline int dfx_store_bytes(const dt_tensor *T)
{
    if (!T->has_q) return 4;
    return T->bw <= 8 ? 1 : T->bw <= 16 ? 2 : 4;
}
static inline int32_t dfx_ld(const void *p, int esz, int64_t i)
{ return esz == 1 ? ((const int8_t *)p)[i] : esz == 2 ? ((const int16_t *)p)[i] : ((const int32_t *)p)[i]; }
static inline void dfx_st(void *p, int esz, int64_t i, int32_t v)
{
    if (esz == 1) ((int8_t *)p)[i] = (int8_t)v;
    else if (esz == 2) ((int16_t *)p)[i] = (int16_t)v;
    else ((int32_t *)p)[i] = v;
}

/* Per-layer constants of the fast integer Conv2D / FullyConnected path,
 * computed when a session is planned (plan.c, dfx_linear_prepare). */
typedef struct dfx_linprep {
    int fast;       /* 1: int8 activations and weights, int32 accumulator: GEMM / depthwise kernels */
    int dw;         /* depthwise: one input channel per output channel */
    int direct;     /* 1x1, stride 1, no padding: the input is the GEMM's B, no im2col */
    int w_in_place; /* int8 weight rows are used in place; else unpacked per block into scratch */
    int64_t K;      /* reduction length */
    int nb, ob;     /* column block (pixels / batch rows), output channel block */
    int64_t *bias;  /* per output channel: bias aligned to the accumulator's fl F (0 without bias) */
    int8_t *lsh;    /* per output channel: F - (fl_x + Fw), left shift of the sum of products */
    int16_t *rsh;   /* per output channel: F - fl_y, the final rounding shift */
    /* Weights prepared once per session (dfx_linear_pack; never in a compiled model):
     * wpacked 1: wpack holds each group's weights in the kernel set's packed
     * layout (dispatch.h pack_a), wpack_group bytes per group; 2: wpack holds
     * sub-byte weights unpacked to int8 rows; 0: none. b_nonneg: the packing
     * assumes a non-negative input (dispatch.h). */
    int wpacked, b_nonneg;
    /* Float layers (ops/fast_f32.c; K and dw set too): wpacked DFX_WPACK_F32: wpack holds each group's weights
     * in the set's packed float layout (pack_f32), wpack_group bytes per group; DFX_WPACK_F32_ROWS: the
     * depthwise taps as float rows of K. The plan then points the float layer at this record (fast stays 0). */
    void *wpack;
    size_t wpack_group;
    void *fwork;     /* float layers: thread 0's scratch of the float path, shared (freed with the owner's); the
                      * other threads use the session's per-thread scratch (threads.h), which is as large */
    int fwork_owner; /* 1 on the one layer whose release frees fwork */
} dfx_linprep;
#define DFX_WPACK_F32 3
#define DFX_WPACK_F32_ROWS 4

dfx_status dfx_linear_prepare(const dt_layer *L, const rt *x, const dt_tensor *w, const dt_tensor *b, const rt *y,
                              dfx_linprep *lp, size_t *scratch);
/* Prepare the weights of a fast layer for kernel set kf (library sessions only;
 * cols: the GEMM's column count per call, pixels or batch rows; x_nonneg: the
 * input is never negative), and free them. */
dfx_status dfx_linear_pack(const dt_layer *L, const dt_tensor *w, int64_t cols, int x_nonneg,
                           const struct dfx_kernels *kf, dfx_linprep *lp);
void dfx_linear_release(dfx_linprep *lp);
/* The kernels given a dfx_par split their work over the session's threads (threads.h). relu: int8 codes
 * out, each block's codes clamped at 0 as an int8 ReLU (kf->relu_s8) would (the executor fuses a ReLU). */
dfx_status dfx_conv2d_fast(const dt_layer *L, const dfx_linprep *lp, const struct dfx_kernels *kf, const rt *x,
                           const dt_tensor *w, rt *y, void *scratch, const dfx_par *par, int relu);
dfx_status dfx_fc_fast(const dt_layer *L, const dfx_linprep *lp, const struct dfx_kernels *kf, const rt *x,
                       const dt_tensor *w, rt *y, void *scratch, const dfx_par *par);
/* The vectorised float path (ops/fast_f32.c, library sessions only): the packing of a float layer's weights for
 * kernel set kf (nothing when kf has no float entries for this CPU; xs, ys, ycount: the run-time input and output
 * shapes and output count; *work: bytes of scratch the layer needs, which the session allocates as lp->fwork),
 * and the kernels that run a layer packed so (the executor calls them for CONV2D_F32 / FC_F32 with a lin). */
dfx_status dfx_linear_pack_f32(const dt_layer *L, const dt_tensor *w, const int64_t *xs, const int64_t *ys,
                               int64_t ycount, const struct dfx_kernels *kf, dfx_linprep *lp, size_t *work);
void dfx_conv2d_f32_fast(const dt_layer *L, const dfx_linprep *lp, const struct dfx_kernels *kf, const rt *x,
                         const rt *b, rt *y, const dfx_par *par);
void dfx_fc_f32_fast(const dfx_linprep *lp, const struct dfx_kernels *kf, const rt *x, const dt_tensor *w, const rt *b,
                     rt *y, const dfx_par *par);
void dfx_im2col_f32(const dt_opts *o, const float *x, int64_t cg, int64_t H, int64_t W, int64_t OW, int64_t p0,
                    int64_t n, float *col);
/* A registered custom operator (dfx_register_custom_op, ops/custom.c). */
typedef struct dfx_custom_op {
    const char *name;
    int version;
    dfx_custom_fn fn;
    void *user;
} dfx_custom_op;
/* Run a custom layer: inputs and outputs as float32 (the layer plan converts). */
dfx_status dfx_custom(const dt_layer *L, const dfx_custom_op *op, const rt *const *x, int n_in, rt *const *y,
                      int n_out);

/* int8 codes without a format change: max pooling and ReLU in the kernel set */
void dfx_maxpool_s8(const dt_layer *L, const struct dfx_kernels *kf, const rt *x, rt *y, const dfx_par *par);
void dfx_relu_s8(const struct dfx_kernels *kf, const rt *x, rt *y, const dfx_par *par);

#define I32(r) ((int32_t *)(r)->p)
#define F32(r) ((float *)(r)->p)

/* ops/conv.c */
dfx_status dfx_conv2d_int(const dt_layer *L, const rt *x, const dt_tensor *w, const rt *b, rt *y, void *scratch);
void dfx_conv2d_f32(const dt_layer *L, const rt *x, const dt_tensor *w, const rt *b, rt *y, void *scratch);
dfx_status dfx_deconv2d_int(const dt_layer *L, const rt *x, const dt_tensor *w, const rt *b, rt *y, void *scratch);
void dfx_deconv2d_f32(const dt_layer *L, const rt *x, const dt_tensor *w, const rt *b, rt *y, void *scratch);
size_t dfx_linear_scratch(const dt_layer *L, const rt *x, const dt_tensor *w, const rt *y);
/* per output channel alignment of weights: Fw[o] and the largest shift */
int dfx_weight_align(const dt_layer *L, const dt_tensor *w, int o, int *max_shift);

/* ops/fc.c */
dfx_status dfx_fc_int(const dt_layer *L, const rt *x, const dt_tensor *w, const rt *b, rt *y, void *scratch);
void dfx_fc_f32(const dt_layer *L, const rt *x, const dt_tensor *w, const rt *b, rt *y, void *scratch);

/* ops/pool.c */
void dfx_pool_int(const dt_layer *L, const rt *x, rt *y, const dfx_par *par);
void dfx_pool_f32(const dt_layer *L, const rt *x, rt *y, const dfx_par *par);

/* ops/activation.c */
void dfx_relu_int(const rt *x, rt *y);
void dfx_relu_f32(const rt *x, rt *y);
void dfx_clip_int(const dt_layer *L, const rt *x, rt *y);
void dfx_clip_f32(const dt_layer *L, const rt *x, rt *y);
void dfx_prelu_int(const rt *x, const rt *s, rt *y);
void dfx_prelu_f32(const rt *x, const rt *s, rt *y);
void dfx_sigmoid_f32(const rt *x, rt *y);
void dfx_tanh_f32(const rt *x, rt *y);
void dfx_exp_f32(const rt *x, rt *y);
void dfx_minifloat_f32(const dt_layer *L, const rt *x, rt *y);
void dfx_power_f32(const dt_layer *L, const rt *x, rt *y);
void dfx_requantize_int(const rt *x, rt *y, const dfx_par *par);

/* ops/eltwise.c */
void dfx_eltwise_int(const dt_layer *L, const rt *const *x, int n, rt *y, const dfx_par *par);
void dfx_eltwise_f32(const dt_layer *L, const rt *const *x, int n, rt *y, const dfx_par *par);
void dfx_scale_int(const dt_layer *L, const rt *x, const rt *s, const rt *b, rt *y);
void dfx_scale_f32(const dt_layer *L, const rt *x, const rt *s, const rt *b, rt *y);

/* ops/layout.c */
void dfx_concat(const dt_layer *L, const rt *const *x, int n, rt *y, int integer, const dfx_par *par);
void dfx_copy(const rt *x, rt *y);
void dfx_permute(const dt_layer *L, const rt *x, rt *y, const dfx_par *par);
void dfx_slice(const dt_layer *L, const rt *x, rt *const *y, int n);
void dfx_pad(const dt_layer *L, const rt *x, rt *y, int integer);
void dfx_upsample(const dt_layer *L, const rt *x, rt *y);

/* ops/norm.c */
void dfx_softmax_f32(const dt_layer *L, const rt *x, rt *y, const dfx_par *par);
void dfx_lrn_f32(const dt_layer *L, const rt *x, rt *y);
void dfx_normalize_f32(const dt_layer *L, const rt *x, const rt *s, rt *y);

/* ops/detection.c */
void dfx_priorbox_f32(const dt_layer *L, const rt *fmap, const rt *img, rt *y);
size_t dfx_detection_scratch(const dt_layer *L, const rt *loc, const rt *conf, const rt *pri);
void dfx_detection_output_f32(const dt_layer *L, const rt *loc, const rt *conf, const rt *pri, rt *y, void *scratch,
                              const dfx_par *par);

int dfx_prior_ratios(const dt_opts *o, double *ratios, int cap);
int64_t dfx_pool_out(int64_t size, int64_t k, int64_t s, int64_t p0, int64_t p1, int ceil_mode);

#endif

/* The layer plan: what to do for every layer, decided once per session
 * (plan.c), and the one function that carries a layer's plan out (exec.c).
 *
 * A layer plan names the kernel to call (a dfx_kernel_id), what happens to
 * each input and output around the call (used as stored, widened to int32,
 * dequantized to float32, narrowed or quantized back) and where everything
 * lives: arena offsets, never pointers into the arena, so that `dfxsdk
 * compile` writes the plans of a model as `static const` data and its
 * generated code calls the same executor (kernels/README.md, "dfxsdk
 * compile"). The session (session.c) owns the arena and the kernel set. */
#ifndef DFX_PLAN_H
#define DFX_PLAN_H

#include "kernels.h"

/* The kernels a layer plan can call: X(NAME, kernel_set). NAME is the
 * DFX_USE_<NAME> of kselect.h (the kernel function dfx_<name>); kernel_set 1:
 * the kernel calls into the session's kernel set (dispatch.h). */
#define DFX_PLANNED_KERNELS(X)                                                          \
    X(CONV2D_FAST, 1) X(CONV2D_INT, 0) X(CONV2D_F32, 0) X(DECONV2D_INT, 0)              \
    X(DECONV2D_F32, 0) X(FC_FAST, 1) X(FC_INT, 0) X(FC_F32, 0) X(MAXPOOL_S8, 1)         \
    X(POOL_INT, 0) X(POOL_F32, 0) X(RELU_S8, 1) X(RELU_INT, 0) X(RELU_F32, 0)           \
    X(CLIP_INT, 0) X(CLIP_F32, 0) X(PRELU_INT, 0) X(PRELU_F32, 0) X(SIGMOID_F32, 0)     \
    X(TANH_F32, 0) X(LRN_F32, 0) X(CONCAT, 0) X(ELTWISE_INT, 0) X(ELTWISE_F32, 0)       \
    X(SOFTMAX_F32, 0) X(SCALE_INT, 0) X(SCALE_F32, 0) X(POWER_F32, 0) X(COPY, 0)        \
    X(PERMUTE, 0) X(SLICE, 0) X(PAD, 0) X(UPSAMPLE, 0) X(NORMALIZE_F32, 0)              \
    X(PRIORBOX_F32, 0) X(DETECTION_OUTPUT_F32, 0) X(REQUANTIZE_INT, 0) X(CUSTOM, 0)

#define DFX_KERNEL_ID(name, set) DFX_K_##name,
typedef enum dfx_kernel_id { DFX_K_NONE = 0, DFX_PLANNED_KERNELS(DFX_KERNEL_ID) DFX_K_COUNT } dfx_kernel_id;
#undef DFX_KERNEL_ID

#define DFX_MAX_IO 64 /* inputs or outputs of one layer */

/* What the executor does with one input or output of a layer. */
typedef enum dfx_io_action {
    DFX_IO_NONE = 0,   /* an omitted optional input: the kernel gets NULL */
    DFX_IO_DIRECT,     /* an activation used as stored (codes of esz bytes, or float32) */
    DFX_IO_CONST_I32,  /* a constant prepared as int32 codes */
    DFX_IO_CONST_F32,  /* a constant prepared as float32 values */
    DFX_IO_WEIGHTS,    /* the stored weight tensor itself (Conv2D / Deconv2D / FC input 1) */
    DFX_IO_WIDEN,      /* input: codes widened to int32 at `conv` */
    DFX_IO_DEQUANT,    /* input: codes dequantized to float32 at `conv` */
    DFX_IO_NARROW,     /* output: written as int32 at `conv`, then stored in esz bytes */
    DFX_IO_QUANT,      /* output: written as float32 at `conv`, then quantized to the stored codes */
    DFX_IO_COUNT
} dfx_io_action;

/* One input or output of a layer. */
typedef struct dfx_io_plan {
    int act;               /* dfx_io_action */
    int esz;               /* bytes per stored element: 1, 2, 4 (4 for prepared constants) */
    const dt_tensor *t;    /* format (and the data of weights) */
    const int64_t *shape;  /* run-time shape, DFX_MAX_RANK entries (t->rank used) */
    int64_t count;         /* run-time elements */
    int64_t off;           /* arena offset of the stored data (activations, constants prepared in the arena) */
    const void *data;      /* a constant used where it is (then `off` is unused), else NULL */
    int64_t conv;          /* WIDEN, DEQUANT, NARROW, QUANT: arena offset of the wide copy */
} dfx_io_plan;

/* A registered custom operator (dfx_register_custom_op; k_custom.c). */
typedef struct dfx_custom_op {
    const char *name;
    int version;
    dfx_custom_fn fn;
    void *user;
} dfx_custom_op;

/* One layer. */
typedef struct dfx_layer_plan {
    int kernel;                 /* dfx_kernel_id */
    int integer;                /* runs in integer form (spec/arithmetic.md, "Forms") */
    int n_in, n_out;            /* inputs up to the last one present; outputs */
    const dt_layer *L;          /* operator and options */
    const dfx_io_plan *in;      /* n_in inputs */
    const dfx_io_plan *out;     /* n_out outputs */
    const dfx_linprep *lin;     /* CONV2D_FAST, FC_FAST: the prepared constants, else NULL */
    int64_t scratch;            /* arena offset of the kernel's scratch (after the wide copies) */
    const dfx_custom_op *custom; /* CUSTOM: the implementation, else NULL */
} dfx_layer_plan;

/* Run one planned layer: arena is the session's (or the compiled model's)
 * arena, kf its kernel set (may be NULL when no planned kernel uses one). */
dfx_status dfx_exec_layer(const dfx_layer_plan *p, const struct dfx_kernels *kf, uint8_t *arena);

/* Custom operators (k_custom.c): the registered implementation of name at
 * version, or NULL; the kernel that calls a layer's implementation. */
const dfx_custom_op *dfx_custom_find(const char *name, int version);
dfx_status dfx_custom_run(const dfx_layer_plan *p, const rt *const *xs, rt *const *ys);

/* Name ("CONV2D_FAST") and kernel-set use of a planned kernel. */
const char *dfx_kernel_name(int kernel);
int dfx_kernel_uses_set(int kernel);
const char *dfx_io_action_name(int act);

/* The whole network's plan for a session of `batch` samples: the memory plan,
 * the run-time shapes and the layer plans. The arena holds the activations
 * (offsets 0..plan_bytes), the prepared constants (from const_base) and the
 * scratch (from scratch_base). */
typedef struct dfx_netplan {
    const dfx_model *m;
    int64_t batch;
    int64_t *off;                        /* per tensor: arena offset of activations */
    int64_t (*shape)[DFX_MAX_RANK];      /* per tensor: run-time shape */
    int64_t *count;                      /* per tensor: run-time elements */
    dfx_layer_plan *layers;              /* per layer */
    dfx_io_plan *io;                     /* storage of the layers' in and out lists */
    dfx_linprep *lin;                    /* per layer: fast Conv2D / FC constants (lin[i].fast) */
    unsigned char *native;               /* per layer: 1 = the kernel takes the stored codes, no wide copies */
    size_t plan_bytes, const_bytes, scratch_bytes, sum_bytes, arena_bytes;
    size_t const_base, scratch_base;
} dfx_netplan;

dfx_status dfx_netplan_build(const dfx_model *m, int64_t batch, unsigned flags, dfx_netplan *np);
/* Write the prepared constants into the arena (once, before running). */
void dfx_netplan_fill_constants(const dfx_netplan *np, uint8_t *arena);
/* Pack the weights of the fast layers for kernel set kf (dfx_linear_pack). */
dfx_status dfx_netplan_pack(dfx_netplan *np, const struct dfx_kernels *kf);
void dfx_netplan_free(dfx_netplan *np);

#endif

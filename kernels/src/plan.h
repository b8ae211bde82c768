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

/* The kernels a layer plan can call: one per DFX_KERNEL row of ops.def
 * (DFX_K_<NAME>, the kernel function dfx_<name>, built under DFX_USE_<NAME>). */
#define DFX_KERNEL(name, file, also) DFX_K_##name,
typedef enum dfx_kernel_id {
    DFX_K_NONE = 0,
#include "ops.def"
    DFX_K_COUNT
} dfx_kernel_id;

#define DFX_MAX_IO 64 /* inputs or outputs of one layer */

/* What the executor does with one input or output of a layer. */
typedef enum dfx_io_action {
    DFX_IO_NONE = 0,  /* an omitted optional input: the kernel gets NULL */
    DFX_IO_DIRECT,    /* an activation used as stored (codes of esz bytes, or float32) */
    DFX_IO_CONST_I32, /* a constant prepared as int32 codes */
    DFX_IO_CONST_F32, /* a constant prepared as float32 values */
    DFX_IO_WEIGHTS,   /* the stored weight tensor itself (Conv2D / Deconv2D / FC input 1) */
    DFX_IO_WIDEN,     /* input: codes widened to int32 at `conv` */
    DFX_IO_DEQUANT,   /* input: codes dequantized to float32 at `conv` */
    DFX_IO_NARROW,    /* output: written as int32 at `conv`, then stored in esz bytes */
    DFX_IO_QUANT,     /* output: written as float32 at `conv`, then quantized to the stored codes */
    DFX_IO_COUNT
} dfx_io_action;

/* One input or output of a layer. */
typedef struct dfx_io_plan {
    int act;              /* dfx_io_action */
    int esz;              /* bytes per stored element: 1, 2, 4 (4 for prepared constants) */
    const dt_tensor *t;   /* format (and the data of weights) */
    const int64_t *shape; /* run-time shape, DFX_MAX_RANK entries (t->rank used) */
    int64_t count;        /* run-time elements */
    int64_t off;          /* arena offset of the stored data (activations, constants prepared in the arena) */
    const void *data;     /* a constant used where it is (then `off` is unused), else NULL */
    int64_t conv;         /* WIDEN, DEQUANT, NARROW, QUANT: arena offset of the wide copy */
} dfx_io_plan;

/* One layer. */
typedef struct dfx_layer_plan {
    int16_t kernel;              /* dfx_kernel_id */
    int16_t integer;             /* runs in integer form (spec/arithmetic.md, "Forms") */
    int16_t n_in, n_out;         /* inputs up to the last one present; outputs (at most DFX_MAX_IO) */
    const dt_layer *L;           /* operator and options */
    const dfx_io_plan *in;       /* n_in inputs */
    const dfx_io_plan *out;      /* n_out outputs */
    const dfx_linprep *lin;      /* CONV2D_FAST, FC_FAST: the prepared constants, else NULL */
    int64_t scratch;             /* arena offset of the kernel's scratch (after the wide copies) */
    const dfx_custom_op *custom; /* CUSTOM: the implementation, else NULL */
} dfx_layer_plan;

/* Run one planned layer: arena is the session's (or the compiled model's)
 * arena, kf its kernel set (may be NULL when no planned kernel uses one). */
dfx_status dfx_exec_layer(const dfx_layer_plan *p, const struct dfx_kernels *kf, uint8_t *arena);
/* The same with the session's threads (threads.h; par NULL: the calling thread only). */
dfx_status dfx_exec_layer_par(const dfx_layer_plan *p, const struct dfx_kernels *kf, uint8_t *arena,
                              const dfx_par *par);
#if DFX_ALL_KERNELS
/* Whether q, the layer after p (layer q_index), is an int8 ReLU that p, a fast int8 convolution, can apply
 * itself: q reads p's output, which no other layer reads and no graph output is (a session that keeps
 * every tensor, DFX_KEEP_ALL, does not ask), and q's output does not share memory with p's inputs.
 * Then dfx_exec_layer_relu runs both, one pass, no barrier between: p writes its codes, clamped at 0,
 * where q writes its output (p's own output is not written). */
int dfx_exec_fuses_relu(const dfx_layer_plan *p, const dfx_layer_plan *q, int q_index);
dfx_status dfx_exec_layer_relu(const dfx_layer_plan *p, const dfx_layer_plan *q, const struct dfx_kernels *kf,
                               uint8_t *arena, const dfx_par *par);
#endif

/* The registered implementation of custom operator name at version, or NULL (ops/custom.c). */
const dfx_custom_op *dfx_custom_find(const char *name, int version);

/* Name ("CONV2D_FAST") of a planned kernel, and whether it calls the kernel set. */
const char *dfx_kernel_name(int kernel);
int dfx_kernel_uses_set(int kernel);
const char *dfx_io_action_name(int act);

/* The whole network's plan for a session of `batch` samples: the memory plan,
 * the run-time shapes and the layer plans. The arena holds the activations
 * (offsets 0..plan_bytes), the scratch (from scratch_base, the wide copies
 * and the kernels' scratch of the running layer) and the prepared constants
 * (from const_base, last: a compiled model, whose constants are static
 * arrays, has the same offsets without them). */
typedef struct dfx_netplan {
    const dfx_model *m;
    int64_t batch;
    int64_t *off; /* per tensor: arena offset of activations */
    /* per tensor: run-time shape (DFX_MAX_RANK entries), the declared one (T->shape) unless the batch
     * changes it, then its row of rows (allocated on first use; NULL while every shape is as declared) */
    const int64_t **shape;
    int64_t (*rows)[DFX_MAX_RANK];
    int64_t *count;         /* per tensor: run-time elements */
    dfx_layer_plan *layers; /* per layer */
    dfx_io_plan *io;        /* storage of the layers' in and out lists (before them: the planner's lifetimes) */
    dfx_io_plan **consts;   /* the inputs that are constants prepared in the arena */
    int n_consts, n_lin;
    dfx_linprep *lin;      /* per integer Conv2D / FC layer: its prepared constants (lin[i].fast) */
    int *lin_layer;        /* the layer of lin[i] */
    unsigned char *native; /* per layer: 1 = the kernel takes the stored codes, no wide copies */
    void *block;           /* the one allocation all the arrays above live in */
    size_t plan_bytes, const_bytes, scratch_bytes, sum_bytes, arena_bytes;
    size_t const_base, scratch_base;
    size_t thread_scratch; /* kernel scratch each further thread needs (the largest of a split kernel) */
} dfx_netplan;

dfx_status dfx_netplan_build(const dfx_model *m, int64_t batch, unsigned flags, dfx_netplan *np);
/* Write the prepared constants into the arena (once, before running). */
void dfx_netplan_fill_constants(const dfx_netplan *np, uint8_t *arena);
/* Pack the weights of the fast layers for kernel set kf (dfx_linear_pack). */
dfx_status dfx_netplan_pack(dfx_netplan *np, const struct dfx_kernels *kf);
void dfx_netplan_free(dfx_netplan *np);

#endif

/* Which kernels a build contains.
 *
 * The library (and anything built without DFX_COMPILED_MODEL) contains every
 * kernel: DFX_ALL_KERNELS is 1. A model compiled to C by `dfxsdk compile`
 * defines DFX_COMPILED_MODEL and DFX_USE_<KERNEL> for each kernel function its
 * layers call (the DFX_KERNEL rows of ops.def: the function name without
 * "dfx_", upper case: DFX_USE_CONV2D_FAST, DFX_USE_POOL_INT, ...); the files of
 * ops/ compile a kernel under `#if DFX_ALL_KERNELS || defined(DFX_USE_<KERNEL>)`,
 * plus the helpers they need (derived below), so that unused operators add no
 * code. Session-time preparation (dfx_linear_prepare, the scratch estimates)
 * is DFX_USE_PREPARE: library only, a compiled model has its results as
 * constants. */
#ifndef DFX_KSELECT_H
#define DFX_KSELECT_H

#if !defined(DFX_COMPILED_MODEL)
#define DFX_ALL_KERNELS 1
#define DFX_USE_PREPARE 1
#else
#define DFX_ALL_KERNELS 0
#endif

/* helpers (ops/conv.c, ops/common.c) */
#if defined(DFX_USE_CONV2D_INT) || defined(DFX_USE_DECONV2D_INT) || defined(DFX_USE_FC_INT) || defined(DFX_USE_PREPARE)
#define DFX_USE_WEIGHT_ALIGN 1
#endif
#if defined(DFX_USE_CONV2D_F32) || defined(DFX_USE_DECONV2D_F32) || defined(DFX_USE_FC_F32) || defined(DFX_USE_PREPARE)
#define DFX_USE_CONST_FLOAT 1
#endif
#if defined(DFX_USE_PRIORBOX_F32) || defined(DFX_USE_PREPARE)
#define DFX_USE_PRIOR_RATIOS 1
#endif

#endif

/* Which kernels a build contains.
 *
 * The library (and anything built without DFX_COMPILED_MODEL) contains every
 * kernel. A model compiled to C by `dfxsdk compile` defines DFX_COMPILED_MODEL
 * and DFX_USE_<KERNEL> for each kernel function its layers call (the function
 * name without "dfx_", upper case: DFX_USE_CONV2D_FAST, DFX_USE_POOL_INT, ...);
 * the k_*.c files compile only those, plus the helpers they need (derived
 * below), so that unused operators add no code. Session-time preparation
 * (dfx_linear_prepare, the scratch estimates) is DFX_USE_PREPARE: library only,
 * a compiled model has its results as constants. */
#ifndef DFX_KSELECT_H
#define DFX_KSELECT_H

#if !defined(DFX_COMPILED_MODEL)
#define DFX_USE_PREPARE 1
#define DFX_USE_CONV2D_FAST 1
#define DFX_USE_FC_FAST 1
#define DFX_USE_CONV2D_INT 1
#define DFX_USE_CONV2D_F32 1
#define DFX_USE_DECONV2D_INT 1
#define DFX_USE_DECONV2D_F32 1
#define DFX_USE_FC_INT 1
#define DFX_USE_FC_F32 1
#define DFX_USE_POOL_INT 1
#define DFX_USE_POOL_F32 1
#define DFX_USE_RELU_INT 1
#define DFX_USE_RELU_F32 1
#define DFX_USE_CLIP_INT 1
#define DFX_USE_CLIP_F32 1
#define DFX_USE_PRELU_INT 1
#define DFX_USE_PRELU_F32 1
#define DFX_USE_SIGMOID_F32 1
#define DFX_USE_TANH_F32 1
#define DFX_USE_POWER_F32 1
#define DFX_USE_REQUANTIZE_INT 1
#define DFX_USE_ELTWISE_INT 1
#define DFX_USE_ELTWISE_F32 1
#define DFX_USE_SCALE_INT 1
#define DFX_USE_SCALE_F32 1
#define DFX_USE_CONCAT 1
#define DFX_USE_COPY 1
#define DFX_USE_PERMUTE 1
#define DFX_USE_SLICE 1
#define DFX_USE_PAD 1
#define DFX_USE_UPSAMPLE 1
#define DFX_USE_SOFTMAX_F32 1
#define DFX_USE_LRN_F32 1
#define DFX_USE_NORMALIZE_F32 1
#define DFX_USE_PRIORBOX_F32 1
#define DFX_USE_DETECTION_OUTPUT_F32 1
#endif

/* helpers (k_conv.c, k_common.c) */
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

# The one description of what libdfx is built from, read by CMakeLists.txt and
# cmake/simd.cmake and, with a simple parser, by setup.py (the library the
# Python package loads): keep every list a plain set(NAME item ...) of
# literal items, paths relative to kernels/.

# every target
set(DFX_SOURCES
  src/crc32.c src/error.c src/fbverify.c src/model.c src/model_info.c src/validate.c src/planner.c
  src/plan.c src/exec.c src/threads.c src/session.c src/describe.c src/session_io.c src/metadata.c src/dispatch.c
  src/ops/common.c src/ops/conv.c src/ops/fc.c src/ops/fast.c src/ops/fast_f32.c src/ops/pool.c src/ops/activation.c
  src/ops/eltwise.c src/ops/layout.c src/ops/norm.c src/ops/detection.c src/ops/custom.c
  src/arch/portable/portable.c src/arch/x86/set.c src/arch/x86/x86.c src/arch/x86/dwconv.c src/arch/x86/float.c
  src/arch/x86/vnni.c)
# the portable kernel set and the run-time selected x86-64 sets (avx2, VNNI; empty elsewhere)
set(DFX_PORTABLE_SET_SOURCES
  src/arch/portable/portable.c src/arch/x86/set.c src/arch/x86/x86.c src/arch/x86/dwconv.c src/arch/x86/float.c
  src/arch/x86/vnni.c)
set(DFX_DEFINITIONS _POSIX_C_SOURCE=200809L _DEFAULT_SOURCE)
# GCC and Clang
set(DFX_WARNINGS -Wall -Wextra -Wno-unused-parameter)

# AArch64 with NEON (cmake/simd.cmake): the kernel sets "neon" and "dotprod"
set(DFX_NEON_SOURCES
  src/arch/neon/gemm.c src/arch/neon/gemm_dot.c src/arch/neon/requant.c src/arch/neon/dwconv.c
  src/arch/neon/misc.c src/arch/neon/select.c)
set(DFX_NEON_DEFINITIONS DFX_HAVE_NEON=1)
# only these files may use ARMv8.2 instructions; they run after the HWCAP check
set(DFX_DOTPROD_SOURCES src/arch/neon/gemm_dot.c)
set(DFX_DOTPROD_FLAGS -march=armv8.2-a+dotprod)

# 32-bit ARM (armhf, any baseline from ARMv6 on): the ARMv7 NEON set "neon",
# chosen at run time when the CPU has NEON (HWCAP_NEON)
set(DFX_NEON32_SOURCES
  src/arch/neon32/select.c src/arch/neon32/gemm.c src/arch/neon32/dwconv.c src/arch/neon32/misc.c)
set(DFX_NEON32_DEFINITIONS DFX_HAVE_NEON32=1)
# only these files may use NEON instructions; they run after the HWCAP check
set(DFX_NEON32_SIMD_SOURCES src/arch/neon32/gemm.c src/arch/neon32/dwconv.c src/arch/neon32/misc.c)
set(DFX_NEON32_FLAGS -march=armv7-a -mfpu=neon)

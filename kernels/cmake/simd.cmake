# SIMD kernels: the NEON sets of kernels/src/arch/neon (DFX_NEON_SOURCES of
# cmake/sources.cmake), when the target is AArch64, and the ARMv7 NEON set of
# kernels/src/arch/neon32 (DFX_NEON32_SOURCES), when it is 32-bit ARM.
# Included at the end of kernels/CMakeLists.txt. -DDFX_NEON=OFF builds the
# portable kernels only.
include(CheckCSourceCompiles)
include(CheckCCompilerFlag)

option(DFX_NEON "Build the NEON kernels (and the run-time selected dotprod kernels on AArch64) on ARM" ON)

check_c_source_compiles("
#if !defined(__aarch64__) || !defined(__ARM_NEON)
#error not AArch64 with NEON
#endif
int main(void) { return 0; }" DFX_TARGET_AARCH64)

# A kernel set's sources and definitions into the library (and the fuzz target), and its C test
# (tests/TEST.c against the portable set: the kernels are hidden in the shared library, so the test
# links the sources).
function(dfx_add_kernel_set sources definitions test ctest_name)
  target_sources(dfx PRIVATE ${sources})
  target_compile_definitions(dfx PRIVATE ${definitions})
  if(TARGET dfx-fuzz)
    target_sources(dfx-fuzz PRIVATE ${sources})
    target_compile_definitions(dfx-fuzz PRIVATE ${definitions})
  endif()
  if(DFX_BUILD_TESTS)
    add_executable(${test} tests/${test}.c ${DFX_PORTABLE_SET_SOURCES} ${sources})
    target_include_directories(${test} PRIVATE include src)
    target_compile_definitions(${test} PRIVATE ${DFX_DEFINITIONS})
    add_test(NAME ${ctest_name} COMMAND ${test})
  endif()
endfunction()

set(DFX_HAVE_NEON OFF)
if(DFX_NEON AND DFX_TARGET_AARCH64)
  check_c_compiler_flag("-march=armv8.2-a+dotprod" DFX_CC_HAS_DOTPROD)
  if(NOT DFX_CC_HAS_DOTPROD)
    message(WARNING "${CMAKE_C_COMPILER} cannot target armv8.2-a+dotprod: NEON kernels left out")
  else()
    set(DFX_HAVE_NEON ON)
  endif()
endif()

if(DFX_HAVE_NEON)
  # only these files may use ARMv8.2 instructions; they run after the HWCAP check
  set_source_files_properties(${DFX_DOTPROD_SOURCES} PROPERTIES COMPILE_OPTIONS "${DFX_DOTPROD_FLAGS}")
  dfx_add_kernel_set("${DFX_NEON_SOURCES}" "${DFX_NEON_DEFINITIONS}" test_neon neon_kernels)
endif()
message(STATUS "dfx: NEON kernels ${DFX_HAVE_NEON}")

# 32-bit ARM: the NEON files get DFX_NEON32_FLAGS, the rest of the library keeps
# the target's baseline (ARMv6 for Raspberry Pi OS), and the set is chosen at
# run time from HWCAP_NEON.
check_c_source_compiles("
#if !defined(__arm__) || defined(__aarch64__)
#error not 32-bit ARM
#endif
int main(void) { return 0; }" DFX_TARGET_ARM32)
set(DFX_HAVE_NEON32 OFF)
if(DFX_NEON AND DFX_TARGET_ARM32)
  string(REPLACE ";" " " _dfx_neon32_flags "${DFX_NEON32_FLAGS}")
  set(CMAKE_REQUIRED_FLAGS "${_dfx_neon32_flags}")
  check_c_source_compiles("
#include <arm_neon.h>
int main(void) { int8x8_t v = vdup_n_s8(1); return vget_lane_s8(vadd_s8(v, v), 0) - 2; }" DFX_CC_HAS_NEON32)
  unset(CMAKE_REQUIRED_FLAGS)
  if(NOT DFX_CC_HAS_NEON32)
    message(WARNING "${CMAKE_C_COMPILER} cannot compile with ${_dfx_neon32_flags}: NEON kernels left out")
  else()
    set(DFX_HAVE_NEON32 ON)
  endif()
endif()

if(DFX_HAVE_NEON32)
  set_source_files_properties(${DFX_NEON32_SIMD_SOURCES} PROPERTIES COMPILE_OPTIONS "${DFX_NEON32_FLAGS}")
  dfx_add_kernel_set("${DFX_NEON32_SOURCES}" "${DFX_NEON32_DEFINITIONS}" test_neon32 neon32_kernels)
endif()
message(STATUS "dfx: ARMv7 NEON kernels ${DFX_HAVE_NEON32}")

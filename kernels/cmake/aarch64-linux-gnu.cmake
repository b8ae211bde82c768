# CMake toolchain file: cross-compile libdfx for 64-bit ARM Linux
# (Raspberry Pi 3/4/5/Zero 2 with a 64-bit OS) with Debian's cross compiler
# (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross; .ci/install-cross.sh).
#
#   cmake -S kernels -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
#   (a relative toolchain path is looked up in the build tree, then in kernels/)
#   cmake --build build-arm64
#   ctest --test-dir build-arm64          # runs under qemu-aarch64 when it is installed
#
# The generic ARMv8.0 build runs on every 64-bit Pi; the NEON kernels need
# nothing more, and the dot-product (sdot) kernels are compiled for
# armv8.2-a+dotprod in their own file and chosen at run time (Pi 5).
# Override the prefix with -DDFX_CROSS_PREFIX=... (for example an
# aarch64-none-linux-gnu toolchain from Arm).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

if(NOT DFX_CROSS_PREFIX)
  set(DFX_CROSS_PREFIX aarch64-linux-gnu-)
endif()
set(CMAKE_C_COMPILER ${DFX_CROSS_PREFIX}gcc)
set(CMAKE_CXX_COMPILER ${DFX_CROSS_PREFIX}g++)

if(NOT DFX_CROSS_SYSROOT)
  set(DFX_CROSS_SYSROOT /usr/aarch64-linux-gnu)
endif()
set(CMAKE_FIND_ROOT_PATH ${DFX_CROSS_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# Let ctest (and try_run) run the target programs under user-mode emulation.
# DFX_QEMU_CPU picks qemu's CPU model: cortex-a53 (ARMv8.0, Pi 3/4),
# cortex-a76 (dotprod, Pi 5) or max.
find_program(DFX_QEMU_AARCH64 qemu-aarch64)
if(DFX_QEMU_AARCH64)
  if(NOT DFX_QEMU_CPU)
    set(DFX_QEMU_CPU cortex-a53)
  endif()
  set(CMAKE_CROSSCOMPILING_EMULATOR ${DFX_QEMU_AARCH64} -cpu ${DFX_QEMU_CPU} -L ${DFX_CROSS_SYSROOT})
endif()

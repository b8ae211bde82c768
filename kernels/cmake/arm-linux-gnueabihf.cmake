# CMake toolchain file: cross-compile libdfx for 32-bit ARM Linux (armhf:
# Raspberry Pi 2/3/4 running a 32-bit Raspberry Pi OS) with Debian's cross
# compiler (apt-get install gcc-arm-linux-gnueabihf libc6-dev-armhf-cross, or
# .ci/install-cross.sh).
#
#   cmake -S kernels -B build-armhf -DCMAKE_TOOLCHAIN_FILE=cmake/arm-linux-gnueabihf.cmake
#   (a relative toolchain path is looked up in the build tree, then in kernels/)
#
# The library gets the ARMv7 NEON kernels (kernels/src/arch/neon32, only those
# files compiled with -mfpu=neon), chosen at run time when the CPU has NEON.
# Debian's armhf is ARMv7-A + VFPv3-D16 (Thumb-2), which excludes the ARMv6
# boards (Pi 1, Zero, Zero W): build for those natively on Raspberry Pi OS
# (its compiler defaults to ARMv6), or add -DCMAKE_C_FLAGS="-march=armv6+fp -marm"
# and link against an ARMv6 C library.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR arm)

if(NOT DFX_CROSS_PREFIX)
  set(DFX_CROSS_PREFIX arm-linux-gnueabihf-)
endif()
set(CMAKE_C_COMPILER ${DFX_CROSS_PREFIX}gcc)
set(CMAKE_CXX_COMPILER ${DFX_CROSS_PREFIX}g++)

if(NOT DFX_CROSS_SYSROOT)
  set(DFX_CROSS_SYSROOT /usr/arm-linux-gnueabihf)
endif()
set(CMAKE_FIND_ROOT_PATH ${DFX_CROSS_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

find_program(DFX_QEMU_ARM qemu-arm)
if(DFX_QEMU_ARM)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${DFX_QEMU_ARM} -L ${DFX_CROSS_SYSROOT})
endif()

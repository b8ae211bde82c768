#!/usr/bin/env bash
# Install what the cross tests need: Debian's aarch64 and armhf cross compilers,
# their C libraries and qemu-user (tests/aarch64, tests/armhf,
# benchmarks/bench_qemu_insns.py), and CMake and pkg-config for the
# installed-library tests (tests/native/test_native_install.py).
# Idempotent: does nothing when everything is already there. Needs root (or
# sudo) only when something is missing. DFX_CROSS_CXX=1 also installs the C++
# cross compilers and ninja (benchmarks/bench_ncnn_arm.py builds ncnn).
set -euo pipefail

need=()
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need+=(gcc-aarch64-linux-gnu)
[ -e /usr/aarch64-linux-gnu/lib/libc.so.6 ] || need+=(libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null 2>&1 || need+=(qemu-user)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v arm-linux-gnueabihf-gcc >/dev/null 2>&1 || need+=(gcc-arm-linux-gnueabihf)
[ -e /usr/arm-linux-gnueabihf/lib/libc.so.6 ] || need+=(libc6-dev-armhf-cross)
if [ "${DFX_CROSS_CXX:-0}" = 1 ]; then
    command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || need+=(g++-aarch64-linux-gnu)
    command -v arm-linux-gnueabihf-g++ >/dev/null 2>&1 || need+=(g++-arm-linux-gnueabihf)
    command -v ninja >/dev/null 2>&1 || need+=(ninja-build)
fi
[ ${#need[@]} -eq 0 ] && exit 0

SUDO=
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-cross.sh: need root to install ${need[*]}" >&2; exit 1; }
    SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
echo "install-cross.sh: installing ${need[*]}" >&2
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

"""``pip install`` on a Raspberry Pi, without a board: the library built the way setup.py builds it on
aarch64 and on 32-bit ARM reports the NEON kernels under qemu.

setup.py's own ``target_arch`` and ``kernel_build`` (read from setup.py, not re-derived) give the sources,
definitions and per-file flags for the board's ``platform.machine()``; each file is compiled with the cross
compiler and setup.py's COMPILE_ARGS as setuptools would (plus -fPIC), linked into a shared object, and
kernels/tools/dfx_run.c, linked against it, runs under qemu: on aarch64 the NEON set on a Cortex-A53 and the
dot-product set on a Cortex-A76; on armhf the ARMv7 NEON set on a Cortex-A7 and the portable set on a CPU
without NEON. The armhf library is compiled for Raspberry Pi OS's baseline (ARMv6 + VFP, ARM mode, the
defaults of its compiler): only the NEON files may carry NEON, which their ELF build attributes show.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dfxsdk.io import load

from tests.support.cross import AARCH64, ARMHF, Target, require_cross, run_qemu
from tests.support.paths import KERNELS, ROOT
from tests.support.setup_py import load_setup_py

TINY = KERNELS / "tests" / "data" / "tiny_lenet.dfx"
#: Raspberry Pi OS (32-bit) compiles for ARMv6 with VFP, in ARM mode, by default; Debian's armhf compiler
#: (ARMv7, Thumb-2) is told so. The 64-bit OS needs nothing.
BASELINE = {"aarch64": [], "armhf": ["-march=armv6+fp", "-marm"]}
#: target -> (platform.machine() on the board, 64-bit Python, {qemu CPU model: kernel set reported})
BOARDS = {
    "aarch64": ("aarch64", True, {"cortex-a53": "neon", "cortex-a76": "dotprod"}),
    "armhf": ("armv7l", False, {"cortex-a7": "neon", "cortex-a15": "neon", "cortex-r5f": "portable"}),
}
TARGETS = {"aarch64": AARCH64, "armhf": ARMHF}


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        pytest.fail(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def _pip_build(target: Target, work: Path) -> tuple[Path, dict[str, list[str]], dict[str, Path]]:
    """The library as setup.py builds it on the board, and dfx-run linked against it.

    Returns dfx-run's path, the per-file flags and the object of each source.
    """
    setup = load_setup_py()
    machine, is_64bit, _ = BOARDS[target.name]
    arch = setup["target_arch"](machine, is_64bit)
    assert arch == {"aarch64": "aarch64", "armhf": "arm32"}[target.name]
    sources, defines, own = setup["kernel_build"](arch)
    (ext,) = setup["setup_args"]["ext_modules"]
    base = [target.cc, *BASELINE[target.name], "-fPIC", *setup["COMPILE_ARGS"],
            *(f"-D{d}" for d in defines), *(f"-I{ROOT / i}" for i in ext.include_dirs)]
    objects = {}
    for i, src in enumerate(sources):
        obj = work / f"{i:02d}_{Path(src).stem}.o"
        _run([*base, "-c", str(ROOT / src), "-o", str(obj), *own.get(src, [])])
        objects[src] = obj
    lib = work / "_dfxnative.so"
    _run([target.cc, *BASELINE[target.name], "-shared", "-o", str(lib), *map(str, objects.values()),
          *ext.extra_link_args, *(f"-l{name}" for name in ext.libraries)])
    exe = work / "dfx-run"
    _run([target.cc, *BASELINE[target.name], "-std=c99", "-O2", "-D_POSIX_C_SOURCE=200809L", "-D_DEFAULT_SOURCE",
          f"-I{KERNELS / 'include'}", str(KERNELS / "tools" / "dfx_run.c"), str(lib), f"-Wl,-rpath,{work}",
          "-lm", "-o", str(exe)])
    return exe, own, objects


@pytest.fixture(scope="module")
def pip_build(tmp_path_factory):
    """target name -> _pip_build's result, built once per module."""
    cache = {}

    def get(name: str):
        if name not in cache:
            require_cross(f"the {name} pip build test", target=TARGETS[name])
            cache[name] = _pip_build(TARGETS[name], tmp_path_factory.mktemp(f"pip-{name}"))
        return cache[name]

    return get


@pytest.mark.parametrize("name", list(BOARDS))
def test_pip_build_reports_the_neon_kernels(pip_build, tmp_path, name):
    target = TARGETS[name]
    exe, own, _ = pip_build(name)
    assert own, f"setup.py gives no file of the {name} build its own SIMD flags"
    info = load(TINY)
    x = np.random.default_rng(0).uniform(-1, 1, info.tensors[info.inputs[0]].shape).astype(np.float32)
    (tmp_path / "in").write_bytes(x.tobytes())
    outputs = {}
    for cpu, expected in BOARDS[name][2].items():
        for kernels in (None, "portable"):
            out = tmp_path / f"out.{cpu}.{kernels}"
            proc = run_qemu(target, cpu, kernels, [str(exe), "--verbose", str(TINY), str(tmp_path / "in"), str(out)])
            assert f"kernels: {kernels or expected}\n" in proc.stderr, f"{cpu}: {proc.stderr!r}"
            outputs[(cpu, kernels)] = out.read_bytes()
    assert len(set(outputs.values())) == 1, "the kernel sets disagree"


def test_armhf_pip_build_keeps_neon_to_the_neon_files(pip_build):
    """Built for Raspberry Pi OS's ARMv6 baseline, only the files setup.py gives -mfpu=neon carry NEON (and
    ARMv7) build attributes: the rest of the library runs on a Pi 1 or Zero."""
    readelf = shutil.which("arm-linux-gnueabihf-readelf") or shutil.which("readelf")
    if readelf is None:
        pytest.fail("readelf (binutils) is missing: run .ci/install-cross.sh")
    exe, own, objects = pip_build("armhf")
    for src, obj in objects.items():
        attrs = subprocess.run([readelf, "-A", str(obj)], capture_output=True, text=True, check=True).stdout
        arch = re.search(r"Tag_CPU_arch: (\S+)", attrs)
        simd = re.search(r"Tag_Advanced_SIMD_arch: (\S+)", attrs)
        if src in own:
            assert arch and arch.group(1) == "v7" and simd and simd.group(1).startswith("NEON"), (src, attrs)
        else:
            assert arch and arch.group(1) == "v6" and not simd, (src, attrs)
    assert os.path.getsize(exe.parent / "_dfxnative.so") > 0

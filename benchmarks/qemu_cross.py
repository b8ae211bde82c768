"""Cross-built ``dfx-run`` and guest instruction counts under qemu-user (TCG plugin ``qemu_insn_count.c``).

Shared by ``bench_qemu_insns.py`` and ``bench_ncnn_arm.py``: :func:`build_dfx_run` cross-compiles dfx-run
with a toolchain file of ``kernels/cmake``, :func:`build_plugin` compiles the plugin with the host compiler,
:func:`count_insns` runs one program under qemu and returns how many instructions it executed, and
:func:`per_inference` turns the counts of a 1-run and a 3-run process into the cost of one run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "kernels"
PLUGIN_SOURCE = ROOT / "benchmarks" / "qemu_insn_count.c"


def build_dfx_run(build_dir: Path, toolchain: Path, *, static: bool = False, jobs: int | None = None,
                  nice: bool = False) -> Path:
    """Cross-build ``dfx-run`` (static libdfx, no tests) with ``toolchain`` into ``build_dir``; returns it.

    ``static`` links the program with ``-static`` (no sysroot needed under qemu, none on the board).
    """
    cfg = ["cmake", "-S", str(KERNELS), "-B", str(build_dir), f"-DCMAKE_TOOLCHAIN_FILE={toolchain}",
           "-DCMAKE_BUILD_TYPE=Release", "-DDFX_BUILD_SHARED=OFF", "-DDFX_BUILD_TESTS=OFF",
           f"-DCMAKE_EXE_LINKER_FLAGS={'-static' if static else ''}"]
    subprocess.run(cfg, check=True, capture_output=True)
    subprocess.run([*(["nice"] if nice else []), "cmake", "--build", str(build_dir), "-j",
                    str(jobs or os.cpu_count() or 2), "--target", "dfx-run"], check=True, capture_output=True)
    return build_dir / "dfx-run"


def require(*tools: str) -> None:
    """Exit with a hint when a program the cross benchmarks need is not on PATH."""
    for tool in tools:
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: run DFX_CROSS_CXX=1 .ci/install-cross.sh")


def build_plugin(out_dir: Path) -> Path:
    """Compile the counting plugin into ``out_dir`` (host ``cc``); returns the shared object."""
    plugin = out_dir / "libinsncount.so"
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(plugin), str(PLUGIN_SOURCE)], check=True)
    return plugin


def parse_count(log: str) -> int:
    """The instruction count the plugin wrote to qemu's log (its last ``insns N``)."""
    parts = log.split("insns")
    if len(parts) < 2:
        raise ValueError("no 'insns N' line in the qemu plugin log")
    return int(parts[-1].split()[0])


def count_insns(qemu: str, cpu: str, plugin: Path, prog: list[str], *, sysroot: str | None = None,
                env: dict | None = None, profile: dict[int, int] | None = None
                ) -> tuple[int, subprocess.CompletedProcess]:
    """Run ``prog`` under ``qemu -cpu cpu`` with the plugin: (instructions executed, finished process).

    ``sysroot`` is passed as ``-L`` (needed for dynamically linked programs). A non-zero exit raises
    RuntimeError with the program's stderr. With ``profile``, the plugin also counts per translated block
    (``pertb=on``) and ``profile`` gets the instructions executed per block start address.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".log") as log:
        cmd = [qemu, "-cpu", cpu, *(["-L", sysroot] if sysroot else []),
               "-plugin", str(plugin) + (",pertb=on" if profile is not None else ""),
               "-d", "plugin", "-D", log.name, *prog]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        text = Path(log.name).read_text()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(prog[:1])} failed under {qemu} -cpu {cpu}: {proc.stderr.strip()}")
    if profile is not None:
        for line in text.splitlines():
            if line.startswith("tb "):
                _, addr, k = line.split()
                profile[int(addr, 16)] = profile.get(int(addr, 16), 0) + int(k)
    return parse_count(text), proc


def per_inference(count_1: int, count_3: int) -> int:
    """Instructions of one run from the counts of a process doing 1 run and one doing 3: (c3 - c1) / 2."""
    if count_3 <= count_1:
        raise ValueError(f"the 3-run process ({count_3}) did not execute more than the 1-run one ({count_1})")
    return (count_3 - count_1) // 2

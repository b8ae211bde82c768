"""Static memory of the compiled LeNet vs the .dfx file plus the C library.

    python benchmarks/bench_compile.py [--workdir DIR] [--opt -O2]

The real Ristretto LeNet (../shared/testdata/lenet-ristretto) is compiled with
``dfxsdk compile`` and its sources built to objects with the host gcc
(portable target) and with aarch64-linux-gnu-gcc (portable and neon targets,
if installed); ``size`` gives text + data + bss of all objects together (the
model's code, weights, structures and its static arena; libc not counted).

The other way to run the same network: the .dfx file (read at run time, e.g.
from flash) plus libdfx, built from the same kernels/ sources with the same
compiler and flags (every library source; on aarch64 with the NEON sets, as
cmake/simd.cmake builds it), measured the same way. The library allocates its
arena at run time, so its bytes are shown separately (column "arena").

Ratios: compiled total / (.dfx + library), and the same with the library's
arena added, which is the like-for-like RAM + ROM comparison.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = ROOT.parent / "shared" / "testdata"
LENET = TESTDATA / "lenet-ristretto"
KSRC = ROOT / "kernels" / "src"
KINC = ROOT / "kernels" / "include"


def size_of(cc: str, objs: list[Path]) -> tuple[int, int, int]:
    tool = cc[:-3] + "size" if cc.endswith("gcc") and cc != "gcc" else "size"
    if shutil.which(tool) is None:
        tool = "size"
    out = subprocess.run([tool, "-t", *map(str, objs)], capture_output=True, text=True, check=True).stdout
    text, data, bss = out.strip().splitlines()[-1].split()[:3]
    return int(text), int(data), int(bss)


def compile_objs(cc: str, sources: list[Path], work: Path, flags: list[str],
                 per_file: dict[str, list[str]] | None = None) -> list[Path]:
    work.mkdir(parents=True, exist_ok=True)
    objs = []
    for i, s in enumerate(sources):
        o = work / f"{i:02d}_{s.stem}.o"
        extra = (per_file or {}).get(s.name, [])
        subprocess.run([cc, *flags, *extra, "-c", str(s), "-o", str(o)], check=True)
        objs.append(o)
    return objs


def library_objs(cc: str, work: Path, opt: str, neon: bool) -> list[Path]:
    srcs = sorted(KSRC.glob("*.c"))
    flags = ["-std=c99", opt, "-I", str(KINC), "-I", str(KSRC), "-D_POSIX_C_SOURCE=200809L", "-D_DEFAULT_SOURCE"]
    per_file = {}
    if neon:
        srcs += sorted((KSRC / "neon").glob("*.c"))
        flags.append("-DDFX_HAVE_NEON=1")
        per_file["gemm_dot.c"] = ["-march=armv8.2-a+dotprod"]
    return compile_objs(cc, srcs, work, flags, per_file)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, help="keep the build here (default: a temporary folder)")
    ap.add_argument("--opt", default="-O2", help="optimisation flag for every build (default -O2; try -Os)")
    args = ap.parse_args()
    if not LENET.is_dir():
        print(f"skipped: the LeNet test data is not at {LENET}")
        return 0
    from dfxsdk.ccompile import compile_model, describe
    from dfxsdk.io import save

    from dfx_caffe.plugin import import_caffe

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_compile."))
    work.mkdir(parents=True, exist_ok=True)
    model = import_caffe([LENET / "lenet.prototxt", LENET / "lenet_iter_10000.caffemodel"],
                         ristretto_path=LENET / "lenet_quantized.prototxt")
    dfx = work / "lenet.dfx"
    save(model, dfx)
    dfx_bytes = dfx.stat().st_size
    lib_arena = describe(dfx)["arena_bytes"]

    configs = [("gcc", "portable")]
    if shutil.which("aarch64-linux-gnu-gcc"):
        configs += [("aarch64-linux-gnu-gcc", "portable"), ("aarch64-linux-gnu-gcc", "neon")]
    else:
        print("(aarch64-linux-gnu-gcc not found: host only; .ci/install-cross.sh installs it)\n")

    rows = []
    for cc, target in configs:
        tag = f"{'host' if cc == 'gcc' else 'aarch64'}-{target}"
        r = compile_model(dfx, work / f"src-{tag}", prefix="lenet", target=target)
        objs = compile_objs(cc, [r.outdir / s for s in r.sources], work / f"obj-{tag}",
                            ["-std=c99", args.opt, "-I", str(r.outdir)])
        ct, cd, cb = size_of(cc, objs)
        lt, ld, lb = size_of(cc, library_objs(cc, work / f"lib-{tag}", args.opt, neon=target == "neon"))
        rows.append((tag, ct, cd, cb, r.arena_bytes, lt + ld + lb, dfx_bytes, lib_arena))

    print(f"LeNet (Ristretto), {args.opt}; compiled: text+data+bss of the generated sources' objects "
          f"(bss includes the static arena); library: libdfx objects + the .dfx file, arena allocated at run time\n")
    head = (f"{'build':<18}{'text':>9}{'data':>8}{'bss':>8}{'compiled':>10}   "
            f"{'libdfx':>8}{'.dfx':>8}{'lib+dfx':>9}{'arena':>8}   {'ratio':>6}{'w/ arena':>9}")
    print(head)
    print("-" * len(head))
    for tag, ct, cd, cb, arena, lib, dfxb, larena in rows:
        comp = ct + cd + cb
        base = lib + dfxb
        print(f"{tag:<18}{ct:>9}{cd:>8}{cb:>8}{comp:>10}   {lib:>8}{dfxb:>8}{base:>9}{larena:>8}   "
              f"{comp / base:>6.2f}{comp / (base + larena):>9.2f}")
    print(f"\ncompiled arena (in bss): {rows[0][4]} bytes; library arena for batch 1: {lib_arena} bytes "
          "(activations + prepared constants + scratch)")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

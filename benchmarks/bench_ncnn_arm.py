"""The ARM yardstick: dfx against ncnn int8, instructions per inference under qemu-user.

    python benchmarks/bench_ncnn_arm.py [--cpus cortex-a53,cortex-a76,cortex-a7] [--json out.json] [--check]

Not part of CI: it downloads ncnn's source distribution from PyPI and cross-builds it (up to an hour per
architecture on two busy cores the first time; the builds are cached). Needs the cross C and C++ compilers,
ninja and qemu-user: ``DFX_CROSS_CXX=1 bash .ci/install-cross.sh``.

ncnn side: ncnn's source distribution (``ncnn-*.tar.gz``, found through https://pypi.org/pypi/ncnn/json and
fetched as a file, because pip rejects it for an inconsistent version number) is unpacked and built under
``~/.cache/dfxsdk-bench`` (``$DFX_BENCH_CACHE``), never inside the repository. The sdist ships ``src/`` but
neither ncnn's ``benchmark/`` nor its ``toolchains/`` directories, so the script

- adds ``benchmark/`` to the cached tree: ``benchmarks/ncnn_benchncnn.cpp`` (benchncnn's command line and
  options, zero weights, input 0.01) and a two-line CMakeLists, so ``-DNCNN_BUILD_BENCHMARK=ON`` builds it;
- cross-compiles with this project's toolchain files (``kernels/cmake/aarch64-linux-gnu.cmake`` and
  ``arm-linux-gnueabihf.cmake``, copied to ``toolchains/`` in the cache: a configured build keeps the path of
  its toolchain file, so the copy lets any checkout reuse the build) plus the flags of ncnn's own armv7 toolchain file
  (``-march=armv7-a -mfloat-abi=hard -mfpu=neon``) and ``-marm`` (Debian's armhf gcc defaults to Thumb-2,
  where ncnn's inline assembly fails with "impossible constraints"); ``-DNCNN_VULKAN=OFF -DNCNN_OPENMP=OFF``;
  tools, examples, tests, Python and the C API off; the AArch64 variants for extensions no CPU model here has
  (bf16, i8mm, SVE, fp16fml) off, as ncnn picks them at run time from the CPU's features; and only the layers
  of :data:`NCNN_LAYERS` (the network's and those ncnn creates inside other layers);
- links ``benchncnn`` statically (``-static``), so qemu needs no sysroot for it.

It runs ``benchncnn 3 1 0 -1 0 param=../shared/testdata/ncnn-benchmark/mobilenet_ssd_int8.param
shape=[300,300,3]`` and the same with 1 loop (arguments: loops, threads, powersave, gpu device, cooling down).

dfx side: MobileNet-SSD 300x300 (the chuanqi305 prototxt, random weights, the one-pass 8-bit quantizer, as
``benchmarks/native_nets.py`` builds it) run by ``dfx-run --repeat 1`` and ``--repeat 3`` with DFX_THREADS=1,
cross-built with the same toolchain files into ``build/bench-ncnn-<arch>`` and linked with ``-static`` (default
kernel flags, so whatever kernel sets the branch has; the set in use is printed, from ``dfx-run --verbose``).

Counting: the TCG plugin ``benchmarks/qemu_insn_count.c`` (see ``benchmarks/qemu_cross.py``); one inference is
(count at 3 loops - count at 1 loop) / 2, so loading, warm-up and process start cancel out. CPU models:
``qemu-aarch64 -cpu cortex-a53`` (ARMv8.0: Pi 3, Pi 4), ``cortex-a76`` (dot product: Pi 5) and
``qemu-arm -cpu cortex-a7`` (ARMv7 with NEON, the code a 32-bit OS runs; ``cortex-a15`` is accepted too: both
report the same features, NEON and VFPv4, so both engines take the same paths on them).
``--check`` exits with status 1 when a dfx / ncnn ratio is above 1.0 (issue 15's goal).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import qemu_cross  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "kernels"
TESTDATA = ROOT.parent / "shared" / "testdata"
PYPI_JSON = "https://pypi.org/pypi/ncnn/json"
PARAM = TESTDATA / "ncnn-benchmark" / "mobilenet_ssd_int8.param"
SHAPE = (300, 300, 3)
DRIVER = Path(__file__).resolve().parent / "ncnn_benchncnn.cpp"


@dataclass(frozen=True)
class Arch:
    """One cross target: compiler prefix, toolchain file, qemu program, extra compile flags for ncnn."""

    name: str
    prefix: str
    toolchain: Path
    qemu: str
    ncnn_flags: str
    ncnn_options: tuple[str, ...]


ARCHES = {
    "aarch64": Arch("aarch64", "aarch64-linux-gnu-", KERNELS / "cmake" / "aarch64-linux-gnu.cmake", "qemu-aarch64", "",
                    ("-DNCNN_ARM82FP16FML=OFF", "-DNCNN_ARM84BF16=OFF", "-DNCNN_ARM84I8MM=OFF",
                     "-DNCNN_ARM86SVE=OFF")),
    "armhf": Arch("armhf", "arm-linux-gnueabihf-", KERNELS / "cmake" / "arm-linux-gnueabihf.cmake", "qemu-arm",
                  "-march=armv7-a -mfloat-abi=hard -mfpu=neon -marm", ()),
}
# CPU model -> (architecture, what it stands for)
CPUS = {
    "cortex-a53": ("aarch64", "AArch64 ARMv8.0 (Pi 3, Pi 4)"),
    "cortex-a76": ("aarch64", "AArch64 dotprod (Pi 5)"),
    "cortex-a7": ("armhf", "ARMv7 hard-float (32-bit OS)"),
    "cortex-a15": ("armhf", "ARMv7 hard-float (32-bit OS)"),
}
#: ncnn layers built: those of mobilenet_ssd_int8.param (its convolutions fuse ReLU only), ReLU, which they create
#: for it, and those that ncnn's Mat helpers (layout packing, fp16 casts, padding and cropping, int8
#: (de/re)quantization) and the generic Convolution create. The others are left out (-DWITH_LAYER_<name>=OFF)
#: to shorten the build; a missing layer makes load_param or extract fail, never run something else.
NCNN_LAYERS = frozenset((
    "Input", "Convolution", "ConvolutionDepthWise", "Concat", "DetectionOutput", "Flatten", "Permute", "PriorBox",
    "Reshape", "Softmax", "Split", "ReLU", "InnerProduct", "Packing", "Cast", "Padding", "Crop", "Quantize",
    "Dequantize", "Requantize"))
NCNN_COMMON = ("-DCMAKE_BUILD_TYPE=Release", "-DNCNN_VULKAN=OFF", "-DNCNN_OPENMP=OFF", "-DNCNN_BUILD_BENCHMARK=ON",
               "-DNCNN_BUILD_TOOLS=OFF", "-DNCNN_BUILD_EXAMPLES=OFF", "-DNCNN_BUILD_TESTS=OFF", "-DNCNN_PYTHON=OFF",
               "-DNCNN_SHARED_LIB=OFF", "-DNCNN_INSTALL_SDK=OFF", "-DNCNN_C_API=OFF",
               "-DCMAKE_EXE_LINKER_FLAGS=-static")


def cache_root() -> Path:
    """Where the ncnn sources and builds live: $DFX_BENCH_CACHE or ~/.cache/dfxsdk-bench (outside the repo)."""
    return Path(os.environ.get("DFX_BENCH_CACHE") or Path.home() / ".cache" / "dfxsdk-bench")


def sdist_url(meta: dict, json_url: str = PYPI_JSON) -> tuple[str, str, str]:
    """(version, absolute URL, sha256) of the source distribution in a PyPI JSON document.

    The URL may be relative to the JSON document (some mirrors serve '../../packages/...'), so it is resolved
    against ``json_url``.
    """
    version = meta["info"]["version"]
    for f in meta.get("urls", []):
        if f.get("packagetype") == "sdist" and f["filename"].endswith(".tar.gz"):
            return version, urllib.parse.urljoin(json_url, f["url"]), f.get("digests", {}).get("sha256", "")
    raise LookupError(f"ncnn {version} on PyPI has no .tar.gz source distribution")


def sdist_version(names: list[str]) -> str:
    """ncnn's version from the member names of its sdist (one top directory ``ncnn-VERSION/``)."""
    tops = {n.split("/", 1)[0] for n in names}
    m = re.fullmatch(r"ncnn-(\d[\w.]*)", tops.pop()) if len(tops) == 1 else None
    if m is None:
        raise ValueError(f"not an ncnn source distribution (top directories: {sorted(tops)[:3]})")
    return m.group(1)


def fetch_sdist(cache: Path, tarball: Path | None = None) -> tuple[str, Path]:
    """Unpack ncnn's sdist into the cache once (downloading it unless ``tarball`` is given): (version, source)."""
    if tarball is None:
        with urllib.request.urlopen(PYPI_JSON, timeout=60) as r:
            version, url, sha256 = sdist_url(json.load(r))
    else:
        with tarfile.open(tarball) as t:
            version, url, sha256 = sdist_version(t.getnames()), "", ""
    src = cache / f"ncnn-{version}" / "src"
    if (src / "CMakeLists.txt").is_file():
        return version, src
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        if tarball is None:
            tarball = Path(tmp) / f"ncnn-{version}.tar.gz"
            print(f"downloading {url}", file=sys.stderr)
            with urllib.request.urlopen(url, timeout=300) as r, open(tarball, "wb") as f:
                shutil.copyfileobj(r, f)
            if sha256 and hashlib.sha256(tarball.read_bytes()).hexdigest() != sha256:
                raise SystemExit(f"bench_ncnn_arm: {url} does not have the sha256 PyPI lists")
        with tarfile.open(tarball) as t:
            t.extractall(tmp, filter="data")
        (top,) = [p for p in Path(tmp).iterdir() if p.is_dir()]
        src.parent.mkdir(parents=True, exist_ok=True)
        top.rename(src)
    return version, src


def ncnn_layer_names(cmakelists: str) -> list[str]:
    """The layers ncnn's src/CMakeLists.txt adds (``ncnn_add_layer(Name ...)``), in order."""
    return re.findall(r"^\s*ncnn_add_layer\((\w+)", cmakelists, re.M)


def cached_toolchain(arch: Arch, cache: Path) -> Path:
    """A copy of ``arch``'s toolchain file at a fixed place in the cache (rewritten only when it changed): a
    configured build records its toolchain's path, which must outlive the worktree that configured it."""
    path = cache / "toolchains" / arch.toolchain.name
    text = arch.toolchain.read_text()
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


def ncnn_configure_args(arch: Arch, src: Path, build: Path, toolchain: Path | None = None) -> list[str]:
    """The cmake configure command line for ncnn's benchncnn on ``arch`` (``toolchain``: the toolchain file to
    name, by default the repository's)."""
    layers = ncnn_layer_names((src / "src" / "CMakeLists.txt").read_text())
    args = ["cmake", "-S", str(src), "-B", str(build), "-G", "Ninja",
            f"-DCMAKE_TOOLCHAIN_FILE={toolchain or arch.toolchain}",
            *NCNN_COMMON, *arch.ncnn_options]
    args += [f"-DWITH_LAYER_{n.lower()}=OFF" for n in layers if n not in NCNN_LAYERS]  # option names: lower case
    if arch.ncnn_flags:
        args += [f"-DCMAKE_C_FLAGS={arch.ncnn_flags}", f"-DCMAKE_CXX_FLAGS={arch.ncnn_flags}"]
    return args


def build_ncnn(arch: Arch, version: str, src: Path, cache: Path, jobs: int) -> Path:
    """Cross-build benchncnn for ``arch`` into the cache (once); returns the executable."""
    bench_dir = src / "benchmark"
    bench_dir.mkdir(exist_ok=True)
    files = {"benchncnn.cpp": DRIVER.read_text(),
             "CMakeLists.txt": "add_executable(benchncnn benchncnn.cpp)\n"
                               "target_link_libraries(benchncnn PRIVATE ncnn)\n"}
    for name, text in files.items():  # rewritten only when changed: the other architecture's build reads them
        path = bench_dir / name
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
    build = cache / f"ncnn-{version}-{arch.name}"
    exe = build / "benchmark" / "benchncnn"
    subprocess.run(ncnn_configure_args(arch, src, build, cached_toolchain(arch, cache)), check=True,
                   stdout=subprocess.DEVNULL)
    print(f"building ncnn {version} for {arch.name} in {build} (nice, -j{jobs})", file=sys.stderr)
    subprocess.run(["nice", "cmake", "--build", str(build), "-j", str(jobs), "--target", "benchncnn"], check=True,
                   stdout=subprocess.DEVNULL)
    return exe


def benchncnn_args(exe: Path, loops: int, param: Path = PARAM, shape: tuple[int, ...] = SHAPE) -> list[str]:
    """benchncnn's command line: loops, 1 thread, powersave 0, no GPU (-1), no cooling down, then the network."""
    return [str(exe), str(loops), "1", "0", "-1", "0", f"param={param}", "shape=[" + ",".join(map(str, shape)) + "]"]


def dfx_run_args(exe: Path, repeat: int, model: Path, inp: Path, out: Path) -> list[str]:
    """dfx-run's command line for ``repeat`` inferences, printing the kernel set in use."""
    return [str(exe), "--verbose", "--repeat", str(repeat), str(model), str(inp), str(out)]


def parse_kernels(stderr: str) -> str:
    """The kernel set ``dfx-run --verbose`` reports on stderr."""
    m = re.search(r"^dfx-run: kernels: (\S+)$", stderr, re.M)
    if m is None:
        raise ValueError("dfx-run --verbose printed no kernel set")
    return m.group(1)


def ratio(dfx: int, ncnn: int) -> float:
    """dfx / ncnn instructions per inference."""
    return dfx / ncnn


def goal_met(rows: list[dict]) -> bool:
    """Issue 15's goal: dfx needs at most as many instructions per inference as ncnn on every row."""
    return all(r["ratio"] <= 1.0 for r in rows)


def format_table(rows: list[dict]) -> str:
    """The result table: CPU model, dfx kernel set, dfx and ncnn millions of instructions, ratio."""
    head = f"{'CPU model (qemu)':12s} {'stands for':36s} {'dfx kernels':11s} {'dfx M insns':>11s} " \
           f"{'ncnn M insns':>12s} {'dfx/ncnn':>8s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['cpu']:12s} {r['stands_for']:36s} {r['dfx_kernels']:11s} {r['dfx'] / 1e6:11.1f} "
                     f"{r['ncnn'] / 1e6:12.1f} {r['ratio']:8.2f}{'' if r['ratio'] <= 1.0 else '  > 1.0'}")
    return "\n".join(lines)


def _dfx_model(work: Path) -> tuple[Path, Path]:
    """MobileNet-SSD 8-bit (benchmarks/native_nets.py) and one random float input in ``work`` (made once)."""
    model, inp = work / "mobilenet_ssd_int8.dfx", work / "mobilenet_ssd.in"
    if model.is_file() and inp.is_file():
        return model, inp
    import native_nets as nets

    from dfxsdk.io import save

    fmodel = nets.mobilenet_ssd()
    save(nets.quantize8(fmodel), model)
    inp.write_bytes(nets.random_input(fmodel, 1)[fmodel.inputs[0]].tobytes())
    return model, inp


def _count(arch: Arch, cpu: str, plugin: Path, prog: list[str]) -> tuple[int, str]:
    try:
        n, proc = qemu_cross.count_insns(arch.qemu, cpu, plugin, prog, env=dict(os.environ, DFX_THREADS="1"))
    except RuntimeError as e:
        raise SystemExit(f"bench_ncnn_arm: {e}") from None
    return n, proc.stderr


def measure(cpu: str, arch: Arch, benchncnn: Path, dfx_run: Path, plugin: Path, model: Path, inp: Path,
            work: Path) -> dict:
    """One table row: both engines' instructions per inference on qemu CPU model ``cpu``."""
    counts, kernels = {}, ""
    for loops in (1, 3):
        counts["ncnn", loops] = _count(arch, cpu, plugin, benchncnn_args(benchncnn, loops))[0]
        out = work / f"{cpu}.{loops}.out"
        counts["dfx", loops], err = _count(arch, cpu, plugin, dfx_run_args(dfx_run, loops, model, inp, out))
        kernels = parse_kernels(err)
    if (work / f"{cpu}.1.out").read_bytes() != (work / f"{cpu}.3.out").read_bytes():
        raise SystemExit(f"bench_ncnn_arm: dfx-run gave different outputs at --repeat 1 and 3 on {cpu}")
    dfx = qemu_cross.per_inference(counts["dfx", 1], counts["dfx", 3])
    ncnn = qemu_cross.per_inference(counts["ncnn", 1], counts["ncnn", 3])
    return {"cpu": cpu, "arch": arch.name, "stands_for": CPUS[cpu][1], "dfx_kernels": kernels, "dfx": dfx,
            "ncnn": ncnn, "ratio": ratio(dfx, ncnn),
            "whole_process": {"dfx": counts["dfx", 1], "ncnn": counts["ncnn", 1]}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpus", default="cortex-a53,cortex-a76,cortex-a7",
                    help=f"qemu CPU models, comma-separated, of {', '.join(CPUS)}")
    ap.add_argument("--tarball", type=Path, help="use this ncnn sdist (ncnn-VERSION.tar.gz) instead of PyPI's")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="parallel compile jobs (builds run under nice)")
    ap.add_argument("--workdir", type=Path, help="keep the dfx model and input here and reuse them (default: a "
                    "temporary directory)")
    ap.add_argument("--build-only", action="store_true", help="build benchncnn and dfx-run, count nothing")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    ap.add_argument("--check", action="store_true", help="exit 1 when a dfx / ncnn ratio is above 1.0")
    args = ap.parse_args(argv)
    cpus = [c for c in args.cpus.split(",") if c]
    unknown = [c for c in cpus if c not in CPUS]
    if unknown:
        ap.error(f"unknown CPU model {unknown[0]} (known: {', '.join(CPUS)})")
    arches = [ARCHES[a] for a in dict.fromkeys(CPUS[c][0] for c in cpus)]
    qemu_cross.require("cmake", "ninja", "cc", *(t for a in arches for t in (a.qemu, a.prefix + "g++")))

    cache = cache_root()
    version, src = fetch_sdist(cache, args.tarball)
    bins = {}
    for a in arches:
        bins[a.name] = (build_ncnn(a, version, src, cache, args.jobs),
                        qemu_cross.build_dfx_run(ROOT / "build" / f"bench-ncnn-{a.name}", a.toolchain, static=True,
                                                 jobs=args.jobs, nice=True))
    if args.build_only:
        for a in arches:
            print(f"{a.name}: {bins[a.name][0]}  {bins[a.name][1]}")
        return 0
    plugin = qemu_cross.build_plugin(ROOT / "build" / "bench-ncnn-plugin")
    rows = []
    with tempfile.TemporaryDirectory(prefix="dfx-bench-ncnn-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        model, inp = _dfx_model(work)
        for cpu in cpus:
            arch = ARCHES[CPUS[cpu][0]]
            rows.append(measure(cpu, arch, *bins[arch.name], plugin, model, inp, work))
            print(f"{cpu}: done", file=sys.stderr)
    print(f"MobileNet-SSD 300x300 int8, one thread, guest instructions per inference (qemu-user, TCG plugin); "
          f"ncnn {version} benchncnn, dfx-run\n")
    print(format_table(rows))
    if args.json:
        args.json.write_text(json.dumps({"ncnn_version": version, "rows": rows}, indent=2))
    met = goal_met(rows)
    print(f"\ngoal dfx/ncnn <= 1.0 on every CPU model: {'met' if met else 'NOT met'}")
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())

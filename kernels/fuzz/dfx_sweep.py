"""Run files through the NumPy reference and the C library and compare their integers.

For every file (a format sweep of each seed, see dfx_mutate.sweep, and
optionally structure-aware mutants): both loaders give a verdict; a file both
accept runs on the same float inputs through the NumPy backend and the native
backend, and every layer output is compared: integer tensors exactly (an integer output of
a float form, or downstream of one, within one code: spec/arithmetic.md,
section 3.1), float tensors within 1e-4 of the tensor's largest magnitude
(float forms are not bit-exact: summation order, libm). A
refusal at run time counts as a refusal; the two must agree.

With ``--sanitized BUILD`` the run re-executes itself with the C library of a
CMake build made with ``-DDFX_SANITIZE=ON`` (AddressSanitizer and
UndefinedBehaviorSanitizer, aborting on the first report) preloaded::

    cmake -S kernels -B /tmp/asan -DDFX_SANITIZE=ON -DDFX_BUILD_TESTS=OFF -DDFX_BUILD_TOOLS=OFF
    cmake --build /tmp/asan -j2
    .venv/bin/python kernels/fuzz/dfx_sweep.py --sanitized /tmp/asan --mutants 2000 spec/conformance/*.dfx

Add ``-DCMAKE_C_FLAGS=-DDFX_NO_X86_SIMD`` for a second build that runs the
plain C loops instead of the AVX2 ones.

With ``--neon`` the files the host library runs are also run by
kernels/fuzz/dfx_run_files.c cross-built for AArch64 (UBSan in trap mode: GCC's
-fsanitize-undefined-trap-on-error, clang's -fsanitize-trap=undefined; no
runtime needed) under qemu-aarch64 with each kernel set (portable, neon,
dotprod), and the digests of their integer activations must equal the host's.
Exit status 1 on any disagreement or sanitizer stop.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import dfx_mutate  # noqa: E402

import dfxsdk  # noqa: E402
from dfxsdk.errors import DfxError  # noqa: E402


def _inputs(model, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.uniform(-4, 4, model.tensors[n].shape).astype(np.float32) for n in model.inputs}


def _run(backend, model, inputs, names):
    try:
        return backend.run(model, inputs, outputs=names), ""
    except DfxError as exc:
        return None, f"{type(exc).__name__}: {exc}"


def compare_file(path: str, blob: bytes, verdicts: dfx_mutate.Verdicts, ref, native) -> tuple[str, str]:
    """('refused' | 'ran' | 'disagree', detail) for one file."""
    with open(path, "wb") as f:
        f.write(blob)
    c_ok, c_msg = verdicts.c(blob, False)
    try:
        model = dfxsdk.load(path)
    except DfxError as exc:
        return ("refused", "") if not c_ok else ("disagree", f"python refuses ({exc}), C accepts")
    if not c_ok:
        return "disagree", f"python accepts, C refuses ({c_msg})"
    names = [n for layer in model.layers for n in layer.outputs]
    inputs = _inputs(model, 0)
    a, a_msg = _run(ref, model, inputs, names)
    b, b_msg = _run(native, model, inputs, names)
    if a is None or b is None:
        if a is None and b is None:
            return "refused", ""
        if a is not None and b_msg.startswith("DfxUnsupportedError"):
            return "unsupported", ""  # valid, but beyond what the C runtime runs (exit 3)
        return "disagree", f"numpy: {a_msg or 'runs'}; C: {b_msg or 'runs'}"
    for n in names:
        x, y = a[n], b[n]
        if x.shape != y.shape:
            return "disagree", f"{n}: shapes {x.shape} != {y.shape}"
        if x.dtype.kind == "f":
            # float forms are not bit-exact (summation order, libm): within 1e-4 of the tensor's scale
            finite = np.abs(x[np.isfinite(x)])
            scale = float(finite.max()) if finite.size else 0.0
            if not np.allclose(y, x, rtol=1e-5, atol=1e-6 + 1e-4 * scale, equal_nan=True):
                return "disagree", f"{n}: float values differ (max {np.nanmax(np.abs(x - y))})"
        elif not np.array_equal(x.astype(np.int64), y.astype(np.int64)):
            if not _float_form_tolerance(model, n, x, y):
                return "disagree", f"{n}: {int(np.sum(x != y))} codes differ"
    return "ran", ""


def _float_form_tolerance(model, name: str, x: np.ndarray, y: np.ndarray) -> bool:
    """An integer output of a float form (or downstream of one) may differ by one code (spec 3.1)."""
    from dfxsdk.validate import integer_form  # noqa: PLC0415

    producer = {o: layer for layer in model.layers for o in layer.outputs}
    stack, seen = [name], set()
    while stack:
        n = stack.pop()
        layer = producer.get(n)
        if layer is None or n in seen:
            continue
        seen.add(n)
        if not integer_form(model, layer.op, layer.inputs, layer.outputs):
            return int(np.max(np.abs(x.astype(np.int64) - y.astype(np.int64)))) <= 1
        stack.extend(i for i in layer.inputs if i is not None)
    return False


_FUZZ = Path(__file__).resolve().parent
_SRC = _FUZZ.parent / "src"
NEON_SETS = ("portable", "neon", "dotprod")


def _build_runner(out: Path, cc: str, neon: bool, flags: list[str]) -> Path:
    """Compile dfx_run_files.c with every library source (NEON ones only when ``neon``)."""
    objs = []
    for src in sorted(_SRC.rglob("*.c")):
        is_neon = "neon" in src.relative_to(_SRC).parts[:-1]
        if is_neon and not neon:
            continue
        extra = ["-march=armv8.2-a+dotprod"] if src.name == "gemm_dot.c" else []
        obj = out / (str(src.relative_to(_SRC)).replace(os.sep, "_") + ".o")
        subprocess.run([cc, "-std=c99", "-O1", "-g", *flags, *extra, "-D_POSIX_C_SOURCE=200809L", "-D_DEFAULT_SOURCE",
                        *(["-DDFX_HAVE_NEON=1"] if neon else []), f"-I{_SRC.parent / 'include'}", f"-I{_SRC}",
                        *(f"-I{d}" for d in {p.parent for p in _SRC.rglob('*.h')}),
                        "-c", str(src), "-o", str(obj)], check=True)
        objs.append(str(obj))
    exe = out / ("run_files_neon" if neon else "run_files_host")
    subprocess.run([cc, *flags, f"-I{_SRC.parent / 'include'}", str(_FUZZ / "dfx_run_files.c"), *objs,
                    "-o", str(exe), "-lm", *(["-static"] if neon else [])], check=True)
    return exe


def _digests(cmd: list[str], files: list[str], env: dict | None = None) -> tuple[dict[str, str], int]:
    r = subprocess.run(cmd + files, capture_output=True, text=True, env=env)
    out = {}
    for line in r.stdout.splitlines():
        path, st, digest = line.rsplit(" ", 2)
        out[path] = f"{st} {digest}"
    return out, r.returncode


def neon_compare(paths: list[str], workdir: Path) -> tuple[int, list[str]]:
    """Run ``paths`` on the host and under qemu-aarch64 with every NEON kernel set; return (ran, problems)."""
    host = _build_runner(workdir, "gcc", False, [])
    neon = _build_runner(workdir, "aarch64-linux-gnu-gcc", True,
                         ["-fsanitize=undefined", "-fsanitize-undefined-trap-on-error"])
    want, rc = _digests([str(host)], paths)
    problems = [] if rc == 0 else [f"host runner exited with {rc}"]
    for kset in NEON_SETS:
        got, rc = _digests(["qemu-aarch64", str(neon)], paths, dict(os.environ, DFX_KERNELS=kset))
        if rc != 0:
            problems.append(f"{kset}: the runner stopped with status {rc} (a UBSan trap is SIGILL) after "
                            f"{len(got)} of {len(paths)} files")
        problems += [f"{kset}: {p}: host {want.get(p)}, aarch64 {got[p]}" for p in got if got[p] != want.get(p)]
    ran = sum(1 for v in want.values() if v.startswith("0 "))
    return ran, problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", help="seed .dfx files")
    ap.add_argument("--mutants", type=int, default=0, help="structure-aware mutants to run as well")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-sweep", action="store_true", help="skip the fl/bw/channel_fl sweep")
    ap.add_argument("--sanitized", metavar="BUILD", help="CMake build dir of a -DDFX_SANITIZE=ON libdfx")
    ap.add_argument("--neon", action="store_true", help="also compare the NEON kernel sets under qemu-aarch64")
    args = ap.parse_args(argv)
    if args.sanitized and not os.environ.get("DFX_SWEEP_CHILD"):
        asan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
        ubsan = subprocess.run(["gcc", "-print-file-name=libubsan.so"], capture_output=True, text=True).stdout.strip()
        env = dict(os.environ, DFX_SWEEP_CHILD="1", LD_PRELOAD=f"{asan} {ubsan}",
                   DFX_NATIVE_LIB=os.path.join(args.sanitized, "libdfx.so"),
                   ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
                   UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
        return subprocess.run([sys.executable, *sys.argv], env=env).returncode
    from dfx_native import _lib  # noqa: PLC0415
    from dfx_native.backend import NativeBackend  # noqa: PLC0415
    from dfxsdk.plugins import get_manager  # noqa: PLC0415

    seeds = [dfx_mutate.Seed.from_bytes(os.path.basename(p), open(p, "rb").read()) for p in args.files]
    files = [] if args.no_sweep else [(f"{s.name}:{label}", blob) for s in seeds
                                      for label, blob in dfx_mutate.sweep(s)]
    files += list(dfx_mutate.mutants(seeds, args.mutants, args.seed))
    ref, native = get_manager().backend("numpy"), NativeBackend()
    stats: Counter = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        verdicts = dfx_mutate.Verdicts(tmp)
        kept = []
        for i, (label, blob) in enumerate(files):
            kind, detail = compare_file(os.path.join(tmp, "f.dfx"), blob, verdicts, ref, native)
            stats[kind] += 1
            if kind == "disagree":
                print(f"DISAGREE {label}: {detail}")
            if args.neon and kind == "ran":
                kept.append(os.path.join(tmp, f"k{i}.dfx"))
                Path(kept[-1]).write_bytes(blob)
        if args.neon:
            ran, problems = neon_compare(kept, Path(tmp))
            for p in problems:
                print(f"NEON {p}")
            print(f"NEON under qemu-aarch64 ({', '.join(NEON_SETS)}): {len(kept)} files, {ran} ran on the host, "
                  f"{len(problems)} problems")
            stats["disagree"] += len(problems)
    print(f"library {_lib.load()._name} kernels {_lib.load().dfx_kernels_name().decode()}: {len(files)} files, "
          f"{stats['ran']} ran in both with equal results, {stats['refused']} refused by both, "
          f"{stats['unsupported']} unsupported by C, "
          f"{stats['disagree']} disagreements")
    return 1 if stats["disagree"] else 0


if __name__ == "__main__":
    sys.exit(main())

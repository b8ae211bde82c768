"""Run files through the NumPy reference and the C library and compare their integers.

For every file (a format sweep of each seed, see dfx_mutate.sweep, and
optionally structure-aware mutants): both loaders give a verdict; a file both
accept runs on the same float inputs through the NumPy backend and the native
backend, and every layer output is compared: integer tensors exactly, float
tensors within the spec's tolerance (spec/arithmetic.md, section 3.1). A
refusal at run time counts as a refusal; the two must agree.

With ``--sanitized BUILD`` the run re-executes itself with the C library of a
CMake build made with ``-DDFX_SANITIZE=ON`` (AddressSanitizer and
UndefinedBehaviorSanitizer, aborting on the first report) preloaded::

    cmake -S kernels -B /tmp/asan -DDFX_SANITIZE=ON -DDFX_BUILD_TESTS=OFF -DDFX_BUILD_TOOLS=OFF
    cmake --build /tmp/asan -j2
    .venv/bin/python kernels/fuzz/dfx_sweep.py --sanitized /tmp/asan --mutants 2000 spec/conformance/*.dfx

Add ``-DCMAKE_C_FLAGS=-DDFX_NO_X86_SIMD`` for a second build that runs the
plain C loops instead of the AVX2 ones. Exit status 1 on any disagreement.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections import Counter

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
            if not np.allclose(y, x, rtol=1e-5, atol=1e-6, equal_nan=True):
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", help="seed .dfx files")
    ap.add_argument("--mutants", type=int, default=0, help="structure-aware mutants to run as well")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-sweep", action="store_true", help="skip the fl/bw/channel_fl sweep")
    ap.add_argument("--sanitized", metavar="BUILD", help="CMake build dir of a -DDFX_SANITIZE=ON libdfx")
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
        for label, blob in files:
            kind, detail = compare_file(os.path.join(tmp, "f.dfx"), blob, verdicts, ref, native)
            stats[kind] += 1
            if kind == "disagree":
                print(f"DISAGREE {label}: {detail}")
    print(f"library {_lib.load()._name} kernels {_lib.load().dfx_kernels_name().decode()}: {len(files)} files, "
          f"{stats['ran']} ran in both with equal results, {stats['refused']} refused by both, "
          f"{stats['unsupported']} unsupported by C, "
          f"{stats['disagree']} disagreements")
    return 1 if stats["disagree"] else 0


if __name__ == "__main__":
    sys.exit(main())

"""``dfxsdk compile`` against every conformance vector of spec/conformance/.

Each vector's .dfx is compiled to C (portable target), built with the host gcc and run on
the vector's inputs through a small generated driver (integer inputs are fed as the codes
the .npz holds, float inputs as float32 values); integer outputs must equal the expected
codes exactly, float outputs agree within 1e-5 relative (1e-6 absolute near zero), as
spec/conformance/README.md requires. This guards the layer plans libdfx writes for the
compiled code (narrow codes, conversions, prepared constants) for every operator, not only those of
LeNet and MTCNN (test_compile.py).

Vectors the compiler legitimately refuses are listed in REFUSED with the reason, and the
refusal is asserted (a clear DfxUnsupportedError), never silently skipped.

A handful of vectors are also cross-built for AArch64 and run under qemu (portable and neon
targets); like test_compile.py, these fail without the tools unless DFX_SKIP_CROSS=1.
"""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from dfxsdk.ccompile import CompileResult, compile_model
from dfxsdk.errors import DfxUnsupportedError

from tests.support.native import host_compiled_set
from tests.support.paths import CONFORMANCE

CONF = CONFORMANCE
NAMES = sorted(p.stem for p in CONF.glob("*.dfx"))
CFLAGS = ["-std=c99", "-O0", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror"]

#: vector -> (reason, text the refusal must contain). Empty: every vector compiles today.
REFUSED: dict[str, tuple[str, str]] = {}

#: the vectors also run on AArch64 under qemu (narrow int8 fast paths, packed weights, pooling, floats)
CROSS_VECTORS = ["conv_per_channel", "conv_int4_int2_weights", "conv_depthwise_asym_pad", "fc_round_even",
                 "pool_max", "eltwise", "float_ops"]


def load_vector(name: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    with np.load(CONF / f"{name}.npz") as z:
        feeds = {k[3:]: z[k] for k in z.files if k.startswith("in/")}
        want = {k[4:]: z[k] for k in z.files if k.startswith("out/")}
    return feeds, want


def batch_of(feeds: dict[str, np.ndarray]) -> int:
    sizes = {v.shape[0] for v in feeds.values()}
    assert len(sizes) == 1, sizes
    return sizes.pop()


def write_driver(r: CompileResult, path: Path) -> None:
    """main.c: reads every input (in the entry point's own element type: codes or float32) from
    argv[1], one after the other, calls NAME_run once, writes every output to argv[2]."""
    p = r.prefix
    lines = ["#include <stdio.h>", f'#include "{p}.h"', "int main(int argc, char **argv)", "{",
             "    if (argc != 3) return 2;",
             '    FILE *fi = fopen(argv[1], "rb"), *fo = fopen(argv[2], "wb");', "    if (!fi || !fo) return 3;"]
    for q in r.inputs:
        lines.append(f"    static {q.ctype} i_{q.cname}[{q.count}];")
        lines.append(f"    if (fread(i_{q.cname}, sizeof i_{q.cname}[0], {q.count}, fi) != {q.count}) return 4;")
    for q in r.outputs:
        lines.append(f"    static {q.ctype} o_{q.cname}[{q.count}];")
    args = [f"i_{q.cname}" for q in r.inputs] + [f"o_{q.cname}" for q in r.outputs]
    lines.append(f"    if ({p}_run({', '.join(args)}) != 0) return 5;")
    for q in r.outputs:
        lines.append(f"    fwrite(o_{q.cname}, sizeof o_{q.cname}[0], {q.count}, fo);")
    lines += [f'    printf("kernels: %s\\n", {p}_kernels());', "    fclose(fo);", "    return 0;", "}", ""]
    path.write_text("\n".join(lines))


def np_dtype(ctype: str) -> np.dtype:
    return np.dtype(np.float32) if ctype == "float" else np.dtype(ctype.replace("_t", ""))


def build_and_run(name: str, work: Path, *, target: str = "portable", cc: str = "gcc",
                  extra: tuple[str, ...] = (), qemu_cpu: str | None = None) -> tuple[dict, str]:
    feeds, _ = load_vector(name)
    r = compile_model(CONF / f"{name}.dfx", work / "src", target=target, batch=batch_of(feeds))
    driver, exe = work / "main.c", work / "prog"
    write_driver(r, driver)
    cmd = [cc, *CFLAGS, *extra, "-I", str(r.outdir), *[str(r.outdir / s) for s in r.sources], str(driver),
           "-o", str(exe), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{name}: {' '.join(cmd)}\n{proc.stderr[-6000:]}"
    parts = []
    for q in r.inputs:
        a = feeds[q.name]
        dt = np_dtype(q.ctype)
        if q.quantized:   # codes as they are: they must fit the entry point's element type
            info = np.iinfo(dt)
            assert a.dtype.kind == "i" and a.min() >= info.min and a.max() <= info.max, (name, q.name, q.ctype)
        assert a.size == q.count, (name, q.name, a.shape, q.count)
        parts.append(np.ascontiguousarray(a.astype(dt)).tobytes())
    (work / "in.bin").write_bytes(b"".join(parts))
    run = [str(exe), str(work / "in.bin"), str(work / "out.bin")]
    if qemu_cpu:
        run = ["qemu-aarch64", "-cpu", qemu_cpu, *run]
    proc = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{name}: {' '.join(run)} failed ({proc.returncode}): {proc.stderr}"
    raw, off, got = (work / "out.bin").read_bytes(), 0, {}
    for q in r.outputs:
        dt = np_dtype(q.ctype)
        got[q.name] = np.frombuffer(raw, dt, count=q.count, offset=off).reshape(q.shape)
        off += q.count * dt.itemsize
    assert off == len(raw), (name, off, len(raw))
    return got, proc.stdout.strip().rsplit("kernels: ", 1)[-1]


def assert_matches(name: str, got: dict[str, np.ndarray], want: dict[str, np.ndarray], where: str) -> None:
    assert set(got) == set(want), (name, sorted(got), sorted(want))
    for key, b in want.items():
        a = got[key]
        assert a.shape == b.shape, (where, key, a.shape, b.shape)
        if b.dtype.kind == "i":
            assert a.dtype.kind == "i", f"{where} {key}: integer output expected, got {a.dtype}"
            bad = int(np.sum(a.astype(np.int64) != b.astype(np.int64)))
            assert bad == 0, (f"{where} {key}: {bad} of {b.size} codes differ\n"
                              f"got  {a.reshape(-1)[:24].tolist()}\nwant {b.reshape(-1)[:24].tolist()}")
        else:
            assert a.dtype == np.float32, f"{where} {key}: float output expected, got {a.dtype}"
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"{where} {key}")


# -- host ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def host_results(tmp_path_factory):
    """Every compilable vector compiled, built and run once (in parallel): name -> (outputs, kernels)
    or the exception it raised."""
    base = tmp_path_factory.mktemp("conformance")

    def one(name: str):
        work = base / name
        work.mkdir()
        try:
            return build_and_run(name, work)
        except BaseException as exc:   # reported by the vector's own test
            return exc

    todo = [n for n in NAMES if n not in REFUSED]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return dict(zip(todo, pool.map(one, todo)))


def test_vectors_exist_and_refusals_are_real_vectors():
    assert len(NAMES) >= 30
    assert set(REFUSED) <= set(NAMES), set(REFUSED) - set(NAMES)
    assert set(CROSS_VECTORS) <= set(NAMES) - set(REFUSED)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in REFUSED])
def test_compiled_vector_host_conforms(host_results, name):
    res = host_results[name]
    if isinstance(res, BaseException):
        raise res
    got, kernels = res
    assert kernels in ("portable", host_compiled_set()), (name, kernels)  # "portable": no layer dispatches
    assert_matches(name, got, load_vector(name)[1], f"{name} host")


def test_refused_vectors_say_why(tmp_path):
    """Every vector in REFUSED is refused with its reason (none is today: the conformance set has no
    Custom operator, the only kind the library, and so the compiler, refuses)."""
    for name, (reason, text) in sorted(REFUSED.items()):
        with pytest.raises(DfxUnsupportedError, match=text):
            compile_model(CONF / f"{name}.dfx", tmp_path / name)
        assert not (tmp_path / name).exists(), (name, reason)


# -- aarch64 under qemu --------------------------------------------------------------------------


@pytest.mark.parametrize("target,cpu,kernels", [("portable", "cortex-a53", "portable"),
                                                ("neon", "cortex-a53", "neon"), ("neon", "cortex-a76", "dotprod")])
@pytest.mark.parametrize("name", CROSS_VECTORS)
def test_compiled_vector_aarch64_qemu_conforms(cross, name, target, cpu, kernels, tmp_path):
    got, used = build_and_run(name, tmp_path, target=target, cc=cross, extra=("-static",), qemu_cpu=cpu)
    if used != "portable":    # a model without a fast layer never dispatches: it reports "portable"
        assert used == kernels, (name, cpu, used)
    assert_matches(name, got, load_vector(name)[1], f"{name} {target} {cpu}")

"""``dfxsdk compile``: .dfx networks as standalone C, bit for bit against the NumPy reference.

The real Ristretto LeNet (all 5000 MNIST digits, one process run) and MTCNN
det1/det2/det3 quantized to 8 bits (generated inputs) are compiled, built with
gcc on the host and with aarch64-linux-gnu-gcc (-static) for the portable and
NEON targets, and run (the latter under qemu-aarch64 on a Cortex-A53, which
picks the "neon" kernels, and a Cortex-A76, which picks "dotprod"). Integer
outputs must equal the reference exactly, float outputs within 1e-5 relative.

The cross tests do not skip when the tools are missing: they fail and say to
run ``.ci/install-cross.sh``, unless DFX_SKIP_CROSS=1 (as tests/aarch64/test_aarch64.py).
"""

from __future__ import annotations

import gzip
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dfxsdk.ccompile import CompileResult, compile_model, describe
from dfxsdk.errors import DfxInputError, DfxUnsupportedError
from dfxsdk.io import load, save

from tests.support.cli import cli
from tests.support.native import host_compiled_set
from tests.support.testdata import LENET, MNIST, MTCNN, needs_testdata, require_testdata

CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror"]
#: qemu CPU -> the kernel set the neon target must pick on it
QEMU_CPUS = {"cortex-a53": "neon", "cortex-a76": "dotprod"}


# -- building and running ------------------------------------------------------------------------


def write_driver(r: CompileResult, path: Path) -> None:
    """A main.c: N samples of float32 inputs (all inputs, one sample after the other) from argv[1];
    quantized inputs go through NAME_quantize_*; outputs (codes or floats) appended to argv[2]."""
    p = r.prefix
    lines = ["#include <stdio.h>", "#include <stdlib.h>", f'#include "{p}.h"', "int main(int argc, char **argv)", "{",
             "    if (argc != 4) return 2;",
             '    FILE *fi = fopen(argv[1], "rb"), *fo = fopen(argv[2], "wb");',
             "    long n = atol(argv[3]);", "    if (!fi || !fo) return 3;"]
    for q in r.inputs:
        lines.append(f"    static float f_{q.cname}[{q.count}];")
        if q.quantized:
            lines.append(f"    static {q.ctype} q_{q.cname}[{q.count}];")
    for q in r.outputs:
        lines.append(f"    static {q.ctype} o_{q.cname}[{q.count}];")
    lines.append("    for (long s = 0; s < n; s++) {")
    for q in r.inputs:
        lines.append(f"        if (fread(f_{q.cname}, sizeof(float), {q.count}, fi) != {q.count}) return 4;")
        if q.quantized:
            lines.append(f"        {p}_quantize_{q.cname}(f_{q.cname}, q_{q.cname}, {q.count});")
    args = [f"{'q' if q.quantized else 'f'}_{q.cname}" for q in r.inputs] + [f"o_{q.cname}" for q in r.outputs]
    lines.append(f"        if ({p}_run({', '.join(args)}) != 0) return 5;")
    for q in r.outputs:
        lines.append(f"        fwrite(o_{q.cname}, sizeof o_{q.cname}[0], {q.count}, fo);")
    lines += ["    }", f'    printf("kernels: %s\\n", {p}_kernels());', "    fclose(fo);", "    return 0;", "}", ""]
    path.write_text("\n".join(lines))


def build(r: CompileResult, exe: Path, cc: str = "gcc", extra: tuple[str, ...] = ()) -> Path:
    driver = exe.parent / f"{exe.name}_main.c"
    write_driver(r, driver)
    cmd = [cc, *CFLAGS, *extra, "-I", str(r.outdir), *[str(r.outdir / s) for s in r.sources], str(driver),
           "-o", str(exe), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr[-6000:]}"
    return exe


def run_compiled(r: CompileResult, exe: Path, inputs: dict[str, np.ndarray], n: int,
                 qemu_cpu: str | None = None) -> tuple[dict[str, np.ndarray], str]:
    """Run the program on n samples; (outputs by tensor name, shape (n, ...)), kernel set name."""
    work = exe.parent
    inp, out = work / f"{exe.name}.in", work / f"{exe.name}.out"
    per_sample = [np.ascontiguousarray(inputs[q.name], np.float32).reshape(n, -1) for q in r.inputs]
    np.concatenate(per_sample, axis=1).tofile(inp)
    cmd = [str(exe), str(inp), str(out), str(n)]
    if qemu_cpu:
        cmd = ["qemu-aarch64", "-cpu", qemu_cpu, *cmd]
    cmd[-1] = str(n // r.inputs[0].shape[0])          # calls: one per batch
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr}"
    raw = out.read_bytes()
    dtypes = [np.dtype(q.ctype.replace("_t", "")) if q.quantized else np.dtype(np.float32) for q in r.outputs]
    rec = np.dtype([(q.name, dt, (q.count,)) for q, dt in zip(r.outputs, dtypes)])
    arr = np.frombuffer(raw, rec, count=n // r.inputs[0].shape[0])
    outs = {q.name: arr[q.name].reshape((n,) + tuple(q.shape[1:])) for q in r.outputs}
    kernels = proc.stdout.strip().rsplit("kernels: ", 1)[-1]
    return outs, kernels


def reference(model, inputs: dict[str, np.ndarray], names: list[str], chunk: int = 1000) -> dict[str, np.ndarray]:
    from dfxsdk.plugins import get_manager

    ref = get_manager().backend("numpy")
    n = len(next(iter(inputs.values())))
    parts = [ref.run(model, {k: v[s:s + chunk] for k, v in inputs.items()}, outputs=names) for s in range(0, n, chunk)]
    return {k: np.concatenate([p[k] for p in parts]) for k in names}


def assert_same(model, got: dict[str, np.ndarray], want: dict[str, np.ndarray], what: str) -> None:
    for name, b in want.items():
        a = got[name]
        assert a.shape == b.shape, (what, name, a.shape, b.shape)
        if model.tensors[name].qformat is None:
            scale = float(np.abs(b).max()) or 1.0
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * scale, err_msg=f"{what}: {name}")
        else:
            bad = int(np.sum(a.astype(np.int64) != np.asarray(b, np.int64)))
            assert bad == 0, f"{what}: {name}: {bad} codes differ"


# -- models --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lenet(caffe, tmp_path_factory):
    """(model, path, preprocessed digits (5000, 1, 28, 28) float32)."""
    require_testdata(LENET, MNIST)
    model = caffe.import_caffe([LENET / "lenet.prototxt", LENET / "lenet_iter_10000.caffemodel"],
                               ristretto_path=LENET / "lenet_quantized.prototxt")
    path = tmp_path_factory.mktemp("lenet") / "lenet.dfx"
    save(model, path)
    with gzip.open(MNIST, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x = model.preprocessing["data"].apply(table[:, :-1].reshape(-1, 1, 28, 28)).astype(np.float32)
    assert len(x) == 5000
    return load(path), path, x


def _quantize8(model):
    from dfxsdk.plugins import get_manager
    from dfxsdk.providers import CalibrationData

    rng = np.random.default_rng(0)
    data = {n: rng.uniform(-1, 1, (2,) + tuple(model.tensors[n].shape[1:])).astype(np.float32) for n in model.inputs}
    quantizer = get_manager().quantizer("dfp")
    return quantizer.quantize(model, CalibrationData([data]), {"bw": 8, "fl_rule": "maxabs"})


@pytest.fixture(scope="module")
def mtcnn(caffe, tmp_path_factory):
    """net -> (model, path, generated inputs of 16 samples)."""
    require_testdata(MTCNN)
    pytest.importorskip("dfx_quantizer.plugin", reason="the dfp quantizer plugin is not installed")
    out = {}
    folder = tmp_path_factory.mktemp("mtcnn")
    for net in ("det1", "det2", "det3"):
        model = _quantize8(caffe.import_caffe([MTCNN / f"{net}.prototxt", MTCNN / f"{net}.caffemodel"]))
        path = folder / f"{net}.dfx"
        save(model, path)
        rng = np.random.default_rng(1)
        x = {n: rng.uniform(-1.2, 1.2, (16,) + tuple(model.tensors[n].shape[1:])).astype(np.float32)
             for n in model.inputs}
        out[net] = (load(path), path, x)
    return out


def _outputs(model) -> list[str]:
    return list(model.outputs)


def check_model(model, path: Path, inputs: dict[str, np.ndarray], work: Path, *, target: str = "portable",
                cc: str = "gcc", extra: tuple[str, ...] = (), cpus: dict[str | None, str] | None = None,
                batch: int = 1) -> None:
    n = len(next(iter(inputs.values())))
    r = compile_model(path, work / f"src-{target}", target=target, batch=batch)
    exe = build(r, work / f"prog-{target}-{cc}", cc, extra)
    want = reference(model, inputs, _outputs(model))
    for cpu, kernels in (cpus or {None: host_compiled_set()}).items():
        got, name = run_compiled(r, exe, inputs, n, qemu_cpu=cpu)
        assert name == kernels, f"{path.name} on {cpu}: expected the {kernels} kernels, got {name}"
        assert_same(model, got, want, f"{path.name} {target} {cc} {cpu or 'host'}")


# -- host ----------------------------------------------------------------------------------------


@needs_testdata()
def test_lenet_host_all_5000_digits_bit_exact(lenet, tmp_path):
    model, path, x = lenet
    check_model(model, path, {"data": x}, tmp_path)


@needs_testdata()
@pytest.mark.parametrize("net", ["det1", "det2", "det3"])
def test_mtcnn_8bit_host_bit_exact(mtcnn, net, tmp_path):
    model, path, x = mtcnn[net]
    check_model(model, path, x, tmp_path)


@needs_testdata()
def test_mtcnn_batch_4_per_call_bit_exact(mtcnn, tmp_path):
    model, path, x = mtcnn["det2"]
    check_model(model, path, x, tmp_path, batch=4)


@needs_testdata()
def test_lenet_contains_only_the_kernels_it_uses(lenet, tmp_path):
    model, path, _ = lenet
    r = compile_model(path, tmp_path / "src", prefix="lenet")
    # Conv2D, Pool2D, FC, ReLU, Softmax (+ the input Requantize); pooling and ReLU may run in the kernel set
    assert {"CONV2D_FAST", "FC_FAST", "SOFTMAX_F32"} <= set(r.kernels) <= {
        "CONV2D_FAST", "FC_FAST", "SOFTMAX_F32", "POOL_INT", "MAXPOOL_S8", "RELU_INT", "RELU_S8", "COPY",
        "REQUANTIZE_INT"}
    assert not any("detection" in s or "activation" in s or "eltwise" in s for s in r.sources), r.sources
    objs = []
    for s in r.sources:
        o = tmp_path / (Path(s).stem + ".o")
        subprocess.run(["gcc", *CFLAGS, "-c", str(r.outdir / s), "-o", str(o)], check=True)
        objs.append(str(o))
    nm = subprocess.run(["nm", *objs], capture_output=True, text=True, check=True).stdout
    defined = {ln.split()[-1] for ln in nm.splitlines() if len(ln.split()) == 3 and ln.split()[1] in "TtDdRrBb"}
    undefined = {ln.split()[-1] for ln in nm.splitlines() if ln.split()[:1] == ["U"]}
    for bad in ("lrn", "detection", "priorbox", "normalize", "eltwise", "conv2d_int", "fc_int", "deconv",
                "linear_prepare", "prelu", "sigmoid"):
        assert not [s for s in defined if bad in s], f"{bad}: {[s for s in defined if bad in s]}"
    assert {"dfx_conv2d_fast", "dfx_fc_fast", "dfx_softmax_f32", "lenet_run"} <= defined
    # no heap, no I/O, no environment
    for bad in ("malloc", "calloc", "realloc", "free", "fopen", "printf", "fprintf", "snprintf", "getenv", "mmap"):
        assert bad not in undefined, bad


@needs_testdata()
def test_header_documents_entry_point_and_sizes(lenet, tmp_path):
    model, path, _ = lenet
    r = compile_model(path, tmp_path / "out", prefix="digits")
    h = (r.outdir / "digits.h").read_text()
    assert "int digits_run(const float *data, float *prob);" in h
    assert "#define DIGITS_IN_DATA_COUNT 784" in h and "#define DIGITS_OUT_PROB_COUNT 10" in h
    assert f"#define DIGITS_ARENA_BYTES {r.arena_bytes}u" in h
    assert "multiply by [0.00390625]" in h          # the stored preprocessing
    d = describe(path)
    assert r.arena_bytes == ((d["plan_bytes"] + 63) & ~63) + d["scratch_bytes"]


@needs_testdata()
@pytest.mark.parametrize("bw", [8, 12])
def test_integer_input_quantize_helper_bit_exact(mtcnn, bw, tmp_path):
    """det1 with an integer graph input (int8 / int16 codes): the driver quantizes with the
    generated NAME_quantize_<input>(), which must equal the reference's quantization."""
    from dfxsdk.formats import DataType, QFormat, Rounding

    _, orig, x = mtcnn["det1"]
    model = load(orig)               # a copy: the fixture's model stays as it is
    name = model.inputs[0]
    t = model.tensors[name]
    t.qformat = QFormat(bw, bw - 2, Rounding.HALF_TO_EVEN)
    t.dtype = DataType.INT8 if bw <= 8 else DataType.INT16
    path = tmp_path / "det1_int.dfx"
    save(model, path)
    model = load(path)
    r = compile_model(path, tmp_path / "out", prefix="pnet")
    q = r.inputs[0]
    assert q.quantized and q.ctype == ("int8_t" if bw <= 8 else "int16_t")
    h = (r.outdir / "pnet.h").read_text()
    assert f"void pnet_quantize_{q.cname}(const float *x, {q.ctype} *codes, int64_t n);" in h
    assert f"#define PNET_IN_{q.cname.upper()}_FL {bw - 2}" in h
    check_model(model, path, x, tmp_path)


# -- CLI, atomic output, refusals ----------------------------------------------------------------


@needs_testdata()
def test_cli_writes_atomically_and_replaces_only_its_own_output(lenet, tmp_path):
    _, path, _ = lenet
    out = tmp_path / "gen"
    code, stdout, err = cli("compile", path, "-o", out, "--prefix", "net", "--target", "neon")
    assert code == 0, err
    assert (out / "net.c").is_file() and (out / "net.h").is_file()
    assert (out / "dfx" / "arch" / "neon" / "gemm_dot.c").is_file()
    assert "cc -O2" in stdout
    code, _, err = cli("compile", path, "-o", out, "--prefix", "again")     # an earlier output: replaced
    assert code == 0, err
    assert (out / "again.c").is_file() and not (out / "net.c").exists() and not (out / "dfx" / "neon").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen"]           # no temporary folders left
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    code, _, err = cli("compile", path, "-o", other)
    assert code == 2 and "not the output of an earlier dfxsdk compile" in err
    assert [p.name for p in other.iterdir()] == ["keep.txt"]
    code, _, err = cli("compile", path, "-o", tmp_path / "x", "--prefix", "9bad")
    assert code == 2 and "not a C identifier" in err


@needs_testdata()
def test_lenet_generated_c_is_readable(lenet, tmp_path):
    """The network in one short file (one executor call per layer, shapes and formats in a comment),
    the weights in their own file as decimal arrays, layer descriptors with only their operator's
    options, tensors with the session's batch."""
    model, path, _ = lenet
    r = compile_model(path, tmp_path / "src", prefix="lenet", batch=3)
    net = (r.outdir / "lenet.c").read_text().splitlines()
    assert len(net) < 200, len(net)
    calls = [ln for ln in net if "dfx_exec_layer(" in ln]
    assert len(calls) == len(model.layers)
    for layer, call in zip(model.layers, calls):
        comment = net[net.index(call) - 1]
        out = model.tensors[layer.outputs[0]]
        assert layer.name in comment and layer.type in comment, comment
        assert "x".join(map(str, (3,) + tuple(out.shape[1:]))) in comment, comment
        if out.qformat is not None:
            assert f"bw {out.qformat.bw} fl {out.qformat.fl}" in comment, comment
    assert not re.search(r"\blenet_w\d", "\n".join(net))   # the weights: in lenet_weights.c, named by the plans
    weights = (r.outdir / "lenet_weights.c").read_text()
    assert not re.search(r"\b0x[0-9a-f]", weights) and re.search(r"= \{\n +-?\d+, -?\d+,", weights)
    plan = (r.outdir / "lenet_plan.c").read_text()
    conv = re.search(r"static const dt_layer L1 = \{.*?\};", plan, re.S).group(0)
    assert ".kh = 5" in conv
    for other in ("eps", "nms_threshold", "local_size", "axis", "ceil_mode", "top_k"):
        assert f".{other} =" not in conv, (other, conv)
    assert ".shape = {3, 20, 24, 24}" in plan and "64" not in re.findall(r"\.shape = \{(\d+)", plan)


def test_compiler_holds_no_operator_policy():
    """Which kernel runs and which conversions happen come from the library's plan: the compiler
    names no operator type (they would only be there to decide something per operator)."""
    from dfxsdk import ccompile, ops

    source = Path(ccompile.__file__).read_text()
    named = [name for name in ops.OPS if f'"{name}"' in source or f"'{name}'" in source]
    assert not named, named
    assert not re.search(r"\bOP_[A-Z]", source) and "dfx_native" not in source


def test_refuses_a_model_the_library_refuses(tmp_path):
    """A Custom operator: the library refuses it at session creation, compile says the same."""
    from dfxsdk import ops
    from dfxsdk.graph import Layer, Model, Tensor

    m = Model(name="c")
    m.add_tensor(Tensor("x", (1, 4)))
    m.add_tensor(Tensor("y", (1, 4)))
    m.add_layer(Layer("c", ops.Custom(name="mystery"), ["x"], ["y"]))
    m.inputs, m.outputs = ["x"], ["y"]
    path = tmp_path / "c.dfx"
    save(m, path)
    with pytest.raises(DfxUnsupportedError, match="custom operator 'mystery'"):
        compile_model(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(DfxInputError):
        compile_model(path, tmp_path / "out", target="avx512")


# -- aarch64 under qemu --------------------------------------------------------------------------


@needs_testdata()
@pytest.mark.parametrize("target", ["portable", "neon"])
def test_lenet_aarch64_qemu_all_5000_digits_bit_exact(cross, lenet, target, tmp_path):
    model, path, x = lenet
    cpus = {"cortex-a53": "portable"} if target == "portable" else QEMU_CPUS
    check_model(model, path, {"data": x}, tmp_path, target=target, cc=cross, extra=("-static",), cpus=cpus)


@needs_testdata()
@pytest.mark.parametrize("target", ["portable", "neon"])
@pytest.mark.parametrize("net", ["det1", "det2", "det3"])
def test_mtcnn_8bit_aarch64_qemu_bit_exact(cross, mtcnn, net, target, tmp_path):
    model, path, x = mtcnn[net]
    cpus = {"cortex-a53": "portable"} if target == "portable" else QEMU_CPUS
    check_model(model, path, x, tmp_path, target=target, cc=cross, extra=("-static",), cpus=cpus)

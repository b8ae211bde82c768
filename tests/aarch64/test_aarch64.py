"""The aarch64 build of libdfx under qemu-user, bit for bit.

Cross-compiles kernels/ with Debian's aarch64 cross compiler and the toolchain
file kernels/cmake/aarch64-linux-gnu.cmake (into build/test-aarch64, reused
between runs; DFX_AARCH64_BUILD chooses another folder), then runs, under
``qemu-aarch64``, for each kernel set:

- "portable": the portable C kernels (DFX_KERNELS=portable) on a Cortex-A53;
- "neon":     the ARMv8.0 NEON kernels, chosen by themselves on a Cortex-A53
  (qemu's cortex-a53 model has no dot product instructions);
- "dotprod":  the SDOT kernels, chosen by themselves on a Cortex-A76;

the C tests (test_buffer, test_neon), every conformance vector of
spec/conformance and real networks (Ristretto LeNet, MTCNN and MobileNet-SSD
quantized to 8 bits) through the aarch64 ``dfx-run``, comparing every integer
output code with the NumPy reference exactly (float outputs within 1e-5). Each
run also checks which kernel set the library reports (``dfx-run --verbose``),
so a silent fallback to the portable kernels fails.

These tests do not skip when the tools are missing: they fail and say to run
``.ci/install-cross.sh``. On a developer machine without them, set
DFX_SKIP_CROSS=1 to skip them.
"""

from __future__ import annotations

import gzip
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from dfxsdk.io import load, save

from tests.support.cross import SYSROOT, require_cross
from tests.support.paths import CONFORMANCE, KERNELS, ROOT
from tests.support.testdata import LENET, MNIST, MOBILENET_SSD, MTCNN, require_testdata

TOOLCHAIN = KERNELS / "cmake" / "aarch64-linux-gnu.cmake"
VECTORS = sorted(CONFORMANCE.glob("*.dfx"))

#: kernel set -> (qemu CPU model, DFX_KERNELS value or None for the automatic choice)
MODES = {
    "portable": ("cortex-a53", "portable"),
    "neon": ("cortex-a53", None),
    "dotprod": ("cortex-a76", None),
}


@dataclass
class Arm64:
    build: Path

    def run(self, mode: str, program: str, *args, check: bool = True) -> subprocess.CompletedProcess:
        """Run a program of the build under qemu in a mode of MODES."""
        return self.run_on(*MODES[mode], program, *args, check=check)

    def run_on(self, cpu: str, kernels: str | None, program: str, *args,
               check: bool = True) -> subprocess.CompletedProcess:
        """Run a program on qemu's CPU model ``cpu`` with DFX_KERNELS=``kernels`` (None: unset)."""
        env = {k: v for k, v in os.environ.items() if k != "DFX_KERNELS"}
        if kernels:
            env["DFX_KERNELS"] = kernels
        cmd = ["qemu-aarch64", "-cpu", cpu, "-L", str(SYSROOT), str(self.build / program), *map(str, args)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
        if check and proc.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} (DFX_KERNELS={kernels}) failed with {proc.returncode}:\n"
                        f"{proc.stdout}\n{proc.stderr}")
        return proc

    def dfx_run(self, mode: str, model: Path, inputs: list[np.ndarray], work: Path, *, in_codes: bool) -> bytes:
        """Run ``model`` with dfx-run under qemu; the raw output file (integer outputs as codes)."""
        inp, out = work / f"{model.stem}.{mode}.in", work / f"{model.stem}.{mode}.out"
        inp.write_bytes(b"".join(np.ascontiguousarray(a).tobytes() for a in inputs))
        flag = "--codes" if in_codes else "--out-codes"
        proc = self.run(mode, "dfx-run", "--verbose", flag, model, inp, out)
        assert f"kernels: {mode}\n" in proc.stderr, \
            f"{model.name}: expected the {mode} kernels, dfx-run said {proc.stderr!r}"
        return out.read_bytes()


@pytest.fixture(scope="module")
def arm64() -> Arm64:
    require_cross("the aarch64 tests", "cmake")
    build = Path(os.environ.get("DFX_AARCH64_BUILD", ROOT / "build" / "test-aarch64"))
    steps = [["cmake", "-S", str(KERNELS), "-B", str(build), f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN}",
              "-DCMAKE_BUILD_TYPE=Release", "-DDFX_BUILD_SHARED=OFF", "-DDFX_BUILD_TESTS=ON", "-DDFX_BUILD_TOOLS=ON"],
             ["cmake", "--build", str(build), "-j", str(os.cpu_count() or 2)]]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            pytest.fail(f"aarch64 build failed: {' '.join(cmd)}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    for exe in ("dfx-run", "test_buffer", "test_neon", "classify"):
        assert (build / exe).exists(), f"the aarch64 build has no {exe} (NEON kernels not configured?)"
    return Arm64(build)


# -- C tests -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(MODES))
def test_c_buffer_test(arm64, mode):
    model = KERNELS / "tests" / "data" / "tiny_lenet.dfx"
    proc = arm64.run(mode, "test_buffer", model, f"{model}.expected")
    assert "equal the reference" in proc.stdout


@pytest.mark.parametrize("cpu", ["cortex-a53", "cortex-a72", "cortex-a76", "max"])
def test_c_neon_kernels_equal_portable(arm64, cpu):
    proc = arm64.run_on(cpu, None, "test_neon", "150")
    assert "neon: 150 x" in proc.stdout and "equal to portable" in proc.stdout
    has_dot = cpu in ("cortex-a76", "max")
    assert f"cpu has dotprod: {int(has_dot)}" in proc.stdout
    assert ("dotprod: 150 x" in proc.stdout) == has_dot
    assert "FAILED" not in proc.stdout


def test_c_example_classify_ctest(arm64):
    """The CTest of kernels/examples/classify.c (raw 8-bit image, stored preprocessing, label) under qemu."""
    proc = subprocess.run(["ctest", "--output-on-failure", "-V", "-R", "example_classify"], cwd=arm64.build,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "qemu-aarch64" in proc.stdout and "class 2: plus sign" in proc.stdout


@pytest.mark.parametrize("mode", list(MODES))
def test_dfx_run_raw_top_with_each_kernel_set(arm64, mode):
    """dfx-run --kernels chooses the set per run; --raw --top prints the stored labels."""
    data = KERNELS / "examples" / "data"
    cpu, _ = MODES[mode]
    proc = arm64.run_on(cpu, None, "dfx-run", "--verbose", "--kernels", mode, "--raw", "--top", "2",
                        data / "tiny_shapes.dfx", data / "plus_sign.u8")
    assert f"kernels: {mode}\n" in proc.stderr
    assert proc.stdout.splitlines()[1].split()[:5] == ["1.", "class", "2", "plus", "sign"]


# -- the NEON path is really taken ------------------------------------------------------------------


@pytest.mark.parametrize("cpu,env,expected", [
    ("cortex-a53", None, "neon"),
    ("cortex-a72", None, "neon"),
    ("cortex-a76", None, "dotprod"),
    ("max", None, "dotprod"),
    ("cortex-a76", "portable", "portable"),
    ("cortex-a76", "neon", "neon"),
    ("cortex-a53", "dotprod", "portable (DFX_KERNELS=dotprod unavailable)"),
])
def test_kernel_set_selection(arm64, tmp_path, cpu, env, expected):
    model = KERNELS / "tests" / "data" / "tiny_lenet.dfx"
    info = load(model)
    x = np.zeros(int(np.prod(info.tensors[info.inputs[0]].shape)), np.float32)
    (tmp_path / "in").write_bytes(x.tobytes())
    proc = arm64.run_on(cpu, env, "dfx-run", "--verbose", model, tmp_path / "in", tmp_path / "out")
    assert f"kernels: {expected}\n" in proc.stderr


# -- conformance vectors ----------------------------------------------------------------------------


def _split_outputs(raw: bytes, wanted: list[np.ndarray], where: str) -> list[np.ndarray]:
    got, pos = [], 0
    for want in wanted:
        dtype = np.float32 if want.dtype.kind == "f" else np.int32
        n = want.size * 4
        assert pos + n <= len(raw), f"{where}: output file too short"
        got.append(np.frombuffer(raw[pos:pos + n], dtype).reshape(want.shape))
        pos += n
    assert pos == len(raw), f"{where}: {len(raw) - pos} extra output bytes"
    return got


def _compare(names: list[str], got: list[np.ndarray], want: list[np.ndarray], where: str) -> None:
    for name, have, ref in zip(names, got, want):
        if ref.dtype.kind == "f":
            np.testing.assert_allclose(have, ref, rtol=1e-5, atol=1e-6, err_msg=f"{where}: {name}")
        else:
            diff = int(np.sum(have != ref))
            assert diff == 0, f"{where}: {name}: {diff} of {ref.size} codes differ"


def test_there_are_vectors():
    assert len(VECTORS) >= 30


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_conformance_vector(arm64, tmp_path, mode, path):
    z = np.load(path.with_suffix(".npz"))
    model = load(path)
    inputs = []
    for name in model.inputs:
        a = z[f"in/{name}"]
        integer = model.tensors[name].dtype.name != "FLOAT32"
        inputs.append(a.astype(np.int32 if integer else np.float32))
    want = [z[f"out/{name}"] for name in model.outputs]
    raw = arm64.dfx_run(mode, path, inputs, tmp_path, in_codes=True)
    _compare(model.outputs, _split_outputs(raw, want, path.stem), want, f"{path.stem} [{mode}]")


# -- real networks -----------------------------------------------------------------------------------


def _quantized(model, inputs):
    from dfxsdk.providers import CalibrationData

    from dfx_quantizer.plugin import quantize_model

    return quantize_model(model, CalibrationData(batches=[inputs]), {"bw": 8}).model


def _lenet():
    from dfx_caffe.plugin import import_caffe

    d = LENET
    model = import_caffe([d / "lenet.prototxt", d / "lenet_iter_10000.caffemodel"],
                         ristretto_path=d / "lenet_quantized.prototxt")
    with gzip.open(MNIST, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32, max_rows=32)
    x = model.preprocessing["data"].apply(table[:, :-1].reshape(-1, 1, 28, 28))
    return model, {"data": x.astype(np.float32)}


def _mtcnn(net: str, batch: int):
    from dfx_caffe.plugin import import_caffe

    d = MTCNN
    model = import_caffe([d / f"{net}.prototxt", d / f"{net}.caffemodel"])
    rng = np.random.default_rng(1)
    x = {n: rng.uniform(-1, 1, (batch,) + model.tensors[n].shape[1:]).astype(np.float32) for n in model.inputs}
    return _quantized(model, x), x


def _ssd():
    from dfx_caffe.build import RandomWeights
    from dfx_caffe.plugin import import_caffe

    model = import_caffe([MOBILENET_SSD], weights=RandomWeights(0))
    rng = np.random.default_rng(2)
    x = {n: rng.uniform(-1, 1, (1,) + model.tensors[n].shape[1:]).astype(np.float32) for n in model.inputs}
    return _quantized(model, x), x


NETS = {
    "lenet": _lenet,
    "mtcnn-det1": lambda: _mtcnn("det1", 4),
    "mtcnn-det2": lambda: _mtcnn("det2", 4),
    "mtcnn-det3": lambda: _mtcnn("det3", 2),
    "mobilenet-ssd": _ssd,
}


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """name -> (.dfx path, inputs, output names, reference outputs); built once."""
    require_testdata(LENET, MNIST, MTCNN, MOBILENET_SSD)
    from dfxsdk.plugins import get_manager

    work = tmp_path_factory.mktemp("aarch64-nets")
    ref = get_manager().backend("numpy")
    cache = {}

    def get(name):
        if name not in cache:
            model, inputs = NETS[name]()
            # every integer activation becomes a graph output too, so that every
            # layer's codes are compared, not only the (often float) last ones
            names = list(model.outputs) + [n for layer in model.layers for n in layer.outputs
                                           if model.tensors[n].qformat is not None and n not in model.outputs]
            model.outputs = names
            path = work / f"{name}.dfx"
            save(model, path)
            want = ref.run(model, inputs, outputs=names)
            ints = sum(1 for n in names if model.tensors[n].qformat is not None)
            assert ints >= 3, f"{name}: only {ints} integer tensors"
            cache[name] = (path, [inputs[n] for n in model.inputs], names, [np.asarray(want[n]) for n in names])
        return cache[name]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("net", list(NETS))
def test_network_bit_exact(arm64, nets, tmp_path, net, mode):
    path, inputs, names, want = nets(net)
    raw = arm64.dfx_run(mode, path, inputs, tmp_path, in_codes=False)
    _compare(names, _split_outputs(raw, want, net), want, f"{net} [{mode}]")

"""Cross builds of libdfx run under qemu-user: the aarch64 and armhf toolchains, the CMake build, running
programs of it on a qemu CPU model, and the networks every cross test compares with the NumPy reference
(.ci/install-cross.sh installs the tools; tests/aarch64 and tests/armhf use this)."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from .paths import KERNELS, ROOT
from .testdata import LENET, MNIST, MOBILENET_SSD, MTCNN, require_testdata


@dataclass(frozen=True)
class Target:
    """A cross target: compiler, qemu, C library and CMake toolchain file, and its kernel-set modes
    (id -> (qemu CPU model, DFX_KERNELS value or None for the automatic choice, set name the library reports))."""

    name: str
    cc: str
    qemu: str
    sysroot: Path
    libc_package: str
    toolchain: Path
    modes: dict[str, tuple[str, str | None, str]] = field(default_factory=dict)


AARCH64 = Target("aarch64", "aarch64-linux-gnu-gcc", "qemu-aarch64", Path("/usr/aarch64-linux-gnu"),
                 "libc6-dev-arm64-cross", KERNELS / "cmake" / "aarch64-linux-gnu.cmake", {
                     "portable": ("cortex-a53", "portable", "portable"),
                     "neon": ("cortex-a53", None, "neon"),
                     "dotprod": ("cortex-a76", None, "dotprod"),
                 })
ARMHF = Target("armhf", "arm-linux-gnueabihf-gcc", "qemu-arm", Path("/usr/arm-linux-gnueabihf"),
               "libc6-dev-armhf-cross", KERNELS / "cmake" / "arm-linux-gnueabihf.cmake", {
                   "portable": ("cortex-a7", "portable", "portable"),
                   "neon-a7": ("cortex-a7", None, "neon"),
                   "neon-a15": ("cortex-a15", None, "neon"),
               })

# the aarch64 names the aarch64 tests and tests/conftest.py use
SYSROOT = AARCH64.sysroot
CROSS_CC = AARCH64.cc


def require_cross(what: str, *tools: str, target: Target = AARCH64) -> None:
    """Skip when DFX_SKIP_CROSS=1; otherwise fail (naming them) if the cross tools or ``tools`` are missing.

    ``what`` names the tests in the message ("the aarch64 tests").
    """
    if os.environ.get("DFX_SKIP_CROSS") == "1":
        pytest.skip(f"DFX_SKIP_CROSS=1: the {target.name} cross build and qemu tests are skipped")
    missing = [t for t in (*tools, target.cc, target.qemu) if shutil.which(t) is None]
    if not (target.sysroot / "lib" / "libc.so.6").exists():
        missing.append(f"{target.sysroot}/lib/libc.so.6 ({target.libc_package})")
    if missing:
        pytest.fail(f"{what} need {', '.join(missing)}: run .ci/install-cross.sh "
                    "(as root), or set DFX_SKIP_CROSS=1 to skip them on a developer machine")


def qemu_env(kernels: str | None) -> dict[str, str]:
    """The environment with DFX_KERNELS=``kernels`` (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "DFX_KERNELS"}
    if kernels:
        env["DFX_KERNELS"] = kernels
    return env


@dataclass
class CrossBuild:
    """A CMake build of kernels/ for ``target`` (static library, tests and tools)."""

    target: Target
    build: Path

    def run(self, mode: str, program: str, *args, check: bool = True) -> subprocess.CompletedProcess:
        """Run a program of the build under qemu in a mode of the target's modes."""
        cpu, kernels, _ = self.target.modes[mode]
        return self.run_on(cpu, kernels, program, *args, check=check)

    def run_on(self, cpu: str, kernels: str | None, program: str, *args,
               check: bool = True) -> subprocess.CompletedProcess:
        """Run a program on qemu's CPU model ``cpu`` with DFX_KERNELS=``kernels`` (None: unset)."""
        return run_qemu(self.target, cpu, kernels, [str(self.build / program), *map(str, args)], check=check)

    def dfx_run(self, mode: str, model: Path, inputs: list[np.ndarray], work: Path, *, in_codes: bool) -> bytes:
        """Run ``model`` with dfx-run under qemu; the raw output file (integer outputs as codes)."""
        inp, out = work / f"{model.stem}.{mode}.in", work / f"{model.stem}.{mode}.out"
        inp.write_bytes(b"".join(np.ascontiguousarray(a).tobytes() for a in inputs))
        flag = "--codes" if in_codes else "--out-codes"
        proc = self.run(mode, "dfx-run", "--verbose", flag, model, inp, out)
        expected = self.target.modes[mode][2]
        assert f"kernels: {expected}\n" in proc.stderr, \
            f"{model.name}: expected the {expected} kernels, dfx-run said {proc.stderr!r}"
        return out.read_bytes()


def run_qemu(target: Target, cpu: str, kernels: str | None, cmd: list[str], *, check: bool = True,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd`` (a program for ``target``) under qemu on CPU model ``cpu``, DFX_KERNELS=``kernels``."""
    full = [target.qemu, "-cpu", cpu, "-L", str(target.sysroot), *cmd]
    proc = subprocess.run(full, capture_output=True, text=True, env={**qemu_env(kernels), **(env or {})},
                          timeout=1800)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(full)} (DFX_KERNELS={kernels}) failed with {proc.returncode}:\n"
                    f"{proc.stdout}\n{proc.stderr}")
    return proc


def cmake_build(target: Target, default_dir: str, env_var: str, programs: tuple[str, ...]) -> CrossBuild:
    """Configure and build kernels/ for ``target`` into build/``default_dir`` (or $``env_var``), reused
    between runs; fail unless every program of ``programs`` was built."""
    require_cross(f"the {target.name} tests", "cmake", target=target)
    build = Path(os.environ.get(env_var, ROOT / "build" / default_dir))
    steps = [["cmake", "-S", str(KERNELS), "-B", str(build), f"-DCMAKE_TOOLCHAIN_FILE={target.toolchain}",
              "-DCMAKE_BUILD_TYPE=Release", "-DDFX_BUILD_SHARED=OFF", "-DDFX_BUILD_TESTS=ON", "-DDFX_BUILD_TOOLS=ON"],
             ["cmake", "--build", str(build), "-j", str(os.cpu_count() or 2)]]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            pytest.fail(f"{target.name} build failed: {' '.join(cmd)}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    for exe in programs:
        assert (build / exe).exists(), f"the {target.name} build has no {exe} (NEON kernels not configured?)"
    return CrossBuild(target, build)


# -- comparing outputs with the reference ------------------------------------------------------------


def split_outputs(raw: bytes, wanted: list[np.ndarray], where: str) -> list[np.ndarray]:
    """dfx-run's output file cut into arrays shaped like ``wanted`` (int32 codes or float32)."""
    got, pos = [], 0
    for want in wanted:
        dtype = np.float32 if want.dtype.kind == "f" else np.int32
        n = want.size * 4
        assert pos + n <= len(raw), f"{where}: output file too short"
        got.append(np.frombuffer(raw[pos:pos + n], dtype).reshape(want.shape))
        pos += n
    assert pos == len(raw), f"{where}: {len(raw) - pos} extra output bytes"
    return got


def compare(names: list[str], got: list[np.ndarray], want: list[np.ndarray], where: str) -> None:
    """Integer outputs equal, float outputs within 1e-5."""
    for name, have, ref in zip(names, got, want):
        if ref.dtype.kind == "f":
            np.testing.assert_allclose(have, ref, rtol=1e-5, atol=1e-6, err_msg=f"{where}: {name}")
        else:
            diff = int(np.sum(have != ref))
            assert diff == 0, f"{where}: {name}: {diff} of {ref.size} codes differ"


def conformance_case(build: CrossBuild, mode: str, path: Path, work: Path) -> None:
    """Run the conformance vector ``path`` (.dfx with its .npz) in ``mode`` and compare with its outputs."""
    from dfxsdk.io import load

    z = np.load(path.with_suffix(".npz"))
    model = load(path)
    inputs = []
    for name in model.inputs:
        a = z[f"in/{name}"]
        integer = model.tensors[name].dtype.name != "FLOAT32"
        inputs.append(a.astype(np.int32 if integer else np.float32))
    want = [z[f"out/{name}"] for name in model.outputs]
    raw = build.dfx_run(mode, path, inputs, work, in_codes=True)
    compare(model.outputs, split_outputs(raw, want, path.stem), want, f"{path.stem} [{mode}]")


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


# a suffix of a NETS name for the network asked for its graph outputs only
GRAPH_OUTPUTS = "+graph-outputs"

# name -> (.dfx path, inputs, output names, reference outputs): shared by every cross test module of the
# session (the aarch64 and armhf modules and their thread modules), since building the reference outputs
# of MobileNet-SSD with every activation as an output is the slowest step of these tests
_BUILT_NETS: dict[str, tuple] = {}


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """name of NETS -> (.dfx path, inputs, output names, reference outputs); built once per session."""
    require_testdata(LENET, MNIST, MTCNN, MOBILENET_SSD)
    from dfxsdk.io import save
    from dfxsdk.plugins import get_manager

    work = tmp_path_factory.getbasetemp() / "cross-nets"  # the session's, so later modules find the files
    work.mkdir(exist_ok=True)
    ref = get_manager().backend("numpy")
    cache = _BUILT_NETS

    def get(name):
        if name not in cache:
            base, graph_only = name.removesuffix(GRAPH_OUTPUTS), name.endswith(GRAPH_OUTPUTS)
            model, inputs = NETS[base]()
            # every integer activation becomes a graph output too, so that every layer's codes are compared,
            # not only the (often float) last ones; with GRAPH_OUTPUTS only the graph's outputs, so that the
            # memory plan reuses buffers and convolutions take the ReLU after them (exec.c dfx_exec_fuses_relu)
            names = list(model.outputs) + ([] if graph_only else [
                n for layer in model.layers for n in layer.outputs
                if model.tensors[n].qformat is not None and n not in model.outputs])
            model.outputs = names
            path = work / f"{name}.dfx"
            save(model, path)
            want = ref.run(model, inputs, outputs=names)
            ints = sum(1 for n in names if model.tensors[n].qformat is not None)
            assert graph_only or ints >= 3, f"{name}: only {ints} integer tensors"
            cache[name] = (path, [inputs[n] for n in model.inputs], names, [np.asarray(want[n]) for n in names])
        return cache[name]

    return get


def network_case(build: CrossBuild, nets, mode: str, net: str, work: Path) -> None:
    """Run network ``net`` of NETS in ``mode``; every integer activation equals the reference."""
    path, inputs, names, want = nets(net)
    raw = build.dfx_run(mode, path, inputs, work, in_codes=False)
    compare(names, split_outputs(raw, want, net), want, f"{net} [{mode}]")

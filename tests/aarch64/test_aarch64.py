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

import subprocess

import numpy as np
import pytest

from dfxsdk.io import load

from tests.support.cross import (
    AARCH64,
    GRAPH_OUTPUTS,
    NETS,
    CrossBuild,
    cmake_build,
    compare,
    conformance_case,
    nets,  # noqa: F401  (the fixture)
    network_case,
    split_outputs,
)
from tests.support.paths import CONFORMANCE, KERNELS

VECTORS = sorted(CONFORMANCE.glob("*.dfx"))
MODES = AARCH64.modes
# the names other aarch64 test modules import from here (the harness itself is tests/support/cross.py)
Arm64, _compare, _split_outputs = CrossBuild, compare, split_outputs


@pytest.fixture(scope="module")
def arm64() -> CrossBuild:
    programs = ("dfx-run", "test_buffer", "test_neon", "classify")
    return cmake_build(AARCH64, "test-aarch64", "DFX_AARCH64_BUILD", programs)


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
    cpu = MODES[mode][0]
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


def test_there_are_vectors():
    assert len(VECTORS) >= 30


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_conformance_vector(arm64, tmp_path, mode, path):
    conformance_case(arm64, mode, path, tmp_path)


# -- real networks -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("net", list(NETS))
def test_network_bit_exact(arm64, nets, tmp_path, net, mode):  # noqa: F811
    network_case(arm64, nets, mode, net, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("mode", [m for m in MODES if m != "portable"])
def test_network_graph_outputs_bit_exact(arm64, nets, tmp_path, mode):  # noqa: F811
    """MobileNet-SSD asked for its detections only: buffers reused, ReLUs fused into the convolutions before them
    (and, on the dotprod set, requantization fused into the GEMM store), results as the reference's."""
    network_case(arm64, nets, mode, "mobilenet-ssd" + GRAPH_OUTPUTS, tmp_path)

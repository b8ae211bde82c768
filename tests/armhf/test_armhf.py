"""The armhf (32-bit ARM, hard float) build of libdfx under qemu-arm, bit for bit.

Cross-compiles kernels/ with Debian's armhf cross compiler and the toolchain
file kernels/cmake/arm-linux-gnueabihf.cmake (into build/test-armhf, reused
between runs; DFX_ARMHF_BUILD chooses another folder): one build, whose ARMv7
NEON files alone are compiled with -mfpu=neon. Under ``qemu-arm`` it runs, per
mode of tests.support.cross.ARMHF:

- "portable": the portable C kernels (DFX_KERNELS=portable) on a Cortex-A7;
- "neon-a7", "neon-a15": the ARMv7 NEON kernels, chosen by themselves from
  HWCAP_NEON on a Cortex-A7 (Raspberry Pi 2) and a Cortex-A15;

the C tests (test_buffer, test_neon32), every conformance vector of
spec/conformance and real networks (Ristretto LeNet, MTCNN and MobileNet-SSD
quantized to 8 bits) through the armhf ``dfx-run``, comparing every integer
output code with the NumPy reference exactly, and checking which kernel set
the library reports. A CPU without NEON gets the portable set: qemu's
ARMv6 models (arm1176: Pi 1, Zero) cannot run Debian's ARMv7 C library, so
that run uses cortex-r5f (ARMv7-R with VFPv3-D16 and no NEON); that the
library itself runs on ARMv6 is checked on a build for the ARMv6 baseline in
test_pip_build_cross.py.

Like the aarch64 tests, these fail (saying to run ``.ci/install-cross.sh``)
when the tools are missing; DFX_SKIP_CROSS=1 skips them.
"""

from __future__ import annotations

import numpy as np
import pytest

from dfxsdk.io import load

from tests.support.cross import (
    ARMHF,
    GRAPH_OUTPUTS,
    NETS,
    CrossBuild,
    cmake_build,
    conformance_case,
    nets,  # noqa: F401  (the fixture)
    network_case,
)
from tests.support.paths import CONFORMANCE, KERNELS

VECTORS = sorted(CONFORMANCE.glob("*.dfx"))
MODES = ARMHF.modes
TINY = KERNELS / "tests" / "data" / "tiny_lenet.dfx"


@pytest.fixture(scope="module")
def armhf() -> CrossBuild:
    return cmake_build(ARMHF, "test-armhf", "DFX_ARMHF_BUILD", ("dfx-run", "test_buffer", "test_neon32", "classify"))


@pytest.mark.parametrize("mode", list(MODES))
def test_c_buffer_test(armhf, mode):
    proc = armhf.run(mode, "test_buffer", TINY, f"{TINY}.expected")
    assert "equal the reference" in proc.stdout


@pytest.mark.parametrize("cpu", ["cortex-a7", "cortex-a15"])
def test_c_neon32_kernels_equal_portable(armhf, cpu):
    proc = armhf.run_on(cpu, None, "test_neon32", "400")
    assert "cpu has neon: 1" in proc.stdout
    assert "neon32: 400 x" in proc.stdout and "equal to portable" in proc.stdout


@pytest.mark.parametrize("cpu,env,expected", [
    ("cortex-a7", None, "neon"),
    ("cortex-a15", None, "neon"),
    ("cortex-a7", "portable", "portable"),
    ("cortex-a7", "dotprod", "portable (DFX_KERNELS=dotprod unavailable)"),
    ("cortex-r5f", None, "portable"),
    ("cortex-r5f", "neon", "portable (DFX_KERNELS=neon unavailable)"),
])
def test_kernel_set_selection(armhf, tmp_path, cpu, env, expected):
    info = load(TINY)
    (tmp_path / "in").write_bytes(np.zeros(int(np.prod(info.tensors[info.inputs[0]].shape)), np.float32).tobytes())
    proc = armhf.run_on(cpu, env, "dfx-run", "--verbose", TINY, tmp_path / "in", tmp_path / "out")
    assert f"kernels: {expected}\n" in proc.stderr


def test_no_neon_cpu_runs_the_portable_kernels(armhf):
    """On a CPU without NEON the C test sees no NEON, and test_buffer (the library's own checks) passes."""
    assert "cpu has neon: 0" in armhf.run_on("cortex-r5f", None, "test_neon32").stdout
    assert "equal the reference" in armhf.run_on("cortex-r5f", None, "test_buffer", TINY, f"{TINY}.expected").stdout


def test_there_are_vectors():
    assert len(VECTORS) >= 30


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_conformance_vector(armhf, tmp_path, mode, path):
    conformance_case(armhf, mode, path, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("net", list(NETS))
def test_network_bit_exact(armhf, nets, tmp_path, net, mode):  # noqa: F811
    network_case(armhf, nets, mode, net, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("mode", [m for m in MODES if m != "portable"])
def test_network_graph_outputs_bit_exact(armhf, nets, tmp_path, mode):  # noqa: F811
    """MobileNet-SSD asked for its detections only: buffers reused, ReLUs fused into the convolutions before them
    (and, on the dotprod set, requantization fused into the GEMM store), results as the reference's."""
    network_case(armhf, nets, mode, "mobilenet-ssd" + GRAPH_OUTPUTS, tmp_path)

"""Every kernel set of libdfx (kernels/src/dispatch.h) against the NumPy reference, bit-exact.

The set names come from the library itself (``dfx_kernels_known``: every set of every build) and
``dfx_kernels_available`` says which ones this build and CPU run; a set is run through the native
backend's ``kernels=`` option (``dfx_session_options.kernels``). Each test below is parametrized over
the known names and skips, with the library's own reason, a set that is not built into this library
(another architecture's) or needs instructions this CPU lacks (on x86-64 without VNNI: ``avxvnni`` and
``avx512vnni``; their code still runs here through ``avxvnni-emulated``, VPDPBUSD emulated exactly in
AVX2). The sets run: the conformance vectors,
the fast-path property cases of test_native_props.py (on the sets other than the default, which that
file runs), and the test networks at every thread count of test_native_threads.py.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dfx_native", reason="the native backend plugin (dfx_native) is not installed")

from dfxsdk.errors import DfxInputError, DfxUnsupportedError  # noqa: E402
from dfxsdk.io import load  # noqa: E402

from tests.native import (
    test_native_conformance as conformance,  # noqa: E402
    test_native_props as props,  # noqa: E402
    test_native_threads as threads,  # noqa: E402
)
from tests.support.testdata import MOBILENET_SSD, MTCNN, needs_testdata  # noqa: E402


def _names(fn) -> list[str]:
    out, i = [], 0
    while (name := fn(i)) is not None:
        out.append(name.decode())
        i += 1
    return out


def _library_sets() -> tuple[list[str], list[str]]:
    """(every known set, the sets this build and CPU run), from the library; without a loadable library
    (the ``native`` fixture then builds one) only the portable set, which every build has."""
    from dfx_native import _lib

    try:
        lib = _lib.load()
    except OSError:
        return ["portable"], ["portable"]
    return _names(lib.dfx_kernels_known), _names(lib.dfx_kernels_available)


KNOWN, AVAILABLE = _library_sets()


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {f for line in text.splitlines() if line.startswith("flags") for f in line.split(":", 1)[1].split()}


@pytest.fixture(scope="module")
def reference():
    from dfxsdk.plugins import get_manager

    return get_manager().backend("numpy")


@pytest.fixture(params=KNOWN)
def kset(request, native):
    """A native backend whose sessions use the set of this parameter (skipped with the library's reason
    when this build or CPU cannot run it)."""
    backend = type(native)(kernels=request.param)
    model = load(conformance.VECTORS[0])
    try:
        backend.native(model).session(1, 0, 0, request.param)
    except DfxUnsupportedError as exc:
        pytest.skip(exc.message)
    backend.native(model).release(1, 0, 0, request.param)
    assert request.param in AVAILABLE
    return backend


# -- names ------------------------------------------------------------------------------------------------


def test_available_sets_are_known_and_end_with_portable():
    assert KNOWN[0] == "portable" and len(set(KNOWN)) == len(KNOWN)
    assert set(AVAILABLE) <= set(KNOWN) and AVAILABLE[-1] == "portable"


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or "avx2" not in _cpu_flags(),
                    reason="an x86-64 CPU with AVX2 chooses the avx2 set; this one is not")
def test_x86_with_avx2_runs_the_avx2_set():
    assert "avx2" in AVAILABLE and AVAILABLE.index("avx2") < AVAILABLE.index("portable")


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or not _cpu_flags(),
                    reason="the x86 sets follow /proc/cpuinfo's flags on x86-64 Linux only")
def test_x86_sets_follow_the_cpu_flags():
    """The library's CPUID/XGETBV check (arch/x86/set.c) agrees with the kernel's flags."""
    flags = _cpu_flags()
    assert ("avx2" in AVAILABLE) == ("avx2" in flags)
    assert ("avxvnni-emulated" in AVAILABLE) == ("avx2" in flags)
    assert ("avxvnni" in AVAILABLE) == ({"avx2", "avx_vnni"} <= flags)
    assert ("avx512vnni" in AVAILABLE) == ({"avx2", "avx512f", "avx512vl", "avx512_vnni"} <= flags)
    if "avx2" in flags:   # the VNNI sets come first when the CPU has them; the emulated one never before avx2
        assert AVAILABLE[0] in ("avx512vnni", "avxvnni", "avx2")
        assert AVAILABLE.index("avx2") < AVAILABLE.index("avxvnni-emulated")


def _process_name(env: str | None) -> str:
    code = "import dfx_native; print(dfx_native.kernels_name())"  # the public spelling of dfx_kernels_name()
    e = {k: v for k, v in os.environ.items() if k != "DFX_KERNELS"}
    if env is not None:
        e["DFX_KERNELS"] = env
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e,
                          check=True).stdout.strip()


def test_process_set_is_the_best_and_dfx_kernels_forces_any_available_one():
    assert _process_name(None) == AVAILABLE[0]
    for name in AVAILABLE:
        assert _process_name(name) == name
    for name in [n for n in KNOWN if n not in AVAILABLE] + ["bogus"]:
        assert _process_name(name) == f"portable (DFX_KERNELS={name} unavailable)"


def test_session_option_refuses_unknown_and_unavailable_sets(native):
    model = load(conformance.VECTORS[0])
    with pytest.raises(DfxInputError, match=r"unknown kernel set 'bogus' \(" + ", ".join(KNOWN) + r"\)"):
        type(native)(kernels="bogus").native(model).session(1, 0, 0, "bogus")
    for name in [n for n in KNOWN if n not in AVAILABLE]:
        with pytest.raises(DfxUnsupportedError, match=f"kernel set '{name}' "):
            type(native)(kernels=name).native(model).session(1, 0, 0, name)


def test_native_backend_sessions_use_their_set(kset):
    from dfx_native import _lib

    model = load(conformance.VECTORS[0])
    s = kset.native(model).session(1, 0, 0, kset.kernels)
    assert _lib.load().dfx_session_kernels_name(s).decode() == kset.kernels


# -- results ----------------------------------------------------------------------------------------------


def test_conformance_vectors(kset):
    for path in conformance.VECTORS:
        conformance.test_vector(kset, path)


def test_fast_path_property_cases(kset, reference):
    if kset.kernels == AVAILABLE[0]:
        pytest.skip(f"{kset.kernels} is the default set: tests/native/test_native_props.py runs these cases on it")
    for case in props.CONV_CASES + props.FC_CASES:
        for batch in case.batches:
            props._run_case(kset, reference, case, batch)


@pytest.mark.parametrize("batch", [1, 2])
def test_every_split_model_at_every_thread_count(kset, batch):
    assert threads._assert_same_for_every_thread_count(kset, threads.every_split_model(), batch) == \
        {t: t for t in threads.THREADS}


@needs_testdata(MTCNN)
def test_mtcnn_8bit_at_every_thread_count(kset, caffe):
    model = caffe.import_caffe([MTCNN / "det1.prototxt", MTCNN / "det1.caffemodel"], input_shape=(1, 3, 120, 160))
    threads._assert_same_for_every_thread_count(kset, threads._quantize8(model), batch=2)


@needs_testdata(MOBILENET_SSD)
def test_mobilenet_ssd_at_160_at_every_thread_count(kset, caffe, tmp_path):
    threads.test_mobilenet_ssd_at_160_for_every_thread_count(kset, caffe, tmp_path)


def test_sessions_of_one_model_keep_their_own_set(native):
    """Sessions of every set this CPU runs, on one opened model (each packs the weights in its own set's
    layout, dfx_netplan_pack), run in turns: every integer tensor has the same bytes in every set and turn."""
    from dfx_native import _lib
    from dfx_native.backend import KEEP_ALL

    if len(AVAILABLE) < 2:
        pytest.skip(f"this build and CPU run one kernel set only ({AVAILABLE[0]})")
    model = threads.every_split_model(seed=3)
    inputs = threads._inputs(model, 2, seed=5)
    names = [n for layer in model.layers for n in layer.outputs if model.tensors[n].qformat is not None]
    backend, first = type(native)(max_sessions=len(AVAILABLE)), None
    for _ in range(2):
        for name in AVAILABLE:
            backend.kernels = name
            got = backend.run(model, inputs, outputs=names)
            _, s = backend.session(model, 2, KEEP_ALL)   # the session the run used
            assert _lib.load().dfx_session_kernels_name(s).decode() == name
            first = first or got
            for n in names:
                assert np.array_equal(got[n], first[n]), f"{n}: {name} differs from {AVAILABLE[0]}"
    assert backend.models_opened == 1 and backend.sessions_created == len(AVAILABLE)

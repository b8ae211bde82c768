"""The pure parts of the ARM yardstick (benchmarks/bench_ncnn_arm.py, benchmarks/qemu_cross.py): no network,
no cross compiler, no qemu. The measurement itself is not part of CI (it builds ncnn from PyPI's sdist)."""

from __future__ import annotations

import io
import sys
import tarfile

import pytest

from tests.support.paths import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
bench = pytest.importorskip("bench_ncnn_arm")
qemu_cross = pytest.importorskip("qemu_cross")

JSON_URL = "https://pypi.org/pypi/ncnn/json"


def _meta(url: str) -> dict:
    return {"info": {"version": "1.0.20261020"},
            "urls": [{"packagetype": "bdist_wheel", "filename": "ncnn-1.0.20261020-cp311-none-any.whl", "url": "w"},
                     {"packagetype": "sdist", "filename": "ncnn-1.0.20261020.tar.gz", "url": url,
                      "digests": {"sha256": "ab" * 32}}]}


def test_a_relative_sdist_url_is_resolved_against_the_json_document():
    rel = "../../packages/packages/b7/50/32b5/ncnn-1.0.20261020.tar.gz"
    assert bench.sdist_url(_meta(rel), JSON_URL) == (
        "1.0.20261020", "https://pypi.org/packages/packages/b7/50/32b5/ncnn-1.0.20261020.tar.gz", "ab" * 32)


def test_an_absolute_sdist_url_is_kept():
    url = "https://files.example/packages/ncnn-1.0.20261020.tar.gz"
    assert bench.sdist_url(_meta(url), JSON_URL)[1] == url


def test_a_release_without_an_sdist_is_an_error():
    meta = _meta("x")
    meta["urls"] = meta["urls"][:1]
    with pytest.raises(LookupError, match="no .tar.gz source distribution"):
        bench.sdist_url(meta, JSON_URL)


def test_the_version_comes_from_the_sdist_top_directory():
    assert bench.sdist_version(["ncnn-1.0.20261020/CMakeLists.txt", "ncnn-1.0.20261020/src/net.cpp"]) \
        == "1.0.20261020"
    for names in (["other-1.0/x"], ["ncnn-1.0/x", "ncnn-2.0/y"], []):
        with pytest.raises(ValueError, match="not an ncnn source distribution"):
            bench.sdist_version(names)


def test_a_local_tarball_is_unpacked_into_the_cache_once(tmp_path):
    tarball = tmp_path / "ncnn.tar.gz"
    with tarfile.open(tarball, "w:gz") as t:
        data = b"project(ncnn)\n"
        info = tarfile.TarInfo("ncnn-1.2.3/CMakeLists.txt")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    cache = tmp_path / "cache"
    version, src = bench.fetch_sdist(cache, tarball)
    assert (version, src) == ("1.2.3", cache / "ncnn-1.2.3" / "src")
    assert (src / "CMakeLists.txt").read_bytes() == data
    (src / "CMakeLists.txt").write_text("kept")  # cached: a second call does not unpack again
    assert bench.fetch_sdist(cache, tarball) == (version, src)
    assert (src / "CMakeLists.txt").read_text() == "kept"


def test_the_cache_is_outside_the_repository_and_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("DFX_BENCH_CACHE", raising=False)
    assert not bench.cache_root().resolve().is_relative_to(ROOT)
    monkeypatch.setenv("DFX_BENCH_CACHE", str(tmp_path))
    assert bench.cache_root() == tmp_path


def test_benchncnn_gets_loops_threads_powersave_gpu_cooling_then_the_network(tmp_path):
    exe, param = tmp_path / "benchncnn", tmp_path / "net.param"
    assert bench.benchncnn_args(exe, 3, param, (300, 300, 3)) == [
        str(exe), "3", "1", "0", "-1", "0", f"param={param}", "shape=[300,300,3]"]


def test_dfx_run_repeats_and_reports_its_kernel_set(tmp_path):
    args = bench.dfx_run_args(tmp_path / "dfx-run", 3, tmp_path / "m.dfx", tmp_path / "in", tmp_path / "out")
    assert args[1:4] == ["--verbose", "--repeat", "3"]
    assert args[-3:] == [str(tmp_path / p) for p in ("m.dfx", "in", "out")]
    assert bench.parse_kernels("dfx-run: kernels: dotprod\n") == "dotprod"
    with pytest.raises(ValueError, match="no kernel set"):
        bench.parse_kernels("dfx-run: something else\n")


def test_ncnn_is_configured_as_the_issue_asks_with_only_the_layers_the_network_needs(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "CMakeLists.txt").write_text(
        "ncnn_add_layer(AbsVal)\nncnn_add_layer(Convolution)\n  ncnn_add_layer(Pooling OFF)\nncnn_add_layer(Softmax)\n")
    assert bench.ncnn_layer_names((tmp_path / "src" / "CMakeLists.txt").read_text()) == [
        "AbsVal", "Convolution", "Pooling", "Softmax"]
    args = bench.ncnn_configure_args(bench.ARCHES["armhf"], tmp_path, tmp_path / "b")
    for flag in ("-DNCNN_VULKAN=OFF", "-DNCNN_OPENMP=OFF", "-DNCNN_BUILD_BENCHMARK=ON", "-DNCNN_BUILD_TOOLS=OFF",
                 "-DCMAKE_EXE_LINKER_FLAGS=-static", "-DWITH_LAYER_absval=OFF", "-DWITH_LAYER_pooling=OFF",
                 "-DCMAKE_CXX_FLAGS=-march=armv7-a -mfloat-abi=hard -mfpu=neon -marm"):
        assert flag in args
    assert not any("WITH_LAYER_convolution" in a or "WITH_LAYER_softmax" in a for a in args)
    assert f"-DCMAKE_TOOLCHAIN_FILE={ROOT / 'kernels' / 'cmake' / 'arm-linux-gnueabihf.cmake'}" in args


def test_the_toolchain_file_is_copied_to_a_fixed_place_in_the_cache(tmp_path):
    arch = bench.ARCHES["aarch64"]
    path = bench.cached_toolchain(arch, tmp_path)
    assert path == tmp_path / "toolchains" / "aarch64-linux-gnu.cmake"
    assert path.read_text() == arch.toolchain.read_text()
    path.write_text("# stale\n")
    assert bench.cached_toolchain(arch, tmp_path) == path and path.read_text() == arch.toolchain.read_text()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "CMakeLists.txt").write_text("ncnn_add_layer(Convolution)\n")
    assert f"-DCMAKE_TOOLCHAIN_FILE={path}" in bench.ncnn_configure_args(arch, tmp_path, tmp_path / "b", path)


def test_every_layer_type_of_the_ncnn_network_is_built():
    param = bench.PARAM
    if not param.is_file():
        pytest.skip(f"{param} is missing (../shared/testdata not laid out)")
    types = {line.split()[0] for line in param.read_text().splitlines()[2:] if line.strip()}
    assert types and types <= bench.NCNN_LAYERS


def test_instruction_counts_per_inference_and_the_goal():
    assert qemu_cross.parse_count("plugin loaded\ninsns 12345\n") == 12345
    with pytest.raises(ValueError):
        qemu_cross.parse_count("nothing here")
    assert qemu_cross.per_inference(1000, 1600) == 300
    with pytest.raises(ValueError, match="did not execute more"):
        qemu_cross.per_inference(1000, 1000)
    rows = [{"cpu": "cortex-a53", "stands_for": bench.CPUS["cortex-a53"][1], "dfx_kernels": "neon",
             "dfx": 531_600_000, "ncnn": 312_100_000, "ratio": bench.ratio(531_600_000, 312_100_000)}]
    table = bench.format_table(rows)
    assert "cortex-a53" in table and "531.6" in table and "312.1" in table and "1.70  > 1.0" in table
    assert not bench.goal_met(rows)
    rows[0]["ratio"] = bench.ratio(300, 312)
    assert bench.goal_met(rows)

"""Deploying with the C library alone: raw pixels with the stored preprocessing, metadata and
labels, session options, view formats and constant outputs (dfx.h), and ``dfx-run`` as a tool."""

from __future__ import annotations

import ctypes
import gzip
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dfxsdk import Preprocessing, Rounding, load, save
from dfxsdk.cli import _data
from dfxsdk.fixedpoint import quantize
from dfxsdk.ops import Conv2D, Relu

from tests.support.builder import Builder, fmt
from tests.support.native import cmake_build
from tests.support.paths import KERNELS, ROOT
from tests.support.testdata import LENET, MNIST, MOBILENET_SSD, needs_testdata

EXAMPLE = KERNELS / "examples" / "data"
SHAPES = EXAMPLE / "tiny_shapes.dfx"
LABELS = ["horizontal bar", "vertical bar", "plus sign", "square outline"]
DFX_ERR_ARGUMENT, DFX_ERR_UNSUPPORTED = 7, 6
HWC, CHW, RGB, BGR = 1, 0, 1, 2


@pytest.fixture(scope="module")
def lib():
    from dfx_native import _lib

    return _lib.load()


@pytest.fixture(scope="module")
def dfx_run(tmp_path_factory) -> Path:
    return cmake_build(tmp_path_factory.mktemp("host"), "-DDFX_BUILD_TESTS=OFF", target="dfx-run") / "dfx-run"


class Open:
    """A model opened with the C library (closed on exit)."""

    def __init__(self, lib, path: Path, flags: int = 0) -> None:
        self.lib, self.m = lib, ctypes.c_void_p()
        st = lib.dfx_model_open_file(str(path).encode(), flags, ctypes.byref(self.m))
        assert st == 0, lib.dfx_last_error().decode()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.lib.dfx_model_close(self.m)

    def session(self, batch: int = 1, kernels: str | None = None):
        from dfx_native._lib import SessionOptions

        opt = SessionOptions(ctypes.sizeof(SessionOptions), batch, None, 0, 0, kernels.encode() if kernels else None)
        s = ctypes.c_void_p()
        st = self.lib.dfx_session_create_ex(self.m, ctypes.byref(opt), ctypes.byref(s))
        return st, s


def _view_codes(lib, s, tensor: int) -> np.ndarray:
    from dfx_native._lib import VIEW_DTYPES, View

    v = View()
    assert lib.dfx_session_get_tensor(s, tensor, ctypes.byref(v)) == 0, lib.dfx_last_error().decode()
    ctype = {"float32": ctypes.c_float, "int8": ctypes.c_int8, "int16": ctypes.c_int16, "int32": ctypes.c_int32}
    arr = ctypes.cast(v.data, ctypes.POINTER(ctype[VIEW_DTYPES[v.dtype]] * v.count)).contents
    return np.frombuffer(arr, VIEW_DTYPES[v.dtype]).astype(np.float64 if v.dtype == 0 else np.int64)


def _color_model(tmp: Path) -> Path:
    """A 3-channel int8 model with per-channel mean and scale, BGR order and half-even rounding."""
    b = Builder("color")
    x = b.input((1, 3, 5, 7), fmt(8, 5, Rounding.HALF_TO_EVEN))
    w = b.const(np.arange(-13, 14).reshape(1, 3, 3, 3), fmt(8, 4))
    y = b.add(Conv2D(kernel_h=3, kernel_w=3), [x, w], fmt(8, 3))
    model = b.output(b.add(Relu(), [y], fmt(8, 3)))
    model.preprocessing[x] = Preprocessing(mean=[103.94, 116.78, 123.68], scale=[0.017, 0.0175, 0.0171],
                                           channel_order="BGR")
    save(model, tmp / "color.dfx")
    return tmp / "color.dfx"


def _gray_scalar_model(tmp: Path) -> Path:
    """One channel, one mean and one scale (as MNIST models store them), floor rounding."""
    b = Builder("gray")
    x = b.input((1, 1, 6, 6), fmt(8, 6, Rounding.FLOOR))
    model = b.output(b.add(Relu(), [x], fmt(8, 6)))
    model.preprocessing[x] = Preprocessing(mean=[127.5], scale=[0.0078125])
    save(model, tmp / "gray.dfx")
    return tmp / "gray.dfx"


def _models(tmp: Path) -> list[Path]:
    return [SHAPES, KERNELS / "tests" / "data" / "tiny_lenet.dfx", _color_model(tmp), _gray_scalar_model(tmp)]


# -- raw pixels: the C codes equal the Python path's ----------------------------------------------------


def _check_raw_codes(lib, path: Path, images: list[np.ndarray]) -> None:
    """C codes of raw RGB H,W,C ``images`` (HWC/RGB and CHW/BGR) == the Python path's."""
    model = load(path)
    name = model.inputs[0]
    t = model.tensors[name]
    n = len(images)
    # the Python path of `dfxsdk run img.png ...`: RGB images -> model layout and order -> preprocessing
    batch = _data.images_to_batch(images, model, name, [f"img{i}" for i in range(n)])
    x = _data.preprocess(model, name, batch)
    # a quantized input gets codes; a float one (quantized by a Requantize layer) float32 values
    want = (x if t.qformat is None else quantize(x.astype(np.float64), t.qformat)).reshape(-1)
    rgb_hwc = np.stack(images)
    bgr_chw = np.ascontiguousarray(rgb_hwc[..., ::-1].transpose(0, 3, 1, 2))
    with Open(lib, path) as o:
        st, s = o.session(batch=n)
        assert st == 0, lib.dfx_last_error().decode()
        try:
            for pixels, layout, order in ((rgb_hwc, HWC, RGB), (bgr_chw, CHW, BGR)):
                buf = np.ascontiguousarray(pixels).reshape(-1)
                st = lib.dfx_session_set_input_u8(s, 0, buf.ctypes.data, buf.size, layout, order)
                assert st == 0, lib.dfx_last_error().decode()
                got = _view_codes(lib, s, lib.dfx_model_input(o.m, 0))
                assert np.array_equal(got, want), f"{path.name}: layout {layout}, order {order}"
            bad = lib.dfx_session_set_input_u8(s, 0, buf.ctypes.data, buf.size - 1, HWC, RGB)
            assert bad == DFX_ERR_ARGUMENT and b"needs" in lib.dfx_last_error()
        finally:
            lib.dfx_session_destroy(s)


def test_raw_pixels_give_the_python_codes(lib, tmp_path):
    for path in _models(tmp_path):
        c, h, w = load(path).tensors[load(path).inputs[0]].shape[1:]
        rng = np.random.default_rng(len(str(path)))
        images = [rng.integers(0, 256, (h, w, c), dtype=np.uint8) for _ in range(3)]
        images[0][:] = 255  # the extremes of every channel
        images[1][:] = 0
        _check_raw_codes(lib, path, images)


@needs_testdata(LENET, MNIST, MOBILENET_SSD)
def test_raw_pixels_give_the_python_codes_on_real_models(lib, tmp_path):
    """Ristretto LeNet on 20 MNIST digits; MobileNet-SSD (3 channels, BGR, mean and scale) on random pixels."""
    from dfx_caffe.build import RandomWeights
    from dfx_caffe.plugin import import_caffe

    lenet = import_caffe([LENET / "lenet.prototxt", LENET / "lenet_iter_10000.caffemodel"],
                         ristretto_path=LENET / "lenet_quantized.prototxt")
    save(lenet, tmp_path / "lenet.dfx")
    with gzip.open(MNIST, "rt") as f:
        digits = np.loadtxt(f, delimiter=",", dtype=np.float32, max_rows=20)[:, :-1]
    _check_raw_codes(lib, tmp_path / "lenet.dfx", [d.reshape(28, 28, 1).astype(np.uint8) for d in digits])
    ssd = import_caffe([MOBILENET_SSD], weights=RandomWeights(0))
    # its deploy prototxt stores none: what `convert --input-mean 127.5 --input-scale 0.007843
    # --input-channel-order BGR` stores, the preprocessing this network was trained with
    ssd.preprocessing[ssd.inputs[0]] = Preprocessing(mean=[127.5], scale=[0.007843], channel_order="BGR")
    save(ssd, tmp_path / "ssd.dfx")
    c, h, w = ssd.tensors[ssd.inputs[0]].shape[1:]
    rng = np.random.default_rng(5)
    _check_raw_codes(lib, tmp_path / "ssd.dfx", [rng.integers(0, 256, (h, w, c), dtype=np.uint8) for _ in range(2)])


def test_stored_preprocessing_and_layout_from_c(lib, tmp_path):
    path = _color_model(tmp_path)
    pre = load(path).preprocessing["in0"]
    with Open(lib, path) as o:
        dims = [ctypes.c_int64() for _ in range(3)]
        assert lib.dfx_model_input_layout(o.m, 0, *map(ctypes.byref, dims)) == 0
        assert [d.value for d in dims] == [3, 5, 7]
        for ch in range(3):
            mean, scale, order = ctypes.c_float(), ctypes.c_float(), ctypes.c_int()
            assert lib.dfx_model_input_preprocessing(o.m, 0, ch, ctypes.byref(mean), ctypes.byref(scale),
                                                     ctypes.byref(order)) == 0
            assert (mean.value, scale.value, order.value) == (pre.mean[ch], pre.scale[ch], BGR)
        assert lib.dfx_model_input_preprocessing(o.m, 0, 3, None, None, None) == DFX_ERR_ARGUMENT
    with Open(lib, KERNELS / "tests" / "data" / "tiny_lenet.dfx") as o:  # nothing stored: mean 0, scale 1
        mean, scale, order = ctypes.c_float(7), ctypes.c_float(7), ctypes.c_int(7)
        assert lib.dfx_model_input_preprocessing(o.m, 0, 0, ctypes.byref(mean), ctypes.byref(scale),
                                                 ctypes.byref(order)) == 0
        assert (mean.value, scale.value, order.value) == (0.0, 1.0, 0)


def test_metadata_and_labels_from_c(lib):
    meta = load(SHAPES).metadata
    assert meta["labels"] == "\n".join(LABELS)
    with Open(lib, SHAPES) as o:
        assert lib.dfx_model_num_labels(o.m) == 4
        assert [lib.dfx_model_label(o.m, i).decode() for i in range(4)] == LABELS
        assert lib.dfx_model_label(o.m, 4) is None and lib.dfx_model_label(o.m, -1) is None
        assert lib.dfx_model_metadata(o.m, b"labels").decode() == meta["labels"]
        assert lib.dfx_model_metadata(o.m, b"no such key") is None
        entries = []
        for i in range(lib.dfx_model_num_metadata(o.m)):
            k, v = ctypes.c_char_p(), ctypes.c_char_p()
            assert lib.dfx_model_metadata_at(o.m, i, ctypes.byref(k), ctypes.byref(v)) == 0
            entries.append((k.value.decode(), v.value.decode()))
        assert dict(entries) == meta and [k for k, _ in entries] == sorted(meta)


def test_convert_reads_labels_one_per_line(tmp_path):
    from dfxsdk.cli.convert_cmd import read_labels
    from dfxsdk.errors import DfxInputError

    (tmp_path / "labels.txt").write_text("cat\r\ndog\n\n")
    assert read_labels(tmp_path / "labels.txt") == ["cat", "dog"]
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(DfxInputError, match="no labels"):
        read_labels(tmp_path / "empty.txt")
    with pytest.raises(DfxInputError, match="no such file"):
        read_labels(tmp_path / "missing.txt")


# -- sessions: options, kernel set, views ------------------------------------------------------------------


def test_session_options_choose_the_kernel_set(lib):
    from dfx_native._lib import SessionOptions

    with Open(lib, SHAPES) as o:
        st, s = o.session(kernels="portable")
        assert st == 0 and lib.dfx_session_kernels_name(s) == b"portable"
        lib.dfx_session_destroy(s)
        st, s = o.session()
        assert st == 0 and lib.dfx_session_kernels_name(s) == lib.dfx_kernels_available(0)
        lib.dfx_session_destroy(s)
        st, _ = o.session(kernels="bogus")
        assert st == DFX_ERR_ARGUMENT and b"unknown kernel set 'bogus'" in lib.dfx_last_error()
        missing = next(k for k in ("neon", "dotprod", "portable") if k.encode() not in
                       [lib.dfx_kernels_available(i) for i in range(4)])
        if missing != "portable":
            st, _ = o.session(kernels=missing)
            assert st == DFX_ERR_UNSUPPORTED, lib.dfx_last_error()
        # an options struct of an older dfx.h (size too small) is refused; a newer, larger one is read
        s = ctypes.c_void_p()
        opt = SessionOptions(8, 1, None, 0, 0, None)
        assert lib.dfx_session_create_ex(o.m, ctypes.byref(opt), ctypes.byref(s)) == DFX_ERR_ARGUMENT

        class Larger(ctypes.Structure):
            _fields_ = SessionOptions._fields_ + [("appended_later", ctypes.c_int)]

        big = Larger(ctypes.sizeof(Larger), 2, None, 0, 0, b"portable", 1, 4)
        assert lib.dfx_session_create_ex(o.m, ctypes.cast(ctypes.byref(big), ctypes.POINTER(SessionOptions)),
                                         ctypes.byref(s)) == 0
        lib.dfx_session_destroy(s)


def _constant_output_model(tmp: Path) -> tuple[Path, np.ndarray, tuple]:
    """A model whose second graph output is a constant with per-channel fl, stored packed (4 bits)."""
    b = Builder("const_out")
    x = b.input((1, 4), fmt(8, 4))
    y = b.add(Relu(), [x], fmt(8, 4))
    codes = np.array([[-8, 7, 3], [1, -2, 5]])
    c = b.const(codes, fmt(4, channel_fl=(1, 3), channel_axis=0), packed=True)
    save(b.output(y, c), tmp / "const_out.dfx")
    return tmp / "const_out.dfx", codes, (1, 3)


def test_constant_output_view_and_formats(lib, tmp_path):
    from dfx_native._lib import View

    path, codes, cfl = _constant_output_model(tmp_path)
    with Open(lib, path) as o:
        st, s = o.session()
        assert st == 0
        v = View()
        assert lib.dfx_session_get_output(s, 1, ctypes.byref(v)) == 0, lib.dfx_last_error()
        assert (v.count, v.rank, tuple(v.shape[:2]), v.bw, v.per_channel, v.channel_axis) == (6, 2, (2, 3), 4, 1, 0)
        assert [ctypes.cast(v.channel_fl, ctypes.POINTER(ctypes.c_int8))[i] for i in range(2)] == list(cfl)
        values = [lib.dfx_view_value(ctypes.byref(v), i) for i in range(6)]
        assert values == [float(q) * 2.0 ** -cfl[i // 3] for i, q in enumerate(codes.reshape(-1))]
        x = np.array([1.5, -1.0, 0.25, 7.0], np.float32)
        assert lib.dfx_session_set_input_f32(s, 0, x.ctypes.data, 4) == 0 and lib.dfx_session_run(s) == 0
        assert lib.dfx_session_get_output(s, 0, ctypes.byref(v)) == 0
        assert (v.bw, v.fl, v.per_channel, v.dtype) == (8, 4, 0, 1)
        assert [lib.dfx_view_value(ctypes.byref(v), i) for i in range(4)] == [1.5, 0.0, 0.25, 7.0]
        lib.dfx_session_destroy(s)


def test_io_errors_carry_the_os_reason(lib, tmp_path):
    m = ctypes.c_void_p()
    assert lib.dfx_model_open_file(str(tmp_path / "nope.dfx").encode(), 0, ctypes.byref(m)) == 1
    assert b"nope.dfx: cannot open: No such file or directory" in lib.dfx_last_error()
    if os.geteuid() == 0:
        pytest.skip("running as root: a file without read permission can still be read")
    locked = tmp_path / "locked.dfx"
    locked.write_bytes(SHAPES.read_bytes())
    locked.chmod(0)
    assert lib.dfx_model_open_file(str(locked).encode(), 0, ctypes.byref(m)) == 1
    assert b"locked.dfx: cannot open: Permission denied" in lib.dfx_last_error()


# -- dfx-run ------------------------------------------------------------------------------------------------


def _run(exe: Path, *args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, **kw)


def test_dfx_run_raw_top_prints_labels(dfx_run, tmp_path):
    proc = _run(dfx_run, "--raw", "--hwc", "--top", "3", SHAPES, EXAMPLE / "plus_sign.u8")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "ip2, sample 0:"
    assert lines[1].split()[:5] == ["1.", "class", "2", "plus", "sign"]
    assert len(lines) == 4 and all(any(lab in ln for lab in LABELS) for ln in lines[1:])


def test_dfx_run_raw_equals_float_input(dfx_run, tmp_path):
    """--raw applies the stored preprocessing: same output as the preprocessed float32 input."""
    model = load(SHAPES)
    raw = np.frombuffer((EXAMPLE / "plus_sign.u8").read_bytes(), np.uint8).reshape(1, 1, 16, 16)
    (tmp_path / "f32").write_bytes(_data.preprocess(model, model.inputs[0], raw).astype("<f4").tobytes())
    assert _run(dfx_run, "--raw", SHAPES, EXAMPLE / "plus_sign.u8", tmp_path / "a").returncode == 0
    assert _run(dfx_run, SHAPES, tmp_path / "f32", tmp_path / "b").returncode == 0
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_dfx_run_verify_rejects_a_flipped_weight_bit(dfx_run, tmp_path):
    model = load(SHAPES)
    data = bytearray(SHAPES.read_bytes())
    weights = model.tensors[model.layers[1].inputs[1]]  # conv1's weights
    assert model.layers[1].type == "Conv2D"
    stored = np.ascontiguousarray(weights.data).tobytes()
    at = data.find(stored, int.from_bytes(data[32:40], "little"))  # in the data section
    assert at > 0 and data.count(stored) == 1
    data[at + 5] ^= 0x04
    bad = tmp_path / "bad.dfx"
    bad.write_bytes(bytes(data))
    raw = EXAMPLE / "plus_sign.u8"
    assert _run(dfx_run, "--raw", bad, raw).returncode == 0  # structure intact: only --verify reads the weights
    proc = _run(dfx_run, "--verify", "--raw", bad, raw)
    assert proc.returncode == 2
    assert f"tensor '{weights.name}', field data.crc32: data checksum mismatch" in proc.stderr
    assert "DFX_ERR_CHECKSUM" in proc.stderr


def test_dfx_run_constant_output(dfx_run, tmp_path):
    path, codes, cfl = _constant_output_model(tmp_path)
    (tmp_path / "in").write_bytes(np.array([1, 2, 3, 4], "<f4").tobytes())
    proc = _run(dfx_run, "--out-codes", path, tmp_path / "in", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    out = np.frombuffer((tmp_path / "out").read_bytes(), "<i4")
    assert list(out[4:]) == list(codes.reshape(-1)) and "6 values" in proc.stdout


def test_dfx_run_output_is_atomic_with_the_umask_mode(dfx_run, tmp_path):
    out = tmp_path / "out.bin"
    out.write_bytes(b"previous")
    short = tmp_path / "short.u8"
    short.write_bytes(b"\0" * 100)
    proc = _run(dfx_run, "--raw", SHAPES, short, out)
    assert proc.returncode == 2 and "not a whole number" in proc.stderr
    assert out.read_bytes() == b"previous"
    old = os.umask(0o022)
    try:
        out.unlink()
        assert _run(dfx_run, "--raw", SHAPES, EXAMPLE / "plus_sign.u8", out).returncode == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644 and out.stat().st_size == 16
    link = tmp_path / "link.bin"
    link.symlink_to(out)
    assert _run(dfx_run, "--raw", SHAPES, EXAMPLE / "plus_sign.u8", link).returncode == 0
    assert link.is_symlink() and [p.name for p in tmp_path.glob("*.tmp*")] == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_dfx_run_reports_write_errors(dfx_run):
    proc = _run(dfx_run, "--raw", SHAPES, EXAMPLE / "plus_sign.u8", "/dev/full")
    assert proc.returncode == 2
    assert "cannot write /dev/full: No space left on device" in proc.stderr
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


@pytest.mark.parametrize("args, code, message", [
    (["--top", "0", "m", "i"], 2, "--top needs a count"),
    (["--bogus", "m", "i"], 2, "unknown option"),
    (["m"], 2, "expected model.dfx input.bin"),
    (["--hwc", "m", "i"], 2, "--hwc and --bgr describe --raw pixels"),
    (["{missing}", "{raw}"], 2, "No such file or directory"),
    (["--kernels", "bogus", "--raw", "{model}", "{raw}"], 2, "unknown kernel set"),
    (["--raw", "{model}", "{dir}"], 2, "not a regular file"),
    (["--raw", "{model}", "{raw}", "{dir}"], 2, "is a directory"),
])
def test_dfx_run_exit_codes(dfx_run, tmp_path, args, code, message):
    names = {"missing": tmp_path / "missing.dfx", "raw": EXAMPLE / "plus_sign.u8", "model": SHAPES, "dir": tmp_path}
    proc = _run(dfx_run, *[a.format(**names) for a in args])
    assert proc.returncode == code and message in proc.stderr, proc.stderr


def test_dfx_run_unsupported_kernel_set_exits_3(dfx_run):
    have = subprocess.run([str(dfx_run), "--help"], capture_output=True, text=True).stdout
    missing = [k for k in ("neon", "dotprod") if f"have: {k}" not in have and f", {k}" not in have]
    if not missing:
        pytest.skip("this build has every kernel set")
    proc = _run(dfx_run, "--kernels", missing[0], "--raw", SHAPES, EXAMPLE / "plus_sign.u8")
    assert proc.returncode == 3 and "not built into this library" in proc.stderr


def test_dfx_run_time_and_help(dfx_run):
    proc = _run(dfx_run, "--raw", "--time", "5", SHAPES, EXAMPLE / "plus_sign.u8")
    assert proc.returncode == 0, proc.stderr
    assert "time: 5 runs of batch 1: median " in proc.stdout and " ms, min " in proc.stdout
    assert "per-layer times: build the library with -DDFX_PROFILE=ON" in proc.stdout
    help_text = _run(dfx_run, "--help").stdout
    for option in ("--raw", "--hwc", "--bgr", "--codes", "--verify", "--kernels", "--top", "--time", "--repeat",
                   "--threads", "--verbose", "Exit codes"):
        assert option in help_text


def test_dfx_run_per_layer_times_with_profiling(tmp_path):
    exe = cmake_build(tmp_path / "prof", "-DDFX_BUILD_TESTS=OFF", "-DDFX_PROFILE=ON", target="dfx-run") / "dfx-run"
    proc = _run(exe, "--raw", "--time", "3", SHAPES, EXAMPLE / "plus_sign.u8")
    assert proc.returncode == 0, proc.stderr
    layers = [ln.split()[0] for ln in proc.stdout.splitlines() if ln.startswith("  ")]
    assert layers == [layer.name for layer in load(SHAPES).layers]


def test_example_data_is_current(tmp_path):
    """kernels/examples/data is reproducible from make_example_data.py."""
    subprocess.run([sys.executable, str(KERNELS / "examples" / "make_example_data.py"), str(tmp_path)], check=True,
                   cwd=ROOT)
    for name in ("tiny_shapes.dfx", "plus_sign.u8"):
        assert (tmp_path / name).read_bytes() == (EXAMPLE / name).read_bytes(), name


def test_example_program_is_short():
    assert len((KERNELS / "examples" / "classify.c").read_text().splitlines()) < 40

"""Sessions on several threads (dfx.h ``dfx_session_options.threads``, ``DFX_THREADS``): bit-identical results
for every thread count, equal to the NumPy reference, on networks whose layers exercise every split of the
work (kernels/src/threads.h): GEMM blocks of convolutions (im2col, 1x1, grouped, sub-byte and per-channel
weights) and fully connected layers, depthwise planes, max and average pooling planes, int8 ReLU, integer
and float element-wise layers, requantization, Softmax rows, Permute and the wide copies around layers
(widen, dequantize, narrow, quantize)."""

from __future__ import annotations

import ctypes
import os

import numpy as np
import pytest

from dfxsdk import ops

from tests.native import test_native_deploy as _deploy
from tests.support.builder import Builder, fmt
from tests.support.testdata import LENET, MOBILENET_SSD, MTCNN, needs_testdata

THREADS = (1, 2, 3, 7)
dfx_run = _deploy.dfx_run  # that module's fixture: dfx-run built with CMake
DFX_ERR_ARGUMENT = 7


def every_split_model(seed: int = 0):
    """One of every split, each tensor large enough to be cut (threads.h, ops/fast.c: the grains):
    int8 conv 3x3 + bias (im2col GEMM, 32 x 4096 per sample), int8 ReLU (131072 codes), depthwise 3x3,
    1x1 conv with int4 weights (direct GEMM, 96 rows in 48-row blocks), grouped 3x3 stride-2 conv with
    per-channel weights, 2x2 max pool of int8 codes, integer Eltwise of int8 inputs into int16 (widen,
    narrow), Requantize, 4x4 average pool, FullyConnected 6144 -> 256 -> 10, Permute of int8 codes, Concat of
    int8 codes (two inputs rescaled, one copied), and a float branch: Eltwise of int8 codes and a float input
    (dequantize), float max pool, float Eltwise quantized to int16, Softmax over 32 channels, float depthwise
    3x3, 1x1 and 3x3 convolutions (the vectorised float path where the kernel set has one: planes and GEMM
    column blocks)."""
    rng = np.random.default_rng(seed)
    b = Builder("every_split")
    x = b.input((1, 8, 64, 64), fmt(8, 5), name="x")
    y = b.input((1, 32, 64, 64), None, name="y")

    def w(shape, q):
        return b.qconst(rng.uniform(-0.3, 0.3, shape), q)

    c1 = b.add(ops.Conv2D(kernel_h=3, kernel_w=3, pad_top=1, pad_left=1, pad_bottom=1, pad_right=1),
               [x, w((32, 8, 3, 3), fmt(8, 7)), w((32,), fmt(16, 10))], fmt(8, 5))
    r1 = b.add(ops.Relu(), [c1], fmt(8, 5))
    d1 = b.add(ops.Conv2D(kernel_h=3, kernel_w=3, pad_top=1, pad_left=1, pad_bottom=1, pad_right=1, group=32),
               [r1, w((32, 1, 3, 3), fmt(8, 6))], fmt(8, 5))
    wp = b.const(rng.integers(-8, 8, (96, 32, 1, 1)), fmt(4, 3), packed=True)
    p1 = b.add(ops.Conv2D(), [d1, wp], fmt(8, 4))
    per_channel = fmt(8, channel_fl=rng.integers(7, 10, 96), channel_axis=0)
    g1 = b.add(ops.Conv2D(kernel_h=3, kernel_w=3, stride_h=2, stride_w=2, pad_top=1, pad_left=1, pad_bottom=1,
                          pad_right=1, group=4), [p1, w((96, 24, 3, 3), per_channel)], fmt(8, 4))
    m1 = b.add(ops.Pool2D(kernel_h=2, kernel_w=2, stride_h=2, stride_w=2), [p1], fmt(8, 4))
    e1 = b.add(ops.Eltwise(coefficients=[1.0, -0.5]), [g1, m1], fmt(16, 6))
    rq = b.add(ops.Requantize(), [e1], fmt(8, 3))
    a1 = b.add(ops.Pool2D(type=ops.POOL_AVERAGE, kernel_h=4, kernel_w=4, stride_h=4, stride_w=4), [rq], fmt(8, 3))
    f1 = b.add(ops.Flatten(), [a1], fmt(8, 3))
    fc1 = b.add(ops.FullyConnected(), [f1, w((256, 96 * 8 * 8), fmt(8, 9))], fmt(8, 3))
    fc2 = b.add(ops.FullyConnected(), [fc1, w((10, 256), fmt(8, 7))], fmt(16, 8), outputs=["score"])
    ef = b.add(ops.Eltwise(), [r1, y], None)
    pf = b.add(ops.Pool2D(kernel_h=2, kernel_w=2, stride_h=2, stride_w=2), [ef], None, outputs=["pooled"])
    eq = b.add(ops.Eltwise(operation=ops.ELTWISE_MAX), [ef, y], fmt(16, 8), outputs=["maxed"])
    sm = b.add(ops.Softmax(axis=1), [ef], None, outputs=["softmax"])
    pm = b.add(ops.Permute(order=[0, 2, 3, 1]), [r1], fmt(8, 5), outputs=["permuted"])
    cc = b.add(ops.Concat(axis=1), [r1, d1, p1], fmt(8, 4), outputs=["concat"])

    def fw(shape):
        return b.const(rng.uniform(-0.3, 0.3, shape).astype(np.float32))

    fd = b.add(ops.Conv2D(kernel_h=3, kernel_w=3, pad_top=1, pad_left=1, pad_bottom=1, pad_right=1, group=32),
               [ef, fw((32, 1, 3, 3)), fw((32,))], None)
    fp = b.add(ops.Conv2D(), [fd, fw((16, 32, 1, 1))], None)
    f3 = b.add(ops.Conv2D(kernel_h=3, kernel_w=3, pad_top=1, pad_left=1, pad_bottom=1, pad_right=1),
               [fp, fw((8, 16, 3, 3)), fw((8,))], None, outputs=["float_conv"])
    return b.output(fc2, pf, eq, sm, pm, cc, f3)


def _inputs(model, batch: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.uniform(-1, 1, (batch,) + tuple(model.tensors[n].shape[1:])).astype(np.float32)
            for n in model.inputs}


def _assert_same_for_every_thread_count(native, model, batch: int) -> dict[int, int]:
    """Every tensor at every thread count of THREADS: bit-identical to one thread, and equal to the NumPy
    reference (integers exactly, float tensors to float32 rounding). Returns the thread count of each
    session, as the library reports it."""
    from dfxsdk.plugins import get_manager

    inputs = _inputs(model, batch)
    names = [n for layer in model.layers for n in layer.outputs]
    ref = get_manager().backend("numpy").run(model, inputs, outputs=names)
    one: dict[str, np.ndarray] = {}
    reported = {}
    for threads in THREADS:
        backend = type(native)(threads=threads, kernels=native.kernels)
        got = backend.run(model, inputs, outputs=names)
        reported[threads] = backend.session_threads(model, batch)
        for n in names:
            if threads == 1:
                one[n] = got[n]
                if model.tensors[n].qformat is None:
                    scale = float(np.abs(ref[n]).max()) or 1.0
                    np.testing.assert_allclose(got[n], ref[n], rtol=1e-5, atol=1e-6 * scale, err_msg=n)
                else:
                    assert np.array_equal(got[n], ref[n]), f"{n}: {int(np.sum(got[n] != ref[n]))} codes differ"
            else:
                assert got[n].tobytes() == one[n].tobytes(), f"{n}: {threads} threads differ from one"
    return reported


def _quantize8(model, batch: int = 2):
    """8-bit, one pass of the dfp quantizer (max-abs fl), calibrated on random inputs."""
    from dfxsdk.providers import CalibrationData

    quantizer = pytest.importorskip("dfx_quantizer.plugin", reason="the dfp quantizer plugin is not installed")
    options = {"bw": 8, "fl_rule": "maxabs", "rounding": "nearest", "fl_search": "none"}
    return quantizer.quantize_model(model, CalibrationData([_inputs(model, batch, seed=0)]), options).model


@pytest.mark.parametrize("batch", [1, 2])
def test_every_split_bit_identical_for_every_thread_count(native, batch):
    from dfxsdk.validate import validate_model

    model = every_split_model()
    validate_model(model)
    assert _assert_same_for_every_thread_count(native, model, batch) == {t: t for t in THREADS}


@pytest.mark.parametrize("batch", [1, 2])
def test_graph_outputs_with_fused_relu_for_every_thread_count(native, batch):
    """Asked for its graph outputs only, a session lets a fast int8 convolution apply the int8 ReLU after it
    (exec.c dfx_exec_fuses_relu: conv c1 and ReLU r1 here; asking for every tensor keeps them apart): the
    outputs are the NumPy reference's at every thread count."""
    from dfxsdk.plugins import get_manager

    model = every_split_model()
    inputs = _inputs(model, batch)
    ref = get_manager().backend("numpy").run(model, inputs)
    for threads in THREADS:
        got = type(native)(threads=threads, kernels=native.kernels).run(model, inputs)
        for n in model.outputs:
            if model.tensors[n].qformat is None:
                scale = float(np.abs(ref[n]).max()) or 1.0
                np.testing.assert_allclose(got[n], ref[n], rtol=1e-5, atol=1e-6 * scale, err_msg=n)
            else:
                assert np.array_equal(got[n], ref[n]), f"{n}, {threads} threads: {int(np.sum(got[n] != ref[n]))} differ"


def test_every_split_model_runs_the_kernels_that_split(native, tmp_path):
    """The model above really plans the kernels whose work is split (libdfx's plan, dfx_model_describe)."""
    from dfxsdk import save

    save(every_split_model(), tmp_path / "m.dfx")
    plan = native.describe_plan(tmp_path / "m.dfx")
    kernels = {layer["kernel"] for layer in plan["layers"]}
    assert {"CONV2D_FAST", "FC_FAST", "RELU_S8", "MAXPOOL_S8", "POOL_INT", "POOL_F32", "ELTWISE_INT",
            "ELTWISE_F32", "REQUANTIZE_INT", "SOFTMAX_F32", "PERMUTE", "CONCAT", "CONV2D_F32"} <= kernels
    actions = {io["act"] for layer in plan["layers"] for io in layer["in_plan"] + layer["out_plan"]}
    assert {"widen", "dequant", "narrow", "quant"} <= actions


@needs_testdata(LENET)
def test_lenet_ristretto_for_every_thread_count(native, caffe):
    model = caffe.import_caffe([LENET / "lenet.prototxt", LENET / "lenet_iter_10000.caffemodel"],
                               ristretto_path=LENET / "lenet_quantized.prototxt")
    _assert_same_for_every_thread_count(native, model, batch=64)


@needs_testdata(MTCNN)
@pytest.mark.parametrize("net, shape", [("det1", (1, 3, 120, 160)), ("det2", (1, 3, 24, 24)),
                                        ("det3", (1, 3, 48, 48))])
def test_mtcnn_8bit_and_float_for_every_thread_count(native, caffe, net, shape):
    model = caffe.import_caffe([MTCNN / f"{net}.prototxt", MTCNN / f"{net}.caffemodel"], input_shape=shape)
    _assert_same_for_every_thread_count(native, model, batch=2)
    _assert_same_for_every_thread_count(native, _quantize8(model), batch=2)


@needs_testdata(MOBILENET_SSD)
def test_mobilenet_ssd_at_160_for_every_thread_count(native, caffe, tmp_path):
    """chuanqi305's MobileNet-SSD (depthwise-separable body, six heads, PriorBox, Softmax, DetectionOutput)
    with generated weights at 160x160, 8-bit, batch 1."""
    import warnings

    from dfx_caffe.synth import random_caffemodel

    random_caffemodel(MOBILENET_SSD, tmp_path / "w.caffemodel", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = caffe.import_caffe([MOBILENET_SSD, tmp_path / "w.caffemodel"], input_shape=(1, 3, 160, 160))
    _assert_same_for_every_thread_count(native, _quantize8(model, batch=1), batch=1)


@needs_testdata(MOBILENET_SSD)
def test_mobilenet_ssd_graph_outputs_for_every_thread_count(native, caffe, tmp_path):
    """The same network asked for its graph outputs only (the memory plan reuses buffers, a convolution may
    apply the ReLU after it), run twice per session: every thread count gives one thread's detections."""
    import warnings

    from dfx_caffe.synth import random_caffemodel

    random_caffemodel(MOBILENET_SSD, tmp_path / "w.caffemodel", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _quantize8(caffe.import_caffe([MOBILENET_SSD, tmp_path / "w.caffemodel"],
                                              input_shape=(1, 3, 160, 160)), batch=1)
    inputs = _inputs(model, 1)
    one = None
    for threads in THREADS:
        backend = type(native)(threads=threads, kernels=native.kernels)
        for _ in range(2):
            got = backend.run(model, inputs)
            if one is None:
                one = got
            for n in model.outputs:
                assert got[n].tobytes() == one[n].tobytes(), f"{n}: {threads} threads differ from one"


# -- the thread count: options, environment, ABI ------------------------------------------------------


@pytest.fixture()
def opened(native, tmp_path):
    from dfxsdk import save

    from dfx_native import _lib

    save(every_split_model(), tmp_path / "m.dfx")
    lib = _lib.load()
    m = ctypes.c_void_p()
    assert lib.dfx_model_open_file(str(tmp_path / "m.dfx").encode(), 0, ctypes.byref(m)) == 0
    yield lib, m
    lib.dfx_model_close(m)


def _threads_of(lib, m, opt) -> int | None:
    """The thread count of a session created with ``opt`` (None when refused)."""
    s = ctypes.c_void_p()
    if lib.dfx_session_create_ex(m, ctypes.byref(opt), ctypes.byref(s)):
        return None
    n = lib.dfx_session_threads(s)
    lib.dfx_session_destroy(s)
    return n


def test_threads_option_and_dfx_threads_environment(opened, monkeypatch):
    from dfx_native._lib import SessionOptions

    lib, m = opened

    def opt(threads: int) -> SessionOptions:
        return SessionOptions(size=ctypes.sizeof(SessionOptions), batch=1, threads=threads)

    monkeypatch.delenv("DFX_THREADS", raising=False)
    assert _threads_of(lib, m, opt(0)) == 1                     # automatic without DFX_THREADS: one thread
    assert [_threads_of(lib, m, opt(n)) for n in (1, 3, 64)] == [1, 3, 64]
    for bad in (-1, 65):
        assert _threads_of(lib, m, opt(bad)) is None
        assert b"threads is" in lib.dfx_last_error()
    s = ctypes.c_void_p()
    assert lib.dfx_session_create(m, 1, None, 0, 0, ctypes.byref(s)) == 0
    assert lib.dfx_session_threads(s) == 1                     # dfx_session_create: automatic
    lib.dfx_session_destroy(s)
    for env, want in (("3", 3), ("cores", os.cpu_count()), ("1000", 64), ("abc", 1), ("0", 1), ("", 1)):
        monkeypatch.setenv("DFX_THREADS", env)
        assert _threads_of(lib, m, opt(0)) == want, env        # read when the session is created
        assert _threads_of(lib, m, opt(2)) == 2, env           # an explicit count wins
        assert lib.dfx_session_create(m, 1, None, 0, 0, ctypes.byref(s)) == 0
        assert lib.dfx_session_threads(s) == want, env
        lib.dfx_session_destroy(s)
    assert lib.dfx_session_threads(None) == 0


def test_options_of_an_older_header_get_automatic_threads(opened, monkeypatch):
    """A program built against a dfx.h without `threads` passes a smaller `size`: the library reads no
    thread count from it (whatever follows in memory) and runs automatic."""
    from dfx_native._lib import SessionOptions

    lib, m = opened
    old_size = SessionOptions.threads.offset      # the struct up to `kernels`, as the older dfx.h declares it
    opt = SessionOptions(size=old_size, batch=1, threads=5)  # the 5 lies beyond `size`: not read
    monkeypatch.delenv("DFX_THREADS", raising=False)
    assert _threads_of(lib, m, opt) == 1
    monkeypatch.setenv("DFX_THREADS", "2")
    assert _threads_of(lib, m, opt) == 2


def test_native_backend_threads_and_its_session_cache(native, monkeypatch):
    """``NativeBackend(threads=)``: the cache keeps one session per thread count; 0 follows DFX_THREADS."""
    from dfxsdk.errors import DfxInputError

    model = every_split_model()
    backend = type(native)(threads=3)
    assert backend.session_threads(model) == 3
    backend.threads = 2
    assert backend.session_threads(model) == 2 and backend.open_sessions() == 2
    monkeypatch.setenv("DFX_THREADS", "4")
    backend.threads = 0
    assert backend.session_threads(model) == 4
    with pytest.raises(DfxInputError, match="threads"):
        type(native)(threads=-1)
    backend.threads = 65
    with pytest.raises(DfxInputError, match="threads is 65"):
        backend.session_threads(model)


def test_fork_after_a_threaded_session_runs_in_the_child(native):
    """A child forked after a session's threads were created has none of them: its runs use the calling
    thread alone (threads.c counts forks) and give the same result."""
    model = every_split_model()
    backend = type(native)(threads=3)
    inputs = _inputs(model, 1)
    want = backend.run(model, inputs)["score"]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run, write the scores, leave without cleanup
        try:
            os.write(w, backend.run(model, inputs)["score"].astype(np.int32).tobytes())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        got = np.frombuffer(f.read(), np.int32)
    os.waitpid(pid, 0)
    assert np.array_equal(got, want.astype(np.int32).ravel())


# -- the command lines ------------------------------------------------------------------------------


def test_cli_run_threads_gives_the_same_outputs(native, tmp_path):
    from dfxsdk import save
    from dfxsdk.plugins import get_manager

    from tests.support.cli import cli

    model = every_split_model()
    save(model, tmp_path / "m.dfx")
    np.savez(tmp_path / "in.npz", **_inputs(model, 1))
    outs = []
    for threads in (1, 3):
        out = tmp_path / f"out{threads}.npz"
        code, _, err = cli("run", tmp_path / "m.dfx", "--input", tmp_path / "in.npz", "-o", out, "--backend", "native",
                           "--threads", threads)
        assert code == 0, err
        assert get_manager().backend("native").threads == threads
        outs.append(np.load(out))
    assert sorted(outs[0].files) == sorted(model.outputs)
    for name in outs[0].files:
        assert outs[0][name].tobytes() == outs[1][name].tobytes(), name
    code, _, err = cli("run", tmp_path / "m.dfx", "--input", tmp_path / "in.npz", "-o", tmp_path / "x.npz",
                       "--backend", "native", "--threads", -1)
    assert code == 2 and "--threads must be 0 (automatic) or a count >= 1" in err
    assert cli("run", tmp_path / "m.dfx", "--input", tmp_path / "in.npz", "-o", tmp_path / "x.npz",
               "--backend", "native", "--threads", 0).code == 0


@pytest.mark.parametrize("command", ["run", "eval", "quantize"])
def test_cli_threads_option_is_documented(command):
    from tests.support.cli import cli

    code, out, _ = cli(command, "--help")
    text = " ".join(out.split())
    assert code == 0 and "--threads N" in text and "DFX_THREADS" in text and "0 (default): automatic" in text


def test_dfx_run_threads(dfx_run, tmp_path, monkeypatch):
    import subprocess

    from dfxsdk import save

    model = every_split_model()
    save(model, tmp_path / "m.dfx")
    inputs = _inputs(model, 2)
    (tmp_path / "in.bin").write_bytes(b"".join(inputs[n].tobytes() for n in model.inputs))
    monkeypatch.delenv("DFX_THREADS", raising=False)
    outputs = {}
    for args, threads in ((["--threads", "1"], 1), (["--threads", "4"], 4), ([], 1), (["--threads", "0"], 1)):
        out = tmp_path / f"out{len(outputs)}.bin"
        proc = subprocess.run([str(dfx_run), "--verbose", "--codes", *args, str(tmp_path / "m.dfx"),
                               str(tmp_path / "in.bin"), str(out)], capture_output=True, text=True)
        assert proc.returncode == 0 and f"threads: {threads}\n" in proc.stderr, proc.stderr
        outputs[tuple(args)] = out.read_bytes()
    assert len(set(outputs.values())) == 1
    proc = subprocess.run([str(dfx_run), "--verbose", str(tmp_path / "m.dfx"), str(tmp_path / "in.bin")],
                          capture_output=True, text=True, env={**os.environ, "DFX_THREADS": "3"})
    assert proc.returncode == 0 and "threads: 3\n" in proc.stderr
    for bad in ("65", "-1", "x"):
        proc = subprocess.run([str(dfx_run), "--threads", bad, str(tmp_path / "m.dfx"), str(tmp_path / "in.bin")],
                              capture_output=True, text=True)
        assert proc.returncode == 2 and "--threads needs a count from 0 (automatic) to 64" in proc.stderr
    help_text = subprocess.run([str(dfx_run), "--help"], capture_output=True, text=True).stdout
    assert "--threads N" in help_text and "DFX_THREADS" in help_text

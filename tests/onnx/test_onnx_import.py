"""ONNX importer: Caffe equivalence, QDQ, refusals, the onnx-less install, CLI, quantize and run."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX importer tests need the onnx package (dfxsdk[onnx])")
from onnx import TensorProto as TP, helper, numpy_helper  # noqa: E402

from dfxsdk.errors import DfxUnsupportedError  # noqa: E402
from dfxsdk.formats import QFormat, Rounding  # noqa: E402
from dfxsdk.plugins import get_manager  # noqa: E402

from tests.support.cli import cli  # noqa: E402


def make_model(nodes, inputs, outputs, inits=(), opset=13):
    """A checked ModelProto; inputs/outputs are (name, shape) pairs, inits name -> array."""
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(n, TP.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TP.FLOAT, s) for n, s in outputs],
        [numpy_helper.from_array(np.asarray(a), n) for n, a in dict(inits).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8  # readable by older onnxruntime releases too
    onnx.checker.check_model(model)
    return model


def imp(model, **kw):
    from dfx_onnx.plugin import import_onnx

    m = import_onnx(model, **kw)
    m.validate()
    return m


def run(model, x, mode="float", backend="numpy"):
    return model.run({model.inputs[0]: x}, mode=mode, backend=backend)[model.outputs[0]]


# -- a small CNN written out both as Caffe and as ONNX --------------------------------

RNG = np.random.default_rng(7)
NET = {
    "conv1": (RNG.normal(0, 0.4, (6, 3, 3, 3)), RNG.normal(0, 0.1, 6)),
    "conv2": (RNG.normal(0, 0.3, (6, 3, 3, 3)), RNG.normal(0, 0.1, 6)),   # 2 groups
    "up": (RNG.normal(0, 0.3, (6, 2, 2, 2)), RNG.normal(0, 0.1, 4)),      # deconv, 2 groups
    "fc": (RNG.normal(0, 0.2, (10, 4 * 4 * 4)), RNG.normal(0, 0.1, 10)),
    "prelu": (RNG.uniform(0.1, 0.3, 6),),
}
NET = {k: tuple(np.asarray(a, np.float32) for a in v) for k, v in NET.items()}

CAFFE_PROTOTXT = """
name: "twin"
input: "data"
input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 6 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
        convolution_param { num_output: 6 kernel_size: 3 pad: 1 stride: 2 group: 2 } }
layer { name: "prelu" type: "PReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool" type: "Pooling" bottom: "conv2" top: "pool"
        pooling_param { pool: AVE kernel_size: 2 stride: 1 } }
layer { name: "up" type: "Deconvolution" bottom: "pool" top: "up"
        convolution_param { num_output: 4 kernel_size: 2 stride: 2 pad: 1 group: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "up" top: "fc" inner_product_param { num_output: 10 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


def write_caffe(tmp_path):
    from dfx_caffe._proto import caffe_pb2 as pb

    net = pb.NetParameter(name="twin")
    for name, arrays in NET.items():
        layer = net.layer.add(name=name)
        for arr in arrays:
            blob = layer.blobs.add()
            blob.shape.dim.extend(arr.shape)
            blob.data.extend(arr.reshape(-1).tolist())
    (tmp_path / "twin.prototxt").write_text(CAFFE_PROTOTXT)
    (tmp_path / "twin.caffemodel").write_bytes(net.SerializeToString())
    return [tmp_path / "twin.prototxt", tmp_path / "twin.caffemodel"]


def twin_onnx():
    (w1, b1), (w2, b2), (wu, bu), (wf, bf), (slope,) = (NET[k] for k in ("conv1", "conv2", "up", "fc", "prelu"))
    nodes = [
        helper.make_node("Conv", ["data", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2], group=2,
                         name="conv2"),
        helper.make_node("PRelu", ["c2", "slope"], ["p2"], name="prelu"),
        helper.make_node("AveragePool", ["p2"], ["pool"], kernel_shape=[2, 2], name="pool"),
        helper.make_node("ConvTranspose", ["pool", "wu", "bu"], ["up"], strides=[2, 2], pads=[1, 1, 1, 1],
                         group=2, name="up"),
        helper.make_node("Shape", ["up"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        helper.make_node("Unsqueeze", ["batch", "axes0"], ["batch1"]),
        helper.make_node("Concat", ["batch1", "minus1"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["up", "flat_shape"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["fc"], transB=1, name="fc"),
        helper.make_node("Softmax", ["fc"], ["prob"], axis=1, name="prob"),
    ]
    inits = {"w1": w1, "b1": b1, "w2": w2, "b2": b2, "slope": slope.reshape(6, 1, 1), "wu": wu, "bu": bu,
             "wf": wf, "bf": bf, "zero": np.array(0, np.int64), "axes0": np.array([0], np.int64),
             "minus1": np.array([-1], np.int64)}
    return make_model(nodes, [("data", ["N", 3, 8, 8])], [("prob", ["N", 10])], inits)


def test_caffe_and_onnx_exports_of_one_network_agree(tmp_path):
    pm = get_manager()
    caffe_files = write_caffe(tmp_path)
    onnx.save(twin_onnx(), str(tmp_path / "twin.onnx"))
    from_caffe = pm.importer("caffe").import_model(caffe_files, {"input_shape": None, "ristretto": None})
    from_onnx = pm.importer("onnx").import_model([tmp_path / "twin.onnx"], {"input_shape": None})
    from_caffe.validate()
    from_onnx.validate()
    assert [l.type for l in from_onnx.layers] == [l.type for l in from_caffe.layers]
    x = RNG.normal(size=(3, 3, 8, 8)).astype(np.float32)
    a, b = run(from_caffe, x), run(from_onnx, x)
    assert a.shape == b.shape == (3, 10)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    ort = pytest.importorskip("onnxruntime")  # a third opinion
    ref = ort.InferenceSession(twin_onnx().SerializeToString()).run(None, {"data": x})[0]
    np.testing.assert_allclose(b, ref, rtol=1e-4, atol=1e-5)


# -- float models: structure ----------------------------------------------------------

def test_batchnorm_folds_into_conv_and_initializers_in_inputs_are_constants():
    w = RNG.normal(size=(4, 3, 3, 3)).astype(np.float32)
    bn = [RNG.uniform(0.5, 1.5, 4).astype(np.float32) for _ in range(4)]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], auto_pad="SAME_UPPER", strides=[2, 2]),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"], epsilon=1e-3),
             helper.make_node("BatchNormalization", ["x", "g3", "b3", "m3", "v3"], ["z"])]
    inits = {"w": w, "g": bn[0], "b": bn[1], "m": bn[2], "v": bn[3], **{f"{k}3": np.ones(3, np.float32)
                                                                          for k in "gbmv"}}
    model = make_model(nodes, [("x", ["N", 3, 7, 7])], [("y", ["N", 4, 4, 4]), ("z", ["N", 3, 7, 7])], inits,
                       opset=9)
    # an old exporter's habit: initializers also listed as graph inputs
    model.graph.input.extend(helper.make_tensor_value_info(k, TP.FLOAT, list(np.shape(v))) for k, v in inits.items())
    dm = imp(model)
    assert dm.inputs == ["x"] and [l.type for l in dm.layers] == ["Conv2D", "Scale"]
    assert dm.outputs == ["y", "z"]
    x = RNG.normal(size=(2, 3, 7, 7)).astype(np.float32)
    ort = pytest.importorskip("onnxruntime")
    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    got = dm.run({"x": x}, mode="float")
    np.testing.assert_allclose(got["y"], ref[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["z"], ref[1], rtol=1e-4, atol=1e-5)


def test_matmul_add_becomes_one_fully_connected_and_constants_map_to_scale_or_eltwise():
    w = RNG.normal(size=(12, 5)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]),
             helper.make_node("Add", ["mm", "b"], ["fc"]),
             helper.make_node("Sub", ["half", "fc"], ["s"]),                       # 0.5 - fc: scalar
             helper.make_node("Div", ["s", "per_ch"], ["d"]),                      # per channel: Scale
             helper.make_node("Clip", ["d", "lo", "hi"], ["y"])]
    inits = {"w": w, "b": RNG.normal(size=5).astype(np.float32), "half": np.array(0.5, np.float32),
             "per_ch": np.array([1, 2, 4, 8, 16], np.float32), "lo": np.array(0, np.float32),
             "hi": np.array(6, np.float32)}
    model = make_model(nodes, [("x", ["N", 12])], [("y", ["N", 5])], inits)
    dm = imp(model)
    assert [l.type for l in dm.layers] == ["FullyConnected", "Eltwise", "Scale", "Clip"]
    assert dm.layers[1].op.coefficients == [-1.0, 1.0]
    x = RNG.normal(size=(4, 12)).astype(np.float32) * 3
    want = np.clip((0.5 - (x @ w + inits["b"])) / inits["per_ch"], 0, 6)
    np.testing.assert_allclose(run(dm, x), want, rtol=1e-5, atol=1e-5)


def test_opset7_upsample_and_pad_and_symbolic_batch():
    nodes = [helper.make_node("Pad", ["x"], ["p"], pads=[0, 0, 1, 2, 0, 0, 1, 0], value=-1.0),
             helper.make_node("Upsample", ["p"], ["y"], scales=[1.0, 1.0, 2.0, 3.0], mode="nearest")]
    dm = imp(make_model(nodes, [("x", ["batch", 2, 3, 3])], [("y", ["batch", 2, 10, 15])], opset=7))
    assert [l.type for l in dm.layers] == ["Pad", "Upsample"] and dm.tensors["x"].shape == (1, 2, 3, 3)
    x = RNG.normal(size=(2, 2, 3, 3)).astype(np.float32)
    p = np.pad(x, ((0, 0), (0, 0), (1, 1), (2, 0)), constant_values=-1)
    np.testing.assert_array_equal(run(dm, x), p.repeat(2, axis=2).repeat(3, axis=3))


def test_batch_axis_refusals_are_clear():
    t = make_model([helper.make_node("Transpose", ["x"], ["y"], perm=[1, 0, 2, 3])],
                   [("x", [1, 2, 3, 3])], [("y", [2, 1, 3, 3])])
    with pytest.raises(DfxUnsupportedError, match=r"perm \[1, 0, 2, 3\] moves axis 0.*batch"):
        imp(t)
    f = make_model([helper.make_node("Flatten", ["x"], ["y"], axis=2)], [("x", [2, 2, 3, 3])], [("y", [4, 9])])
    with pytest.raises(DfxUnsupportedError, match=r"Flatten turns shape \(2, 2, 3, 3\) into \(4, 9\)"):
        imp(f)


def test_every_unsupported_node_is_listed_at_once():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="ok"),
             helper.make_node("Log", ["r"], ["e"], name="log_1"),
             helper.make_node("LRN", ["e"], ["l"], size=3, name="norm"),
             helper.make_node("Erf", ["l"], ["y"], name="erf_9"),
             # a constant subgraph of an unsupported operator is folded, not listed
             helper.make_node("Log", ["c"], ["ce"], name="const_log")]
    model = make_model(nodes + [helper.make_node("Add", ["y", "ce"], ["out"], name="add")],
                       [("x", [1, 2, 3, 3])], [("out", [1, 2, 3, 3])], {"c": np.ones(1, np.float32)})
    with pytest.raises(DfxUnsupportedError) as info:
        imp(model)
    msg = str(info.value)
    assert "3 node(s)" in msg
    for entry in ("log_1 (Log, opset 13)", "norm (LRN, opset 13)", "erf_9 (Erf, opset 13)"):
        assert entry in msg
    assert "const_log" not in msg and "ok (" not in msg


def test_qoperator_models_are_refused_with_the_reason():
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
             helper.make_node("QLinearConv", ["q", "s", "z", "w", "s", "z", "s", "z"], ["qc"], name="qconv"),
             helper.make_node("DequantizeLinear", ["qc", "s", "z"], ["y"], name="dq")]
    inits = {"s": np.array(0.5, np.float32), "z": np.array(0, np.int8), "w": np.ones((1, 1, 1, 1), np.int8)}
    model = make_model(nodes, [("x", [1, 1, 2, 2])], [("y", [1, 1, 2, 2])], inits)
    with pytest.raises(DfxUnsupportedError, match=r"(?s)qconv \(QLinearConv, opset 13\).*QOperator.*QDQ"):
        imp(model)


# -- QDQ ------------------------------------------------------------------------------

def qdq_model(act_scale=2.0 ** -4, w_scale=2.0 ** -6, zp=0, dtype=np.int8, per_axis=False):
    """x -Q/DQ-> Conv(DQ int8 weights, DQ int32 bias) -Q/DQ-> Relu -Q/DQ-> MaxPool -> y."""
    w = np.array(RNG.integers(-100, 100, (4, 2, 3, 3)), np.int8)
    b = np.array(RNG.integers(-2000, 2000, 4), np.int32)
    ws = np.array([w_scale, w_scale * 2, w_scale / 2, w_scale], np.float32) if per_axis else np.float32(w_scale)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s_act", "zp"], ["xq"], name="q_in"),
        helper.make_node("DequantizeLinear", ["xq", "s_act", "zp"], ["xd"], name="dq_in"),
        helper.make_node("DequantizeLinear", ["w", "s_w"], ["wd"], name="dq_w", axis=0),
        helper.make_node("DequantizeLinear", ["b", "s_b"], ["bd"], name="dq_b", axis=0),
        helper.make_node("Conv", ["xd", "wd", "bd"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("QuantizeLinear", ["c", "s_c", "zp"], ["cq"], name="q_conv"),
        helper.make_node("DequantizeLinear", ["cq", "s_c", "zp"], ["cd"], name="dq_conv"),
        helper.make_node("Relu", ["cd"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
    ]
    inits = {"s_act": np.float32(act_scale), "zp": np.array(zp, dtype), "w": w, "s_w": ws,
             "b": b, "s_b": (np.float32(act_scale) * ws).astype(np.float32), "s_c": np.float32(2.0 ** -3)}
    return make_model(nodes, [("x", ["N", 2, 6, 6])], [("y", ["N", 4, 3, 3])], inits, opset=13)


@pytest.mark.parametrize("per_axis", [False, True])
def test_power_of_two_qdq_imports_as_integer_network(per_axis):
    model = qdq_model(per_axis=per_axis)
    dm = imp(model)
    assert [l.type for l in dm.layers] == ["Requantize", "Conv2D", "Relu", "Pool2D"]
    assert dm.tensors["xq"].qformat == QFormat(8, 4, Rounding.HALF_TO_EVEN)
    assert dm.tensors["c"].qformat == QFormat(8, 3, Rounding.HALF_TO_EVEN)     # conv rounds straight into q_conv
    w = dm.tensors[dm.layers[1].inputs[1]]
    assert w.qformat.bw == 8 and (w.qformat.channel_fl == (6, 5, 7, 6) if per_axis else w.qformat.fl == 6)
    assert dm.tensors[dm.layers[1].inputs[2]].qformat.bw == 32
    assert dm.tensors["y"].qformat == dm.tensors["c"].qformat                  # exact propagation, no Q node
    assert dm.metadata["source.quantization"].startswith("onnx QDQ")
    x = RNG.normal(size=(5, 2, 6, 6)).astype(np.float32)
    codes = run(dm, x, mode="integer")
    ort = pytest.importorskip("onnxruntime")
    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    # the same grid as onnxruntime; at most one step apart where float32 rounding ties differ
    diff = np.abs(codes * 2.0 ** -3 - ref)
    assert diff.max() <= 2.0 ** -3 + 1e-6 and np.mean(diff == 0) > 0.98


def test_tiny_qdq_case_is_exact():
    # y = relu(Q(x; 2^-2)) * 2^-1-weight 3 + bias, into Q(2^-1): hand-computed codes
    nodes = [helper.make_node("QuantizeLinear", ["x", "s2", "zp"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "s2", "zp"], ["xd"], name="dq"),
             helper.make_node("DequantizeLinear", ["w", "s1"], ["wd"], name="dqw"),
             helper.make_node("Gemm", ["xd", "wd"], ["g"], transB=1, name="fc"),
             helper.make_node("QuantizeLinear", ["g", "s1", "zp"], ["gq"], name="qg"),
             helper.make_node("DequantizeLinear", ["gq", "s1", "zp"], ["y"], name="dqg")]
    inits = {"s2": np.float32(0.25), "s1": np.float32(0.5), "zp": np.array(0, np.int8),
             "w": np.array([[3, -1]], np.int8)}
    dm = imp(make_model(nodes, [("x", [1, 2])], [("y", [1, 1])], inits))
    x = np.array([[0.3, -0.6], [0.125, 0.375], [31.0, -32.5]], np.float32)
    # xq = rint(x * 4) half to even: [1, -2], [0, 2] (0.5 -> 0, 1.5 -> 2), [124 -> 124, -130 -> -128]
    # g = (3 * xq0 - xq1) * 2^-2 * 2^-1 -> codes at 2^-1: (3 * xq0 - xq1) / 4, rounded half to even
    # [5/4 -> 1], [-2/4 -> -0.5 -> 0 (even)], [(372 + 128)/4 = 125]
    np.testing.assert_array_equal(run(dm, x, mode="integer"), [[1], [0], [125]])


def test_non_power_of_two_qdq_is_refused_naming_every_node():
    with pytest.raises(DfxUnsupportedError) as info:
        imp(qdq_model(act_scale=0.1, w_scale=0.013))
    msg = str(info.value)
    assert "power of two" in msg and "zero point of 0" in msg
    for node in ("q_in (QuantizeLinear): scale 0.1", "dq_in (DequantizeLinear)", "dq_w (DequantizeLinear): scale 0.013",
                 "dq_b (DequantizeLinear)"):
        assert node in msg
    assert "q_conv" not in msg                                  # its scale 2^-3 is fine


def test_asymmetric_uint8_qdq_is_refused():
    with pytest.raises(DfxUnsupportedError, match=r"q_in \(QuantizeLinear\): type uint8 is unsigned.*zero point 128"):
        imp(qdq_model(zp=128, dtype=np.uint8))


# -- the package without onnx ----------------------------------------------------------

def test_plugin_loads_and_explains_without_onnx(monkeypatch, tmp_path):
    for name in [m for m in sys.modules if m == "onnx" or m.startswith(("onnx.", "dfx_onnx"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "onnx", None)
    plugin = importlib.import_module("dfx_onnx.plugin")
    assert not plugin.onnx_available()
    importer = plugin.dfxsdk_importers()[0]
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x08\x07\x12\x04test")
    assert importer.claims([path])                     # claimed, so that the user gets the hint
    with pytest.raises(DfxUnsupportedError, match=r"pip install 'dfxsdk\[onnx\]'"):
        importer.import_model([path], {"input_shape": None})
    assert plugin.dfxsdk_plugin_info().extra["onnx_installed"] == "false"


def test_claims_sniffs_content():
    from dfx_onnx.plugin import OnnxImporter, looks_like_onnx

    assert looks_like_onnx(twin_onnx().SerializeToString()[:16])
    assert not looks_like_onnx(b"name: \"lenet\"\n")
    assert not OnnxImporter().claims([])


# -- CLI, quantizer, backends ---------------------------------------------------------

def test_cli_convert_then_inspect(tmp_path):
    src = tmp_path / "twin.onnx"
    onnx.save(twin_onnx(), str(src))
    code, out, err = cli("convert", src, "-o", tmp_path / "twin.dfx")
    assert code == 0, err
    assert "wrote" in out
    code, out, err = cli("inspect", tmp_path / "twin.dfx")
    assert code == 0, err
    assert "Conv2D" in out and "Deconv2D" in out and "FullyConnected" in out
    code, out, err = cli("convert", src, "-o", tmp_path / "bad.dfx", "--input-shape", "1,3,9")
    assert code == 2 and "input-shape" in err


def test_quantized_to_8_bits_runs_on_numpy_and_native():
    pm = get_manager()
    names = {q.name for q in pm.quantizers()}
    if "dfp" not in names:
        pytest.skip("the quantizer plugin 'dfp' (dfx_quantizer) is not installed")
    from dfxsdk.providers import CalibrationData

    model = imp(twin_onnx())
    calib = [{model.inputs[0]: RNG.normal(size=(8, 3, 8, 8)).astype(np.float32)} for _ in range(2)]
    q = pm.quantizer("dfp").quantize(model, CalibrationData(batches=calib), {"bw": 8})
    q.validate()
    assert q.is_quantized
    x = RNG.normal(size=(4, 3, 8, 8)).astype(np.float32)
    ref = run(model, x)
    out_numpy = q.run({q.inputs[0]: x}, backend="numpy")[q.outputs[0]]
    assert np.argmax(out_numpy, 1).tolist() == np.argmax(ref, 1).tolist() or np.abs(out_numpy - ref).max() < 0.1
    if "native" not in {b.name for b in pm.backends()}:
        pytest.skip("the native backend plugin (dfx_native) is not installed")
    native = pm.backend("native")
    if native.unsupported(q):
        pytest.skip(f"the native backend lacks {native.unsupported(q)}")
    out_native = q.run({q.inputs[0]: x}, backend="native")[q.outputs[0]]
    np.testing.assert_allclose(out_native, out_numpy, rtol=1e-5, atol=1e-6)

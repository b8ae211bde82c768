"""The quantizer's parts: statistics, fl rules, graph building, the Ristretto prototxt editor."""

from __future__ import annotations

import numpy as np
import pytest

from dfxsdk import ops
from dfxsdk.errors import DfxInputError, DfxUnsupportedError
from dfxsdk.formats import DataType, QFormat
from dfxsdk.providers import CalibrationData

from dfx_quantizer import emit, fl_rules
from dfx_quantizer.apply import LayerPlan
from dfx_quantizer.plugin import quantize_model
from dfx_quantizer.stats import NUM_BINS, TensorStats

from tests.support.builder import Builder


def heavy_tailed(n: int = 200_000, seed: int = 0) -> np.ndarray:
    """Mostly N(0, 1), plus a few huge outliers (as activations before a ReLU often are)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    x[rng.choice(n, 20, replace=False)] = rng.uniform(200, 300, 20)
    return x


def test_histogram_is_fine_and_streams_like_one_pass():
    x = heavy_tailed()
    whole = TensorStats("x")
    whole.update(x)
    parts = TensorStats("x")
    for chunk in np.array_split(x, 7):
        parts.update(chunk)
    assert NUM_BINS >= 2048
    assert parts.count == whole.count == x.size and parts.max_abs == whole.max_abs
    assert np.array_equal(parts.hist, whole.hist)
    # the percentile is within one bin (2**(1/32), about 2 %) above the exact one
    for p in (50, 99, 99.99):
        exact = float(np.percentile(np.abs(x), p))
        assert exact <= whole.percentile(p) <= exact * 2 ** (1 / 32) * 1.0001, p
    assert whole.percentile(100) == whole.max_abs


def test_percentile_and_mse_change_the_outcome_on_a_heavy_tail():
    s = TensorStats("x")
    s.update(heavy_tailed())
    fl = {name: fl_rules.choose(name, s, 8, "activations") for name in ("maxabs", "percentile", "mse", "ristretto")}
    # max ~ 300: maxabs keeps the outliers (fl -2); the others give them up for resolution
    assert fl["maxabs"] == -2
    assert fl["percentile"] > fl["maxabs"]
    assert fl["mse"] > fl["maxabs"]
    assert fl["ristretto"] == fl["maxabs"] + 1 - 0   # one bit less than no-overflow at 8 bits, il = 9
    # and the mse choice has lower error than maxabs, measured exactly on the data
    x = heavy_tailed()
    exact = TensorStats.of("x", x)
    assert exact.mse(QFormat(8, fl["mse"])) < exact.mse(QFormat(8, fl["maxabs"]))


def test_rules_on_known_values():
    s = TensorStats.of("w", np.array([0.53, -0.1]))
    assert fl_rules.choose("ristretto", s, 2, "params") == 1          # il = ceil(log2 .53) + 1 = 1
    assert fl_rules.choose("ristretto", TensorStats.of("a", np.array([3.55])), 4, "activations") == 2
    assert fl_rules.choose("ristretto", TensorStats.of("a", np.array([25.9])), 4, "activations") == -1
    assert fl_rules.choose("maxabs", TensorStats.of("a", np.array([127.4])), 8, "activations") == 0
    assert fl_rules.choose("maxabs", TensorStats.of("a", np.array([127.6])), 8, "activations") == -1
    assert fl_rules.choose("maxabs", TensorStats.of("a", np.zeros(3)), 8, "activations") == 7   # no data
    with pytest.raises(DfxInputError, match="unknown fl rule"):
        fl_rules.choose("nope", s, 8, "params")


def test_rule_registry_accepts_new_rules():
    fl_rules.register("always3", lambda stats, bw, role, opts: 3, "test rule")
    try:
        assert fl_rules.choose("always3", TensorStats.of("a", np.ones(2)), 8, "activations") == 3
    finally:
        fl_rules.RULES.pop("always3")
        fl_rules.DESCRIPTIONS.pop("always3")


def small_model():
    """input -> conv (with a wide-range channel) -> relu -> maxpool -> fc -> softmax."""
    rng = np.random.default_rng(0)
    b = Builder("small")
    x = b.input((1, 2, 8, 8), name="data")
    w = rng.normal(0, 0.3, (4, 2, 3, 3))
    w[1] *= 20
    c = b.add(ops.Conv2D(kernel_h=3, kernel_w=3, pad_top=1, pad_left=1, pad_bottom=1, pad_right=1),
              [x, b.const(w, name="conv/weights"), b.const(rng.normal(0, 1, 4), name="conv/bias")],
              name="conv", outputs=["conv"])
    r = b.add(ops.Relu(), [c], name="relu", outputs=["conv@relu"])
    p = b.add(ops.Pool2D(kernel_h=2, kernel_w=2, stride_h=2, stride_w=2), [r], name="pool", outputs=["pool"])
    f = b.add(ops.FullyConnected(), [p, b.const(rng.normal(0, 0.1, (3, 64)), name="fc/weights"),
                                     b.const(rng.normal(0, 0.1, 3), name="fc/bias")], name="fc", outputs=["fc"])
    s = b.add(ops.Softmax(), [f], name="prob", outputs=["prob"])
    return b.output(s)


def calib(n: int = 32, labels=None) -> CalibrationData:
    x = np.random.default_rng(1).normal(0, 1, (n, 2, 8, 8)).astype(np.float32)
    return CalibrationData([{"data": x[i:i + 8]} for i in range(0, n, 8)], labels, n)


@pytest.mark.parametrize("bw", [8, 4, 2])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("bias", ["int32", "params"])
def test_built_model_is_valid_and_runs_in_integer_mode(bw, per_channel, bias):
    m = small_model()
    q = quantize_model(m, calib(), {"bw": bw, "per_channel": per_channel, "bias": bias}).model
    q.validate()
    w = q.tensors["conv/weights"]
    assert w.dtype is DataType.for_bw(bw, packed=True)         # INT4/INT2 below 8 bits
    assert w.qformat.per_channel is per_channel
    if per_channel:
        assert w.qformat.channel_fl[1] < w.qformat.channel_fl[0]   # the wide channel gets a coarser fl
    bias_t = q.tensors["conv/bias"]
    assert (bias_t.qformat.bw == 32) is (bias == "int32")
    assert q.layer("conv/quantize_in").type == "Requantize"     # float -> int at the input
    assert q.tensors["conv@relu"].qformat == q.tensors["conv"].qformat
    out = q.run({"data": np.ones((2, 2, 8, 8), np.float32)}, mode="integer", outputs=["fc", "prob"])
    assert out["fc"].dtype.kind == "i" and out["prob"].dtype == np.float32
    assert m.tensors["conv/weights"].qformat is None            # the float model is untouched


def test_output_format_uses_the_relu_range():
    m = small_model()
    r = quantize_model(m, calib(), {"bw": 8, "fl_rule": "maxabs"})
    from dfx_quantizer.apply import stat_tensors

    assert stat_tensors(m)["conv"] == ("data", "conv@relu")
    assert stat_tensors(m, ristretto_stats=True)["conv"] == ("data", "conv@relu")
    assert r.formats["conv"].output.fl >= r.formats["conv"].input.fl - 8


def test_plans_leave_float_parts_float():
    from dfx_quantizer.apply import FormatChooser, Settings, build, weight_stats
    from dfx_quantizer.stats import collect

    m = small_model()
    st = collect(m, calib().batches, ["data", "conv@relu", "pool", "fc"])
    chooser = FormatChooser(m, st, weight_stats(m, False), Settings())
    q = build(m, chooser.formats({"conv": LayerPlan(None, None, 4), "fc": LayerPlan(None, None, None)}))
    q.validate()
    assert q.tensors["conv/weights"].qformat.bw == 4 and q.tensors["conv/bias"].qformat is None
    assert q.tensors["conv"].qformat is None and q.tensors["fc/weights"].qformat is None
    q.run({"data": np.ones((1, 2, 8, 8), np.float32)}, mode="integer")


def test_quantized_models_and_bad_options_are_refused():
    m = small_model()
    q = quantize_model(m, calib(), {}).model
    with pytest.raises(DfxUnsupportedError, match="already quantized"):
        quantize_model(q, calib(), {})
    for opts, msg in [({"bw": 0}, "1..16"), ({"search": "magic"}, "unknown search"),
                      ({"fl_rule": "x"}, "unknown fl rule"), ({"margin": -1}, "margin"),
                      ({"bias": "float"}, "bias"), ({"emit_ristretto": "x.prototxt"}, "--prototxt")]:
        with pytest.raises(DfxInputError, match=msg):
            quantize_model(m, calib(), opts)


def test_bad_calibration_batches_fail_before_any_work(monkeypatch):
    import dfx_quantizer.plugin as plugin

    def no_work(*a, **k):
        raise AssertionError("statistics were collected")

    monkeypatch.setattr(plugin, "collect", no_work)
    m = small_model()
    bad_shape = CalibrationData([{"data": np.zeros((4, 2, 8, 8), np.float32)},
                                 {"data": np.zeros((4, 3, 8, 8), np.float32)}])
    with pytest.raises(DfxInputError, match=r"shape \(4, 3, 8, 8\).*\(N,2,8,8\)"):
        quantize_model(m, bad_shape, {})
    with pytest.raises(DfxInputError, match="no samples"):
        quantize_model(m, CalibrationData([]), {})
    with pytest.raises(DfxInputError, match="31 labels for 32"):
        quantize_model(m, calib(labels=np.zeros(31, np.int64)), {"search": "ristretto"})
    with pytest.raises(DfxInputError, match="labels must lie in 0..2"):
        quantize_model(m, calib(labels=np.full(32, 7)), {"search": "ristretto"})


PROTO = """name: "net"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 8 dim: 8 } } }
layer {
  name: "conv"   # a comment with { braces }
  type: "Convolution"
  bottom: "data"
  top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 weight_filler { type: "xavier" } }
  quantization_param { bw_params: 16 }
}
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer {
  name: "fc"
  type: "InnerProduct"
  bottom: "pool"
  top: "fc"
  inner_product_param { num_output: 3 }
}
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


def test_emit_edits_only_the_quantized_layers(tmp_path):
    m = small_model()
    q = quantize_model(m, calib(), {"bw": 8, "bias": "params"}).model
    src = tmp_path / "net.prototxt"
    src.write_text(PROTO)
    out = tmp_path / "q.prototxt"
    notes = emit.emit(q, src, out)
    text = out.read_text()
    assert notes == []
    assert text.count("ConvolutionRistretto") == 1 and text.count("FcRistretto") == 1
    assert "bw_params: 16" not in text and text.count("quantization_param") == 2
    assert 'weight_filler { type: "xavier" }' in text and "# a comment with { braces }" in text
    blocks = {b.name: b for b in emit.parse_blocks(text)}
    assert blocks["conv"].type == "ConvolutionRistretto" and blocks["relu"].type == "ReLU"
    view = q.ristretto_view(q.layer("fc"))
    assert f"fl_layer_out: {view.fl_layer_out}" in text.split('name: "fc"')[1]


def test_emit_refuses_what_ristretto_cannot_hold(tmp_path):
    src = tmp_path / "v1.prototxt"
    src.write_text('name: "x"\nlayers { name: "conv" type: CONVOLUTION }\n')
    with pytest.raises(DfxInputError, match="V1 prototxt"):
        emit.check_source(src)
    m = small_model()
    q = quantize_model(m, calib(), {"bw": 8, "per_channel": True}).model
    good = tmp_path / "net.prototxt"
    good.write_text(PROTO)
    with pytest.raises(DfxUnsupportedError, match="per-channel"):
        emit.emit(q, good, tmp_path / "out.prototxt")
    missing = tmp_path / "other.prototxt"
    missing.write_text(PROTO.replace('name: "fc"', 'name: "fc9"'))
    with pytest.raises(DfxInputError, match="no layer named 'fc'"):
        quantize_model(m, calib(), {"emit_ristretto": str(tmp_path / "o.prototxt"), "prototxt": str(missing)})


@pytest.mark.parametrize("name", ["ristretto", "maxabs", "mse", "percentile"])
@pytest.mark.parametrize("bw", [2, 4, 8])
def test_per_channel_fast_path_equals_the_rule_per_channel(name, bw):
    rng = np.random.default_rng(bw)
    w = rng.standard_t(3, (40, 3, 3)) * rng.uniform(0.01, 10, (40, 1, 1))
    w[3] = 0                                                      # a dead channel gets the fallback
    fast = fl_rules.choose_per_channel(name, w, 0, bw, "params", fallback=5)
    slow = tuple(fl_rules.choose(name, TensorStats.of("c", row), bw, "params", fallback=5) for row in w)
    assert fast == slow and fast[3] == 5

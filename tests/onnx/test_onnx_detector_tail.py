"""ONNX detector post-processing (Slice, Split, Concat, Transpose, Reshape, Softmax) and --input-shape."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX importer tests need the onnx package (dfxsdk[onnx])")
from onnx import helper  # noqa: E402

from dfxsdk.errors import DfxImportError, DfxUnsupportedError  # noqa: E402

from tests.onnx.test_onnx_import import imp, make_model, run  # noqa: E402
from tests.support.cli import cli  # noqa: E402

RNG = np.random.default_rng(11)
W = RNG.normal(0, 0.3, (12, 3, 3, 3)).astype(np.float32)   # 3 anchors x (dx, dy, dw, dh)


def reference(model, x: np.ndarray) -> list[np.ndarray]:
    """The ONNX model run by onnx's own reference evaluator."""
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model).run(None, {model.graph.input[0].name: x})


def box_tail(size: int = 8, opset: int = 13):
    """Conv -> (N, A*4, H, W) -> Transpose/Reshape to (N, H*W*A, 4) -> Split xy|wh, Slice of scores, Concat."""
    hw = size * size
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["loc"], pads=[1, 1, 1, 1], name="head"),
        helper.make_node("Transpose", ["loc"], ["nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["nhwc", "shape"], ["boxes"]),
        helper.make_node("Split", ["boxes", "sizes"], ["xy", "wh"], axis=2, name="split"),
        helper.make_node("Sigmoid", ["wh"], ["wh_s"]),
        helper.make_node("Slice", ["boxes", "starts", "ends", "axes"], ["first"], name="slice"),
        helper.make_node("Slice", ["xy", "s2", "e2", "a2", "steps"], ["x_only"], name="slice2"),
        helper.make_node("Concat", ["x_only", "xy", "wh_s"], ["out"], axis=2),
        helper.make_node("Softmax", ["first"], ["prob"], axis=-1),
    ]
    inits = {"w": W, "shape": np.array([0, -1, 4], np.int64), "sizes": np.array([2, 2], np.int64),
             "starts": np.array([1, 1], np.int64), "ends": np.array([-1, 3], np.int64),
             "axes": np.array([1, 2], np.int64), "s2": np.array([0], np.int64), "e2": np.array([1], np.int64),
             "a2": np.array([-1], np.int64), "steps": np.array([1], np.int64)}
    return make_model(nodes, [("x", (1, 3, size, size))],
                      [("out", (1, hw * 3, 5)), ("prob", (1, hw * 3 - 2, 2))], inits, opset=opset)


def test_detector_tail_matches_onnx_reference():
    model = box_tail()
    m = imp(model)
    types = [l.type for l in m.layers]
    assert types.count("Slice") == 4 and "Concat" in types     # Split: 1, Slice on 2 axes: 2, Slice: 1
    x = RNG.normal(0, 1, (1, 3, 8, 8)).astype(np.float32)
    want = reference(model, x)
    got = m.run({m.inputs[0]: x}, mode="float")
    for name, w in zip(m.outputs, want):
        np.testing.assert_allclose(got[name], w, rtol=1e-5, atol=1e-6)


def test_detector_tail_runs_on_native_too(tmp_path_factory):
    from tests.support.native import native_backend

    m = imp(box_tail())
    x = RNG.normal(0, 1, (1, 3, 8, 8)).astype(np.float32)
    nat = native_backend(tmp_path_factory).run(m, {m.inputs[0]: x})
    ref = m.run({m.inputs[0]: x}, mode="float")
    for name in m.outputs:
        np.testing.assert_allclose(nat[name], ref[name], rtol=1e-5, atol=1e-6)


def test_slice_refusals_are_clear():
    nodes = [helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"])]
    for starts, ends, axes, steps, match in (([0], [1], [0], [1], "axis 0"), ([0], [4], [1], [2], "step 2"),
                                              ([3], [3], [1], [1], "empty")):
        inits = {"s": np.array(starts), "e": np.array(ends), "a": np.array(axes), "st": np.array(steps)}
        model = make_model(nodes, [("x", (2, 4))], [("y", (2, 4))], inits)
        with pytest.raises(DfxUnsupportedError, match=match):
            imp(model)


def test_input_shape_overrides_fixed_dimensions_where_the_network_allows_it(tmp_path):
    small = box_tail(8)
    big = imp(small, input_shape=(1, 3, 12, 12))
    assert big.tensors[big.inputs[0]].shape == (1, 3, 12, 12)
    assert big.tensors[big.outputs[0]].shape == (1, 12 * 12 * 3, 5)
    x = RNG.normal(0, 1, (1, 3, 12, 12)).astype(np.float32)
    np.testing.assert_allclose(run(big, x), reference(box_tail(12), x)[0], rtol=1e-5, atol=1e-6)
    path = tmp_path / "tail.onnx"
    onnx.save(small, str(path))
    code, out, err = cli("convert", path, "--input-shape", "1,3,16,16", "-o", tmp_path / "t.dfx")
    assert code == 0, err


def test_input_shape_refused_where_the_network_fixes_the_size():
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"])]
    model = make_model(nodes, [("x", (1, 3, 4, 4))], [("y", (1, 48))], {"shape": np.array([1, 48], np.int64)})
    with pytest.raises(DfxImportError, match=r"--input-shape \[1, 3, 8, 8\] replaces input 'x'"):
        imp(model, input_shape=(1, 3, 8, 8))


def test_gather_of_an_activation_with_constant_indices():
    x = RNG.normal(0, 1, (2, 6, 4)).astype(np.float32)
    for indices, axis in ((np.array(3), 1), (np.array([1, 2, 3]), 2), (np.array(-1), 2), (np.array([0, 1]), 1)):
        nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Gather", ["r", "i"], ["y"], axis=axis)]
        want = np.take(np.maximum(x, 0), indices, axis=axis)
        model = make_model(nodes, [("x", x.shape)], [("y", want.shape)], {"i": indices.astype(np.int64)})
        np.testing.assert_array_equal(run(imp(model), x), want)
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Gather", ["r", "i"], ["y"], axis=1)]
    model = make_model(nodes, [("x", x.shape)], [("y", (2, 2, 4))], {"i": np.array([0, 2], np.int64)})
    with pytest.raises(DfxUnsupportedError, match="contiguous"):
        imp(model)

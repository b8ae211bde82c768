"""The native backend reproduces every conformance vector of spec/conformance."""

from __future__ import annotations

import numpy as np
import pytest

from dfxsdk.io import load

from tests.support.paths import CONFORMANCE

VECTORS = sorted(CONFORMANCE.glob("*.dfx"))


def test_there_are_vectors():
    assert len(VECTORS) >= 20


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_vector(native, path):
    z = np.load(path.with_suffix(".npz"))
    model = load(path)
    inputs = {k[3:]: z[k] for k in z.files if k.startswith("in/")}
    got = native.run_codes(model, inputs)
    for key in z.files:
        if not key.startswith("out/"):
            continue
        want, have = z[key], got[key[4:]]
        if model.producer(key[4:]).type == "Minifloat":   # exact by definition (bit operations)
            assert np.array_equal(have, want), f"{key}: {np.sum(have != want)} values differ"
        elif want.dtype.kind == "f":
            np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-6, err_msg=key)
        else:
            assert have.dtype == np.int32 and have.shape == want.shape, key
            assert np.array_equal(have, want), f"{key}: {np.sum(have != want)} codes differ"


def test_plugin_is_registered(native):
    from dfxsdk.plugins import get_manager

    assert get_manager().backend("native").name == "native"


def test_matches_numpy_on_float_inputs_and_any_tensor(native):
    from dfxsdk.plugins import get_manager

    path = next(p for p in VECTORS if p.stem == "ssd_head")
    model = load(path)
    ref = get_manager().backend("numpy")
    rng = np.random.default_rng(0)
    inputs = {n: rng.uniform(-2, 2, (2,) + model.tensors[n].shape[1:]).astype(np.float32) for n in model.inputs}
    names = [n for layer in model.layers for n in layer.outputs]
    a, b = native.run(model, inputs, outputs=names), ref.run(model, inputs, outputs=names)
    for n in names:
        if b[n].dtype.kind == "f":
            np.testing.assert_allclose(a[n], b[n], rtol=1e-5, atol=1e-6, err_msg=n)
        else:
            assert np.array_equal(a[n], b[n]), n

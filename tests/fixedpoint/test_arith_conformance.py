"""The checked-in conformance vectors: the reference reproduces them, and the generator is deterministic."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from dfxsdk import load

from tests.support.paths import CONFORMANCE

CONF = CONFORMANCE
NAMES = sorted(p.stem for p in CONF.glob("*.dfx"))


def check_outputs(got: dict, want: dict, where: str) -> None:
    for key, expected in want.items():
        actual = got[key]
        if expected.dtype.kind == "i":
            assert actual.dtype.kind == "i", f"{where} {key}: integer output expected"
            assert np.array_equal(actual, expected), f"{where} {key}: codes differ"
        else:
            np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6, err_msg=f"{where} {key}")


def test_vectors_exist():
    assert len(NAMES) >= 30


@pytest.mark.parametrize("name", NAMES)
def test_reference_reproduces_vector(name):
    model = load(CONF / f"{name}.dfx")
    with np.load(CONF / f"{name}.npz") as z:
        feeds = {k[3:]: z[k] for k in z.files if k.startswith("in/")}
        want = {k[4:]: z[k] for k in z.files if k.startswith("out/")}
    assert set(want) == set(model.outputs)
    check_outputs(model.run(feeds, backend="numpy"), want, name)


def test_generator_is_deterministic(tmp_path):
    spec = importlib.util.spec_from_file_location("conformance_generate", CONF / "generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    names = gen.generate(tmp_path)
    assert sorted(names) == NAMES
    for name in names:
        assert (tmp_path / f"{name}.dfx").read_bytes() == (CONF / f"{name}.dfx").read_bytes(), name
        with np.load(tmp_path / f"{name}.npz") as new, np.load(CONF / f"{name}.npz") as old:
            assert sorted(new.files) == sorted(old.files)
            for k in old.files:
                if old[k].dtype.kind == "f" and k.startswith("out/"):
                    np.testing.assert_allclose(new[k], old[k], rtol=1e-6, atol=1e-7, err_msg=f"{name} {k}")
                else:
                    assert old[k].dtype == new[k].dtype and np.array_equal(old[k], new[k]), f"{name} {k}"

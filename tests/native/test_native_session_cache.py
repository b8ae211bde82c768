"""The native backend keeps the sessions of several models open (a bounded LRU cache)."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from dfxsdk.errors import DfxInputError

from tests.support.format_models import small_model


def _models():
    return [small_model(weight_bytes=w, seed=i) for i, w in enumerate((1024, 2048, 4096))]


def _inputs(model, batch: int, seed: int) -> dict[str, np.ndarray]:
    x = model.inputs[0]
    shape = (batch,) + tuple(model.tensors[x].shape[1:])
    return {x: np.random.default_rng(seed).uniform(-4, 4, shape).astype(np.float32)}


def _check(backend, model, batch: int, seed: int) -> None:
    from dfxsdk.plugins import get_manager

    feed = _inputs(model, batch, seed)
    got = backend.run(model, feed)
    want = get_manager().backend("numpy").run(model, feed)
    for name in model.outputs:
        assert np.array_equal(got[name], want[name]), name


def test_alternating_three_models_reuses_their_sessions(native):
    backend = type(native)()
    models = _models()
    for rnd in range(4):
        for i, m in enumerate(models):
            _check(backend, m, 1, seed=10 * rnd + i)
    assert backend.models_opened == 3
    assert backend.sessions_created == 3
    assert backend.open_sessions() == 3
    _check(backend, models[1], 3, seed=99)       # a new batch size is a new session of the same model
    assert (backend.models_opened, backend.sessions_created) == (3, 4)


def test_cache_is_bounded_least_recently_used_out(native):
    backend = type(native)(max_sessions=2)
    a, b, c = _models()
    for m in (b, a, b, a):
        _check(backend, m, 1, seed=1)
    assert backend.sessions_created == 2
    _check(backend, c, 1, seed=2)                # evicts b (least recently used), keeps a
    _check(backend, a, 1, seed=3)
    assert backend.sessions_created == 3 and backend.open_sessions() == 2
    _check(backend, b, 1, seed=4)                # b was closed with its last session: opened again
    assert backend.sessions_created == 4 and backend.models_opened == 4
    assert backend.open_sessions() == 2


def test_sessions_are_released_with_the_model(native):
    backend = type(native)()
    models = _models()
    for m in models:
        backend.run(m, _inputs(m, 1, 5))         # no reference run here: it would keep the model alive
    assert backend.open_sessions() == 3
    del m
    models.pop()
    gc.collect()
    assert backend.open_sessions() == 2
    models.clear()
    gc.collect()
    assert backend.open_sessions() == 0


def test_cache_size_from_the_environment(native, monkeypatch):
    monkeypatch.setenv("DFX_NATIVE_SESSIONS", "5")
    assert type(native)().max_sessions == 5
    assert type(native)(max_sessions=3).max_sessions == 3
    with pytest.raises(DfxInputError):
        type(native)(max_sessions=0)

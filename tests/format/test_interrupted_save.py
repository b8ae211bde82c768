"""An interrupted save never damages the file it replaces (spec/format.md, "Writing")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import dfxsdk
import dfxsdk.io

from tests.support.format_models import small_model
from tests.support.paths import TESTS

# The child builds ~200 MB of int8 weights and saves them over TARGET. Its
# writes are paced (1 MB chunks, 2 ms apart) so that the parent reliably
# catches it in the middle of the data section; the save code itself is real.
CHILD = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import dfxsdk, dfxsdk.io
    from dfxsdk import DataType, Layer, Model, QFormat, Tensor, ops

    target = sys.argv[1]
    m = Model(name="big")
    m.add_tensor(Tensor("x", (1, 4096)))
    m.add_tensor(Tensor("xq", (1, 4096), DataType.INT8, QFormat(8, 4)))
    block = (np.arange(4096 * 12800, dtype=np.int64) % 251 - 125).astype(np.int8)
    m.add_layer(Layer("quant", ops.Requantize(), ["x"], ["xq"]))
    for i in range(4):  # 4 x 50 MB
        m.add_tensor(Tensor(f"w{i}", (12800, 4096), DataType.INT8, QFormat(8, 7),
                            _data=block.reshape(12800, 4096)))
        m.add_tensor(Tensor(f"y{i}", (1, 12800), DataType.INT8, QFormat(8, 2)))
        m.add_layer(Layer(f"fc{i}", ops.FullyConnected(), ["xq", f"w{i}"], [f"y{i}"]))
    m.inputs, m.outputs = ["x"], [f"y{i}" for i in range(4)]

    real_fdopen = os.fdopen

    class Paced:
        def __init__(self, f):
            self.f = f
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return self.f.__exit__(*exc)
        def write(self, b):
            time.sleep(0.002)
            return self.f.write(b)
        def __getattr__(self, name):
            return getattr(self.f, name)

    dfxsdk.io._CHUNK = 1 << 20
    dfxsdk.io.os.fdopen = lambda *a, **k: Paced(real_fdopen(*a, **k))
    print("saving", flush=True)
    dfxsdk.save(m, target)
    print("done", flush=True)
""")


def _temp_files(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f".{name}.*.tmp"))


def test_sigkill_during_save_leaves_old_file_intact(tmp_path):
    if sys.platform == "win32":
        pytest.skip("SIGKILL is POSIX")
    target = tmp_path / "model.dfx"
    old = small_model()
    dfxsdk.save(old, target)
    old_bytes = target.read_bytes()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    child = subprocess.Popen([sys.executable, str(script), str(target)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killed_at = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            temps = _temp_files(tmp_path, target.name)
            if temps:
                try:
                    size = temps[0].stat().st_size
                except FileNotFoundError:
                    size = 0
                if size >= 50 << 20:  # well inside the data section
                    child.send_signal(signal.SIGKILL)
                    killed_at = size
                    break
            time.sleep(0.002)
    finally:
        if child.poll() is None and killed_at is None:
            child.kill()
        out, err = child.communicate(timeout=60)
    assert killed_at is not None, f"never caught the save in progress: {out!r} {err!r}"
    assert child.returncode == -signal.SIGKILL
    assert b"done" not in out
    # The old file is untouched and still loads; the half-written temp file is
    # left behind (nothing can remove it after SIGKILL) under a name no reader uses.
    assert target.read_bytes() == old_bytes
    assert dfxsdk.load(target, verify_checksums=True) == old
    leftovers = _temp_files(tmp_path, target.name)
    assert len(leftovers) == 1 and leftovers[0].stat().st_size < 200 << 20
    # A later save succeeds regardless of the leftover.
    dfxsdk.save(small_model(seed=1), target)
    assert dfxsdk.load(target) == small_model(seed=1)


@pytest.mark.parametrize("exc_type", [OSError, KeyboardInterrupt])
def test_exception_during_data_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch, exc_type):
    target = tmp_path / "model.dfx"
    old = small_model()
    dfxsdk.save(old, target)
    old_bytes = target.read_bytes()
    calls = []
    real_memoryview = memoryview

    def failing_memoryview(obj):  # io.save wraps each tensor's bytes before writing them
        calls.append(1)
        if len(calls) == 2:  # the first tensor is written, the second fails
            raise exc_type(28, "No space left on device") if exc_type is OSError else exc_type()
        return real_memoryview(obj)

    monkeypatch.setattr(dfxsdk.io, "memoryview", failing_memoryview, raising=False)
    with pytest.raises(exc_type):
        dfxsdk.save(small_model(weight_bytes=1 << 20, seed=5), target)
    assert len(calls) == 2
    assert target.read_bytes() == old_bytes
    assert dfxsdk.load(target, verify_checksums=True) == old
    assert _temp_files(tmp_path, target.name) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.dfx"]


def test_invalid_model_is_refused_before_touching_the_file(tmp_path):
    target = tmp_path / "model.dfx"
    dfxsdk.save(small_model(), target)
    old_bytes = target.read_bytes()
    bad = small_model()
    bad.layers[1].inputs = ["xq", "missing"]
    with pytest.raises(dfxsdk.DfxFormatError):
        dfxsdk.save(bad, target)
    assert target.read_bytes() == old_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.dfx"]

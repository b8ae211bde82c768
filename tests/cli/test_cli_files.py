"""Files around the CLI: non-regular inputs and outputs, symlinks, modes, stale temporary files,
and every bad file giving exit 2 with a message that names it (issue 20, issue 16 item 6)."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import dfxsdk
from dfxsdk import ops

from tests.support.builder import Builder, fmt
from tests.support.cli import cli
from tests.support.testdata import LENET, needs_testdata

#: A hang guard for commands that must not block on a FIFO (not a speed requirement).
HANG_GUARD = 120


@pytest.fixture
def model(tmp_path):
    b = Builder("files")
    x = b.input((1, 2, 3, 3), fmt(8, 4))
    y = b.add(ops.Relu(), [x], out_q=fmt(8, 4))
    path = tmp_path / "m.dfx"
    dfxsdk.save(b.output(y), path)
    return path


@pytest.fixture
def float_model(tmp_path):
    b = Builder("float")
    x = b.input((1, 4))
    w = b.const(np.eye(3, 4, dtype=np.float32))
    y = b.add(ops.FullyConnected(axis=1), [x, w])
    path = tmp_path / "f.dfx"
    dfxsdk.save(b.output(y), path)
    return path


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((2, 2, 3, 3), np.float32))
    return path


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _dfxsdk(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dfxsdk", *map(str, args)], capture_output=True, text=True,
                          timeout=HANG_GUARD)


def _fifo(path):
    os.mkfifo(path)
    return path


# -- inputs that are not regular files ------------------------------------------------------------

def test_inspect_of_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = _fifo(tmp_path / "m.dfx")
    r = _dfxsdk("inspect", fifo)
    assert r.returncode == 2 and "is a FIFO" in r.stderr and str(fifo) in r.stderr, r.stderr


def test_run_input_fifo_is_named_as_such(model, tmp_path):
    fifo = _fifo(tmp_path / "in.npy")
    r = _dfxsdk("run", model, "-i", fifo, "-o", tmp_path / "o.npz")
    assert r.returncode == 2 and "is a FIFO" in r.stderr and "no such file" not in r.stderr, r.stderr


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_inspect_of_a_device_says_what_it_is():
    code, _, err = cli("inspect", "/dev/zero")
    assert code == 2 and "character device" in err and "empty" not in err, err


def test_c_library_refuses_a_fifo_without_blocking(native, tmp_path):
    fifo = _fifo(tmp_path / "m.dfx")
    code = ("import ctypes, sys\nfrom dfx_native import _lib\nlib = _lib.load()\nm = ctypes.c_void_p()\n"
            f"st = lib.dfx_model_open_file({str(fifo).encode()!r}, 0, ctypes.byref(m))\n"
            "print(st, lib.dfx_last_error().decode())\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD,
                       env=dict(os.environ))
    status, _, msg = r.stdout.partition(" ")
    assert int(status) != 0 and "not a regular file" in msg, r.stdout + r.stderr


# -- outputs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_output_that_is_not_a_regular_file_is_left_alone(model, data, tmp_path, kind):
    if kind == "fifo":
        out = _fifo(tmp_path / "o.npz")
    elif kind == "device":
        out = "/dev/null"
        if not os.path.exists(out):
            pytest.skip("no /dev/null")
    else:
        out = tmp_path / "o.npz"
        out.mkdir()
    before = os.stat(out).st_mode
    code, _, err = cli("run", model, "-i", data, "-o", out)
    assert code == 2 and "not a regular file" in err and str(out) in err, err
    assert os.stat(out).st_mode == before


def test_symlinked_output_updates_the_target(model, data, tmp_path):
    target = tmp_path / "target.npz"
    target.write_bytes(b"old")
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    code, _, err = cli("run", model, "-i", data, "-o", link)
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(target)
    with np.load(target) as z:
        assert z.files


def test_stale_temporary_files_of_a_killed_writer_are_removed(model, data, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # a process that has ended
    stale = tmp_path / f".o.npz.{dead}.abc123.tmp"
    stale.write_bytes(b"x" * 1000)
    other = tmp_path / f".other.npz.{dead}.abc123.tmp"  # another target's: left alone
    other.write_bytes(b"x")
    mine = tmp_path / f".o.npz.{os.getpid()}.abc123.tmp"  # a live writer's: left alone
    mine.write_bytes(b"x")
    code, _, err = cli("run", model, "-i", data, "-o", tmp_path / "o.npz")
    assert code == 0, err
    assert not stale.exists() and other.exists() and mine.exists()


def test_output_folder_missing_or_unwritable(model, data, tmp_path, monkeypatch):
    code, _, err = cli("run", model, "-i", data, "-o", tmp_path / "missing" / "o.npz")
    assert code == 2 and "does not exist" in err, err

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)  # as root, chmod cannot make a folder unwritable
    code, _, err = cli("run", model, "-i", data, "-o", tmp_path / "o.npz")
    assert code == 2 and "permission denied" in err and "o.npz" in err, err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_output_into_a_read_only_folder(model, data, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    code, _, err = cli("run", model, "-i", data, "-o", ro / "o.npz")
    assert code == 2 and "permission denied" in err, err


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_outputs_get_the_umask_mode(model, float_model, data, tmp_path, umask022):
    code, _, err = cli("run", model, "-i", data, "-o", tmp_path / "o.npz")
    assert code == 0, err
    assert _mode(tmp_path / "o.npz") == 0o644
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).uniform(-1, 1, (8, 4)).astype(np.float32))
    code, _, err = cli("quantize", float_model, "--calib", calib, "--bw", 8, "--no-progress", "-o", tmp_path / "q.dfx")
    assert code == 0, err
    assert _mode(tmp_path / "q.dfx") == 0o644
    code, _, err = cli("compile", model, "--output", tmp_path / "c")
    assert code == 0, err
    for p in [tmp_path / "c", *(tmp_path / "c").rglob("*")]:
        assert _mode(p) == (0o755 if p.is_dir() else 0o644), p


@needs_testdata(LENET)
def test_convert_output_gets_the_umask_mode(tmp_path, umask022):
    out = tmp_path / "lenet.dfx"
    code, _, err = cli("convert", LENET / "lenet.prototxt", LENET / "lenet_iter_10000.caffemodel", "-o", out)
    assert code == 0, err
    assert _mode(out) == 0o644


# -- bad inputs: exit 2 with the file named ---------------------------------------------------------

def test_empty_npy_for_run_and_calib(model, float_model, tmp_path):
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    code, _, err = cli("run", model, "-i", empty, "-o", tmp_path / "o.npz")
    assert code == 2 and "empty.npy" in err and "empty" in err, err
    code, _, err = cli("quantize", float_model, "--calib", empty, "--bw", 8, "--no-progress", "-o", tmp_path / "q.dfx")
    assert code == 2 and "empty.npy" in err, err


def test_convert_into_a_missing_folder(tmp_path):
    proto = tmp_path / "net.prototxt"
    proto.write_text('input: "data"\ninput_shape { dim: 1 dim: 1 dim: 2 dim: 2 }\n'
                     'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n')
    code, _, err = cli("convert", proto, "-o", tmp_path / "missing" / "dir" / "x.dfx")
    assert code == 2 and "missing" in err and "does not exist" in err, err


def test_deeply_nested_prototxt(tmp_path):
    proto = tmp_path / "deep.prototxt"
    proto.write_text("layer {" * 1_000_000 + "}" * 1_000_000)
    code, _, err = cli("convert", proto, "-o", tmp_path / "x.dfx")
    assert code == 2 and "deep.prototxt" in err and "nested" in err, err


def test_prototxt_without_layers_is_refused(tmp_path):
    proto = tmp_path / "empty.prototxt"
    proto.write_text('name: "nothing"\ninput: "data"\ninput_shape { dim: 1 dim: 1 dim: 2 dim: 2 }\n')
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(b"\x0a\x01x")  # NetParameter name "x"
    code, _, err = cli("convert", proto, weights, "-o", tmp_path / "x.dfx")
    assert code == 2 and "no layers" in err, err
    assert not (tmp_path / "x.dfx").exists()


def test_huge_caffemodel_is_refused_before_reading(tmp_path):
    proto = tmp_path / "net.prototxt"
    proto.write_text('input: "data"\ninput_shape { dim: 1 dim: 1 dim: 2 dim: 2 }\n'
                     'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n')
    big = tmp_path / "big.caffemodel"
    with open(big, "wb") as f:  # sparse: takes no disk space
        f.truncate(2**31 + 1)
    code, _, err = cli("convert", proto, big, "-o", tmp_path / "x.dfx")
    assert code == 2 and "big.caffemodel" in err and "larger than" in err, err

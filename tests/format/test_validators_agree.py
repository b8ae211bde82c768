"""One validity: the Python validator and the C verifier give the same verdict on every file.

The files are the conformance vectors, hand-made files at and just past every
integer width bound (spec/arithmetic.md, section 3.4), and a bounded corpus of
structure-aware mutants (kernels/fuzz/dfx_mutate.py; the long run is the
command in its docstring).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import dfxsdk
from dfxsdk import ops

from tests.support.builder import Builder, fmt
from tests.support.paths import CONFORMANCE, KERNELS

sys.path.insert(0, str(KERNELS / "fuzz"))
import dfx_mutate  # noqa: E402

VECTORS = sorted(CONFORMANCE.glob("*.dfx"))
#: Mutants in the bounded run (each checked with and without checksum verification).
MUTANTS = 800


@pytest.fixture(scope="module")
def verdicts(native, tmp_path_factory):
    return dfx_mutate.Verdicts(str(tmp_path_factory.mktemp("verdicts")))


def both(verdicts, blob: bytes, verify: bool = False) -> tuple[tuple[bool, str], tuple[bool, str]]:
    return verdicts.python(blob, verify), verdicts.c(blob, verify)


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_conformance_vectors_are_accepted_by_both(verdicts, path):
    blob = path.read_bytes()
    for verify in (False, True):
        (pa, pm), (ca, cm) = both(verdicts, blob, verify)
        assert pa and ca, (pm, cm)


def test_mutants_get_the_same_verdict(verdicts):
    seeds = [dfx_mutate.Seed.from_bytes(p.name, p.read_bytes()) for p in VECTORS]
    files = list(dfx_mutate.mutants(seeds, MUTANTS, seed=20))
    accepted = 0
    for label, verify, (pa, pm), (ca, cm) in dfx_mutate.compare(files, verdicts):
        assert pa == ca, f"{label} verify={verify}: python {pa} ({pm}), C {ca} ({cm})"
        accepted += pa
    assert len(files) == MUTANTS
    assert 0 < accepted < 2 * MUTANTS  # the corpus holds both accepted and refused files


# -- width bounds: one file exactly at the limit (both accept), one bit past it (both refuse) --

def _eltwise(operation: int, bw: int, fls: tuple[int, int]) -> dfxsdk.Model:
    b = Builder("eltwise")
    x = b.input((1, 2, 2, 2), fmt(bw, fls[0]))
    y = b.input((1, 2, 2, 2), fmt(bw, fls[1]))
    b.add(ops.Eltwise(operation=operation), [x, y], out_q=fmt(8, 0))
    return b.output()


def _prelu(bw: int, fl_x: int, fl_s: int) -> dfxsdk.Model:
    b = Builder("prelu")
    x = b.input((1, 2, 2, 2), fmt(bw, fl_x))
    s = b.const(np.array([1, -1], np.int8), fmt(8, fl_s))
    b.add(ops.PRelu(), [x, s], out_q=fmt(8, 0))
    return b.output()


def _scale(fl_s: int, fl_b: int) -> dfxsdk.Model:
    b = Builder("scale")
    x = b.input((1, 2, 2, 2), fmt(32, 0))
    s = b.const(np.array([3, -3], np.int8), fmt(8, fl_s))
    c = b.const(np.array([1, 2], np.int32), fmt(32, fl_b))
    b.add(ops.Scale(axis=1, num_axes=1), [x, s, c], out_q=fmt(8, 0))
    return b.output()


def _pool(bw: int, h: int, w: int) -> dfxsdk.Model:
    b = Builder("pool")
    x = b.input((1, 1, h, w), fmt(bw, 0))
    b.add(ops.Pool2D(type=ops.POOL_AVERAGE, global_=True, kernel_h=1, kernel_w=1), [x], out_q=fmt(8, 0))
    return b.output()


# (name, model at the bound B = 62, model past it): B from the formulas of bounds.py
BOUNDS = [
    ("eltwise_sum", _eltwise(ops.ELTWISE_SUM, 32, (0, 27)), _eltwise(ops.ELTWISE_SUM, 32, (0, 28))),
    ("eltwise_max", _eltwise(ops.ELTWISE_MAX, 32, (0, 29)), _eltwise(ops.ELTWISE_MAX, 32, (0, 30))),
    ("eltwise_prod", _eltwise(ops.ELTWISE_PROD, 31, (0, 0)), _eltwise(ops.ELTWISE_PROD, 32, (0, 0))),
    ("prelu_pos", _prelu(32, 0, 29), _prelu(32, 0, 30)),
    ("prelu_neg", _prelu(32, 0, -22), _prelu(32, 0, -23)),
    ("scale_bias", _scale(0, 21), _scale(0, 22)),
    ("pool_average", _pool(32, 2**14, 2**15), _pool(32, 2**15, 2**15)),
]


@pytest.mark.parametrize("name,ok,bad", BOUNDS, ids=[c[0] for c in BOUNDS])
def test_width_bounds_agree(verdicts, tmp_path, name, ok, bad):
    from dfxsdk.validate import integer_bits

    assert integer_bits(ok, ok.layers[0]) == 62
    path = tmp_path / "ok.dfx"
    dfxsdk.save(ok, path)
    (pa, pm), (ca, cm) = both(verdicts, path.read_bytes())
    assert pa and ca, (pm, cm)
    # the invalid file: written by editing the valid one's formats (save refuses it)
    need = integer_bits(bad, bad.layers[0])
    assert need > 62
    seed = dfx_mutate.Seed.from_bytes(name, path.read_bytes())
    m = seed.model()
    for t, want in zip(m.tensors, bad.tensors.values()):
        t.quantization.bw, t.quantization.fl = want.qformat.bw, want.qformat.fl
        t.shape = list(want.shape)
    (pa, pm), (ca, cm) = both(verdicts, dfx_mutate.assemble(m, seed.data))
    assert not pa and not ca
    for msg in (pm, cm):
        assert f"accumulator may need {need} bits" in msg and "quantization" in msg, msg


# -- run-time refusals that depend only on the file are load-time refusals in both ---------------

def _layer_of(m, op_type: int):
    return next(layer for layer in m.layers if layer.opType == op_type)


def _set_op(op_type: int, **fields):
    def edit(m):
        for name, value in fields.items():
            setattr(_layer_of(m, op_type).op, name, value)
    return edit


def _image_rank_2(m):
    prior = _layer_of(m, 23)
    m.tensors[prior.inputs[1]].shape = [1, 3]


def _concat_65_inputs(m):
    concat = _layer_of(m, 11)
    concat.inputs = [concat.inputs[0]] * 65


def _inputs_with_two_batches(m):
    shape = [int(d) for d in m.tensors[m.inputs[1]].shape]
    m.tensors[m.inputs[1]].shape = [shape[0] + 1] + shape[1:]


LOAD_TIME = [
    ("scale_bias", "scale_num_axes", _set_op(14, numAxes=-181969003), "num_axes"),
    ("ssd_head", "priorbox_max_sizes", _set_op(23, maxSizes=[-1.0] * 3), "max_sizes"),
    ("ssd_head", "priorbox_aspect_ratio", _set_op(23, aspectRatios=[-2.0]), "aspect_ratios"),
    ("ssd_head", "priorbox_image_rank", _image_rank_2, "image"),
    ("concat_mixed_fl", "concat_65_inputs", _concat_65_inputs, "at most 64"),
    ("concat_mixed_fl", "input_batches", _inputs_with_two_batches, "batch"),
]


@pytest.mark.parametrize("stem,name,edit,needle", LOAD_TIME, ids=[c[1] for c in LOAD_TIME])
def test_file_only_refusals_happen_at_load_in_both(verdicts, stem, name, edit, needle):
    seed = dfx_mutate.Seed.from_bytes(stem, (CONFORMANCE / f"{stem}.dfx").read_bytes())
    m = seed.model()
    edit(m)
    (pa, pm), (ca, cm) = both(verdicts, dfx_mutate.assemble(m, seed.data))
    assert not pa and not ca, (pm, cm)
    assert needle in pm and needle in cm, (pm, cm)

"""Structure-aware mutation of .dfx files, and the verdicts of both loaders on them.

A mutant is made from a valid seed file by decoding its graph into the
FlatBuffers object API, editing it semantically (tensor shapes, types, bw, fl,
per-channel fl, data references; layer inputs, outputs, operator type, option
scalars and vectors, version; graph inputs and outputs; preprocessing), packing
it again and, in some mutants, flipping raw bytes of the packed graph (offsets,
vtables, vector lengths). Every CRC is then recomputed (header, graph, each
tensor's data reference that lies in the data section) so that the mutant
reaches the semantic checks and the kernels instead of a checksum error.

Used by tests/test_fuzz_structured.py (a bounded run) and, for a long run::

    .venv/bin/python kernels/fuzz/dfx_mutate.py --mutants 20000 --seed 1 spec/conformance/*.dfx

which prints the mutant count, the accept rate of each loader and every
disagreement between the Python validator and the C verifier (exit 1 if any).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import random
import struct
import sys
import tempfile
import zlib
from collections import Counter
from dataclasses import dataclass

import flatbuffers
import numpy as np

import dfxsdk
from dfxsdk._generated import dfx_generated as fb
from dfxsdk.container import HEADER_SIZE, Header, unpack_header
from dfxsdk.errors import DfxError
from dfxsdk.fixedpoint import align_up

#: Values that sit on or next to the edges of the format's ranges.
EDGE_INTS = [0, 1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 62, 63, 64, 65, -1, -2, -63, -64, -65, 127, -128]
EDGE_FLS = [-64, -63, -62, -40, -33, -32, -31, -17, -16, -15, -8, -1, 0, 1, 7, 8, 15, 16, 31, 32, 33, 40, 62, 63,
            64, 65, -65, 127, -128]
EDGE_BWS = [0, 1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 255]
EDGE_DIMS = [0, 1, 2, 3, 4, 5, 7, 8, 16, 64, 65, 1000, -1, 2**31 - 1, -(2**31)]
EDGE_FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 1e-7, 1e30, -1e30, float("inf"), float("-inf"), float("nan"),
               3.0, 0.25, 1.0 / 3.0, 65536.0]
INT32 = (-(2**31), 2**31 - 1)


@dataclass
class Seed:
    """A decoded seed file: its graph objects and its data section."""

    name: str
    graph: bytes
    data: bytes

    @classmethod
    def from_bytes(cls, name: str, blob: bytes) -> "Seed":
        h = unpack_header(blob, len(blob), name)
        return cls(name, blob[h.graph_offset:h.graph_offset + h.graph_length],
                   blob[h.data_offset:h.data_offset + h.data_length])

    def model(self) -> "fb.ModelT":
        return fb.ModelT.InitFromPackedBuf(self.graph, 0)


def assemble(model: "fb.ModelT", data: bytes, raw_edits: list[tuple[int, int]] = ()) -> bytes:
    """Pack ``model``, apply raw byte edits to the graph, recompute every CRC, build the file."""
    for t in model.tensors or []:
        d = t.data
        if d is not None and 0 <= d.offset <= d.offset + d.length <= len(data):
            d.crc32 = zlib.crc32(data[d.offset:d.offset + d.length])
    builder = flatbuffers.Builder(1024)
    builder.ForceDefaults(True)
    builder.Finish(model.Pack(builder), file_identifier=b"DFXG")
    graph = bytearray(builder.Output())
    for pos, value in raw_edits:
        if graph:
            graph[pos % len(graph)] = value & 0xFF
    data_offset = align_up(HEADER_SIZE + len(graph))
    header = Header(1, 0, HEADER_SIZE, len(graph), data_offset, len(data), zlib.crc32(bytes(graph)))
    return header.pack() + bytes(graph) + b"\0" * (data_offset - HEADER_SIZE - len(graph)) + data


# -- semantic edits ----------------------------------------------------------------------------

def _pick(rng: random.Random, seq):
    return seq[rng.randrange(len(seq))] if seq else None


def _edit_int(rng: random.Random, v: int, edges=EDGE_INTS) -> int:
    r = rng.random()
    if r < 0.5:
        return _pick(rng, edges)
    if r < 0.8:
        return v + rng.choice((-1, 1))
    return v * rng.choice((2, -1, 0))


def _quant(rng: random.Random, t: "fb.TensorT") -> None:
    q = t.quantization
    if q is None:
        q = t.quantization = fb.QuantizationT(bw=8, fl=0)
        return
    what = rng.randrange(7)
    if what == 0:
        q.bw = _pick(rng, EDGE_BWS)
    elif what == 1:
        q.fl = _pick(rng, EDGE_FLS)
    elif what == 2:
        q.rounding = rng.randrange(5)
    elif what == 3:
        q.channelAxis = _edit_int(rng, q.channelAxis)
    elif what == 4:  # per-channel fl: set, change one entry, change the length or drop it
        n = (t.shape[q.channelAxis] if t.shape is not None and 0 <= q.channelAxis < len(t.shape) else 1)
        cur = list(q.channelFl) if q.channelFl is not None else [q.fl] * max(0, min(int(n), 4096))
        sub = rng.randrange(4)
        if sub == 0 and cur:
            cur[rng.randrange(len(cur))] = _pick(rng, EDGE_FLS)
        elif sub == 1:
            cur = cur[:-1] if cur and rng.random() < 0.5 else cur + [0]
        elif sub == 2:
            cur = [_pick(rng, EDGE_FLS)] * len(cur)
        else:
            cur = None
        q.channelFl = None if cur is None else np.array([v for v in cur if -128 <= v <= 127], np.int8)
    elif what == 5:
        t.quantization = None
    else:
        q.bw, q.fl = _pick(rng, EDGE_BWS), _pick(rng, EDGE_FLS)


def _tensor(rng: random.Random, m: "fb.ModelT") -> None:
    t = _pick(rng, m.tensors)
    if t is None:
        return
    what = rng.randrange(6)
    if what == 0 and t.shape is not None and len(t.shape):
        shape = list(t.shape)
        i = rng.randrange(len(shape))
        shape[i] = _edit_int(rng, int(shape[i]), EDGE_DIMS)
        t.shape = [min(max(v, INT32[0]), INT32[1]) for v in shape]
    elif what == 1:
        shape = list(t.shape) if t.shape is not None else []
        t.shape = shape[:-1] if shape and rng.random() < 0.5 else shape + [_pick(rng, [1, 2, 3])]
    elif what == 2:
        t.type = rng.randrange(7)
    elif what == 3 and t.data is not None:
        d = t.data
        if rng.random() < 0.5:
            d.offset = max(0, _edit_int(rng, d.offset, [0, 64, 128, d.offset + 64]))
        else:
            d.length = max(0, _edit_int(rng, d.length, [0, 1, d.length // 2, d.length + 1]))
    else:
        _quant(rng, t)


def _indices(rng: random.Random, vec, n_tensors: int):
    vec = list(vec) if vec is not None else []
    r = rng.randrange(5)
    new = rng.choice([-1, n_tensors, rng.randrange(max(1, n_tensors))])
    if r == 0 and vec:
        vec[rng.randrange(len(vec))] = new
    elif r == 1:
        vec.append(new)
    elif r == 2 and vec:
        vec.pop(rng.randrange(len(vec)))
    elif r == 3 and vec:
        vec = vec + [vec[0]] * rng.choice((1, 63, 64))
    else:
        rng.shuffle(vec)
    return vec


def _option(rng: random.Random, op) -> None:
    names = [k for k, v in vars(op).items() if v is not None]
    name = _pick(rng, names)
    if name is None:
        return
    v = getattr(op, name)
    if isinstance(v, bool):
        setattr(op, name, not v)
    elif isinstance(v, int):
        lo, hi = (-(2**31), 2**31 - 1)
        setattr(op, name, min(max(_edit_int(rng, v, EDGE_INTS + [lo, hi, 1 << 20]), lo), hi))
    elif isinstance(v, float):
        setattr(op, name, _pick(rng, EDGE_FLOATS + [v * 2, -v]))
    elif isinstance(v, (list, np.ndarray)):
        vals = list(v)
        r = rng.randrange(4)
        if r == 0 and vals:
            i = rng.randrange(len(vals))
            vals[i] = (_pick(rng, EDGE_FLOATS) if isinstance(vals[i], float)
                       else _edit_int(rng, int(vals[i])))
        elif r == 1 and vals:
            vals.pop()
        elif r == 2:
            vals.append(vals[-1] if vals else 1)
        else:
            vals = vals * rng.choice((2, 40))
        if isinstance(v, np.ndarray):
            vals = np.array(vals, dtype=v.dtype) if v.dtype.kind == "f" else np.array(
                [min(max(int(x), np.iinfo(v.dtype).min), np.iinfo(v.dtype).max) for x in vals], v.dtype)
        elif vals and isinstance(vals[0], int):
            vals = [min(max(x, -(2**31)), 2**31 - 1) for x in vals]
        setattr(op, name, vals)


def _layer(rng: random.Random, m: "fb.ModelT") -> None:
    layer = _pick(rng, m.layers)
    if layer is None:
        return
    n = len(m.tensors or [])
    what = rng.randrange(8)
    if what < 2:
        field = ("inputs", "outputs")[what]
        setattr(layer, field, _indices(rng, getattr(layer, field), n))
    elif what == 2:
        layer.opType = rng.randrange(28)
    elif what == 3:
        layer.version = rng.choice((0, 2, 255))
    elif what == 4 and len(m.layers) > 1:
        i, j = rng.randrange(len(m.layers)), rng.randrange(len(m.layers))
        m.layers[i], m.layers[j] = m.layers[j], m.layers[i]
    else:
        if layer.op is not None:
            _option(rng, layer.op)


def _model(rng: random.Random, m: "fb.ModelT") -> None:
    n = len(m.tensors or [])
    r = rng.randrange(4)
    if r < 2:
        field = ("inputs", "outputs")[r]
        setattr(m, field, _indices(rng, getattr(m, field), n))
    elif r == 2 and m.preprocessing:
        p = m.preprocessing[0]
        p.input = rng.choice([-1, 0, n, p.input])
        p.mean = list(p.mean or []) + [1.0]
    else:
        m.layers = (m.layers or [])[:-1]


def mutate(seed: Seed, rng: random.Random) -> bytes:
    """One mutant of ``seed``: 1..3 semantic edits, sometimes raw graph byte edits; CRCs recomputed."""
    m = seed.model()
    for _ in range(rng.randint(1, 3)):
        r = rng.random()
        if r < 0.45:
            _tensor(rng, m)
        elif r < 0.85:
            _layer(rng, m)
        else:
            _model(rng, m)
    raw = [(rng.randrange(1 << 30), rng.randrange(256)) for _ in range(rng.randint(1, 4))] \
        if rng.random() < 0.15 else []
    return assemble(m, seed.data, raw)


# -- format sweep ----------------------------------------------------------------------------------

def sweep(seed: Seed, fls=range(-64, 65, 8), bws=(1, 2, 4, 8, 16, 24, 32)):
    """Yield (label, file) for seed variants with one tensor's fl, bw or channel_fl set across its range."""
    base = seed.model()
    for ti, t in enumerate(base.tensors or []):
        q = t.quantization
        if q is None:
            continue
        limit = {1: 8, 2: 16, 3: 32, 4: 4, 5: 2}.get(t.type, 32)
        for fl in fls:
            m = seed.model()
            mq = m.tensors[ti].quantization
            if mq.channelFl is not None and len(mq.channelFl):
                cfl = np.array(mq.channelFl, np.int8)
                cfl[len(cfl) // 2] = fl
                mq.channelFl = cfl
                yield f"{t.name.decode() if isinstance(t.name, bytes) else t.name}.channel_fl[mid]={fl}", \
                    assemble(m, seed.data)
                m = seed.model()
                mq = m.tensors[ti].quantization
                mq.channelFl = np.full(len(mq.channelFl), fl, np.int8)
            else:
                mq.fl = fl
            yield f"{_name(t)}.fl={fl}", assemble(m, seed.data)
        if t.data is None:  # constants keep the bw their stored values need
            for bw in bws:
                if bw <= limit:
                    m = seed.model()
                    m.tensors[ti].quantization.bw = bw
                    yield f"{_name(t)}.bw={bw}", assemble(m, seed.data)


def _name(t) -> str:
    return t.name.decode() if isinstance(t.name, bytes) else str(t.name)


# -- verdicts ------------------------------------------------------------------------------------

class Verdicts:
    """Both loaders' verdicts on a file: the Python validator and the C verifier."""

    def __init__(self, workdir: str) -> None:
        from dfx_native import _lib  # noqa: PLC0415

        self.lib = _lib.load()
        self.path = os.path.join(workdir, "mutant.dfx")

    def python(self, blob: bytes, verify: bool) -> tuple[bool, str]:
        with open(self.path, "wb") as f:
            f.write(blob)
        try:
            dfxsdk.load(self.path, verify_checksums=verify)
        except DfxError as exc:
            return False, str(exc)
        return True, ""

    def c(self, blob: bytes, verify: bool) -> tuple[bool, str]:
        raw = np.zeros(len(blob) + 64, np.uint8)  # the library uses weights in place: 64-byte aligned
        start = -raw.ctypes.data % 64
        raw[start:start + len(blob)] = np.frombuffer(blob, np.uint8)
        handle = ctypes.c_void_p()
        st = self.lib.dfx_model_open_buffer(raw.ctypes.data + start, len(blob), 1 if verify else 0,
                                            ctypes.byref(handle))
        if st == 0:
            self.lib.dfx_model_close(handle)
            return True, ""
        return False, (self.lib.dfx_last_error() or b"").decode(errors="replace")


def compare(files, verdicts: Verdicts, verify_modes=(False, True)):
    """Yield (label, verify, python verdict, C verdict) for every file and mode."""
    for label, blob in files:
        for verify in verify_modes:
            yield label, verify, verdicts.python(blob, verify), verdicts.c(blob, verify)


def mutants(seeds: list[Seed], count: int, seed: int):
    """``count`` mutants, round robin over ``seeds``, reproducible from ``seed``."""
    rng = random.Random(seed)
    made = 0
    while made < count:
        s = seeds[made % len(seeds)]
        try:
            blob = mutate(s, rng)
        except (struct.error, ValueError, OverflowError, TypeError, AttributeError, IndexError, KeyError):
            continue  # the edit does not fit the field's type: not a file
        made += 1
        yield f"{s.name}#{made}", blob


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", help="seed .dfx files")
    ap.add_argument("--mutants", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sweep", action="store_true", help="also sweep fl/bw/channel_fl of every tensor")
    args = ap.parse_args(argv)
    seeds = [Seed.from_bytes(os.path.basename(p), open(p, "rb").read()) for p in args.files]
    with tempfile.TemporaryDirectory() as tmp:
        v = Verdicts(tmp)
        stats: Counter = Counter()
        bad = 0
        files = list(mutants(seeds, args.mutants, args.seed))
        if args.sweep:
            files += [(f"{s.name}:{label}", blob) for s in seeds for label, blob in sweep(s)]
        for label, verify, (pa, pm), (ca, cm) in compare(files, v):
            stats[(verify, pa, ca)] += 1
            if pa != ca:
                bad += 1
                print(f"DISAGREE {label} verify={verify}: python {'accepts' if pa else 'refuses: ' + pm}; "
                      f"C {'accepts' if ca else 'refuses: ' + cm}")
    total = len(files)
    for verify in (False, True):
        acc = stats[(verify, True, True)]
        print(f"verify={verify}: {total} files, both accept {acc} ({100 * acc / max(1, total):.1f} %), "
              f"both refuse {stats[(verify, False, False)]}, disagreements "
              f"{stats[(verify, True, False)] + stats[(verify, False, True)]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

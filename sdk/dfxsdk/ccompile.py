"""``dfxsdk compile``: a .dfx network as standalone C source.

The C library does the work that decides the arithmetic: it opens and verifies
the model, plans the memory and prepares every layer exactly as a session would
(:func:`describe`, through ``dfx_model_describe``). This module only writes
what the library computed down as C:

- the weights as ``static const`` arrays in the stored (packed) layout, and the
  other constant inputs as prepared by the session (int32 codes or float32
  values);
- the tensors, layers and fast-path constants (aligned bias, shifts, blocking)
  as ``static const`` structures of the kernels' own types;
- one ``NAME_run()`` with a call per layer into the library's kernel functions
  (plus the int8 <-> int32 / float conversions the session does around layers
  that do not take narrow codes), every pointer an offset into one static arena
  whose size comes from the planner;
- the library's kernel sources that these calls need, unmodified, under
  ``dfx/``, each compiled through a small wrapper that first includes
  ``NAME_config.h`` (``DFX_COMPILED_MODEL`` and one ``DFX_USE_<KERNEL>`` per
  kernel function called, see kernels/src/kselect.h), so that operators the
  model does not use add no code.

``cc -O2 *.c -lm`` in the output folder builds it; there is no heap, no file
I/O and no other dependency. See "dfxsdk compile" in kernels/README.md.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from . import ctable
from .errors import DfxInputError, DfxUnsupportedError
from .fixedpoint import align_up

TARGETS = ("portable", "neon")
MARKER = ".dfxsdk-compile"

# operator codes (dfx_internal.h, the schema's Op union)
(OP_CONV2D, OP_DECONV2D, OP_FC, OP_POOL2D, OP_RELU, OP_CLIP, OP_PRELU, OP_SIGMOID, OP_TANH, OP_LRN, OP_CONCAT,
 OP_ELTWISE, OP_SOFTMAX, OP_SCALE, OP_POWER, OP_FLATTEN, OP_RESHAPE, OP_PERMUTE, OP_SLICE, OP_PAD, OP_UPSAMPLE,
 OP_NORMALIZE, OP_PRIORBOX, OP_DETECTION_OUTPUT, OP_REQUANTIZE, OP_CUSTOM, OP_EXP, OP_MINIFLOAT) = range(1, 29)

# dfx_dtype
FLOAT32, INT8, INT16, INT32, INT4, INT2 = range(6)
ROUNDING = {0: "round half away from zero", 1: "round half to even", 2: "round half up", 3: "floor"}
CTYPE = {1: "int8_t", 2: "int16_t", 4: "int32_t"}

# the kernel sets: arch/x86 is run-time selected AVX2 code of the portable set, if present
PORTABLE_SET = ["arch/portable/*.c", "arch/x86/*.c"]
NEON_SET = ["arch/neon/*.c"]     # every source of kernels/src/arch/neon, as cmake/simd.cmake builds them


def local_includes(src: Path, rels: list[str]) -> list[str]:
    """Headers (relative to ``src``) that the files ``rels`` include with quotes, recursively."""
    found: set[str] = set()
    todo = list(rels)
    while todo:
        rel = todo.pop()
        text = (src / rel).read_text(errors="replace")
        for inc in re.findall(r'^\s*#\s*include\s+"([^"]+)"', text, re.M):
            h = os.path.normpath(os.path.join(os.path.dirname(rel), inc)).replace(os.sep, "/")
            if h not in found and (src / h).is_file():
                found.add(h)
                todo.append(h)
    return sorted(found)


# -- the library's side ---------------------------------------------------------------------------


def kernel_sources() -> tuple[Path, Path]:
    """(src, include) folders of the C library: shipped in the package, else the source tree."""
    here = Path(__file__).resolve().parent
    for src, inc in ((here / "_kernels" / "src", here / "_kernels" / "include"),
                     (here.parents[1] / "kernels" / "src", here.parents[1] / "kernels" / "include")):
        if (src / "kernels.h").is_file() and (inc / "dfx.h").is_file():
            return src, inc
    raise DfxUnsupportedError("the C kernel sources are not installed with dfxsdk (no dfxsdk/_kernels): "
                              "reinstall dfxsdk from its source tree (pip install .)")


def describe(path: str | os.PathLike, batch: int = 1) -> dict[str, Any]:
    """The C library's plan of ``path`` for a session of ``batch`` samples (dfx_model_describe), as a dict.

    Refuses (with the library's message) every model the library refuses."""
    try:
        from dfx_native import _lib
        from dfx_native.backend import check
    except ImportError as exc:  # pragma: no cover - the native plugin ships with dfxsdk
        raise DfxUnsupportedError(f"dfxsdk compile needs the native library (dfx_native): {exc}") from exc
    try:
        lib = _lib.load()
    except OSError as exc:
        raise DfxUnsupportedError(str(exc)) from exc
    if not hasattr(lib, "dfx_model_describe"):
        raise DfxUnsupportedError("the loaded native library has no dfx_model_describe: rebuild it "
                                  "(pip install dfxsdk again, or update DFX_NATIVE_LIB)")
    fn = lib.dfx_model_describe
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint, ctypes.c_char_p, ctypes.c_size_t,
                   ctypes.POINTER(ctypes.c_size_t)]
    handle = ctypes.c_void_p()
    check(lib, lib.dfx_model_open_file(os.fsencode(path), 1, ctypes.byref(handle)), str(path))
    try:
        n = ctypes.c_size_t()
        check(lib, fn(handle, batch, 0, None, 0, ctypes.byref(n)), str(path))
        buf = ctypes.create_string_buffer(n.value + 1)
        check(lib, fn(handle, batch, 0, buf, n.value + 1, ctypes.byref(n)), str(path))
    finally:
        lib.dfx_model_close(handle)
    return json.loads(buf.raw[:n.value].decode("utf-8", "replace"))


# -- C text helpers -------------------------------------------------------------------------------


def c_string(s: str) -> str:
    out = []
    for b in s.encode("utf-8"):
        c = chr(b)
        if c in '"\\?' or not 32 <= b < 127:
            out.append(f"\\{b:03o}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def c_comment(s: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in s).replace("*/", "* /")


def c_float(v: float) -> str:
    if math.isnan(v):
        return "NAN"
    if math.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    r = repr(float(v))          # round-trips as a double, so the nearest float32 is v again
    if "e" not in r and "." not in r and "inf" not in r:
        r += ".0"
    return (r if len(r) <= 14 else float(v).hex()) + "f"


def c_int(v: int) -> str:
    if -(2 ** 31) < v < 2 ** 31:
        return str(v)
    if v == -(2 ** 63):
        return "(-INT64_C(9223372036854775807) - 1)"
    return f"INT64_C({v})"


def c_array(ctype: str, name: str, values: list[str], *, align: str = "", static: str = "static const") -> str:
    if not values:
        values = ["0"]
    lines, line = [], "   "
    for v in values:
        if len(line) + len(v) + 2 > 110:
            lines.append(line)
            line = "   "
        line += " " + v + ","
    lines.append(line)
    return f"{static} {ctype} {name}[{len(values)}]{align} = {{\n" + "\n".join(lines) + "\n};\n"


def f32(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<I", bits & 0xFFFFFFFF))[0]


def identifier(name: str) -> str:
    s = re.sub(r"\W", "_", name, flags=re.ASCII)
    return s if s and not s[0].isdigit() else "_" + s


# -- constants ------------------------------------------------------------------------------------


def codes_of(t: dict, raw: bytes) -> np.ndarray:
    """Integer codes of a constant (dfx_const_int), int64."""
    n, dt = t["count"], t["dtype"]
    b = np.frombuffer(raw, np.uint8)
    if dt == INT8:
        return b.view(np.int8)[:n].astype(np.int64)
    if dt == INT16:
        return np.frombuffer(raw, "<i2", count=n).astype(np.int64)
    if dt == INT32:
        return np.frombuffer(raw, "<i4", count=n).astype(np.int64)
    if dt == INT4:
        v = np.stack([b & 15, b >> 4], 1).reshape(-1)[:n].astype(np.int64)
        return np.where(v >= 8, v - 16, v)
    if dt == INT2:
        v = np.stack([(b >> s) & 3 for s in (0, 2, 4, 6)], 1).reshape(-1)[:n].astype(np.int64)
        return np.where(v >= 2, v - 4, v)
    raise ValueError(dt)


def fl_per_element(t: dict) -> np.ndarray | int:
    if not t["per_channel"]:
        return t["fl"]
    cfl = np.frombuffer(bytes.fromhex(t["cfl"]), np.int8).astype(np.int64)
    idx = (np.arange(t["count"]) // max(t["ch_inner"], 1)) % t["shape"][t["ch_axis"]]
    return cfl[idx]


def prepared_values(t: dict, raw: bytes, as_int: bool, in_place: bool) -> tuple[str, list[str]]:
    """A constant input as the session prepares it: (C type, literals)."""
    if in_place:       # int32 codes or float32 values used directly (session.c: host_le and the type fits)
        as_int = t["dtype"] == INT32
    if t["dtype"] == FLOAT32:
        vals = np.frombuffer(raw, "<f4", count=t["count"])
        if as_int:     # not reachable: integer layers refuse float constants
            raise DfxUnsupportedError(f"tensor '{t['name']}': a float constant used as integer codes")
        return "float", [c_float(float(v)) for v in vals]
    codes = codes_of(t, raw)
    if as_int:
        return "int32_t", [c_int(int(v)) for v in codes]
    fl = fl_per_element(t)
    vals = (codes.astype(np.float64) * np.exp2(-np.asarray(fl, np.float64))).astype(np.float32)
    return "float", [c_float(float(v)) for v in vals]


# -- the generator --------------------------------------------------------------------------------


@dataclasses.dataclass
class Port:
    """A graph input or output of the compiled entry point."""

    name: str            # tensor name
    cname: str           # C parameter name
    ctype: str           # element type of the buffer: int8_t / int16_t / int32_t / float
    count: int           # elements per call
    shape: list[int]
    quantized: bool
    bw: int
    fl: int
    rounding: int


@dataclasses.dataclass
class CompileResult:
    outdir: Path
    prefix: str
    target: str
    sources: list[str]       # the .c files of outdir
    inputs: list[Port]
    outputs: list[Port]
    arena_bytes: int
    kernels: list[str]       # the DFX_USE_ kernels compiled in


class _Gen:
    def __init__(self, d: dict, blob: bytes, prefix: str, target: str, model_name: str, preprocessing: dict):
        self.d, self.blob, self.p, self.target = d, blob, prefix, target
        self.P = prefix.upper()
        self.model_name = model_name
        self.preprocessing = preprocessing
        self.T = d["tensors"]
        self.uses: set[str] = set()
        self.needs_dispatch = False
        self.decls: list[tuple[str, str]] = []   # static data: (name, C text), emitted if referenced
        self.body: list[str] = []           # NAME_layers() statements
        self.helpers: set[str] = set()
        self.tensor_emitted: set[int] = set()
        self.arena_name = f"{prefix}_arena"
        self.scratch_base = align_up(d["plan_bytes"])
        self.arena_bytes = self.scratch_base + d["scratch_bytes"]

    # tensors ----------------------------------------------------------------------------------
    def tensor(self, i: int, weight: bool = False) -> str:
        name = f"T{i}"
        if i in self.tensor_emitted:
            return name
        self.tensor_emitted.add(i)
        t = self.T[i]
        data = "NULL"
        if weight:
            raw = self.blob[t["file_off"]:t["file_off"] + t["data_len"]]
            if t["dtype"] == INT8:
                vals = [str(v) for v in np.frombuffer(raw, np.int8)]
                self.decl(f"W{i}", c_array("int8_t", f"W{i}", vals, align=f" {self.P}_ALIGN64"))
            else:
                vals = [f"0x{v:02x}" for v in raw]
                self.decl(f"W{i}", c_array("uint8_t", f"W{i}", vals, align=f" {self.P}_ALIGN64"))
            data = f"(const uint8_t *)W{i}"
        cfl = "{NULL, 0}"
        if t["per_channel"]:
            cb = bytes.fromhex(t["cfl"])
            self.decl(f"CFL{i}", c_array("int8_t", f"CFL{i}", [str(v) for v in np.frombuffer(cb, np.int8)]))
            cfl = f"{{(const uint8_t *)CFL{i}, {len(cb)}}}"
        shape = ", ".join(str(s) for s in t["shape"]) or "0"
        fields = [
            f".name = {c_string(t['name'])}", f".rank = {t['rank']}", f".shape = {{{shape}}}",
            f".count = {t['count']}", f".dtype = {t['dtype']}", f".has_q = {t['has_q']}", f".bw = {t['bw']}",
            f".fl = {t['fl']}", f".rounding = {t['rounding']}", f".per_channel = {t['per_channel']}",
            f".ch_axis = {t['ch_axis']}", f".cfl = {cfl}", f".ch_inner = {t['ch_inner']}",
            f".is_const = {t['is_const']}", f".data = {data}", f".data_len = {t['data_len'] if weight else 0}",
            f".producer = {t['producer']}", f".last_use = {t['last_use']}",
            f".is_graph_output = {t['is_graph_output']}",
        ]
        fmt = f"bw {t['bw']}, fl {t['fl']}" if t["has_q"] and not t["per_channel"] else (
            "per-channel fl" if t["has_q"] else "float32")
        self.decl(name, f"/* {c_comment(t['name'])}: {fmt} */\nstatic const dt_tensor {name} = {{\n    "
                  + ",\n    ".join(fields) + "\n};\n")
        return name

    def decl(self, name: str, text: str) -> None:
        self.decls.append((name, text))

    def used_decls(self) -> list[str]:
        """The declarations the layer code references, directly or through other declarations."""
        ref = re.compile(r"\b(?:W|CFL|T|C|R|L|LP|P)\d+(?:_\w+)?\b")
        by_name = dict(self.decls)
        todo = set(ref.findall("\n".join(self.body)))
        seen: set[str] = set()
        while todo:
            n = todo.pop()
            if n in seen or n not in by_name:
                continue
            seen.add(n)
            todo.update(ref.findall(by_name[n]))
        return [text for name, text in self.decls if name in seen]

    def arena(self, off: int) -> str:
        return f"(void *)({self.arena_name} + {off})"

    def rt(self, name: str, t_index: int, ptr: str, esz: int, const: bool) -> str:
        t = self.T[t_index]
        shape = t["shape"] if const else t["run_shape"]
        count = t["count"] if const else t["run_count"]
        tn = self.tensor(t_index)
        self.decl(name,
            f"static const rt {name} = {{.p = {ptr}, .count = {count}, .rank = {t['rank']}, "
            f".shape = {{{', '.join(map(str, shape)) or '0'}}}, .t = &{tn}, .esz = {esz}}};\n")
        return name

    # layers -----------------------------------------------------------------------------------
    def layer_struct(self, li: int, L: dict) -> str:
        opts = []
        for k, v in L["opts"].items():
            if isinstance(v, int):
                if v:
                    opts.append(f".{k} = {v}")
            elif "f32" in v:
                x = f32(v["f32"])
                if x != 0.0 or math.copysign(1.0, x) < 0:
                    opts.append(f".{k} = {c_float(x)}")
            elif "vec" in v:
                if v["n"]:
                    vals = struct.unpack(f"<{v['n']}I", bytes.fromhex(v["vec"]))
                    self.decl(f"L{li}_{k}", c_array("uint32_t", f"L{li}_{k}", [f"0x{x:08x}u" for x in vals]))
                    opts.append(f".{k} = {{(const uint8_t *)L{li}_{k}, {v['n']}}}")
        ostr = ",\n        ".join(opts)
        self.decl(f"L{li}",
            f"/* layer {li}: {c_comment(L['name'])} ({L['type']}) */\n"
            f"static const dt_layer L{li} = {{\n    .name = {c_string(L['name'])}, .op = {L['op']}, "
            f".n_in = {len(L['in'])}, .n_out = {len(L['out'])}, .version = {L['version']}, "
            f".int_form = {L['int_form']},\n    .o = {{\n        {ostr}\n    }}\n}};\n")
        return f"L{li}"

    def linprep(self, li: int, lp: dict) -> str:
        self.decl(f"LP{li}_bias", c_array("int64_t", f"LP{li}_bias", [c_int(v) for v in lp["bias"]]))
        self.decl(f"LP{li}_lsh", c_array("int8_t", f"LP{li}_lsh", [str(v) for v in lp["lsh"]]))
        self.decl(f"LP{li}_rsh", c_array("int16_t", f"LP{li}_rsh", [str(v) for v in lp["rsh"]]))
        self.decl(f"LP{li}",
            f"static const dfx_linprep LP{li} = {{.fast = 1, .dw = {lp['dw']}, .direct = {lp['direct']}, "
            f".w_in_place = {lp['w_in_place']}, .K = {lp['K']}, .nb = {lp['nb']}, .ob = {lp['ob']},\n"
            f"    .bias = (int64_t *)LP{li}_bias, .lsh = (int8_t *)LP{li}_lsh, .rsh = (int16_t *)LP{li}_rsh}};\n")
        return f"LP{li}"

    def emit_layer(self, li: int, L: dict) -> None:
        T, op = self.T, L["op"]
        integer, layout, native = L["int_form"], L["layout"], L["native"]
        ins = list(L["in"])
        n_in = len(ins)
        while n_in > 0 and ins[n_in - 1] < 0:
            n_in -= 1
        scratch = self.scratch_base
        pre, post = [], []
        pin: list[str | None] = []
        weight_op = op in (OP_CONV2D, OP_DECONV2D, OP_FC)
        kind = "integer" if integer else "float"
        what = f"{L['type']}, {kind} form" + (", native" if native else "")
        if "lin" in L:
            lp = L["lin"]
            what += ", fast int8 " + ("depthwise" if lp["dw"] else "GEMM" + (" (1x1, no im2col)" if lp["direct"] else ""))
        for p in range(n_in):
            t = ins[p]
            if t < 0:
                pin.append(None)
                continue
            tt = T[t]
            if weight_op and p == 1:
                self.tensor(t, weight=True)
                pin.append(None)
                continue
            if tt["is_const"]:
                off = L["const_off"][p]
                as_int = bool(tt["has_q"]) if layout else bool(integer)
                raw = self.blob[tt["file_off"]:tt["file_off"] + tt["data_len"]]
                ctype, vals = prepared_values(tt, raw, as_int, off < 0)
                self.decl(f"C{li}_{p}", f"/* {c_comment(tt['name'])}, as layer {li} uses it */\n"
                                  + c_array(ctype, f"C{li}_{p}", vals, align=f" {self.P}_ALIGN64"))
                pin.append(self.rt(f"R{li}_i{p}", t, f"(void *)C{li}_{p}", 4, True))
                continue
            esz = tt["esz"]
            src = self.arena(tt["arena_off"])
            if not native and not integer and not layout and tt["has_q"]:
                self.helpers.add("dequant")
                pre.append(f"dfxc_dequant({src}, {esz}, {tt['fl']}, {tt['run_count']}, "
                           f"(float *)({self.arena_name} + {scratch}));")
                pin.append(self.rt(f"R{li}_i{p}", t, self.arena(scratch), 4, False))
                scratch += align_up(tt["run_count"] * 4)
            elif not native and esz != 4:
                self.helpers.add("widen")
                pre.append(f"dfxc_widen({src}, {esz}, {tt['run_count']}, (int32_t *)({self.arena_name} + {scratch}));")
                pin.append(self.rt(f"R{li}_i{p}", t, self.arena(scratch), 4, False))
                scratch += align_up(tt["run_count"] * 4)
            else:
                pin.append(self.rt(f"R{li}_i{p}", t, src, esz, False))
        pout = []
        for p, t in enumerate(L["out"]):
            tt = T[t]
            esz = tt["esz"]
            final = self.arena(tt["arena_off"])
            ptr, kesz = final, esz
            if not native and esz != 4:
                ptr, kesz = self.arena(scratch), 4
                scratch += align_up(tt["run_count"] * 4)
            pout.append(self.rt(f"R{li}_o{p}", t, ptr, kesz, False))
            if not native:
                if not integer and not layout and tt["has_q"]:
                    self.helpers.add("quant")
                    post.append(f"dfxc_quant((const float *){ptr}, {tt['fl']}, {tt['bw']}, {tt['rounding']}, "
                                f"{tt['run_count']}, {final}, {esz});")
                elif esz != 4:
                    self.helpers.add("narrow")
                    post.append(f"dfxc_narrow((const int32_t *){ptr}, {tt['run_count']}, {final}, {esz});")
        S = f"(void *)({self.arena_name} + {scratch})"
        Lname = self.layer_struct(li, L)
        x = f"&{pin[0]}" if pin and pin[0] else "NULL"
        y = f"(rt *)&{pout[0]}" if pout else "NULL"

        def arg(p: int) -> str:
            return f"&{pin[p]}" if p < len(pin) and pin[p] else "NULL"

        b = arg(2) if n_in > 2 else "NULL"
        w = f"&T{ins[1]}" if weight_op else ""
        calls: list[str] = []

        def use(k: str, call: str, status: bool = False) -> None:
            self.uses.add(k)
            calls.append(f"st = {call};\n    if (st) return st;" if status else f"{call};")

        def lists() -> tuple[str, str]:
            a = f"P{li}_in"
            self.decl(a, f"static const rt *const {a}[] = {{{', '.join(arg(p) for p in range(n_in)) or 'NULL'}}};\n")
            o = f"P{li}_out"
            self.decl(o, f"static rt *const {o}[] = {{{', '.join(f'(rt *)&{r}' for r in pout)}}};\n")
            return a, o

        if op == OP_CONV2D:
            if native:
                self.needs_dispatch = True
                use("CONV2D_FAST", f"dfx_conv2d_fast(&{Lname}, &{self.linprep(li, L['lin'])}, kf, {x}, {w}, {y}, {S})", True)
            elif integer:
                use("CONV2D_INT", f"dfx_conv2d_int(&{Lname}, {x}, {w}, {b}, {y}, {S})", True)
            else:
                use("CONV2D_F32", f"dfx_conv2d_f32(&{Lname}, {x}, {w}, {b}, {y}, {S})")
        elif op == OP_DECONV2D:
            if integer:
                use("DECONV2D_INT", f"dfx_deconv2d_int(&{Lname}, {x}, {w}, {b}, {y}, {S})", True)
            else:
                use("DECONV2D_F32", f"dfx_deconv2d_f32(&{Lname}, {x}, {w}, {b}, {y}, {S})")
        elif op == OP_FC:
            if native:
                self.needs_dispatch = True
                use("FC_FAST", f"dfx_fc_fast(&{Lname}, &{self.linprep(li, L['lin'])}, kf, {x}, {w}, {y}, {S})", True)
            elif integer:
                use("FC_INT", f"dfx_fc_int(&{Lname}, {x}, {w}, {b}, {y}, {S})", True)
            else:
                use("FC_F32", f"dfx_fc_f32(&{Lname}, {x}, {w}, {b}, {y}, {S})")
        elif op == OP_POOL2D and native:   # max pooling of int8 codes in place (session.c run_maxpool_s8)
            self.needs_dispatch = True
            self.helpers.add("maxpool")
            calls.append(f"dfxc_maxpool_s8(kf, &{Lname}, {x}, {y});")
        elif op == OP_POOL2D:
            use("POOL_INT" if integer else "POOL_F32", f"dfx_pool_{'int' if integer else 'f32'}(&{Lname}, {x}, {y})")
        elif op == OP_RELU:
            if native:
                self.needs_dispatch = True
                calls.append(f"kf->relu_s8((const int8_t *){pin[0]}.p, (int8_t *){pout[0]}.p, "
                             f"{T[L['out'][0]]['run_count']});")
            else:
                use("RELU_INT" if integer else "RELU_F32", f"dfx_relu_{'int' if integer else 'f32'}({x}, {y})")
        elif op == OP_CLIP:
            use("CLIP_INT" if integer else "CLIP_F32", f"dfx_clip_{'int' if integer else 'f32'}(&{Lname}, {x}, {y})")
        elif op == OP_PRELU:
            use("PRELU_INT" if integer else "PRELU_F32", f"dfx_prelu_{'int' if integer else 'f32'}({x}, {arg(1)}, {y})")
        elif op == OP_SIGMOID:
            use("SIGMOID_F32", f"dfx_sigmoid_f32({x}, {y})")
        elif op == OP_TANH:
            use("TANH_F32", f"dfx_tanh_f32({x}, {y})")
        elif op == OP_EXP:
            use("EXP_F32", f"dfx_exp_f32({x}, {y})")
        elif op == OP_MINIFLOAT:
            use("MINIFLOAT_F32", f"dfx_minifloat_f32(&{Lname}, {x}, {y})")
        elif op == OP_LRN:
            use("LRN_F32", f"dfx_lrn_f32(&{Lname}, {x}, {y})")
        elif op == OP_CONCAT:
            a, _ = lists()
            use("CONCAT", f"dfx_concat(&{Lname}, {a}, {n_in}, {y}, {integer})")
        elif op == OP_ELTWISE:
            a, _ = lists()
            k = "int" if integer else "f32"
            use(f"ELTWISE_{k.upper()}", f"dfx_eltwise_{k}(&{Lname}, {a}, {n_in}, {y})")
        elif op == OP_SOFTMAX:
            use("SOFTMAX_F32", f"dfx_softmax_f32(&{Lname}, {x}, {y})")
        elif op == OP_SCALE:
            k = "int" if integer else "f32"
            use(f"SCALE_{k.upper()}", f"dfx_scale_{k}(&{Lname}, {x}, {arg(1)}, {b}, {y})")
        elif op == OP_POWER:
            use("POWER_F32", f"dfx_power_f32(&{Lname}, {x}, {y})")
        elif op in (OP_FLATTEN, OP_RESHAPE):
            use("COPY", f"dfx_copy({x}, {y})")
        elif op == OP_PERMUTE:
            use("PERMUTE", f"dfx_permute(&{Lname}, {x}, {y})")
        elif op == OP_SLICE:
            _, o = lists()
            use("SLICE", f"dfx_slice(&{Lname}, {x}, {o}, {len(pout)})")
        elif op == OP_PAD:
            use("PAD", f"dfx_pad(&{Lname}, {x}, {y}, {integer})")
        elif op == OP_UPSAMPLE:
            use("UPSAMPLE", f"dfx_upsample(&{Lname}, {x}, {y})")
        elif op == OP_NORMALIZE:
            use("NORMALIZE_F32", f"dfx_normalize_f32(&{Lname}, {x}, {arg(1) if n_in > 1 else 'NULL'}, {y})")
        elif op == OP_PRIORBOX:
            use("PRIORBOX_F32", f"dfx_priorbox_f32(&{Lname}, {x}, {arg(1)}, {y})")
        elif op == OP_DETECTION_OUTPUT:
            use("DETECTION_OUTPUT_F32", f"dfx_detection_output_f32(&{Lname}, {x}, {arg(1)}, {arg(2)}, {y}, {S})")
        elif op == OP_REQUANTIZE:
            if integer:
                use("REQUANTIZE_INT", f"dfx_requantize_int({x}, {y})")
            else:
                use("COPY", f"dfx_copy({x}, {y})")
        else:
            raise DfxUnsupportedError(f"operator {L['type']} cannot be compiled to C", layer=L["name"])
        self.body.append(f"    /* {li}: {c_comment(L['name'])} ({what}) */")
        self.body.extend("    " + s for s in pre + calls + post)

    # files ------------------------------------------------------------------------------------
    def port(self, t: int, used: set[str]) -> Port:
        tt = self.T[t]
        cname = identifier(tt["name"])
        while cname in used:
            cname += "_"
        used.add(cname)
        ctype = CTYPE[tt["esz"]] if tt["has_q"] else "float"
        return Port(tt["name"], cname, ctype, tt["run_count"], tt["run_shape"], bool(tt["has_q"]),
                    tt["bw"], tt["fl"], tt["rounding"])

    def generate(self) -> dict[str, str]:
        for li, L in enumerate(self.d["layers"]):
            self.emit_layer(li, L)
        used = {"st", "kf"}
        self.inputs = [self.port(t, used) for t in self.d["inputs"]]
        self.outputs = [self.port(t, used) for t in self.d["outputs"]]
        return {f"{self.p}.h": self.header(), f"{self.p}.c": self.source(), f"{self.p}_config.h": self.config()}

    def files(self, src: Path) -> list[str]:
        """Library sources (relative to kernels/src) the model needs."""
        files = {"ops/common.c"}
        kernels = ctable.read_kernels(src / "ops.def")
        for k in self.uses:
            files.update(kernels[k].files)
        if self.needs_dispatch:
            for pattern in PORTABLE_SET if self.target == "portable" else NEON_SET:
                files.update(p.relative_to(src).as_posix() for p in src.glob(pattern) if p.is_file())
        return sorted(files)

    def config(self) -> str:
        lines = [f"/* {self.p}_config.h - generated by dfxsdk compile: the kernels {self.p}.c calls.",
                 " * Every library source in dfx/ is compiled through a wrapper that includes this",
                 " * file first; kernels/src/kselect.h explains the macros. */",
                 f"#ifndef {self.P}_CONFIG_H", f"#define {self.P}_CONFIG_H", "#define DFX_COMPILED_MODEL 1"]
        lines += [f"#define DFX_USE_{k} 1" for k in sorted(self.uses)]
        if self.target == "neon":
            lines.append("#define DFX_HAVE_NEON 1")
        lines += ["#endif", ""]
        return "\n".join(lines)

    def port_doc(self, q: Port, kind: str) -> str:
        shape = "x".join(map(str, q.shape))
        if q.quantized:
            fmt = (f"{q.ctype} codes, bw {q.bw}, fl {q.fl}: value = code * 2^{-q.fl}"
                   + (f"; {ROUNDING.get(q.rounding, '?')}" if kind == "input" else ""))
        else:
            fmt = "float32 values"
        return f" *   {kind} {c_comment(q.cname)} ('{c_comment(q.name)}'): {shape} = {q.count} elements, {fmt}"

    def header(self) -> str:
        P, p = self.P, self.p
        args = [f"const {q.ctype} *{q.cname}" for q in self.inputs] + [f"{q.ctype} *{q.cname}" for q in self.outputs]
        pre = []
        for name, prep in self.preprocessing.items():
            pre.append(f" *   '{c_comment(name)}': {c_comment(prep)}")
        lines = [
            f"/* {p}.h - {c_comment(self.model_name)} compiled to C by dfxsdk compile (target {self.target}).",
            " *",
            f" * int {p}_run({', '.join(args)});",
            " *",
            f" * runs the network on one batch of {self.d['batch']} sample(s): it reads the inputs, runs every",
            " * layer with the dfx kernels (bit-exact to the NumPy reference and to libdfx) and writes",
            " * the outputs. Returns 0 (DFX_OK). No heap, no I/O; all memory is static: the weights",
            f" * (const) and one activation arena of {P}_ARENA_BYTES bytes (.bss), so {p}_run is not",
            " * reentrant: do not call it from two threads at once.",
            " *",
            " * Buffers (row-major, batch first):",
        ]
        lines += [self.port_doc(q, "input") for q in self.inputs]
        lines += [self.port_doc(q, "output") for q in self.outputs]
        lines += [" *", " * Integer inputs are codes: quantize real values with the input's format, as the",
                  f" * reference does, e.g. with {p}_quantize_<input>() below. Float inputs are used as they are."]
        if pre:
            lines += [" *", " * Preprocessing stored in the model (apply it to raw data first; the values above",
                      " * are after it):"] + pre
        lines += [" */", f"#ifndef {P}_H", f"#define {P}_H", "", "#include <stdint.h>", "",
                  "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
                  f"#define {P}_BATCH {self.d['batch']}",
                  f"#define {P}_ARENA_BYTES {self.arena_bytes}u  /* static activation + scratch arena (.bss) */",
                  f"#define {P}_NUM_INPUTS {len(self.inputs)}", f"#define {P}_NUM_OUTPUTS {len(self.outputs)}"]
        for kind, qs in (("IN", self.inputs), ("OUT", self.outputs)):
            for q in qs:
                c = identifier(q.cname).upper()
                lines.append(f"#define {P}_{kind}_{c}_COUNT {q.count}")
                if q.quantized:
                    lines.append(f"#define {P}_{kind}_{c}_BW {q.bw}")
                    lines.append(f"#define {P}_{kind}_{c}_FL {q.fl}")
        lines += ["", f"int {p}_run({', '.join(args)});", ""]
        for q in self.inputs:
            if q.quantized:
                lines.append(f"/* real values -> codes of input '{c_comment(q.name)}' (n elements): "
                             f"saturate({ROUNDING.get(q.rounding)}(x * 2^{q.fl})), NaN -> 0 */")
                lines.append(f"void {p}_quantize_{q.cname}(const float *x, {q.ctype} *codes, int64_t n);")
        lines += [f"/* name of the kernel set {p}_run uses (\"portable\", \"neon\" or \"dotprod\") */",
                  f"const char *{p}_kernels(void);", "", "#ifdef __cplusplus", "}", "#endif", "#endif", ""]
        return "\n".join(lines)

    def source(self) -> str:
        P, p, A = self.P, self.p, self.arena_name
        out = [f"/* {p}.c - {c_comment(self.model_name)} compiled to C by dfxsdk compile (target {self.target}).",
               f" * The entry point is documented in {p}.h. Weights are stored exactly as in the .dfx file",
               " * (int4/int2 packed, first element in the low bits); the tensor, layer and fast-path",
               " * structures are those libdfx prepares for a session; every pointer into the arena is",
               " * an offset from its memory plan. */",
               f'#include "{p}_config.h"', f'#include "{p}.h"', "", "#include <string.h>", "",
               '#include "dfx/kernels.h"']
        if self.target == "neon":
            # neon.h (and kernels/src/arch/neon) come along only when a layer dispatches to a kernel set;
            # without one the code is the portable code, still meant for AArch64
            if self.needs_dispatch:
                out.append('#include "dfx/arch/neon/neon.h"')
            out += ["", "#if !defined(__aarch64__)",
                    '#error "generated with --target neon: build it for AArch64 (or compile again with --target portable)"',
                    "#endif"]
        out += ["", "#if defined(__GNUC__) || defined(__clang__)", f"#define {P}_ALIGN64 __attribute__((aligned(64)))",
                "#else", f"#define {P}_ALIGN64", "#endif", "",
                f"/* activations (offsets 0..{self.d['plan_bytes']}) and scratch (from {self.scratch_base}) */",
                f"static union {{ uint8_t b[{max(self.arena_bytes, 64)}]; int64_t i; double d; }} {A}_u {P}_ALIGN64;",
                f"#define {A} ({A}_u.b)", ""]
        helpers = {
            "dequant": ("static void dfxc_dequant(const void *src, int esz, int fl, int64_t n, float *dst)\n"
                        "{\n    for (int64_t i = 0; i < n; i++) dst[i] = fp_dequantize(dfx_ld(src, esz, i), fl);\n}\n"),
            "widen": ("static void dfxc_widen(const void *src, int esz, int64_t n, int32_t *dst)\n"
                      "{\n    for (int64_t i = 0; i < n; i++) dst[i] = dfx_ld(src, esz, i);\n}\n"),
            "quant": ("static void dfxc_quant(const float *src, int fl, int bw, int rounding, int64_t n, void *dst, int esz)\n"
                      "{\n    for (int64_t i = 0; i < n; i++) dfx_st(dst, esz, i, fp_quantize((double)src[i], fl, bw, rounding));\n}\n"),
            "maxpool": ("static void dfxc_maxpool_s8(const struct dfx_kernels *kf, const dt_layer *L, const rt *x, rt *y)\n"
                        "{\n"
                        "    const dt_opts *o = &L->o;\n"
                        "    int64_t NC = x->shape[0] * x->shape[1], H = x->shape[2], W = x->shape[3], OH = y->shape[2], OW = y->shape[3];\n"
                        "    int kh = (int)o->kh, kw = (int)o->kw, sh = (int)o->sh, sw = (int)o->sw, pt = (int)o->pt, pl = (int)o->pl;\n"
                        "    if (o->global) { kh = (int)H; kw = (int)W; sh = sw = 1; pt = pl = 0; }\n"
                        "    int8_t empty = (int8_t)(-(1 << (y->t->bw - 1)));\n"
                        "    for (int64_t c = 0; c < NC; c++)\n"
                        "        kf->maxpool_s8((const int8_t *)x->p + c * H * W, (int)H, (int)W, kh, kw, sh, sw, pt, pl,\n"
                        "                       (int8_t *)y->p + c * OH * OW, (int)OH, (int)OW, empty);\n"
                        "}\n"),
            "narrow": ("static void dfxc_narrow(const int32_t *src, int64_t n, void *dst, int esz)\n"
                       "{\n    for (int64_t i = 0; i < n; i++) dfx_st(dst, esz, i, src[i]);\n}\n"),
        }
        out += ["/* conversions around layers whose kernels take int32 codes or float32 values (as session.c) */"]
        out += [helpers[h] for h in sorted(self.helpers)]
        out += self.used_decls()
        if self.target == "neon":
            ksel = ("    static const struct dfx_kernels *kf;\n"
                    "    if (!kf) kf = dfx_neon_has_dotprod() ? &dfx_kernels_dotprod : &dfx_kernels_neon;\n"
                    "    return kf;\n")
        else:
            ksel = "    return &dfx_kernels_portable;\n"
        if self.needs_dispatch:
            out += [f"static const struct dfx_kernels *{p}_kernel_set(void)\n{{\n{ksel}}}\n",
                    f"const char *{p}_kernels(void) {{ return {p}_kernel_set()->name; }}\n"]
        else:
            out += [f'const char *{p}_kernels(void) {{ return "portable"; }}\n']
        out += [f"static dfx_status {p}_layers(void)\n{{",
                "    dfx_status st = DFX_OK;"]
        if self.needs_dispatch:
            out.append(f"    const struct dfx_kernels *kf = {p}_kernel_set();")
        out += self.body
        out += ["    return st;", "}", ""]
        args = [f"const {q.ctype} *{q.cname}" for q in self.inputs] + [f"{q.ctype} *{q.cname}" for q in self.outputs]
        out += [f"int {p}_run({', '.join(args)})", "{", "    dfx_status st;"]
        for q in self.inputs:
            t = self.T[self.d["inputs"][self.inputs.index(q)]]
            out.append(f"    memcpy({A} + {t['arena_off']}, {q.cname}, {q.count * t['esz']});")
        out += [f"    st = {p}_layers();", "    if (st) return (int)st;"]
        for q in self.outputs:
            t = self.T[self.d["outputs"][self.outputs.index(q)]]
            out.append(f"    memcpy({q.cname}, {A} + {t['arena_off']}, {q.count * t['esz']});")
        out += ["    return 0;", "}", ""]
        for q in self.inputs:
            if q.quantized:
                out += [f"void {p}_quantize_{q.cname}(const float *x, {q.ctype} *codes, int64_t n)", "{",
                        f"    for (int64_t i = 0; i < n; i++) codes[i] = ({q.ctype})fp_quantize((double)x[i], "
                        f"{q.fl}, {q.bw}, {q.rounding});", "}", ""]
        return "\n".join(out)


def _wrapper(prefix: str, rel: str) -> str:
    lines = [f"/* generated by dfxsdk compile: the library's kernels/src/{rel}, unmodified in dfx/,",
             f" * compiled with the kernel selection of {prefix}_config.h */",
             f'#include "{prefix}_config.h"']
    if rel == "arch/neon/gemm_dot.c":   # the SDOT kernels: run only after the HWCAP check (arch/neon/select.c)
        lines += ["#if defined(__GNUC__) && !defined(__clang__) && !defined(__ARM_FEATURE_DOTPROD)",
                  '#pragma GCC target("arch=armv8.2-a+dotprod")',
                  "#elif defined(__clang__) && !defined(__ARM_FEATURE_DOTPROD)",
                  f'#error "compile {prefix}_dfx_arch_neon_gemm_dot.c with -march=armv8.2-a+dotprod"', "#endif"]
    lines += [f'#include "dfx/{rel}"', ""]
    return "\n".join(lines)


def _check_prefix(prefix: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", prefix):
        raise DfxInputError(f"--prefix {prefix!r} is not a C identifier (letters, digits, _)")
    return prefix


def default_prefix(path: str | os.PathLike) -> str:
    s = identifier(Path(path).stem).lower()
    return s[:63] or "net"


def _replace_dir(tmp: Path, outdir: Path) -> None:
    """Move the finished ``tmp`` to ``outdir`` (an earlier compile output there is replaced).

    Files and folders get the modes new ones get under the umask (atomic.apply_new_modes).
    """
    from .atomic import apply_new_modes

    apply_new_modes(tmp)
    if outdir.exists():
        old = outdir.with_name(f".{outdir.name}.old-{os.getpid()}")
        os.replace(outdir, old)
        try:
            os.replace(tmp, outdir)
        except BaseException:
            os.replace(old, outdir)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, outdir)


def compile_model(model_path: str | os.PathLike, outdir: str | os.PathLike, *, prefix: str | None = None,
                  target: str = "portable", batch: int = 1) -> CompileResult:
    """Compile the .dfx file ``model_path`` to C sources in ``outdir`` (written atomically)."""
    model_path = Path(model_path)
    outdir = Path(outdir)
    if target not in TARGETS:
        raise DfxInputError(f"--target must be one of {', '.join(TARGETS)}, not {target!r}")
    if batch < 1:
        raise DfxInputError("--batch must be >= 1")
    prefix = _check_prefix(prefix or default_prefix(model_path))
    if not model_path.is_file():
        raise DfxInputError("no such file", file=str(model_path))
    if outdir.exists() and (not outdir.is_dir() or (any(outdir.iterdir()) and not (outdir / MARKER).exists())):
        raise DfxInputError("exists and is not the output of an earlier dfxsdk compile: remove it or choose "
                            "another folder", file=str(outdir))
    src, inc = kernel_sources()
    d = describe(model_path, batch)
    blob = model_path.read_bytes()
    from .io import load

    model = load(model_path)
    prep = {name: _prep_text(pp) for name, pp in (model.preprocessing or {}).items()}
    gen = _Gen(d, blob, prefix, target, model_path.name, prep)
    texts = gen.generate()
    rels = gen.files(src)
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.tmp-", dir=outdir.parent))
    try:
        sources = []
        for name, text in texts.items():
            (tmp / name).write_text(text)
        (tmp / "dfx").mkdir()
        shutil.copyfile(inc / "dfx.h", tmp / "dfx" / "dfx.h")
        for h in local_includes(src, rels + ["kernels.h"] + (["arch/neon/neon.h"] if target == "neon" else [])):
            (tmp / "dfx" / h).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / h, tmp / "dfx" / h)
        for rel in rels:
            (tmp / "dfx" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, tmp / "dfx" / rel)
            wrapper = f"{prefix}_dfx_{rel.replace('/', '_')}"
            (tmp / wrapper).write_text(_wrapper(prefix, rel))
            sources.append(wrapper)
        sha = hashlib.sha256(blob).hexdigest()
        (tmp / MARKER).write_text(json.dumps({"model": str(model_path), "sha256": sha, "prefix": prefix,
                                              "target": target, "batch": batch}, indent=1) + "\n")
        for f in tmp.rglob("*"):
            if f.is_file():
                f.chmod(0o644)
        tmp.chmod(0o755)
        _replace_dir(tmp, outdir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CompileResult(outdir, prefix, target, sorted([f"{prefix}.c"] + sources), gen.inputs, gen.outputs,
                         gen.arena_bytes, sorted(gen.uses))


def _prep_text(pp: Any) -> str:
    parts = []
    if getattr(pp, "mean", None):
        parts.append(f"subtract mean {list(pp.mean)}")
    if getattr(pp, "scale", None):
        parts.append(f"multiply by {list(pp.scale)}")
    order = getattr(pp, "channel_order", None)
    if order:
        parts.append(f"channel order {order}")
    return ", ".join(parts) or "none"


__all__ = ["compile_model", "describe", "CompileResult", "Port", "TARGETS", "kernel_sources"]

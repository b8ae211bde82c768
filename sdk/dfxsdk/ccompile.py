"""``dfxsdk compile``: a .dfx network as standalone C source.

The C library decides everything: it opens and verifies the model, plans the
memory and plans every layer exactly as a session would (the kernel to call,
what happens to each input and output, the prepared constants), and reports
that plan (:func:`describe`, through the native backend's ``dfx_model_describe``).
This module only writes the plan down as C, with no decision of its own:

- ``NAME.c``, the network: one call of the library's executor
  (``dfx_exec_layer``, kernels/src/exec.c) per layer, with the layer's shapes
  and formats in a comment, every buffer an offset into one static arena;
- ``NAME_plan.c``: the layer plans as ``static const`` data (tensors, layers
  with their operator's options, input and output actions, prepared constants,
  fast-path constants);
- ``NAME_weights.c``: the weights as decimal arrays, in the stored layout;
- the library's sources that the plans need, unmodified, under ``dfx/``, each
  compiled through a small wrapper that first includes ``NAME_config.h``
  (``DFX_COMPILED_MODEL`` and one ``DFX_USE_<KERNEL>`` per planned kernel, see
  kernels/src/kselect.h), so that operators the model does not use add no code.

``cc -O2 *.c -lm`` in the output folder builds it; there is no heap, no file
I/O and no other dependency. See "dfxsdk compile" in kernels/README.md.
"""

from __future__ import annotations

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

# dfx_dtype
FLOAT32, INT8, INT16, INT32, INT4, INT2 = range(6)
DTYPES = ("DFX_FLOAT32", "DFX_INT8", "DFX_INT16", "DFX_INT32", "DFX_INT4", "DFX_INT2")
ROUNDING = {0: "round half away from zero", 1: "round half to even", 2: "round half up", 3: "floor"}
CTYPE = {1: "int8_t", 2: "int16_t", 4: "int32_t"}

# the kernel sets: the portable one, and the x86-64 ones chosen at run time (arch/x86/set.c), if present
PORTABLE_SET = ["arch/portable/*.c", "arch/x86/*.c"]
NEON_SET = ["arch/neon/*.c"]  # DFX_NEON_SOURCES of kernels/cmake/sources.cmake (tests/native/test_native_build.py)


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


#: the backend whose library plans and runs the compiled code
PLANNER_BACKEND = "native"


def describe(path: str | os.PathLike, batch: int = 1) -> dict[str, Any]:
    """The C library's plan of ``path`` for a session of ``batch`` samples (dfx_model_describe), as a dict.

    Asks the native backend of the plugin registry (its ``describe_plan``); refuses, with the
    library's message, every model the library refuses."""
    from .plugins import get_manager

    backend = get_manager().backend(PLANNER_BACKEND)
    plan = getattr(backend, "describe_plan", None)
    if plan is None:
        raise DfxUnsupportedError(f"dfxsdk compile needs the '{PLANNER_BACKEND}' backend's describe_plan "
                                  "(libdfx's dfx_model_describe): update the native plugin")
    try:
        return plan(path, batch)
    except OSError as exc:
        raise DfxUnsupportedError(str(exc)) from exc


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


def c_init(head: str, fields: list[str], tail: str = "", indent: str = "    ", width: int = 110) -> str:
    """``head{fields, ...}tail`` on lines of at most ``width`` characters (continuations indented)."""
    lines, line = [], head + "{"
    for k, f in enumerate(fields):
        piece = f + (", " if k + 1 < len(fields) else "")
        if len(line) + len(piece.rstrip()) > width and line.strip() not in ("", "{") and not line.endswith("{"):
            lines.append(line.rstrip())
            line = indent
        line += piece
    return "\n".join(lines + [line + "}" + tail])


def f32(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<I", bits & 0xFFFFFFFF))[0]


def identifier(name: str) -> str:
    s = re.sub(r"\W", "_", name, flags=re.ASCII)
    return s if s and not s[0].isdigit() else "_" + s


def custom_symbol(name: str, version: int) -> str:
    """The C function a compiled model calls for custom operator ``name`` at ``version`` (dfx.h)."""
    return f"dfx_custom_{re.sub(r'[^A-Za-z0-9]', '_', name)}_v{version}"


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


def tensor_format(t: dict, run: bool = True) -> str:
    """'1x20x24x24 int8 bw 4 fl 2': a tensor's shape and format, for comments."""
    shape = "x".join(map(str, t["run_shape"] if run else t["shape"])) or "scalar"
    if not t["has_q"]:
        return f"{shape} float32"
    fl = "per-channel fl" if t["per_channel"] else f"fl {t['fl']}"
    store = DTYPES[t["dtype"]][4:].lower() if t["is_const"] else CTYPE[t["esz"]].removesuffix("_t")
    return f"{shape} {store} bw {t['bw']} {fl}"


class _Gen:
    """Writes a model's plan (:func:`describe`) down as C: static data and one executor call per layer."""

    def __init__(self, d: dict, blob: bytes, prefix: str, target: str, model_name: str, preprocessing: dict):
        self.d, self.blob, self.p, self.target = d, blob, prefix, target
        self.P = prefix.upper()
        self.model_name = model_name
        self.preprocessing = preprocessing
        self.T = d["tensors"]
        self.layers = d["layers"]
        self.uses = {L["kernel"] for L in self.layers}
        self.needs_dispatch = any(L["kernel_set"] for L in self.layers)
        # the compiled model has no constant area (the session's last): prepared constants are static arrays
        self.scratch_base = align_up(d["plan_bytes"])
        self.arena_bytes = self.scratch_base + d["scratch_bytes"]
        self.op_ids: dict[int, str] = {}       # operator code -> its C enum name (ops.def)
        self.tensors: dict[int, str] = {}      # tensor index -> C descriptor text
        self.weights: dict[int, str] = {}      # tensor index -> C array text
        # C function -> custom operator (name, version): the program provides them
        self.customs = {custom_symbol(L["custom"]["name"], L["custom"]["version"]):
                        (L["custom"]["name"], L["custom"]["version"]) for L in self.layers if "custom" in L}
        used = {"st", "kf"}
        self.inputs = [self.port(t, used) for t in d["inputs"]]
        self.outputs = [self.port(t, used) for t in d["outputs"]]

    # data -------------------------------------------------------------------------------------
    def tensor(self, i: int) -> str:
        """The descriptor T<i>: only the fields that are set; activations with the session's shape."""
        if i not in self.tensors:
            t = self.T[i]
            const = bool(t["is_const"])
            shape = t["shape"] if const else t["run_shape"]
            fields = [f".name = {c_string(t['name'])}", f".rank = {t['rank']}",
                      f".shape = {{{', '.join(map(str, shape)) or '0'}}}",
                      f".count = {t['count'] if const else t['run_count']}"]
            if t["dtype"]:
                fields.append(f".dtype = {DTYPES[t['dtype']]}")
            for k in ("has_q", "bw", "fl", "rounding", "per_channel", "ch_axis", "is_const"):
                if t[k]:
                    fields.append(f".{k} = {t[k]}")
            if t["per_channel"]:
                cfl = [str(v) for v in np.frombuffer(bytes.fromhex(t["cfl"]), np.int8)]
                fields += [f".cfl = {{(const uint8_t *)(const int8_t[]){{{', '.join(cfl)}}}, {len(cfl)}}}",
                           f".ch_inner = {t['ch_inner']}"]
            if i in self.weights:
                fields += [f".data = (const uint8_t *){self.p}_w{i}", f".data_len = {t['data_len']}"]
            self.tensors[i] = c_init(f"static const dt_tensor T{i} = ", fields, ";")
        return f"T{i}"

    def weight(self, i: int) -> str:
        """The stored weights of tensor i (int4/int2 packed as in the file) as a decimal array."""
        t = self.T[i]
        raw = self.blob[t["file_off"]:t["file_off"] + t["data_len"]]
        ctype, vals = ("int8_t", np.frombuffer(raw, np.int8)) if t["dtype"] == INT8 else ("uint8_t", raw)
        name = f"{self.p}_w{i}"
        self.weights[i] = (f"/* {c_comment(t['name'])}: {tensor_format(t, False)}"
                           f"{', packed' if t['dtype'] in (INT4, INT2) else ''} */\n"
                           + c_array(ctype, name, [str(v) for v in vals], align=f" {self.P}_ALIGN64", static="const"))
        return name

    def io(self, li: int, p: dict) -> str:
        """One dfx_io_plan initializer (and the data it points to)."""
        i, act = p["t"], p["act"]
        if act == "none":
            return "{0}"
        t = self.T[i]
        fields = [f".act = DFX_IO_{act.upper()}", f".esz = {p['esz']}"]
        if act == "weights":
            fields.append(f".data = {self.weight(i)}")
        elif act in ("const_i32", "const_f32"):
            name = f"C{li}_{i}"
            if act == "const_i32":
                vals = [c_int(v) for v in p["values"]]
            else:
                vals = [c_float(f32(v)) for v in p["values"]]
            self.consts.append(f"/* {c_comment(t['name'])} */\n" + c_array(
                "int32_t" if act == "const_i32" else "float", name, vals, align=f" {self.P}_ALIGN64"))
            fields.append(f".data = {name}")
        else:
            fields.append(f".off = {p['off']}")
        if act in ("widen", "dequant", "narrow", "quant"):
            fields.append(f".conv = {p['conv']}")
        tn = self.tensor(i)
        fields[1:1] = [f".t = &{tn}", f".shape = {tn}.shape", f".count = {p['count']}"]
        return c_init("", fields, indent="     ")

    def layer_desc(self, li: int, L: dict) -> str:
        """The dt_layer L<li>: name, operator and the options that are set."""
        opts = []
        for k, v in L["opts"].items():
            if isinstance(v, int):
                if v:
                    opts.append(f".{k} = {v}")
            elif "f32" in v:
                x = f32(v["f32"])
                if x != 0.0 or math.copysign(1.0, x) < 0:
                    opts.append(f".{k} = {c_float(x)}")
            elif v["n"]:
                vals = struct.unpack(f"<{v['n']}I", bytes.fromhex(v["vec"]))
                arr = ", ".join(f"0x{x:08x}u" for x in vals)
                opts.append(f".{k} = {{(const uint8_t *)(const uint32_t[]){{{arr}}}, {v['n']}}}")
        head = [f".name = {c_string(L['name'])}", f".op = {self.op_ids.get(L['op'], L['op'])}",
                f".n_in = {len(L['in'])}",
                f".n_out = {len(L['out'])}", f".version = {L['version']}"]
        if "custom" in L:
            cu = L["custom"]
            opts += [f".custom_name = {c_string(cu['name'])}", f".custom_version = {cu['version']}"]
            data = bytes.fromhex(cu["options"])
            if data:
                vals = ", ".join(str(b) for b in data)
                opts.append(f".custom_options = {{(const uint8_t[]){{{vals}}}, {len(data)}}}")
        if opts:
            head.append(c_init(".o = ", opts, indent="        "))
        return c_init(f"static const dt_layer L{li} = ", head, ";")

    def linprep(self, li: int, lp: dict) -> str:
        arrays = [c_array("int64_t", f"LP{li}_bias", [c_int(v) for v in lp["bias"]]),
                  c_array("int8_t", f"LP{li}_lsh", [str(v) for v in lp["lsh"]]),
                  c_array("int16_t", f"LP{li}_rsh", [str(v) for v in lp["rsh"]])]
        fields = [".fast = 1"] + [f".{k} = {lp[k]}" for k in ("dw", "direct", "w_in_place", "K", "nb", "ob") if lp[k]]
        fields += [f".bias = (int64_t *)LP{li}_bias", f".lsh = (int8_t *)LP{li}_lsh", f".rsh = (int16_t *)LP{li}_rsh"]
        return "".join(arrays) + c_init(f"static const dfx_linprep LP{li} = ", fields, ";")

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
        p = self.p
        return {f"{p}.h": self.header(), f"{p}_plan.c": self.plan_source(), f"{p}.c": self.network(),
                f"{p}_weights.c": self.weights_source(), f"{p}_model.h": self.model_header(),
                f"{p}_config.h": self.config()}

    def plan_source(self) -> str:
        self.consts: list[str] = []
        blocks, entries = [], []
        for li, L in enumerate(self.layers):
            ins = [self.io(li, q) for q in L["in_plan"]]
            outs = [self.io(li, q) for q in L["out_plan"]]
            text = [f"/* {li}: {c_comment(L['name'])} ({L['type']}, {L['kernel']}) */", self.layer_desc(li, L)]
            if ins:
                text.append(f"static const dfx_io_plan L{li}_in[] = {{\n    " + ",\n    ".join(ins) + "\n};")
            text.append(f"static const dfx_io_plan L{li}_out[] = {{\n    " + ",\n    ".join(outs) + "\n};")
            lin = "NULL"
            if "lin" in L:
                text.append(self.linprep(li, L["lin"]))
                lin = f"&LP{li}"
            custom = "NULL"
            if "custom" in L:
                cu, sym = L["custom"], custom_symbol(L["custom"]["name"], L["custom"]["version"])
                text.append(c_init(f"static const dfx_custom_op CU{li} = ",
                                   [c_string(cu["name"]), str(cu["version"]), sym, "NULL"], ";"))
                custom = f"&CU{li}"
            blocks.append("\n".join(text) + "\n")
            entries.append(f"    {{DFX_K_{L['kernel']}, {L['int_form']}, {len(ins)}, {len(outs)}, &L{li}, "
                           f"{f'L{li}_in' if ins else 'NULL'}, L{li}_out, {lin}, {L['scratch']}, "
                           f"{custom}}},")
        head = [f"/* {self.p}_plan.c - generated by dfxsdk compile: the layer plans libdfx made for",
                f" * {c_comment(self.model_name)} (batch {self.d['batch']}), as static data for dfx_exec_layer",
                " * (kernels/src/plan.h): per layer its operator and options, what happens to each input and",
                " * output (arena offsets), the prepared constants and the fast-path constants. */",
                f'#include "{self.p}_config.h"', f'#include "{self.p}_model.h"', ""]
        tensors = ["/* tensors (activations with the session's shape) */"] + [self.tensors[i]
                                                                             for i in sorted(self.tensors)]
        tail = [f"const dfx_layer_plan {self.p}_plan[{len(self.layers)}] = {{",
                "    /* kernel, integer form, inputs, outputs, layer, in, out, fast-path constants, scratch, custom */",
                *entries, "};", ""]
        consts = (["/* constants as the kernels take them */"] + self.consts) if self.consts else []
        return "\n".join(head + tensors + [""] + consts + blocks + tail)

    def weights_source(self) -> str:
        head = [f"/* {self.p}_weights.c - generated by dfxsdk compile: the weights of {c_comment(self.model_name)},",
                " * exactly as stored in the .dfx file (int4/int2 packed, first element in the low bits). */",
                f'#include "{self.p}_model.h"', ""]
        return "\n".join(head + [self.weights[i] for i in sorted(self.weights)])

    def model_header(self) -> str:
        P, p = self.P, self.p
        lines = [f"/* {p}_model.h - generated by dfxsdk compile: what {p}.c, {p}_plan.c and {p}_weights.c share. */",
                 f"#ifndef {P}_MODEL_H", f"#define {P}_MODEL_H", "", '#include "dfx/plan.h"', "",
                 "#if defined(__GNUC__) || defined(__clang__)", f"#define {P}_ALIGN64 __attribute__((aligned(64)))",
                 "#else", f"#define {P}_ALIGN64", "#endif", "",
                 f"extern const dfx_layer_plan {p}_plan[{len(self.layers)}];"]
        for sym, (name, version) in sorted(self.customs.items()):
            lines += [f"/* custom operator {c_comment(name)} version {version}: provided by the program (dfx.h) */",
                      f"dfx_status {sym}(const dfx_custom_tensor *in, int n_in, dfx_custom_tensor *out, int n_out,",
                      "    const uint8_t *options, size_t options_len, void *user);"]
        for i in sorted(self.weights):
            ctype = "int8_t" if self.T[i]["dtype"] == INT8 else "uint8_t"
            lines.append(f"extern const {ctype} {p}_w{i}[{max(self.T[i]['data_len'], 1)}];")
        return "\n".join(lines + ["", "#endif", ""])

    def files(self, src: Path) -> list[str]:
        """Library sources (relative to kernels/src) the model needs."""
        files = {"ops/common.c", "exec.c"}
        kernels = ctable.read_kernels(src / "ops.def")
        for k in self.uses:
            files.update(kernels[k].files)
        if self.needs_dispatch:
            for pattern in PORTABLE_SET if self.target == "portable" else NEON_SET:
                files.update(p.relative_to(src).as_posix() for p in src.glob(pattern) if p.is_file())
        return sorted(files)

    def config(self) -> str:
        lines = [f"/* {self.p}_config.h - generated by dfxsdk compile: the kernels the plans of {self.p} name.",
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
        if self.customs:
            lines += [" *", " * Custom operators: the program links in their C implementations (dfx.h, dfx_custom_fn):"]
            lines += [f" *   {sym}() for {c_comment(n)} version {v}" for sym, (n, v) in sorted(self.customs.items())]
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
        lines += [f"/* name of the kernel set {p}_run uses (a name of the library's dfx_kernels_known) */",
                  f"const char *{p}_kernels(void);", "", "#ifdef __cplusplus", "}", "#endif", "#endif", ""]
        return "\n".join(lines)

    def layer_comment(self, li: int, L: dict) -> str:
        acts = [self.T[q["t"]] for q in L["in_plan"] if q["act"] in ("direct", "widen", "dequant")]
        ins = ", ".join(tensor_format(t) for t in acts) or "constants"
        outs = ", ".join(tensor_format(self.T[t]) for t in L["out"])
        return f"    /* {li} {c_comment(L['name'])}: {L['type']} {ins} -> {outs} */"

    def network(self) -> str:
        P, p = self.P, self.p
        out = [f"/* {p}.c - {c_comment(self.model_name)} compiled to C by dfxsdk compile (target {self.target}):",
               f" * one call of libdfx's executor per layer, with the plans of {p}_plan.c (weights in",
               f" * {p}_weights.c). The entry point is documented in {p}.h. */",
               f'#include "{p}_config.h"', f'#include "{p}.h"', f'#include "{p}_model.h"', "",
               "#include <string.h>", ""]
        if self.target == "neon":
            # neon.h (and kernels/src/arch/neon) come along only when a layer dispatches to a kernel set;
            # without one the code is the portable code, still meant for AArch64
            if self.needs_dispatch:
                out += ['#include "dfx/arch/neon/neon.h"', ""]
            out += ["#if !defined(__aarch64__)",
                    '#error "generated with --target neon: build it for AArch64 '
                    '(or compile again with --target portable)"',
                    "#endif", ""]
        elif self.needs_dispatch:   # the x86-64 sets (arch/x86/x86.h: nothing elsewhere)
            out += ['#include "dfx/arch/x86/x86.h"', ""]
        out += [f"/* activations (offsets 0..{self.d['plan_bytes']}) and scratch (from {self.scratch_base}) */",
                f"static union {{ uint8_t b[{max(self.arena_bytes, 64)}]; int64_t i; double d; }} arena {P}_ALIGN64;",
                ""]
        if self.needs_dispatch:
            if self.target == "neon":
                ksel = ["    static const struct dfx_kernels *kf;",
                        "    if (!kf) kf = dfx_neon_has_dotprod() ? &dfx_kernels_dotprod : &dfx_kernels_neon;",
                        "    return kf;"]
            else:  # x86-64: the best set this CPU runs (arch/x86/set.c), as the library chooses it
                ksel = ["#if DFX_X86_SIMD", "    static const struct dfx_kernels *kf;",
                        "    if (!kf) kf = dfx_x86_best();", "    return kf;", "#else",
                        "    return &dfx_kernels_portable;", "#endif"]
            out += ["static const struct dfx_kernels *kernel_set(void)", "{", *ksel, "}", "",
                    f"const char *{p}_kernels(void) {{ return kernel_set()->name; }}", ""]
        else:
            out += [f'const char *{p}_kernels(void) {{ return "portable"; }}', ""]
        args = [f"const {q.ctype} *{q.cname}" for q in self.inputs] + [f"{q.ctype} *{q.cname}" for q in self.outputs]
        out += [f"int {p}_run({', '.join(args)})", "{",
                f"    const struct dfx_kernels *kf = {'kernel_set()' if self.needs_dispatch else 'NULL'};",
                "    uint8_t *a = arena.b;", "    dfx_status st;"]
        for q, t in zip(self.inputs, self.d["inputs"]):
            out.append(f"    memcpy(a + {self.T[t]['arena_off']}, {q.cname}, {q.count * self.T[t]['esz']});")
        for li, L in enumerate(self.layers):
            run = f"    if ((st = dfx_exec_layer(&{p}_plan[{li}], kf, a))) return (int)st;"
            out += [self.layer_comment(li, L), run]
        for q, t in zip(self.outputs, self.d["outputs"]):
            out.append(f"    memcpy({q.cname}, a + {self.T[t]['arena_off']}, {q.count * self.T[t]['esz']});")
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
    gen.op_ids = {row.code: f"OP_{row.id}" for row in ctable.read_ops(src / "ops.def")}
    texts = gen.generate()
    c_files = sorted(n for n in texts if n.endswith(".c"))
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
    return CompileResult(outdir, prefix, target, sorted(c_files + sources), gen.inputs, gen.outputs,
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

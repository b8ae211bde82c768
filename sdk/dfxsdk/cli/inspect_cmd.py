"""``dfxsdk inspect``: show a .dfx file's header, layers, formats, sizes and integrity."""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from ..errors import EXIT_BAD_INPUT, DfxError, DfxInputError
from ..fixedpoint import dequantize
from ..graph import Model, Tensor
from ..io import load, tensor_crc_ok
from ..validate import check_values

_DESCRIPTION = """Show what a .dfx file holds: format version, producer, inputs and outputs
with their preprocessing, one row per layer (type, shapes, bw/fl of input, output and
parameters, parameter count, bytes on disk and share of the file), totals, and an
integrity verdict (header, graph and every tensor's checksum and value range).
A bad file prints one line on stderr and exits with code 2."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="show the layers, formats, sizes and integrity of a .dfx file",
                       description=_DESCRIPTION)
    p.add_argument("model", help="path of the .dfx file")
    p.add_argument("--json", action="store_true", help="print the same information as JSON")
    p.add_argument("--tensor", metavar="NAME",
                   help="show one tensor: values, range, histogram of integer codes, saturation")
    p.add_argument("--no-checksums", action="store_true",
                   help="skip reading the data section (structure is still verified)")
    p.set_defaults(func=run)


def _fmt(t: Tensor | None) -> str:
    if t is None:
        return "-"
    return "f32" if t.qformat is None else t.qformat.describe()


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) or "scalar"


def describe(model: Model, file_size: int) -> dict:
    """The inspect report as plain data (what --json prints)."""
    tensors = model.tensors
    layers = []
    for layer in model.layers:
        acts = [tensors[n] for n in layer.inputs if n is not None and not tensors[n].is_constant]
        consts = [tensors[n] for n in layer.inputs if n is not None and tensors[n].is_constant]
        outs = [tensors[n] for n in layer.outputs]
        nbytes = sum(t.nbytes for t in consts)
        layers.append({
            "name": layer.name, "type": layer.type, "origin": layer.origin,
            "inputs": [{"name": t.name, "shape": list(t.shape), "format": _fmt(t)} for t in acts],
            "outputs": [{"name": t.name, "shape": list(t.shape), "format": _fmt(t)} for t in outs],
            "in_format": _fmt(acts[0]) if acts else "-",
            "out_format": _fmt(outs[0]) if outs else "-",
            "params_format": _fmt(consts[0]) if consts else "-",
            "params": sum(t.size for t in consts),
            "bytes": nbytes,
            "share": nbytes / file_size if file_size else 0.0,
            "options": {k: (v.hex() if isinstance(v, bytes) else v) for k, v in layer.op.fields_dict().items()},
        })
    weight_bytes = sum(t.nbytes for t in model.constants())
    return {
        "file": model.source, "file_size": file_size,
        "format_version": ".".join(map(str, model.format_version or ())),
        "producer": {"name": model.producer_name, "version": model.producer_version},
        "name": model.name,
        "inputs": [_io(model, n) for n in model.inputs],
        "outputs": [_io(model, n) for n in model.outputs],
        "metadata": dict(model.metadata),
        "layers": layers,
        "totals": {"layers": len(layers), "tensors": len(tensors),
                   "params": sum(t.size for t in model.constants()),
                   "weight_bytes": weight_bytes,
                   "weight_share": weight_bytes / file_size if file_size else 0.0},
    }


def _io(model: Model, name: str) -> dict:
    t = model.tensors[name]
    out = {"name": name, "shape": list(t.shape), "type": t.dtype.name.lower(), "format": _fmt(t)}
    pre = model.preprocessing.get(name)
    if pre is not None:
        out["preprocessing"] = {"mean": pre.mean, "scale": pre.scale, "channel_order": pre.channel_order}
    return out


def integrity(model: Model, with_checksums: bool) -> list[str]:
    """Problems found in the data section (empty when intact)."""
    problems = []
    if not with_checksums:
        return problems
    for t in model.constants():
        try:
            if not tensor_crc_ok(t):
                problems.append(f"tensor '{t.name}': data checksum mismatch")
                continue
            check_values(t, model.source)
        except DfxError as exc:
            problems.append(exc.message if exc.tensor is None else f"tensor '{t.name}': {exc.message}")
    return problems


def tensor_report(model: Model, name: str) -> dict:
    """Values, range, histogram and saturation of one tensor (--tensor)."""
    if name not in model.tensors:
        raise DfxInputError(f"no tensor named '{name}'", file=model.source, field="--tensor")
    t = model.tensors[name]
    rep: dict = {"name": name, "shape": list(t.shape), "type": t.dtype.name.lower(),
                 "format": _fmt(t), "constant": t.is_constant}
    if not t.is_constant:
        rep["note"] = "activation: values exist only at run time (use 'dfxsdk run')"
        return rep
    data = np.asarray(t.data)
    if t.qformat is not None:
        q = t.qformat
        codes = data.astype(np.int64).reshape(-1)
        real = dequantize(data, q, dtype=np.float64).reshape(-1)
        lo, hi = q.qmin, q.qmax
        if q.bw <= 8:
            values, counts = np.unique(codes, return_counts=True)
            hist = [[int(v), int(c)] for v, c in zip(values, counts)]
        else:
            counts, edges = np.histogram(codes, bins=16)
            hist = [[f"{edges[i]:.0f}..{edges[i + 1]:.0f}", int(c)] for i, c in enumerate(counts)]
        rep.update({
            "code_range": [int(codes.min()), int(codes.max())] if codes.size else [],
            "real_range": [float(real.min()), float(real.max())] if real.size else [],
            "histogram": hist,
            "saturated": {"at_min": int((codes == lo).sum()), "at_max": int((codes == hi).sum()),
                          "share": float(((codes == lo) | (codes == hi)).mean()) if codes.size else 0.0},
            "values": real.tolist() if real.size <= 64 else None,
        })
    else:
        flat = data.reshape(-1).astype(np.float64)
        counts, edges = np.histogram(flat, bins=16) if flat.size else ([], [0])
        rep.update({"real_range": [float(flat.min()), float(flat.max())] if flat.size else [],
                    "histogram": [[f"{edges[i]:.4g}..{edges[i + 1]:.4g}", int(c)]
                                  for i, c in enumerate(counts)],
                    "values": flat.tolist() if flat.size <= 64 else None})
    return rep


def run(args: argparse.Namespace) -> int:
    if not os.path.exists(args.model):
        raise DfxInputError("no such file", file=args.model)
    model = load(args.model)
    size = os.path.getsize(args.model)
    if args.tensor:
        rep = tensor_report(model, args.tensor)
        print(json.dumps(rep, indent=2) if args.json else _tensor_text(rep, model))
        return 0
    report = describe(model, size)
    problems = integrity(model, not args.no_checksums)
    report["integrity"] = {"ok": not problems, "checksums_verified": not args.no_checksums,
                           "problems": problems}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(_text(report))
    if problems:
        print(f"dfxsdk inspect: error: {args.model}: {problems[0]}"
              + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""), file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.rjust(w) if i in right else c.ljust(w)
                      for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]


def _text(rep: dict) -> str:
    lines = [f"{rep['file']}: dfx format {rep['format_version']}, {rep['file_size']:,} bytes",
             f"producer: {rep['producer']['name']} {rep['producer']['version']}".rstrip()
             + (f"    network: {rep['name']}" if rep["name"] else "")]
    for kind in ("inputs", "outputs"):
        for io in rep[kind]:
            line = f"{kind[:-1]:>6}: {io['name']} {_shape(tuple(io['shape']))} {io['format']}"
            pre = io.get("preprocessing")
            if pre:
                line += (f"  (raw - mean {pre['mean'] or [0]}) * scale {pre['scale'] or [1]}"
                         + (f", {pre['channel_order']}" if pre["channel_order"] != "UNSPECIFIED" else ""))
            lines.append(line)
    for key, value in rep["metadata"].items():
        lines.append(f"  meta: {key} = {value}")
    rows = [["#", "layer", "type", "input", "output", "in", "out", "params", "count", "bytes", "share"]]
    for i, l in enumerate(rep["layers"]):
        rows.append([str(i), l["name"], l["type"],
                     ",".join(_shape(tuple(t["shape"])) for t in l["inputs"]) or "-",
                     ",".join(_shape(tuple(t["shape"])) for t in l["outputs"]),
                     l["in_format"], l["out_format"], l["params_format"],
                     f"{l['params']:,}", f"{l['bytes']:,}", f"{100 * l['share']:.1f}%"])
    lines.append(f"layers ({len(rep['layers'])}; formats are bw/fl):")
    lines += ["  " + r for r in _table(rows, {0, 8, 9, 10})]
    tot = rep["totals"]
    lines.append(f"totals: {tot['layers']} layers, {tot['tensors']} tensors, {tot['params']:,} "
                 f"parameters, {tot['weight_bytes']:,} bytes of weights "
                 f"({100 * tot['weight_share']:.1f}% of the file)")
    integ = rep["integrity"]
    if integ["ok"]:
        what = "header, graph and data checksums, value ranges" if integ["checksums_verified"] \
            else "header and graph (data not read: --no-checksums)"
        lines.append(f"integrity: OK ({what})")
    else:
        lines.append(f"integrity: FAILED ({len(integ['problems'])} problems)")
        lines += [f"  - {p}" for p in integ["problems"]]
    return "\n".join(lines)


def _tensor_text(rep: dict, model: Model) -> str:
    lines = [f"tensor {rep['name']}: {_shape(tuple(rep['shape']))} {rep['type']} format {rep['format']}"
             + (" (constant)" if rep["constant"] else " (activation)")]
    if "note" in rep:
        return "\n".join(lines + [rep["note"]])
    if "code_range" in rep:
        lines.append(f"codes: {rep['code_range'][0]} .. {rep['code_range'][1]}   "
                     f"real: {rep['real_range'][0]:.6g} .. {rep['real_range'][1]:.6g}")
        sat = rep["saturated"]
        lines.append(f"saturated: {sat['at_min']} at min, {sat['at_max']} at max "
                     f"({100 * sat['share']:.2f}% of values)")
    else:
        lines.append(f"real: {rep['real_range'][0]:.6g} .. {rep['real_range'][1]:.6g}")
    total = sum(c for _, c in rep["histogram"]) or 1
    lines.append("histogram (code or range: count):")
    for key, count in rep["histogram"]:
        bar = "#" * max(1 if count else 0, round(40 * count / total))
        lines.append(f"  {str(key):>14}: {count:>9,} {bar}")
    if rep.get("values") is not None:
        lines.append("values: " + np.array2string(np.array(rep["values"]), precision=6, max_line_width=100))
    return "\n".join(lines)

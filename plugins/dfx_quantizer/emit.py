"""Write a Ristretto-compatible prototxt with the formats a quantized model uses.

The source prototxt (deploy or train/val, V2 ``layer {}`` format) is edited as
text, so that everything else in it (data sources, fillers, solver-relevant
fields, comments) survives verbatim: in every ``layer`` block whose name is a
quantized Conv2D / Deconv2D / FullyConnected layer of the model, the type
becomes ConvolutionRistretto / DeconvolutionRistretto / FcRistretto and a
``quantization_param`` block with the six dynamic fixed point fields replaces
any existing one. Layers matched in several phases (TRAIN and TEST) are all
edited.

What Ristretto cannot express is refused or reported: per-channel fl
(refused), a float input, output or weights (those fields are left out, so
Ristretto's defaults, 32 bits with fl 16, apply; reported), an int32 bias
(Ristretto quantizes the bias in the weights' format; reported), and a layer
whose output feeds BatchNorm/Scale in the prototxt, which dfxsdk folded into
the weights (Ristretto quantizes the output *before* those layers; reported).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dfxsdk.atomic import atomic_write
from dfxsdk.errors import DfxInputError, DfxUnsupportedError
from dfxsdk.graph import Model

RISTRETTO_TYPE = {"Convolution": "ConvolutionRistretto", "InnerProduct": "FcRistretto",
                  "Deconvolution": "DeconvolutionRistretto"}
RISTRETTO_TYPE.update({v: v for v in list(RISTRETTO_TYPE.values())})
KIND = {"Conv2D": ("Convolution", "ConvolutionRistretto"), "Deconv2D": ("Deconvolution", "DeconvolutionRistretto"),
        "FullyConnected": ("InnerProduct", "FcRistretto")}
FIELDS = ("bw_layer_in", "bw_layer_out", "bw_params", "fl_layer_in", "fl_layer_out", "fl_params")


@dataclass
class Block:
    """One top-level ``layer { ... }`` block of a prototxt."""

    start: int          # offset of the 'layer' keyword
    open: int           # offset of '{'
    close: int          # offset of the matching '}'
    name: str | None
    type_span: tuple[int, int] | None    # span of the type string, quotes included
    type: str | None
    qp_span: tuple[int, int] | None      # span of an existing quantization_param block
    bottoms: list[str]
    tops: list[str]


_TOKEN = re.compile(r'\s+|#[^\n]*|"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|[{}:;,\[\]<>]|[^\s{}:;,\[\]<>"\'#]+')


def _tokens(text: str) -> list[tuple[int, str]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise DfxInputError(f"cannot read the prototxt at offset {pos}")
        tok = m.group(0)
        if not tok.isspace() and not tok.startswith("#"):
            out.append((pos, tok))
        pos = m.end()
    return out


def _unquote(tok: str) -> str:
    return tok[1:-1] if tok[:1] in "\"'" else tok


def parse_blocks(text: str, where: str = "prototxt") -> list[Block]:
    """The top-level layer blocks of ``text`` (DfxInputError for V1 files or broken braces)."""
    toks = _tokens(text)
    blocks: list[Block] = []
    depth, i = 0, 0
    while i < len(toks):
        pos, tok = toks[i]
        if tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
            if depth < 0:
                raise DfxInputError(f"unbalanced '}}' at offset {pos}", file=where)
        elif depth == 0 and tok == "layers" and i + 1 < len(toks) and toks[i + 1][1] in ("{", ":"):
            raise DfxInputError("this is a V1 prototxt ('layers {}' with enum types), which cannot hold "
                                "Ristretto layers; upgrade it to the V2 'layer {}' format (Caffe's "
                                "upgrade_net_proto_text tool)", file=where)
        elif depth == 0 and tok == "layer":
            j = i + 1
            if j < len(toks) and toks[j][1] == ":":
                j += 1
            if j >= len(toks) or toks[j][1] != "{":
                i += 1
                continue
            blk = Block(pos, toks[j][0], -1, None, None, None, None, [], [])
            d, k, qp_start = 0, j, None
            while k < len(toks):
                p, t = toks[k]
                nxt = toks[k + 1][1] if k + 1 < len(toks) else ""
                if t == "{":
                    d += 1
                elif t == "}":
                    d -= 1
                    if d == 1 and qp_start is not None and blk.qp_span is None:
                        blk.qp_span = (qp_start, p + 1)
                    if d == 0:
                        blk.close = p
                        break
                elif d == 1 and t == "quantization_param" and nxt in ("{", ":"):
                    qp_start = p
                elif d == 1 and nxt == ":" and k + 2 < len(toks):
                    val_pos, val = toks[k + 2]
                    if t == "name":
                        blk.name = _unquote(val)
                    elif t == "type":
                        blk.type, blk.type_span = _unquote(val), (val_pos, val_pos + len(val))
                    elif t == "bottom":
                        blk.bottoms.append(_unquote(val))
                    elif t == "top":
                        blk.tops.append(_unquote(val))
                k += 1
            if blk.close < 0:
                raise DfxInputError(f"layer block at offset {pos} is not closed", file=where)
            blocks.append(blk)
            i = k
            depth = 0
        i += 1
    if depth != 0:
        raise DfxInputError("unbalanced braces", file=where)
    return blocks


@dataclass
class LayerQuant:
    """The Ristretto fields of one layer (None: the field is left out)."""

    layer: str
    kind: str
    values: dict[str, int | None]


def ristretto_formats(model: Model) -> tuple[list[LayerQuant], list[str]]:
    """Per quantized layer, Ristretto's six fields; plus notes on what Ristretto cannot express."""
    out, notes = [], []
    for layer in model.layers:
        if layer.type not in KIND:
            continue
        x, w = model.tensors[layer.inputs[0]], model.tensors[layer.inputs[1]]
        y = model.tensors[layer.outputs[0]]
        b = model.tensors[layer.inputs[2]] if len(layer.inputs) > 2 and layer.inputs[2] else None
        if all(t.qformat is None for t in (x, w, y)):
            continue
        if w.qformat is not None and w.qformat.per_channel:
            raise DfxUnsupportedError("has per-channel weight fl, which Ristretto cannot express "
                                      "(quantize without --per-channel to emit a Ristretto prototxt)",
                                      layer=layer.name)
        vals: dict[str, int | None] = {}
        for group, t in (("layer_in", x), ("layer_out", y), ("params", w)):
            vals[f"bw_{group}"] = None if t.qformat is None else t.qformat.bw
            vals[f"fl_{group}"] = None if t.qformat is None else t.qformat.fl
            if t.qformat is None:
                notes.append(f"{layer.name}: {group.replace('_', ' ')} is float here; Ristretto will use "
                             "its default 32 bits, fl 16")
        if b is not None and b.qformat is not None and w.qformat is not None and \
                (b.qformat.bw, b.qformat.fl) != (w.qformat.bw, w.qformat.fl):
            notes.append(f"{layer.name}: the bias is {b.qformat.describe()} (bw/fl) here; Ristretto quantizes "
                         f"it in the weights' format {w.qformat.describe()} (use --bias params to match)")
        out.append(LayerQuant(layer.name, layer.type, vals))
    return out, notes


def _qp_text(values: dict[str, int | None], indent: str) -> str:
    inner = "".join(f"{indent}    {k}: {values[k]}\n" for k in FIELDS if values.get(k) is not None)
    return f"{indent}  quantization_param {{\n{inner}{indent}  }}\n"


def emit_text(text: str, quants: list[LayerQuant], where: str = "prototxt") -> tuple[str, list[str]]:
    """``text`` with the Ristretto types and quantization_param blocks; plus notes."""
    blocks = parse_blocks(text, where)
    notes: list[str] = []
    by_name: dict[str, list[Block]] = {}
    for blk in blocks:
        if blk.name is not None:
            by_name.setdefault(blk.name, []).append(blk)
    edits: list[tuple[int, int, str]] = []
    for q in quants:
        found = by_name.get(q.layer)
        if not found:
            raise DfxInputError(f"the prototxt has no layer named '{q.layer}' (quantized in the model)",
                                file=where, layer=q.layer)
        for blk in found:
            if blk.type not in KIND[q.kind]:
                raise DfxInputError(f"is '{blk.type}' in the prototxt, but {q.kind} in the model (expected "
                                    f"{' or '.join(KIND[q.kind])})", file=where, layer=q.layer)
            line_start = text.rfind("\n", 0, blk.start) + 1
            indent = text[line_start:blk.start] if text[line_start:blk.start].isspace() else ""
            edits.append((blk.type_span[0], blk.type_span[1], f'"{RISTRETTO_TYPE[blk.type]}"'))
            if blk.qp_span is not None:
                s, e = blk.qp_span
                ls = text.rfind("\n", 0, s) + 1
                le = text.find("\n", e)
                edits.append((ls, le + 1 if le >= 0 else e, ""))
            close_line = text.rfind("\n", 0, blk.close) + 1
            if text[close_line:blk.close].strip():        # '}' shares a line with other text
                edits.append((blk.close, blk.close, "\n" + _qp_text(q.values, indent) + indent))
            else:
                edits.append((close_line, close_line, _qp_text(q.values, indent)))
        tops = {t for blk in found for t in blk.tops}
        for other in blocks:
            if other.type in ("BatchNorm", "Scale") and tops & set(other.bottoms):
                notes.append(f"{q.layer}: its output feeds {other.type} '{other.name}', which dfxsdk folded "
                             "into the weights; Ristretto quantizes the output before that layer, so "
                             "fl_layer_out may not fit there")
                break
    out, last = [], 0
    for s, e, rep in sorted(edits, key=lambda t: (t[0], t[1])):
        out.append(text[last:s])
        out.append(rep)
        last = max(last, e)
    out.append(text[last:])
    return "".join(out), notes


def check_source(path: Path) -> str:
    """Read and pre-check a source prototxt (before any work); its text."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DfxInputError(f"cannot read the prototxt ({exc})", file=str(path)) from None
    parse_blocks(text, str(path))
    return text


def check_layers(model: Model, source: Path) -> None:
    """Raise unless every Conv2D/Deconv2D/FullyConnected layer of ``model`` has a matching block."""
    blocks = parse_blocks(check_source(source), str(source))
    types: dict[str, set[str]] = {}
    for blk in blocks:
        types.setdefault(blk.name or "", set()).add(blk.type or "")
    for layer in model.layers:
        if layer.type in KIND:
            have = types.get(layer.name)
            if not have:
                raise DfxInputError(f"the prototxt has no layer named '{layer.name}' (for --emit-ristretto)",
                                    file=str(source), layer=layer.name)
            if not have <= set(KIND[layer.type]):
                raise DfxInputError(f"is '{sorted(have)[0]}' in the prototxt, but {layer.type} in the model",
                                    file=str(source), layer=layer.name)


def emit(model: Model, source: Path, output: Path) -> list[str]:
    """Write ``output``: ``source`` with the formats of ``model``; returns the notes."""
    text = check_source(source)
    quants, notes = ristretto_formats(model)
    result, more = emit_text(text, quants, str(source))
    with atomic_write(output) as f:
        f.write(result.encode("utf-8"))
    return notes + more

"""``dfxsdk run``: run a .dfx model on arrays or images and save the outputs."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..atomic import check_input_file
from ..errors import DfxInputError
from ..fixedpoint import dequantize
from ..graph import Model
from ..io import load
from ..plugins import get_manager
from . import _data, _images, _threads

_DESCRIPTION = """Run a model on raw input and write the outputs to an .npz file.

Input (--input, repeatable):
  x.npy          one array: a batch (N,C,H,W), one sample (C,H,W), or for one-channel
                 inputs (N,H,W) / (H,W); the model's single input
  x.npz          one array per model input, keyed by input name
  image.jpg ...  JPEG, PNG, BMP or PGM/PPM (recognised by content, not by name);
                 several images form a batch. JPEG and BMP need Pillow
                 (pip install 'dfxsdk[images]'); without it PNG (8-bit) and
                 binary PGM/PPM are still read
The model's stored preprocessing ((raw - mean) * scale, channel order) is applied
unless --no-preprocess. The batch (leading dimension) may have any size.

Output: an .npz (written atomically) with one array per output tensor: integer codes
for quantized tensors (int32), float32 otherwise; --real stores q * 2^-fl instead."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a model on .npy/.npz/image input and save the outputs",
                       description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="path of the .dfx file")
    p.add_argument("--input", "-i", action="append", required=True, metavar="FILE",
                   help=".npy, .npz or image file(s); repeat for several images")
    p.add_argument("--output", "-o", default="out.npz", metavar="FILE", help="result file (default out.npz)")
    p.add_argument("--backend", default="numpy", help="backend plugin (default numpy)")
    p.add_argument("--mode", default=None, help="backend mode, e.g. integer, float, simulate")
    p.add_argument("--outputs", metavar="NAMES", help="comma-separated tensors to save (default: graph outputs)")
    p.add_argument("--no-preprocess", action="store_true", help="the input is already preprocessed")
    p.add_argument("--real", action="store_true", help="save dequantized real values instead of codes")
    _threads.add_option(p)
    p.set_defaults(func=run)


def read_inputs(model: Model, files: list[str], preprocess: bool = True) -> dict[str, np.ndarray]:
    """Graph inputs (preprocessed, float32) from the --input files."""
    paths = [Path(f) for f in files]
    for p in paths:
        check_input_file(p, f"an .npy/.npz array or {_images.EXPECTED}")
    raw: dict[str, np.ndarray] = {}
    images = [p for p in paths if _is_image(p)]
    if images:
        if len(images) != len(paths) or len(model.inputs) != 1:
            raise DfxInputError("images can only be given alone, for a model with one input", file=str(paths[0]))
        name = model.inputs[0]
        raw[name] = _data.images_to_batch([_data.read_image(p) for p in images], model, name, images)
    elif len(paths) != 1:
        raise DfxInputError("give one .npy/.npz file (or several images)", file=str(paths[1]))
    else:
        loaded = _data.load_array_file(paths[0])
        if isinstance(loaded, dict):
            missing = [n for n in model.inputs if n not in loaded]
            if missing:
                raise DfxInputError(f"no array for input(s) {missing} (arrays: {sorted(loaded)})", file=str(paths[0]))
            raw = {n: loaded[n] for n in model.inputs}
        else:
            if len(model.inputs) != 1:
                raise DfxInputError(f"the model has inputs {model.inputs}: give an .npz keyed by name",
                                    file=str(paths[0]))
            raw = {model.inputs[0]: loaded}
        raw = {n: _data.as_batch(np.asarray(a), model.tensors[n].shape, str(paths[0])) for n, a in raw.items()}
    if not preprocess:
        return {n: np.asarray(a, np.float32) for n, a in raw.items()}
    return {n: _data.preprocess(model, n, a) for n, a in raw.items()}


def _is_image(path: Path) -> bool:
    """True for image content; False for an .npy/.npz; DfxInputError for an empty or unknown file."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise DfxInputError(f"cannot read the file ({exc.strerror})", file=str(path)) from None
    expected = f"an .npy/.npz array or {_images.EXPECTED}"
    if not head:
        raise DfxInputError(f"the file is empty, expected {expected}", file=str(path))
    if _images.image_kind(head) is not None:
        return True
    if head.startswith((b"\x93NUMPY", b"PK\x03\x04", b"PK\x05\x06")):
        return False
    raise DfxInputError(f"unrecognised content (no known file signature), expected {expected}", file=str(path))


def summary(model: Model, results: dict[str, np.ndarray]) -> list[str]:
    lines = []
    for name, arr in results.items():
        t = model.tensors[name]
        fmt = "float32" if t.qformat is None else f"bw/fl {t.qformat.describe()}"
        lines.append(f"{name}: shape {tuple(arr.shape)} {arr.dtype} ({fmt})")
        flat = arr.reshape(arr.shape[0], -1) if arr.ndim >= 2 else None
        if flat is not None and flat.shape[1] > 1 and arr.size == flat.size and \
                (arr.ndim == 2 or all(d == 1 for d in arr.shape[2:])):
            top = flat.argmax(axis=1)
            shown = ", ".join(str(int(c)) for c in top[:16]) + (" ..." if len(top) > 16 else "")
            lines.append(f"  top class per sample: {shown}")
    return lines


def run(args: argparse.Namespace) -> int:
    _threads.apply(args)
    model = load(args.model)
    inputs = read_inputs(model, args.input, not args.no_preprocess)
    outputs = [s for s in args.outputs.split(",") if s] if args.outputs else None
    backend = get_manager().backend(args.backend)
    options = {"mode": args.mode} if args.mode else {}
    results = get_manager().call_backend(backend, model, inputs, outputs=outputs, **options)
    if args.real:
        results = {n: dequantize(a, model.tensors[n].qformat) if model.tensors[n].qformat and
                   a.dtype.kind == "i" else a for n, a in results.items()}
    out = Path(args.output)
    _data.save_npz_atomic(out, results)
    n = next(iter(inputs.values())).shape[0]
    print(f"ran {Path(args.model).name} on {n} sample(s) with backend {backend.name}"
          f"{' (' + args.mode + ')' if args.mode else ''}; wrote {out}")
    for line in summary(model, results):
        print(line)
    return 0

"""``dfxsdk quantize``: calibrate a float model on sample data and write a quantized .dfx."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..atomic import check_input_file, resolve_output
from ..errors import DfxInputError
from ..fixedpoint import dequantize
from ..graph import Model, Preprocessing
from ..io import load
from ..plugins import get_manager
from ..providers import CalibrationData
from . import _data, _threads
from ._plugins import add_provider_options, wants_options
from .convert_cmd import import_files, parse_shape

_DESCRIPTION = """Quantize a float model to dynamic fixed point.

The model is a .dfx file, or files an importer reads (deploy.prototxt weights.caffemodel),
imported as a float network. Calibration data (--calib):
  data.csv[.gz]  one sample per row: the input's values, then the label (MNIST style)
  data.npz       array x (samples) and optionally y (labels)
  data.npy       samples only (labels from --labels: a .npy or one integer per line)
  folder/        images (JPEG, PNG, BMP, PGM/PPM) of the input's size; --labels optional (lines
                 'file label', or one label per line for the images in sorted order)
The data is read and checked (shapes, labels, every image) before any work starts.
The model's preprocessing ((raw - mean) * scale, channel order) is applied;
--input-scale/--input-mean/--input-channel-order set it (a deploy prototxt does not
carry it; a BGR network fed RGB images needs --input-channel-order BGR).

The quantizer's scores (--search, --fl-search, learned rounding kept or not): top-1
accuracy with labels, else agreement with the float model (mean over the outputs of the
boxes found again for a DetectionOutput, else the fidelity 100*(1 - noise/signal)); see
plugins/dfx_quantizer/README.md. Defaults: fl search on the score and learned rounding
within --time-budget (300 nominal s; LeNet on 1000 samples fits); --rounding nearest
--fl-search none is the one-pass quantizer. After quantizing, the per-layer formats are printed (bw/fl; [a..b] for
per-channel fl) with the score before and after on --eval data (default: the calibration
data), the quantized model running in the numpy backend's integer mode.

Every importer's options (as on convert) apply to model files. Options besides a
quantizer's own reach it as 'progress', 'verbose' and 'source_files'
(the model files given here)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quantize", help="quantize a float model with calibration data",
                       description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="example: dfxsdk quantize deploy.prototxt weights.caffemodel --calib mnist.csv.gz "
                              "--input-scale 0.00390625 --search ristretto --margin 1.0 -o q.dfx")
    p.add_argument("files", nargs="+", type=Path, help="float.dfx, or the model files for an importer")
    p.add_argument("-o", "--output", type=Path, required=True, help="the quantized .dfx to write")
    p.add_argument("--calib", required=True, metavar="DATA", help="calibration data (see above)")
    p.add_argument("--labels", metavar="FILE", help="labels of the calibration data")
    p.add_argument("--calib-samples", type=int, metavar="N",
                   help="use N calibration samples spread evenly over the data (every k-th sample, not the "
                        "first N: sample files are often sorted by class)")
    p.add_argument("--eval", metavar="DATA", help="data for the before/after score (default: --calib)")
    p.add_argument("--eval-labels", metavar="FILE", help="labels of the --eval data")
    p.add_argument("--eval-samples", type=int, metavar="N", help="use N --eval samples, spread evenly")
    p.add_argument("--quantizer", default="dfp", metavar="NAME", help="quantizer plugin (default dfp)")
    p.add_argument("--importer", metavar="NAME", help="importer for non-.dfx model files")
    p.add_argument("--input-shape", metavar="N,C,H,W", type=parse_shape, help="input shape for the importer")
    p.add_argument("--input-scale", metavar="S[,S..]", help="set the input preprocessing scale")
    p.add_argument("--input-mean", metavar="M[,M..]", help="set the input preprocessing mean")
    p.add_argument("--input-channel-order", choices=["RGB", "BGR", "GRAY"],
                   help="channel order the network expects (images are read as RGB)")
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="samples per batch (default 64)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _threads.add_option(p)
    p.add_argument("--verbose", action="store_true", help="print the search steps as they happen")
    groups: dict[str, list[str]] = {}
    importer_groups: dict[str, list[str]] = {}
    if wants_options("quantize"):
        groups = add_provider_options(p, get_manager().quantizers(), "quantizer")
        importer_groups = add_provider_options(p, get_manager().importers(), "importer")
    p.set_defaults(func=run, _quantizer_options=groups, _importer_options=importer_groups)


# -- data --------------------------------------------------------------------------------

def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DfxInputError(f"{what} must be comma-separated numbers, got '{text}'") from None


def _read_labels(path: str) -> np.ndarray:
    p = Path(path)
    check_input_file(p, "a labels file")
    if p.suffix.lower() == ".npy":
        return np.asarray(_data.load_array_file(p)).reshape(-1)
    try:
        rows = [ln.split() for ln in p.read_text().splitlines() if ln.strip()]
        return np.array([int(r[-1]) for r in rows], np.int64)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DfxInputError(f"cannot read labels ({exc}); give one integer per line or a .npy", file=path) from None


def spread(n_total: int, n: int | None) -> np.ndarray:
    """Indices of n samples spread evenly over n_total (all when n is None or >= n_total)."""
    if n is None or n >= n_total:
        return np.arange(n_total)
    return (np.arange(n) * n_total) // n


def load_samples(data: str, labels: str | None, model: Model, name: str,
                 count: int | None = None) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Raw samples (N, ...) in the input's layout, labels (or None) and a description; all checked."""
    path = Path(data)
    shape = model.tensors[name].shape
    if not path.exists():
        raise DfxInputError("no such file or folder", file=data)
    y = None
    if path.is_dir():
        if labels is not None:
            ds = _data.load_dataset(data, labels, model, name)
            x, y = ds.x, ds.y
        else:
            files = sorted(f for f in path.iterdir() if f.suffix.lower() in _data.IMAGE_EXTENSIONS)
            if not files:
                raise DfxInputError(f"no images ({', '.join(_data.IMAGE_EXTENSIONS)}) in the folder", file=data)
            x = _data.images_to_batch([_data.read_image(f) for f in files], model, name, files)
    elif path.name.lower().endswith((".csv", ".csv.gz")):
        if labels is not None:
            raise DfxInputError("a CSV carries its labels in the last column; drop --labels", file=data)
        ds = _data.load_dataset(data, None, model, name)
        x, y = ds.x, ds.y
    elif path.suffix.lower() in (".npz", ".npy"):
        arrays = _data.load_array_file(path)
        if isinstance(arrays, dict):
            xk = next((k for k in ("x", "data", "images") if k in arrays), None)
            if xk is None:
                raise DfxInputError(f"an .npz needs an array 'x' (has {sorted(arrays)})", file=data)
            yk = next((k for k in ("y", "labels", "label") if k in arrays), None)
            x = arrays[xk]
            y = arrays[yk] if yk and labels is None else None
        else:
            x = arrays
        x = _data.as_batch(np.asarray(x), shape, data)
    else:
        raise DfxInputError("unknown data format: give a .csv[.gz], .npz, .npy or a folder of images", file=data)
    if labels is not None and not path.is_dir():
        y = _read_labels(labels)
    if y is not None:
        y = _data._labels(y, len(x), labels or data)
    if x.dtype.kind not in "fiu":
        raise DfxInputError(f"samples have dtype {x.dtype}, not numbers", file=data)
    if count is not None:
        if count < 1:
            raise DfxInputError(f"the sample count must be >= 1, got {count}")
        idx = spread(len(x), count)
        x = x[idx]
        y = None if y is None else y[idx]
    if len(x) == 0:
        raise DfxInputError("the data set is empty", file=data)
    return x, y, data


def batches(model: Model, name: str, x: np.ndarray, size: int) -> Iterator[dict[str, np.ndarray]]:
    """Preprocessed batches of ``x`` for input ``name``."""
    for s in range(0, len(x), size):
        yield {name: _data.preprocess(model, name, x[s:s + size])}


# -- model -------------------------------------------------------------------------------

def load_model(args: argparse.Namespace) -> Model:
    files = list(args.files)
    for f in files:
        check_input_file(f, "a model file")
    if len(files) == 1 and files[0].suffix.lower() == ".dfx":
        return load(files[0])
    return import_files(args, "quantize")


def score(model: Model, mode: str, name: str, x: np.ndarray, out: str, size: int) -> np.ndarray:
    """argmax of tensor ``out`` for every sample."""
    pm = get_manager()
    backend = pm.backend("numpy")
    preds = []
    for b in batches(model, name, x, size):
        r = pm.call_backend(backend, model, b, mode=mode, outputs=[out])[out]
        q = model.tensors[out].qformat
        if q is not None and r.dtype.kind == "i":
            r = dequantize(r, q, np.float64)
        preds.append(np.asarray(r).reshape(len(r), -1).argmax(axis=1))
    return np.concatenate(preds)


def format_table(model: Model) -> list[str]:
    """Per conv/fc layer: input, weights, bias and output formats (bw/fl)."""
    def f(name: str | None) -> str:
        if name is None:
            return "-"
        q = model.tensors[name].qformat
        return "float" if q is None else q.describe()
    rows = [f"{'layer':<28}{'type':<16}{'input':>10}{'weights':>12}{'bias':>12}{'output':>10}"]
    for layer in model.layers:
        if layer.type in ("Conv2D", "Deconv2D", "FullyConnected"):
            bias = layer.inputs[2] if len(layer.inputs) > 2 else None
            rows.append(f"{layer.name:<28}{layer.type:<16}{f(layer.inputs[0]):>10}{f(layer.inputs[1]):>12}"
                        f"{f(bias):>12}{f(layer.outputs[0]):>10}")
    return rows


def run(args: argparse.Namespace) -> int:
    resolve_output(args.output)  # refuse a folder, a device or a missing folder before quantizing
    if args.batch_size < 1:
        raise DfxInputError("--batch-size must be >= 1")
    _threads.apply(args)
    pm = get_manager()
    quantizer = pm.quantizer(args.quantizer)
    options = {dest: getattr(args, dest, None) for dest in args._quantizer_options.get(quantizer.name, [])}
    options.update(progress=not args.no_progress, verbose=args.verbose,
                   source_files=[str(f) for f in args.files])
    model = load_model(args)
    if len(model.inputs) != 1:
        raise DfxInputError(f"quantize needs a model with one input (this one has {model.inputs})")
    name = model.inputs[0]
    if args.input_scale or args.input_mean or args.input_channel_order:
        pre = model.preprocessing.get(name) or Preprocessing()
        model.preprocessing[name] = Preprocessing(
            mean=_floats(args.input_mean, "--input-mean") if args.input_mean else pre.mean,
            scale=_floats(args.input_scale, "--input-scale") if args.input_scale else pre.scale,
            channel_order=args.input_channel_order or pre.channel_order)
        model.validate()
    x, y, source = load_samples(args.calib, args.labels, model, name, args.calib_samples)
    if args.eval:
        ex, ey, esource = load_samples(args.eval, args.eval_labels, model, name, args.eval_samples)
    else:
        idx = spread(len(x), args.eval_samples)
        ex, ey, esource = x[idx], None if y is None else y[idx], source
    data = CalibrationData(batches(model, name, x, args.batch_size), y, len(x))
    start = time.perf_counter()
    qmodel = pm.call_quantizer(quantizer, model, data, options)
    elapsed = time.perf_counter() - start
    from .. import save

    save(qmodel, args.output)
    print(f"wrote {args.output}: {args.output.stat().st_size} bytes; quantized in {elapsed:.1f} s "
          f"({len(x)} calibration samples from {source})")
    print()
    print("\n".join(format_table(qmodel)))
    log = qmodel.metadata.get("quantization.log")
    if log:
        print("\nsearch:\n" + log)
    out = qmodel.metadata.get("quantization.score_output") or options.get("score_output") or qmodel.outputs[0]
    before = score(model, "float", name, ex, out, args.batch_size)
    after = score(qmodel, "integer", name, ex, out, args.batch_size)
    if ey is not None:
        what, a, b = "top-1 accuracy", 100 * np.mean(before == ey), 100 * np.mean(after == ey)
    else:
        what, a, b = "agreement with the float model", 100.0, 100 * np.mean(after == before)
    print(f"\n{what} on {len(ex)} samples from {esource} ('{out}'):")
    print(f"  float      {a:8.2f} %\n  quantized  {b:8.2f} %  ({b - a:+.2f} pp)")
    scores = qmodel.metadata.get("quantization.scores")
    if scores and args.verbose:
        print(f"search scores: {json.loads(scores)}")
    return 0

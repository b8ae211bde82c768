"""``dfxsdk convert``: import a model of another framework and write a .dfx file.

The importer is the one plugin whose importer claims the given files (or the
one named with ``--importer``). Every importer adds its own option group
(for example ``--ristretto`` of the Caffe importer); ``--input-shape``,
``--metadata`` and ``--labels`` are common to all. The output is written atomically, and only
after the import succeeded: a failed conversion leaves no file behind and an
existing output file untouched.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from ..atomic import check_input_file, resolve_output
from ..errors import DfxInputError
from ..labels import LABELS_KEY, encode_labels
from ..plugins import get_manager
from ._plugins import add_provider_options, wants_options


def parse_shape(text: str) -> tuple[int, ...]:
    """'1,3,224,224' -> (1, 3, 224, 224); argparse error otherwise."""
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(",") if d.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers") from None
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"'{text}' must list positive dimensions, e.g. 1,3,224,224")
    return dims


def parse_metadata(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"'{text}' is not KEY=VALUE")
    return key, value


def parse_floats(text: str) -> list[float]:
    """'104,117,123' -> [104.0, 117.0, 123.0]; argparse error otherwise."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of numbers") from None


def read_labels(path: Path) -> list[str]:
    """Class labels from a UTF-8 text file, one per line (trailing blank lines dropped)."""
    check_input_file(path, "a labels file (--labels)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DfxInputError(f"cannot read the labels ({exc})", file=str(path), field="--labels") from None
    labels = [line.removesuffix("\r") for line in text.split("\n")]
    while labels and not labels[-1].strip():
        labels.pop()
    if not labels:
        raise DfxInputError("the labels file has no labels", file=str(path), field="--labels")
    return labels


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert", help="convert a model of another framework to .dfx",
        description="Convert model files of another framework (Caffe, Ristretto, ...) to a .dfx file. "
                    "The importer is chosen from the files given, or with --importer.",
        epilog="example: dfxsdk convert deploy.prototxt weights.caffemodel "
               "--ristretto quantized.prototxt -o net.dfx")
    p.add_argument("files", nargs="+", type=Path, help="the model files (network, weights)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .dfx file to write")
    p.add_argument("--importer", metavar="NAME", help="use this importer instead of guessing from the files")
    p.add_argument("--input-shape", metavar="N,C,H,W", type=parse_shape,
                   help="shape of the (single) graph input, overriding the file's")
    p.add_argument("--metadata", metavar="KEY=VALUE", type=parse_metadata, action="append", default=[],
                   help="add a metadata entry to the model (repeatable)")
    p.add_argument("--labels", metavar="FILE", type=Path,
                   help="class labels, one per line (line i names output class i), stored as the metadata "
                        "entry 'labels' (spec/format.md 7.2); dfx-run --top and the C API read them")
    pre = p.add_argument_group("preprocessing of the graph input (overrides what the files say)")
    pre.add_argument("--input-mean", metavar="M[,M...]", type=parse_floats,
                     help="value(s) subtracted from raw input, one or one per channel")
    pre.add_argument("--input-scale", metavar="S[,S...]", type=parse_floats,
                     help="factor(s) applied after the mean, e.g. 0.00390625 for pixels 0..255 -> [0,1)")
    pre.add_argument("--input-channel-order", choices=["RGB", "BGR", "GRAY"],
                     help="channel order the network expects")
    groups = add_provider_options(p, get_manager().importers(), "importer") if wants_options("convert") else {}
    p.set_defaults(func=run, _importer_options=groups)


def run(args: argparse.Namespace) -> int:
    for path in args.files:
        check_input_file(path, "a model file")
    resolve_output(args.output)  # refuse a folder, a device or a missing folder before converting
    get_manager()  # load the plugins (and report their failures) before importing
    model = import_files(args, "convert")
    model.metadata.update(dict(args.metadata))
    if args.labels is not None:
        model.metadata[LABELS_KEY] = encode_labels(read_labels(args.labels))
    _override_preprocessing(model, args)
    from .. import save

    save(model, args.output)
    size = args.output.stat().st_size
    quantized = sum(1 for t in model.tensors.values() if t.is_constant and t.qformat is not None)
    print(f"wrote {args.output}: {len(model.layers)} layers, {len(model.tensors)} tensors "
          f"({quantized} quantized constants), {size} bytes")
    return 0


def import_files(args: argparse.Namespace, command: str):
    """Import ``args.files`` with the importer that claims them (or ``--importer``) and its options.

    Warnings the importer issues are printed; plugin bugs and invalid models
    are DfxPluginError (exit code 4).
    """
    pm = get_manager()
    importer = pm.importer(args.importer) if args.importer else pm.importer_for(args.files)
    options = {dest: getattr(args, dest, None) for dest in args._importer_options.get(importer.name, [])}
    options["input_shape"] = args.input_shape
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = pm.call_importer(importer, list(args.files), options)
    for w in caught:
        print(f"dfxsdk {command}: warning: {w.message}", file=sys.stderr)
    return model


def _override_preprocessing(model, args: argparse.Namespace) -> None:
    if args.input_mean is None and args.input_scale is None and args.input_channel_order is None:
        return
    if len(model.inputs) != 1:
        raise DfxInputError(f"--input-mean/--input-scale/--input-channel-order need a single graph input, the model "
                            f"has {len(model.inputs)}", field="--input-mean/--input-scale")
    from ..graph import Preprocessing

    pre = model.preprocessing.get(model.inputs[0]) or Preprocessing()
    model.preprocessing[model.inputs[0]] = Preprocessing(
        mean=pre.mean if args.input_mean is None else args.input_mean,
        scale=pre.scale if args.input_scale is None else args.input_scale,
        channel_order=args.input_channel_order or pre.channel_order)

"""The Caffe/Ristretto importer plugin (entry point ``caffe`` in group ``dfxsdk``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dfxsdk.errors import DfxError, DfxImportError, DfxInputError
from dfxsdk.graph import Model
from dfxsdk.hookspecs import hookimpl
from dfxsdk.providers import Importer, PluginInfo

from . import __version__, convert, parse, ristretto
from .build import WeightSource

TEXT_SUFFIXES = (".prototxt", ".pbtxt", ".pt")
BINARY_SUFFIXES = (".caffemodel", ".binaryproto")


def is_text(path: Path) -> bool:
    """Whether ``path`` names a text prototxt (by suffix, else by content)."""
    name = path.name.lower()
    if name.endswith(TEXT_SUFFIXES):
        return True
    if name.endswith(BINARY_SUFFIXES):
        return False
    head = Importer.head(path)
    return b"\0" not in head and (b"layer" in head or b"name:" in head or b"input" in head)


class CaffeImporter(Importer):
    """Caffe (V1 and V2), caffe-ssd and Ristretto models."""

    name = "caffe"
    description = "Caffe / caffe-ssd / Ristretto: .prototxt (+ .caffemodel) [--ristretto quantized.prototxt]"
    extensions = TEXT_SUFFIXES + BINARY_SUFFIXES

    def claims(self, paths: Sequence[Path]) -> bool:
        return bool(paths) and all(Path(p).name.lower().endswith(self.extensions) for p in paths)

    def add_arguments(self, parser: argparse._ArgumentGroup) -> None:
        parser.add_argument("--ristretto", metavar="QUANTIZED.prototxt", type=Path, default=None,
                            help="Ristretto prototxt whose ConvolutionRistretto/FcRistretto layers give the "
                                 "bw/fl of the layers of the same name (train/test nets are fine)")

    def import_model(self, paths: Sequence[Path], options: dict[str, Any]) -> Model:
        return import_caffe(paths, ristretto_path=options.get("ristretto"),
                            input_shape=options.get("input_shape"))


def import_caffe(paths: Sequence[Path | str], *, ristretto_path: Path | str | None = None,
                 input_shape: Sequence[int] | None = None, weights: WeightSource | None = None) -> Model:
    """Import a Caffe model.

    ``paths`` holds at most one prototxt (the network; a Ristretto prototxt is
    a complete network too) and at most one .caffemodel (the weights; alone,
    it is also the network). ``weights`` replaces the .caffemodel (for
    example :class:`~.build.RandomWeights`).
    """
    paths = [Path(p) for p in paths]
    for p in paths + ([Path(ristretto_path)] if ristretto_path else []):
        if not p.exists():
            raise DfxImportError("no such file", file=str(p))
    texts = [p for p in paths if is_text(p)]
    binaries = [p for p in paths if not is_text(p)]
    if len(texts) > 1 or len(binaries) > 1 or not paths:
        raise DfxInputError("give one network .prototxt and/or one .caffemodel "
                            f"(got {', '.join(map(str, paths)) or 'nothing'}); pass a Ristretto "
                            "prototxt with --ristretto")
    weights_nf = parse.read_binary(binaries[0]) if binaries else None
    if weights is None:
        weights = WeightSource(weights_nf)
    net = parse.read_text(texts[0]) if texts else weights_nf
    if net is None:
        raise DfxInputError("no network: give a .prototxt or a .caffemodel")
    rist = None
    if ristretto_path:
        rist = parse.read_text(Path(ristretto_path))
        ristretto.overlay(net, rist, weights)
    ristretto.check_legacy(weights_nf, net)
    try:
        model = convert.build_model(net, weights, input_shape=input_shape, preprocess_from=rist)
    except DfxError as exc:
        raise exc.with_file(str(net.path))
    files = [p.name for p in paths] + ([Path(ristretto_path).name] if ristretto_path else [])
    model.metadata.update({
        "source.framework": "caffe",
        "source.files": " ".join(files),
    })
    if model.is_quantized:
        model.metadata["source.quantization"] = "ristretto dynamic_fixed_point (TEST phase, CPU rounding)"
    return model


@hookimpl
def dfxsdk_plugin_info() -> PluginInfo:
    return PluginInfo(name="dfx-caffe", version=__version__, api_version=(1, 0),
                      description="Caffe, caffe-ssd and Ristretto importer")


@hookimpl
def dfxsdk_importers() -> list[Importer]:
    return [CaffeImporter()]

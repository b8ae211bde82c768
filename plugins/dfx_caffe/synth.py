"""Random weights for a prototxt, as a real .caffemodel (tests, benchmarks).

Large public models often ship only their prototxt here; this writes a
caffemodel with random blobs of exactly the shapes the importer expects
(BatchNorm variances positive, scale factors 1), so that the whole import path,
binary parsing included, can run on them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import parse
from ._proto import caffe_pb2 as pb
from .build import RandomWeights


def random_caffemodel(prototxt: Path | str, output: Path | str, *, seed: int = 0,
                      input_shape: Sequence[int] | None = None) -> Path:
    """Write ``output``: a V2 caffemodel with random weights for every layer of ``prototxt``."""
    from .plugin import import_caffe

    weights = RandomWeights(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", parse.CaffeWarning)
        import_caffe([prototxt], input_shape=input_shape, weights=weights)
        net = parse.read_text(Path(prototxt)).net
    blobs = {lp.name: weights.made.get(lp.name) or [] for lp in net.layer}
    types = {lp.name: lp.type for lp in net.layer}
    return write_caffemodel(output, net.name, blobs, types)


def write_caffemodel(output: Path | str, name: str, blobs: dict[str, Sequence[np.ndarray]],
                     types: dict[str, str] | None = None) -> Path:
    """Write a V2 .caffemodel holding ``blobs`` (layer name -> arrays, in Caffe's order).

    ``types`` optionally gives each layer's type string (Caffe only needs names
    to match weights to layers).
    """
    out = pb.NetParameter(name=name)
    for layer_name, arrays in blobs.items():
        layer = out.layer.add(name=layer_name, type=(types or {}).get(layer_name, ""))
        for arr in arrays:
            blob = layer.blobs.add()
            blob.shape.dim.extend(np.shape(arr))
            blob.data.extend(np.asarray(arr, np.float32).reshape(-1).tolist())
    Path(output).write_bytes(out.SerializeToString())
    return Path(output)

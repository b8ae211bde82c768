"""Shared helpers of the quantizer tests: test data, the float LeNet, MNIST, MobileNet-SSD."""

from __future__ import annotations

import functools
import gzip
import warnings

import numpy as np

from .testdata import LENET, MNIST, MOBILENET_SSD

#: LeNet's training input scale (lenet_train_test.prototxt: 1/256 on raw pixels).
LENET_SCALE = 0.00390625


def lenet_float():
    """The real float LeNet (deploy prototxt + caffemodel) with its training input scale."""
    from dfxsdk.graph import Preprocessing

    from dfx_caffe.plugin import import_caffe

    model = import_caffe([LENET / "lenet.prototxt", LENET / "lenet_iter_10000.caffemodel"])
    model.preprocessing["data"] = Preprocessing(scale=[LENET_SCALE], channel_order="GRAY")
    return model


@functools.lru_cache(maxsize=1)
def mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5000 digits (raw pixels, N,1,28,28 float32) and their labels."""
    with gzip.open(MNIST, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    return table[:, :-1].reshape(-1, 1, 28, 28), table[:, -1].astype(np.int64)


def spread(n: int) -> tuple[np.ndarray, np.ndarray]:
    """n digits spread evenly over the 5000 (the file is sorted by label: the first 500 are all zeros)."""
    x, y = mnist()
    idx = (np.arange(n) * len(y)) // n
    return x[idx], y[idx]


def batches(model, x: np.ndarray, size: int = 100) -> list[dict[str, np.ndarray]]:
    """Preprocessed batches of raw samples ``x`` for the model's single input."""
    name = model.inputs[0]
    pre = model.preprocessing.get(name)
    return [{name: pre.apply(x[s:s + size]) if pre else x[s:s + size].astype(np.float32)}
            for s in range(0, len(x), size)]


def top1(model, x: np.ndarray, y: np.ndarray, mode: str) -> float:
    """Top-1 accuracy (percent, argmax of the first output) of ``model`` in ``mode``."""
    out = model.outputs[0]
    preds = [model.run(b, mode=mode, outputs=[out])[out].argmax(axis=1) for b in batches(model, x, 1000)]
    return 100.0 * float(np.mean(np.concatenate(preds) == y))


def mobilenet_ssd(size: int = 300, seed: int = 0):
    """MobileNet-SSD with random weights (BatchNorm/Scale folded by the importer) at size x size."""
    from dfx_caffe.build import RandomWeights
    from dfx_caffe.plugin import import_caffe

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return import_caffe([MOBILENET_SSD], weights=RandomWeights(seed), input_shape=(1, 3, size, size))


def sqnr_db(ref: np.ndarray, x: np.ndarray) -> float:
    """10 log10(sum ref^2 / sum (ref - x)^2)."""
    ref = np.asarray(ref, np.float64)
    noise = float(np.sum((ref - np.asarray(x, np.float64)) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(ref ** 2)) / noise)


def depthwise_sqnr(float_model, qmodel, x: np.ndarray) -> tuple[list[float], list[float]]:
    """Per depthwise convolution: SQNR of the quantized weights and of the layer output (integer mode).

    The output is taken after the ReLU that follows each depthwise layer (what the network
    uses: negative values saturating before a ReLU do not matter).
    """
    from dfxsdk.fixedpoint import dequantize

    layers = [l for l in float_model.layers if l.type == "Conv2D" and l.op.group > 1]
    names = []
    for l in layers:
        readers = float_model.consumers(l.outputs[0])
        relu = len(readers) == 1 and readers[0].type == "Relu"
        names.append(readers[0].outputs[0] if relu else l.outputs[0])
    name = float_model.inputs[0]
    ref = float_model.run({name: x}, mode="float", outputs=names)
    got = qmodel.run({name: x}, mode="integer", outputs=names)
    w = [sqnr_db(float_model.tensors[l.inputs[1]].data, qmodel.tensors[l.inputs[1]].real()) for l in layers]
    o = [sqnr_db(ref[n], dequantize(got[n], qmodel.tensors[n].qformat, np.float64)) for n in names]
    return w, o

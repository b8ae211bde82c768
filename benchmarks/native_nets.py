"""The networks of the native benchmarks: float models, their 8-bit quantization and their conv bodies.

Every builder returns a float dfx model (random weights where the real ones are not in
../shared/testdata); :func:`quantize8` makes the 8-bit model that native runs (with the quantizer's
one-pass form, ``--rounding nearest --fl-search none``), and :func:`conv_body` the prefix that the ONNX
export covers.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = ROOT.parent / "shared" / "testdata"
LENET = TESTDATA / "lenet-ristretto"
SSD_PROTO = TESTDATA / "prototxt-only" / "MobileNetSSD_deploy.prototxt"
MTCNN = TESTDATA / "mtcnn"
NCNN = TESTDATA / "ncnn-benchmark"
#: Operators the ONNX export covers (benchmarks/native_onnx.py); the conv body is made of them.
BODY_OPS = ("Conv2D", "Relu", "Pool2D", "FullyConnected", "Requantize")
#: The depthwise-separable detector: (output channels, stride) of each separable block after the stem.
DETECTOR_BLOCKS = ((32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (128, 1), (256, 2), (256, 1), (512, 2))
#: Blocks (0-based, after the stem) whose outputs feed a detection head, with anchors per cell.
DETECTOR_HEADS = {5: 3, 7: 2, 8: 2}
DETECTOR_SHAPE = (1, 3, 240, 320)


def _conv(name: str, bottom: str, out: int, k: int, stride: int = 1, group: int = 1, relu: bool = True) -> str:
    text = (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}"\n'
            f'  convolution_param {{ num_output: {out} kernel_size: {k} stride: {stride} pad: {k // 2}'
            f'{f" group: {group}" if group > 1 else ""} }} }}\n')
    if relu:
        text += f'layer {{ name: "{name}/relu" type: "ReLU" bottom: "{name}" top: "{name}" }}\n'
    return text


def detector_prototxt(shape: tuple[int, int, int, int] = DETECTOR_SHAPE) -> str:
    """A MobileNet-style backbone (3x3 depthwise + 1x1 pointwise blocks) with SSD-style heads (3x3 convs
    giving 4 box offsets and 2 class scores per anchor) on three scales, as a Caffe prototxt."""
    lines = ['name: "dw_detector"\n', 'input: "data"\n'] + [f"input_dim: {d}\n" for d in shape]
    lines.append(_conv("stem", "data", 16, 3, 2))
    bottom, channels = "stem", 16
    for i, (out, stride) in enumerate(DETECTOR_BLOCKS):
        lines.append(_conv(f"b{i}/dw", bottom, channels, 3, stride, group=channels))
        lines.append(_conv(f"b{i}/pw", f"b{i}/dw", out, 1))
        bottom, channels = f"b{i}/pw", out
        if i in DETECTOR_HEADS:
            a = DETECTOR_HEADS[i]
            lines.append(_conv(f"b{i}/loc", bottom, 4 * a, 3, relu=False))
            lines.append(_conv(f"b{i}/conf", bottom, 2 * a, 3, relu=False))
    return "".join(lines)


def _caffe(paths, **kw):
    from dfx_caffe.plugin import import_caffe

    return import_caffe([Path(p) for p in paths], **kw)


def _random(seed: int):
    from dfx_caffe.build import RandomWeights

    return RandomWeights(seed)


def lenet() -> object:
    """LeNet with its real weights (lenet-ristretto), float."""
    return _caffe([LENET / "lenet.prototxt", LENET / "lenet_iter_10000.caffemodel"])


def mobilenet_ssd() -> object:
    """chuanqi305's MobileNet-SSD 300x300 with random weights, float."""
    return _caffe([SSD_PROTO], weights=_random(0))


def detector(workdir: Path) -> object:
    """The depthwise-separable detector of :func:`detector_prototxt` at 320x240, random weights, float."""
    proto = workdir / "dw_detector.prototxt"
    proto.write_text(detector_prototxt())
    return _caffe([proto], weights=_random(1))


def mtcnn(net: str, shape: tuple[int, ...]) -> object:
    """MTCNN ``det1``/``det2``/``det3`` with real weights, float, at input ``shape``."""
    return _caffe([MTCNN / f"{net}.prototxt", MTCNN / f"{net}.caffemodel"], input_shape=shape)


def random_input(model, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Uniform [-1, 1) data for the model's single input at ``batch``."""
    name = model.inputs[0]
    shape = (batch,) + tuple(model.tensors[name].shape[1:])
    return {name: np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)}


def quantize8(model) -> object:
    """``model`` quantized to 8 bits by the ``dfp`` quantizer's one-pass form: max-abs rule, nearest rounding,
    no fl search (``--rounding nearest --fl-search none``: the default's learned rounding and fl search on the
    task score cost time the benchmarks do not measure), two random calibration images."""
    from dfxsdk.providers import CalibrationData

    from dfx_quantizer.plugin import quantize_model

    data = CalibrationData([random_input(model, 2)])
    opts = {"bw": 8, "fl_rule": "maxabs", "rounding": "nearest", "fl_search": "none"}
    return quantize_model(model, data, opts).model


def conv_body(model, keep_types=BODY_OPS):
    """The prefix of ``model`` made of ``keep_types`` layers; its outputs are the results nothing uses."""
    layers = []
    for layer in model.layers:
        if layer.type not in keep_types or any(i and i not in model.tensors for i in layer.inputs):
            continue
        if any(i and not model.tensors[i].is_constant and i not in model.inputs
               and not any(i in done.outputs for done in layers) for i in layer.inputs):
            continue
        layers.append(layer)
    produced = [o for layer in layers for o in layer.outputs]
    used = {i for layer in layers for i in layer.inputs}
    body = copy.copy(model)
    body.layers = layers
    body.outputs = [o for o in produced if o not in used]
    keep = set(model.inputs) | set(produced) | used
    body.tensors = {n: t for n, t in model.tensors.items() if n in keep}
    return body

"""``dfxsdk eval``: top-1/top-5 accuracy on labelled data, and float-vs-quantized differences."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DfxInputError
from ..fixedpoint import dequantize
from ..graph import Model
from ..io import load
from ..plugins import get_manager
from ..progress import Progress
from . import _data, _threads

_DESCRIPTION = """Measure the accuracy of a classifier on labelled data.

--data is a CSV (one sample per row: the input's pixels, then the label; .csv or
.csv.gz), an .npz with arrays x (raw samples) and y (labels), or a folder of images
(JPEG, PNG, BMP, PGM/PPM) with --labels (lines 'file label', or one label per line for the
images in sorted order). The model's preprocessing is applied to the raw samples.

Accuracy is reported twice: 'argmax' counts a sample correct when the label is
among the k highest scores (ties broken towards the lower class index), 'caffe'
as Caffe's Accuracy layer does: correct when fewer than k scores are strictly
greater than the label's score, so a tie counts as correct. Coarse low-bit outputs
tie often; the 'caffe' figure is the one Ristretto reports.

--float also runs the model in float mode, --compare runs another .dfx; both print
the accuracy difference and a per-tensor SQNR table (10*log10(sum ref^2 / sum
(ref - x)^2) in dB, reference = float mode or the compared model), also shown
alone with --sqnr. Without labels (an .npy of samples, an .npz without y, or an
image folder without --labels) --float, --compare and --sqnr still work: only the
SQNR table and the agreement of the argmax of the score tensor are printed."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="top-1/top-5 accuracy on labelled data, float vs quantized",
                       description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="path of the .dfx file")
    p.add_argument("--data", required=True, metavar="DIR|FILE", help="CSV[.gz], .npz (x, y) or image folder")
    p.add_argument("--labels", metavar="FILE", help="labels for an image folder")
    p.add_argument("--backend", default="numpy", help="backend plugin (default numpy)")
    p.add_argument("--mode", default=None, help="backend mode (default: the backend's first)")
    p.add_argument("--batch-size", type=int, default=256, metavar="N", help="samples per run (default 256)")
    p.add_argument("--limit", type=int, metavar="N", help="use only the first N samples")
    p.add_argument("--output", metavar="NAME", help="score tensor (default: the first graph output)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--float", action="store_true",
                       help="also run the model in float mode (its stored weights dequantized, no rounding of "
                            "activations) and compare; for the original float network convert it without "
                            "--ristretto and use --compare")
    group.add_argument("--compare", metavar="OTHER.dfx",
                       help="also run another model (e.g. the float original) and compare")
    p.add_argument("--sqnr", action="store_true", help="print the per-tensor SQNR table (vs float mode)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _threads.add_option(p)
    p.set_defaults(func=run)


def topk_argmax(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """True where the label is among the k best classes (stable: lower index wins ties)."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return (order == labels[:, None]).any(axis=1)


def topk_caffe(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Caffe's AccuracyLayer: fewer than k scores strictly above the label's score."""
    mine = scores[np.arange(len(labels)), labels]
    return (scores > mine[:, None]).sum(axis=1) < k


@dataclass
class Tally:
    """Running counts of one model run over the data set."""

    label: str
    n: int = 0
    correct: dict[str, int] = field(default_factory=dict)

    def add(self, scores: np.ndarray, labels: np.ndarray) -> None:
        k_max = scores.shape[1]
        if labels.size and labels.max() >= k_max:
            raise DfxInputError(f"label {int(labels.max())} is out of range for {k_max} classes")
        self.n += len(labels)
        for k in (1, 5):
            kk = min(k, k_max)
            for how, fn in (("argmax", topk_argmax), ("caffe", topk_caffe)):
                key = f"top-{k} {how}"
                self.correct[key] = self.correct.get(key, 0) + int(fn(scores, labels, kk).sum())

    def acc(self, key: str) -> float:
        return self.correct.get(key, 0) / max(self.n, 1)


KEYS = ("top-1 argmax", "top-1 caffe", "top-5 argmax", "top-5 caffe")


class Runner:
    """One model in one mode, giving real-valued (float64) tensors."""

    def __init__(self, model: Model, backend: str, mode: str | None, label: str) -> None:
        self.model, self.label = model, label
        self.backend = get_manager().backend(backend)
        self.options = {"mode": mode} if mode else {}

    def __call__(self, x: np.ndarray, outputs: list[str]) -> dict[str, np.ndarray]:
        name = self.model.inputs[0]
        feed = _data.preprocess(self.model, name, x)
        res = get_manager().call_backend(self.backend, self.model, {name: feed}, outputs=outputs,
                                         **self.options)
        real = {}
        for n, a in res.items():
            q = self.model.tensors[n].qformat
            real[n] = dequantize(a, q, np.float64) if q is not None and a.dtype.kind == "i" else \
                np.asarray(a, np.float64)
        return real


def activations(model: Model) -> list[str]:
    return [n for layer in model.layers for n in layer.outputs]


def run(args: argparse.Namespace) -> int:
    _threads.apply(args)
    model = load(args.model)
    if len(model.inputs) != 1:
        raise DfxInputError(f"eval needs a model with one input (this one has {model.inputs})", file=args.model)
    if args.batch_size < 1:
        raise DfxInputError("--batch-size must be >= 1")
    score = args.output or model.outputs[0]
    if score not in model.tensors:
        raise DfxInputError(f"no tensor named '{score}'", file=args.model)
    comparing = bool(args.float or args.compare or args.sqnr)
    data = _data.load_dataset(args.data, args.labels, model, model.inputs[0], need_labels=not comparing)
    x, y = data.x, data.y
    if args.limit:
        x = x[:args.limit]
        y = None if y is None else y[:args.limit]
    if len(x) == 0:
        raise DfxInputError("the data set is empty", file=data.source)

    main = Runner(model, args.backend, args.mode, args.mode or "default")
    main.label = f"{Path(args.model).name} ({args.mode or get_manager().backend(args.backend).modes[0]})"
    other = None
    if args.float:
        other = Runner(model, args.backend, "float", "float")
        other.label = f"{Path(args.model).name} (float)"
    elif args.compare:
        other = Runner(load(args.compare), args.backend, None, Path(args.compare).name)
        if score not in other.model.tensors:
            raise DfxInputError(f"the compared model has no tensor '{score}'", file=args.compare)
    elif args.sqnr:
        other = Runner(model, args.backend, "float", f"{Path(args.model).name} (float)")
    want_sqnr = other is not None
    shared = []
    if want_sqnr:
        shared = [n for n in activations(model) if n in other.model.tensors
                  and other.model.tensors[n].shape[1:] == model.tensors[n].shape[1:]]
    tallies = [Tally(main.label)] + ([Tally(other.label)] if other else [])
    signal = dict.fromkeys(shared, 0.0)
    noise = dict.fromkeys(shared, 0.0)
    same = 0
    prog = Progress(len(x), "eval", enabled=not args.no_progress)
    for start in range(0, len(x), args.batch_size):
        xb = x[start:start + args.batch_size]
        yb = None if y is None else y[start:start + args.batch_size]
        outs = sorted(set(shared) | {score})
        got = main(xb, outs)
        if yb is not None:
            tallies[0].add(got[score].reshape(len(yb), -1), yb)
        if other is not None:
            ref = other(xb, outs)
            same += int(np.sum(got[score].reshape(len(xb), -1).argmax(axis=1)
                               == ref[score].reshape(len(xb), -1).argmax(axis=1)))
            if len(tallies) > 1 and yb is not None:
                tallies[1].add(ref[score].reshape(len(yb), -1), yb)
            for n in shared:
                signal[n] += float(np.sum(ref[n] ** 2))
                noise[n] += float(np.sum((ref[n] - got[n]) ** 2))
        prog.update(len(xb))
    prog.close()

    print(f"{len(x)} samples from {data.source}{'' if y is not None else ' (no labels)'}; scores from '{score}'")
    if other is not None:
        print(f"argmax of '{score}' agrees with {other.label} on {same} of {len(x)} samples "
              f"({100.0 * same / len(x):.2f} %)")
    width = max(len(t.label) for t in tallies) + 2
    if y is None:
        tallies = []
    if tallies:
        print(f"{'':<{width}}" + "".join(f"{k:>14}" for k in KEYS))
    for t in tallies:
        print(f"{t.label:<{width}}" + "".join(f"{t.acc(k):>14.4f}" for k in KEYS))
    if len(tallies) > 1:
        print(f"{'difference':<{width}}" + "".join(f"{tallies[0].acc(k) - tallies[1].acc(k):>+14.4f}"
                                                   for k in KEYS))
    if want_sqnr and shared:
        print(f"\nSQNR against {other.label} (dB; inf = identical)")
        print(f"{'tensor':<24}{'format':>12}{'SQNR':>10}")
        for n in shared:
            q = model.tensors[n].qformat
            db = math.inf if noise[n] == 0 else (-math.inf if signal[n] == 0 else
                                                 10 * math.log10(signal[n] / noise[n]))
            print(f"{n:<24}{('f32' if q is None else q.describe()):>12}{db:>10.2f}")
    return 0

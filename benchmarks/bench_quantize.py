"""Calibration and quantization time of the dfp quantizer; per-channel vs per-layer SQNR.

Usage: python benchmarks/bench_quantize.py [--size 300] [--calib 8] [--skip-lenet] [--skip-ssd] [--skip-lowbit]
       [--budget 120]

LeNet 2/4/4 (conv 2, fc 4, activations 4 bits, Ristretto's widths for it), calibrated with labels
on 1000 digits spread over the file: nearest rounding with the rule's fl, then the defaults
(fl search on top-1, learned rounding); quantization time and top-1 on all 5000 digits on the
native backend.

LeNet: the real float LeNet (../shared/testdata) calibrated on 500 MNIST digits at 8 bits
(no search), then Ristretto's search and the per-layer search with a 1 % margin scored on
1000 digits (digits spread over the file, which is sorted by label); reports the times and
the top-1 accuracy on all 5000 digits.
MobileNet-SSD: the real prototxt with generated weights (BatchNorm/Scale folded) at
--size x --size (300 is the network's own), calibrated on --calib random inputs in the
network's preprocessed range; 8-bit per-layer fl against per-channel weight fl, with the
SQNR of every depthwise layer's weights and outputs (integer mode) against float.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dfxsdk.fixedpoint import dequantize  # noqa: E402
from dfxsdk.providers import CalibrationData  # noqa: E402

from dfx_quantizer.plugin import quantize_model  # noqa: E402
from dfx_quantizer.scores import sqnr  # noqa: E402

from tests.support.quantize import batches, depthwise_sqnr, lenet_float, mnist, mobilenet_ssd, spread, top1  # noqa: E402
from tests.support.testdata import LENET, MNIST, MOBILENET_SSD  # noqa: E402


def bench_lenet() -> None:
    if not (LENET.is_dir() and MNIST.is_file()):
        print("LeNet: skipped (no ../shared/testdata)")
        return
    model = lenet_float()
    x, y = mnist()
    acc_float = top1(model, x, y, "float")
    print(f"LeNet (real weights), float top-1 on {len(y)} digits: {acc_float:.2f} %")
    print(f"{'run':<40}{'calibration s':>14}{'quantization s':>16}{'evals':>7}{'top-1 %':>9}{'loss pp':>9}")
    runs = [("8-bit, mse rule, 500 digits", {"bw": 8}, 500, False),
            ("8-bit, ristretto rule, 500 digits", {"bw": 8, "fl_rule": "ristretto"}, 500, False),
            ("ristretto search, margin 1, 1000 digits", {"search": "ristretto", "margin": 1.0}, 1000, True),
            ("per-layer search, margin 1, 1000 digits", {"search": "per-layer", "margin": 1.0}, 1000, True)]
    for label, opts, n, labelled in runs:
        xs, ys = spread(n)          # the file is sorted by label: take digits of every class
        data = CalibrationData(batches(model, xs), ys if labelled else None, n)
        res = quantize_model(model, data, {**opts, "stats_samples": 500})
        acc = top1(res.model, x, y, "integer")
        t = res.timings
        print(f"{label:<40}{t['calibration']:>14.2f}{t['quantization']:>16.2f}{res.evaluations:>7}"
              f"{acc:>9.2f}{acc_float - acc:>9.2f}")
        if labelled:
            widths = {k: (p.bw_params, p.bw_out) for k, p in res.plan.items()}
            print(f"    widths (params, activations): {widths}; search score {res.score:.2f} % "
                  f"(baseline {res.baseline:.2f} %)")


NEAREST = {"rounding": "nearest", "fl_search": "none"}


def bench_lowbit() -> None:
    if not (LENET.is_dir() and MNIST.is_file()):
        print("LeNet 2/4/4: skipped (no ../shared/testdata)")
        return
    from dfxsdk.plugins import get_manager

    native = get_manager().backend("native")
    model = lenet_float()
    x, y = mnist()
    xs, ys = spread(1000)
    print(f"\nLeNet 2/4/4, calibration on 1000 labelled digits; top-1 on {len(y)} digits, native backend")
    print(f"{'run':<44}{'quantization s':>16}{'evals':>7}{'top-1 %':>9}")
    for label, opts in (("rule fl (mse), nearest rounding", NEAREST), ("defaults (fl search, learned rounding)", {})):
        data = CalibrationData(batches(model, xs), ys, 1000)
        res = quantize_model(model, data, {"bw_conv": 2, "bw_fc": 4, "bw_act": 4, **opts})
        q = res.model
        preds = np.concatenate([native.run(q, b, mode="integer")[q.outputs[0]].argmax(axis=1)
                                for b in batches(q, x, 1000)])
        t = res.timings["calibration"] + res.timings["quantization"]
        print(f"{label:<44}{t:>16.2f}{res.evaluations:>7}{100 * np.mean(preds == y):>9.2f}")


def bench_ssd(size: int, n_calib: int, budget: float) -> None:
    if not MOBILENET_SSD.is_file():
        print("MobileNet-SSD: skipped (no prototxt)")
        return
    model = mobilenet_ssd(size)
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (n_calib, 3, size, size)).astype(np.float32)
    xe = rng.uniform(-1, 1, (2, 3, size, size)).astype(np.float32)
    print(f"\nMobileNet-SSD {size}x{size} (generated weights), {n_calib} calibration inputs")
    print(f"{'run':<28}{'calibration s':>14}{'quantization s':>16}{'weight SQNR dB':>16}{'output SQNR dB':>16}")
    results = {}
    runs = (("8-bit, per-layer fl", {"bw": 8, **NEAREST}), ("8-bit, per-channel fl", {"bw": 8, "per_channel": True,
                                                                                   **NEAREST}))
    for label, opts in runs:
        data = CalibrationData([{"data": x[i:i + 2]} for i in range(0, n_calib, 2)], None, n_calib)
        res = quantize_model(model, data, opts)
        w, o = depthwise_sqnr(model, res.model, xe)
        results[label] = (w, o)
        print(f"{label:<28}{res.timings['calibration']:>14.2f}{res.timings['quantization']:>16.2f}"
              f"{np.mean(w):>16.2f}{np.mean(o):>16.2f}")
    (wl, ol), (wc, oc) = results.values()
    dw = [l.name for l in model.layers if l.type == "Conv2D" and l.op.group > 1]
    print(f"\n{'depthwise layer':<16}{'weights: layer':>15}{'channel':>9}{'outputs: layer':>16}{'channel':>9}")
    for i, name in enumerate(dw):
        print(f"{name:<16}{wl[i]:>15.2f}{wc[i]:>9.2f}{ol[i]:>16.2f}{oc[i]:>9.2f}")
    print(f"per-channel gain: weights {np.mean(wc) - np.mean(wl):+.2f} dB, outputs {np.mean(oc) - np.mean(ol):+.2f} dB "
          f"(mean over {len(dw)} depthwise layers)")
    print("\nOutput SQNR (dB) at 8 bits on 2 other inputs, before (nearest rounding, rule fl) and after the new "
          "methods: the graph output and the DetectionOutput's location and confidence inputs")
    det = [l for l in model.layers if l.type == "DetectionOutput"]
    shown = list(model.outputs) + ([n for n in det[0].inputs[:2]] if det else [])
    print(f"{'run':<44}{'quantization s':>16}" + "".join(f"{o[:14]:>16}" for o in shown))
    float_out = model.run({"data": xe}, mode="float", outputs=shown)
    for label, opts in (("nearest rounding, rule fl", NEAREST),
                        ("fl search + learned rounding (defaults)", {"time_budget": budget}),
                        ("defaults + bias correction", {"time_budget": budget, "bias_correction": True})):
        data = CalibrationData([{"data": x[i:i + 2]} for i in range(0, n_calib, 2)], None, n_calib)
        res = quantize_model(model, data, {"bw": 8, **opts})
        got = res.model.run({"data": xe}, mode="integer", outputs=shown)
        real = {o: dequantize(v, res.model.tensors[o].qformat, np.float64)
                if res.model.tensors[o].qformat is not None else v for o, v in got.items()}
        print(f"{label:<44}{res.timings['calibration'] + res.timings['quantization']:>16.2f}"
              + "".join(f"{sqnr(float_out[o], real[o]):>16.2f}" for o in shown))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=300, help="MobileNet-SSD input size (default 300)")
    ap.add_argument("--calib", type=int, default=8, help="MobileNet-SSD calibration inputs (default 8)")
    ap.add_argument("--skip-lenet", action="store_true")
    ap.add_argument("--skip-ssd", action="store_true")
    ap.add_argument("--skip-lowbit", action="store_true")
    ap.add_argument("--budget", type=float, default=120.0,
                    help="--time-budget of the MobileNet-SSD runs with the new methods (default 120 s)")
    args = ap.parse_args()
    if not args.skip_lenet:
        bench_lenet()
    if not args.skip_lowbit:
        bench_lowbit()
    if not args.skip_ssd:
        bench_ssd(args.size, args.calib, args.budget)


if __name__ == "__main__":
    main()

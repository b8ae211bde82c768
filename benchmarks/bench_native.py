"""The yardstick: dfx native against onnxruntime (fastest int8 and float) and ncnn, one thread each.

    python benchmarks/bench_native.py [--quick] [--seconds S] [--slices N] [--clock cpu|wall] [--workdir DIR]

Networks (benchmarks/native_nets.py): LeNet (real weights) at batch 1 and 64, MobileNet-SSD 300x300
(chuanqi305 prototxt, random weights) and a depthwise-separable detector at 320x240 (random weights),
every one quantized to 8 bits by the ``dfp`` quantizer (max-abs rule, two random calibration images).

Engines, each in its own process with one thread (benchmarks/native_engines.py):

* native int8 / native float: libdfx on the whole 8-bit / float network; "native int8 body" is the
  same network cut to its conv body (Conv, ReLU, max pool, FC), which is what onnxruntime runs;
* ort int8 qs: the float conv body quantized by onnxruntime's ``quantize_static`` (QDQ, uint8
  activations, per-channel int8 weights); ort int8 dfx: the same configuration written from the dfx
  model's own power-of-two formats (benchmarks/native_onnx.py). The faster of the two is the one the
  ratios use; the table says how many convolutions onnxruntime fused into QLinearConv;
* ort float: the float conv body;
* ncnn int8 / ncnn float (MobileNet-SSD only): ncnn's own benchmark networks
  (../shared/testdata/ncnn-benchmark), weights from ``ncnn.DataReaderFromEmpty()``, whole network.

Timing: every engine of a network is started, then given time slices in turn (interleaved) until
each has run for at least --seconds; the figure is the fastest run, by the process's CPU time
(--clock cpu, the default: on a machine that other work loads, it leaves out the time an engine
waited for a core) or by wall time (--clock wall); each engine's row gives both. Ratios below 1
mean native is faster.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

import native_nets as nets  # noqa: E402
from native_engines import Engine, interleave  # noqa: E402
from native_onnx import ORT_INT8_KINDS, ort_quantize_static, to_onnx  # noqa: E402

FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni")


def cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            have = next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return "unknown (no /proc/cpuinfo)"
    return " ".join(f"{flag}={'yes' if flag in have else 'no'}" for flag in FLAGS)


def prepare(name: str, fmodel, workdir: Path) -> dict[str, tuple[str, Path]]:
    """Write every engine's file for one network: label -> (engine, path)."""
    from dfxsdk.io import save

    qmodel = nets.quantize8(fmodel)
    files: dict[str, tuple[str, Path]] = {}
    for label, model in (("native int8", qmodel), ("native float", fmodel)):
        save(model, workdir / f"{name}_{label.split()[1]}.dfx")
        files[label] = ("native", workdir / f"{name}_{label.split()[1]}.dfx")
    qbody, fbody = nets.conv_body(qmodel), nets.conv_body(fmodel)
    if len(qbody.layers) < len(qmodel.layers):
        save(qbody, workdir / f"{name}_int8_body.dfx")
        files["native int8 body"] = ("native", workdir / f"{name}_int8_body.dfx")
    to_onnx(fbody, workdir / f"{name}_float.onnx")
    ort_quantize_static(workdir / f"{name}_float.onnx", workdir / f"{name}_qs.onnx",
                        [nets.random_input(fmodel, 1, seed) for seed in range(2)])
    to_onnx(qbody, workdir / f"{name}_dfx_qdq.onnx", qdq=True)
    files["ort int8 qs"] = ("ort", workdir / f"{name}_qs.onnx")
    files["ort int8 dfx"] = ("ort", workdir / f"{name}_dfx_qdq.onnx")
    files["ort float"] = ("ort", workdir / f"{name}_float.onnx")
    files["convs"] = ("", Path(str(sum(layer.type == "Conv2D" for layer in fbody.layers))))
    return files


def measure(title: str, files: dict, batch: int, seconds: float, slices: int, ncnn: bool,
            clock: str) -> dict[str, float]:
    """Run the engines of one network interleaved; print their rows; return label -> fastest seconds."""
    convs = int(str(files["convs"][1]))
    plan = [(label, eng, path) for label, (eng, path) in files.items() if eng]
    if ncnn:
        plan += [("ncnn int8", "ncnn", nets.NCNN / "mobilenet_ssd_int8.param"),
                 ("ncnn float", "ncnn", nets.NCNN / "mobilenet_ssd.param")]
    engines = []
    for label, eng, path in plan:
        engines.append(Engine(label, eng, path, batch))
    try:
        interleave(engines, seconds, slices)
    finally:
        for e in engines:
            e.close()
    print(f"\n== {title}, batch {batch}")
    times = {}
    for e in engines:
        if e.error:
            print(f"  {e.label:18s} FAILED: {e.error}")
            continue
        times[e.label] = e.best[clock]
        note = ""
        if "fused_convs" in e.facts and "int8" in e.label:
            note = f"  fused {e.facts['fused_convs']}/{convs} convs into QLinearConv; {ORT_INT8_KINDS[e.label]}"
        elif "kernels" in e.facts:
            note = f"  kernels {e.facts['kernels']}"
        print(f"  {e.label:18s} {e.best['cpu'] * 1e3:9.3f} ms cpu {e.best['wall'] * 1e3:9.3f} ms wall "
              f"({e.runs} runs){note}")
    return times


def ratios(times: dict[str, float]) -> dict[str, float | None]:
    """The ratios of the summary (None where an engine is missing)."""
    def r(a: str, b: str | None) -> float | None:
        return times[a] / times[b] if a in times and b in times else None

    ort8 = min((k for k in ("ort int8 qs", "ort int8 dfx") if k in times), key=times.get, default=None)
    return {"native/ORT int8": r("native int8", ort8), "native/ORT float": r("native int8", "ort float"),
            "native/ncnn int8": r("native int8", "ncnn int8"), "float: native/ORT": r("native float", "ort float"),
            "best ORT int8": ort8}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 0.2 s per engine, two slices")
    ap.add_argument("--seconds", type=float, default=1.5, help="run time per engine (at least 1 for figures)")
    ap.add_argument("--slices", type=int, default=5, help="turns per engine in the interleaved rotation")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="the clock of the summary's figures")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args(argv)
    seconds, slices = (0.2, 2) if args.quick else (args.seconds, args.slices)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_native_"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"CPU flags: {cpu_flags()}; one thread per engine, one process each; work dir {workdir}")
    print(f"timing: fastest run ({args.clock} time in the summary), engines interleaved in {slices} slices, "
          f">= {seconds} s each")
    summary = []
    if (nets.LENET / "lenet.prototxt").is_file():
        files = prepare("lenet", nets.lenet(), workdir)
        for batch in (1, 64):
            summary.append((f"LeNet batch {batch}", measure("LeNet", files, batch, seconds, slices, False, args.clock)))
    else:
        print(f"LeNet skipped: {nets.LENET} is absent")
    if nets.SSD_PROTO.is_file():
        files = prepare("mobilenet_ssd", nets.mobilenet_ssd(), workdir)
        ncnn = _have_ncnn()
        summary.append(("MobileNet-SSD 300x300",
                        measure("MobileNet-SSD 300x300 (conv body for ORT)", files, 1, seconds, slices, ncnn,
                                args.clock)))
    else:
        print(f"MobileNet-SSD skipped: {nets.SSD_PROTO} is absent")
    files = prepare("dw_detector", nets.detector(workdir), workdir)
    summary.append(("dw detector 320x240", measure("depthwise-separable detector 320x240", files, 1, seconds,
                                                   slices, False, args.clock)))
    _print_summary(summary, args.clock)


def _have_ncnn() -> bool:
    try:
        import ncnn  # noqa: F401
    except ImportError:
        print("ncnn skipped: pip install 'dfxsdk[bench]' (the ncnn package from PyPI)")
        return False
    return True


def _print_summary(summary: list[tuple[str, dict[str, float]]], clock: str) -> None:
    cols = ("native int8", "ort int8 best", "ort float", "ncnn int8", "native/ORT int8", "native/ORT float",
            "native/ncnn int8", "float: native/ORT")
    print("\n| network | " + " | ".join(cols) + " |")
    print("|" + " --- |" * (len(cols) + 1))
    for name, times in summary:
        r = ratios(times)

        def ms(key: str | None) -> str:
            return f"{times[key] * 1e3:.3f} ms" if key in times else "-"

        def x(key: str) -> str:
            return f"{r[key]:.2f}" if r[key] is not None else "-"

        cells = [ms("native int8"), f"{ms(r['best ORT int8'])} ({(r['best ORT int8'] or '-').split()[-1]})",
                 ms("ort float"), ms("ncnn int8"), x("native/ORT int8"), x("native/ORT float"),
                 x("native/ncnn int8"), x("float: native/ORT")]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"({clock} time; native: whole network; ORT: conv body; ncnn: whole network. "
          "Ratio = native time / other time.)")


if __name__ == "__main__":
    main()

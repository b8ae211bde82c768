"""Instructions executed by the aarch64 build under qemu: portable C vs NEON vs SDOT.

    python benchmarks/bench_qemu_insns.py [--check] [--json out.json]

Cross-builds kernels/ for aarch64 (kernels/cmake/aarch64-linux-gnu.cmake, into
build/bench-aarch64) and counts the guest instructions ``dfx-run`` executes
under ``qemu-aarch64``, with the three kernel sets of the SAME build chosen by
DFX_KERNELS=portable|neon|dotprod on one CPU model (cortex-a76, which has the
dot product, so that libc and every other code path are identical), for:

- LeNet: the Ristretto LeNet of ../shared/testdata (Caffe importer), one digit;
- the three largest convolution layers of MobileNet-SSD at 300x300 (by
  multiply-accumulates), each as a one-layer model with random 8-bit weights,
  int8 input codes, int32 bias and int8 output, the layer's exact shape,
  stride, padding and group.

Counting: a small TCG plugin (benchmarks/qemu_insn_count.c, built here with
the host compiler) adds every executed translation block's instruction count
to a counter; ``--method exec`` instead counts the lines of
``-singlestep -d exec,nochain`` (one per executed instruction; ~100x slower;
the two agree to a few instructions per process). Each model is run with
``dfx-run --repeat 1`` and ``--repeat 3``; half the difference is the cost of
ONE inference (loading, verification, planning and I/O cancel out). The
whole-process count of the single run is shown too. The outputs of the three
sets are compared byte for byte.

Goals (issue 7): neon <= 1/4 of portable, dotprod < neon. ``--check`` exits
with status 1 when a goal is missed.

``--ssd`` instead counts the whole MobileNet-SSD 300x300 (chuanqi305 prototxt,
random weights, 8 bits by the one-pass quantizer: max-abs fl, nearest
rounding, no fl search; DetectionOutput included), the network of issue 15's
comparison with ncnn, with the kernel sets of ``--sets`` (default neon and
dotprod; dotprod needs a CPU model with it, e.g. ``--cpu cortex-a76``; the
model is cached in the build directory). ``--profile N`` adds, per set, the N
functions of dfx-run that execute the most instructions in one inference
(the plugin's per-block counts mapped to symbols with ``nm``; C library
functions are attributed to the nearest exported libc symbol).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import qemu_cross  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "kernels"
TESTDATA = ROOT.parent / "shared" / "testdata"
SYSROOT = "/usr/aarch64-linux-gnu"
SETS = ("portable", "neon", "dotprod")


def build(build_dir: Path) -> Path:
    qemu_cross.require("cmake", "aarch64-linux-gnu-gcc", "qemu-aarch64", "cc")
    qemu_cross.build_dfx_run(build_dir, KERNELS / "cmake" / "aarch64-linux-gnu.cmake")
    qemu_cross.build_plugin(build_dir)
    return build_dir


def count(build_dir: Path, cpu: str, kernels: str, model: Path, inp: Path, out: Path, repeat: int,
          method: str, flags: list[str], profile: dict[int, int] | None = None) -> int:
    """Guest instructions of one dfx-run; with ``profile`` (plugin method), also fills it with
    instructions per translated-block start address."""
    env = dict(os.environ, DFX_KERNELS=kernels)
    prog = [str(build_dir / "dfx-run"), "--verbose", *flags, "--repeat", str(repeat), str(model), str(inp), str(out)]
    if method == "plugin":
        try:
            n, proc = qemu_cross.count_insns("qemu-aarch64", cpu, build_dir / "libinsncount.so", prog,
                                             sysroot=SYSROOT, env=env, profile=profile)
        except RuntimeError as e:
            sys.exit(str(e))
        if f"kernels: {kernels}\n" not in proc.stderr:
            sys.exit(f"dfx-run did not use the {kernels} kernels: {proc.stderr}")
    else:
        proc = subprocess.Popen(["qemu-aarch64", "-cpu", cpu, "-L", SYSROOT, "-singlestep", "-d", "exec,nochain",
                                 "-D", "/dev/stderr", *prog], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        n, tail = 0, b""
        assert proc.stderr is not None
        while True:
            chunk = proc.stderr.read(1 << 20)
            if not chunk:
                break
            data = tail + chunk
            n += data.count(b"\nTrace ") + (1 if not tail and data.startswith(b"Trace ") else 0)
            tail = data[-6:]
        if proc.wait():
            sys.exit("dfx-run failed under -d exec")
        proc.stderr.close()
    return n


def lenet(work: Path):
    import gzip

    from dfxsdk.io import save

    from dfx_caffe.plugin import import_caffe

    d = TESTDATA / "lenet-ristretto"
    model = import_caffe([d / "lenet.prototxt", d / "lenet_iter_10000.caffemodel"],
                         ristretto_path=d / "lenet_quantized.prototxt")
    with gzip.open(TESTDATA / "mnist-data" / "mnist_5k.csv.gz", "rt") as f:
        row = np.loadtxt(f, delimiter=",", dtype=np.float32, max_rows=1)
    x = model.preprocessing["data"].apply(row[:-1].reshape(1, 1, 28, 28)).astype(np.float32)
    path = work / "lenet.dfx"
    save(model, path)
    (work / "lenet.in").write_bytes(x.tobytes())
    macs = 0
    for layer in model.layers:
        if layer.type in ("Conv2D", "FullyConnected"):
            w = model.tensors[layer.inputs[1]].shape
            out = model.tensors[layer.outputs[0]].shape
            macs += int(np.prod(w)) * (int(np.prod(out[2:])) if layer.type == "Conv2D" else 1)
    return "LeNet (Ristretto, 1 digit)", path, work / "lenet.in", [], macs


def ssd_layers(work: Path, n: int):
    from dfxsdk import DataType, Layer, Model, QFormat, Rounding, Tensor, save

    from dfx_caffe.build import RandomWeights
    from dfx_caffe.plugin import import_caffe

    full = import_caffe([TESTDATA / "prototxt-only" / "MobileNetSSD_deploy.prototxt"], weights=RandomWeights(0))
    convs = []
    for layer in full.layers:
        if layer.type != "Conv2D":
            continue
        w = full.tensors[layer.inputs[1]].shape
        out = full.tensors[layer.outputs[0]].shape
        convs.append((int(np.prod(w)) * out[2] * out[3], layer))
    convs.sort(key=lambda t: -t[0])
    rng = np.random.default_rng(7)
    result = []
    for macs, layer in convs[:n]:
        xs = (1,) + tuple(full.tensors[layer.inputs[0]].shape[1:])
        ws = full.tensors[layer.inputs[1]].shape
        fx, fw, fy = QFormat(8, 4, Rounding.HALF_AWAY_FROM_ZERO), QFormat(8, 7, Rounding.HALF_AWAY_FROM_ZERO), \
            QFormat(8, 3, Rounding.HALF_AWAY_FROM_ZERO)
        fb = QFormat(32, 11, Rounding.HALF_AWAY_FROM_ZERO)
        m = Model(name=f"ssd_{layer.name}", producer_name="bench_qemu_insns", producer_version="1")
        m.add_tensor(Tensor("x", xs, DataType.INT8, fx))
        wt = Tensor("w", tuple(ws), DataType.INT8, fw)
        wt.data = rng.integers(-128, 128, ws).astype(np.int8)
        m.add_tensor(wt)
        bt = Tensor("b", (ws[0],), DataType.INT32, fb)
        bt.data = rng.integers(-4096, 4096, (ws[0],)).astype(np.int32)
        m.add_tensor(bt)
        ys = layer.op.infer_shapes([xs, tuple(ws), (ws[0],)])[0]
        m.add_tensor(Tensor("y", tuple(ys), DataType.INT8, fy))
        m.add_layer(Layer(layer.name, layer.op, ["x", "w", "b"], ["y"]))
        m.inputs.append("x")
        m.outputs.append("y")
        path = work / f"{layer.name}.dfx"
        save(m, path)
        inp = work / f"{layer.name}.in"
        inp.write_bytes(rng.integers(-128, 128, xs).astype(np.int32).tobytes())
        op = layer.op
        what = (f"SSD {layer.name}: {xs[1]}x{xs[2]}x{xs[3]} -> {ys[1]}x{ys[2]}x{ys[3]}, "
                f"{op.kernel_h}x{op.kernel_w}/{op.stride_h}" + (f" g{op.group}" if op.group > 1 else ""))
        result.append((what, path, inp, ["--in-codes"], macs))
    return result


def ssd_full(work: Path, cache: Path):
    """The whole MobileNet-SSD 300x300, 8 bits (native_nets.quantize8: one pass), cached as ``cache``/ssd_full.dfx."""
    model, inp = cache / "ssd_full.dfx", cache / "ssd_full.in"
    if not (model.exists() and inp.exists()):
        from dfxsdk.io import save

        sys.path.insert(0, str(ROOT / "benchmarks"))
        import native_nets as nets

        q = nets.quantize8(nets.mobilenet_ssd())
        save(q, work / "ssd_full.dfx")
        x = nets.random_input(q, 1, seed=1)[q.inputs[0]]
        (work / "ssd_full.in").write_bytes(x.astype(np.float32).tobytes())
        shutil.move(work / "ssd_full.in", inp)
        shutil.move(work / "ssd_full.dfx", model)
    return "MobileNet-SSD 300x300, 8 bit, whole network", model, inp, [], 0


def symbols(build_dir: Path) -> tuple[list[int], list[str]]:
    """Sorted start addresses and names of dfx-run's functions (nm)."""
    out = subprocess.run(["aarch64-linux-gnu-nm", "-n", "--defined-only", str(build_dir / "dfx-run")],
                         check=True, capture_output=True, text=True).stdout
    addrs, names = [], []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":
            addrs.append(int(parts[0], 16))
            names.append(parts[2])
    return addrs, names


def by_function(build_dir: Path, prof1: dict[int, int], prof3: dict[int, int]) -> dict[str, int]:
    """Instructions of one inference ((repeat 3 - repeat 1) / 2) per function of dfx-run ("libc/other": the rest)."""
    import bisect

    addrs, names = symbols(build_dir)
    # where qemu loaded the (position-independent) program: the base at which _init ran
    init = addrs[names.index("_init")] if "_init" in names else 0
    base = next((b for b in (0x5500000000, 0x4000000000, 0) if b + init in prof1), 0)
    end = addrs[-1] + 65536 if addrs else 0
    per: dict[str, int] = {}
    for prof, sign in ((prof3, 1), (prof1, -1)):
        for a, n in prof.items():
            a -= base
            i = bisect.bisect_right(addrs, a) - 1
            name = names[i] if 0 <= i and a < end else "libc/other"
            per[name] = per.get(name, 0) + sign * n
    return {k: v // 2 for k, v in per.items()}


def run_ssd(args, build_dir: Path, work: Path) -> int:
    what, model, inp, flags, _ = ssd_full(work, build_dir)
    print(f"{what}: guest instructions per inference, qemu-aarch64 -cpu {args.cpu}\n")
    outs, rows = {}, {}
    for ks in args.sets.split(","):
        prof1: dict[int, int] | None = {} if args.profile else None
        prof3: dict[int, int] | None = {} if args.profile else None
        out1, out3 = work / f"ssd.{ks}.1.out", work / f"ssd.{ks}.3.out"
        c1 = count(build_dir, args.cpu, ks, model, inp, out1, 1, args.method, flags, prof1)
        c3 = count(build_dir, args.cpu, ks, model, inp, out3, 3, args.method, flags, prof3)
        outs[ks] = out1.read_bytes()
        if out3.read_bytes() != outs[ks]:
            sys.exit(f"{what}: repeated runs differ ({ks})")
        rows[ks] = (c3 - c1) // 2
        print(f"  {ks:10s} {rows[ks] / 1e6:9.1f} M per inference   (whole process, 1 run: {c1 / 1e6:.1f} M)")
        if prof1 is not None and prof3 is not None:
            per = sorted(by_function(build_dir, prof1, prof3).items(), key=lambda t: -t[1])
            for name, n in per[:args.profile]:
                print(f"      {n / 1e6:9.2f} M {100 * n / rows[ks]:5.1f} %  {name}")
    if len(set(outs.values())) > 1:
        sys.exit(f"{what}: the kernel sets give different outputs")
    if args.json:
        args.json.write_text(json.dumps({"cpu": args.cpu, "model": what, "per_inference": rows}, indent=2))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", type=Path, default=ROOT / "build" / "bench-aarch64")
    ap.add_argument("--cpu", default="cortex-a76", help="qemu CPU model (must have dotprod)")
    ap.add_argument("--method", choices=("plugin", "exec"), default="plugin")
    ap.add_argument("--layers", type=int, default=3, help="how many of the largest MobileNet-SSD convolutions")
    ap.add_argument("--no-lenet", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    ap.add_argument("--ssd", action="store_true", help="count the whole MobileNet-SSD instead (issue 15)")
    ap.add_argument("--sets", default="neon,dotprod", help="--ssd: comma-separated kernel sets")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="--ssd: print the N costliest functions")
    args = ap.parse_args(argv)

    build_dir = build(args.build)
    work = Path(tempfile.mkdtemp(prefix="dfx-bench-"))
    if args.ssd:
        try:
            return run_ssd(args, build_dir, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    cases = ([] if args.no_lenet else [lenet(work)]) + ssd_layers(work, args.layers)
    rows, ok = [], True
    print(f"guest instructions per inference, qemu-aarch64 -cpu {args.cpu}, method {args.method}; "
          f"same build, DFX_KERNELS=portable|neon|dotprod\n")
    head = (f"{'model':58s} {'MMAC':>7s} {'portable':>14s} {'neon':>14s} {'dotprod':>14s} "
            f"{'neon/port':>9s} {'dot/port':>9s} {'dot/neon':>9s}")
    print(head)
    print("-" * len(head))
    for what, path, inp, flags, macs in cases:
        per, total, outs = {}, {}, {}
        for ks in SETS:
            out1, out3 = work / f"{path.stem}.{ks}.1.out", work / f"{path.stem}.{ks}.3.out"
            c1 = count(build_dir, args.cpu, ks, path, inp, out1, 1, args.method, flags)
            c3 = count(build_dir, args.cpu, ks, path, inp, out3, 3, args.method, flags)
            per[ks], total[ks] = qemu_cross.per_inference(c1, c3), c1
            outs[ks] = out1.read_bytes()
            if out3.read_bytes() != outs[ks]:
                sys.exit(f"{what}: repeated runs differ ({ks})")
        if not (outs["portable"] == outs["neon"] == outs["dotprod"]):
            sys.exit(f"{what}: the kernel sets give different outputs")
        r1, r2, r3 = per["neon"] / per["portable"], per["dotprod"] / per["portable"], per["dotprod"] / per["neon"]
        met = r1 <= 0.25 and per["dotprod"] < per["neon"]
        ok &= met
        print(f"{what:58s} {macs / 1e6:7.2f} {per['portable']:14,d} {per['neon']:14,d} {per['dotprod']:14,d} "
              f"{r1:9.3f} {r2:9.3f} {r3:9.3f}{'' if met else '  <- goal missed'}")
        rows.append({"model": what, "macs": macs, "per_inference": per, "whole_process": total,
                     "neon_over_portable": r1, "dotprod_over_portable": r2, "dotprod_over_neon": r3,
                     "goal_met": met})
    print("\nwhole process (one inference, including load/verify/plan/I-O):")
    for r in rows:
        t = r["whole_process"]
        print(f"  {r['model']:58s} " + "  ".join(f"{k} {t[k]:,d}" for k in SETS))
    print(f"\ngoals (neon <= 1/4 portable, dotprod < neon): {'met' if ok else 'NOT met'} on every model")
    if args.json:
        args.json.write_text(json.dumps({"cpu": args.cpu, "method": args.method, "rows": rows}, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())

"""Native C library (libdfx) vs the NumPy reference vs onnxruntime, single thread.

    python benchmarks/bench_native.py [--runs N] [--skip-numpy] [--workdir DIR]

Networks:

* LeNet: the real Ristretto model of ../shared/testdata/lenet-ristretto
  (skipped with a message if absent), batch 1 and batch 64.
* MobileNet-SSD 300x300: ../shared/testdata/prototxt-only/MobileNetSSD_deploy.prototxt
  with generated weights (dfx_caffe.synth.random_caffemodel), quantized to
  8 bits by the "dfp" quantizer (max-abs fl rule, calibrated on 2 random
  images), batch 1.

Engines, each in its own subprocess (so that peak RSS, VmHWM, is per engine):

* native: libdfx through ctypes (open, one session, set input, run), the
  library is single-threaded;
* numpy: the reference backend (plugins/dfx_numpy), same .dfx model;
* ort: onnxruntime with intra_op_num_threads=1, running the same network
  exported here as ONNX QDQ (int8, zero point 0, scale 2^-fl: the power-of-two
  scales of the dfx formats; int32 bias with scale s_x*s_w, so that ORT fuses
  QLinearConv / QGemm).

What is compared with ORT: the exporter below covers Conv2D, Relu, Pool2D
(max), FullyConnected and Requantize. For MobileNet-SSD that is the backbone
and the 12 head convolutions (mbox_loc / mbox_conf); the Permute / Flatten /
Concat / Softmax / DetectionOutput tail is left out, and native is timed on
the *same* truncated .dfx graph (row "native (convs)") as well as on the full
network. For LeNet the final Softmax (float) is left out for every engine.

Timing: after 2 warm-up runs, at least --runs runs (numpy: at least 3), and
more until one second has passed (at most 5000), for every engine alike; the
fastest run is reported with the median, and ratios use the fastest run, which
is the figure least disturbed by other processes on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = ROOT.parent / "shared" / "testdata"
LENET = TESTDATA / "lenet-ristretto"
SSD_PROTO = TESTDATA / "prototxt-only" / "MobileNetSSD_deploy.prototxt"
EXPORTED = ("Conv2D", "Relu", "Pool2D", "FullyConnected", "Requantize")


# ---------------------------------------------------------------- models
def lenet_model():
    from dfx_caffe.plugin import import_caffe

    return import_caffe([LENET / "lenet.prototxt", LENET / "lenet_iter_10000.caffemodel"],
                        ristretto_path=LENET / "lenet_quantized.prototxt")


def ssd_model(workdir: Path):
    from dfx_caffe.plugin import import_caffe
    from dfx_caffe.synth import random_caffemodel
    from dfxsdk.providers import CalibrationData

    weights = workdir / "mobilenet_ssd_random.caffemodel"
    random_caffemodel(SSD_PROTO, weights, seed=0)
    model = import_caffe([SSD_PROTO, weights])
    inp = model.inputs[0]
    x = np.random.default_rng(0).uniform(-1, 1, (2,) + tuple(model.tensors[inp].shape[1:])).astype(np.float32)
    try:
        from dfxsdk.plugins import get_manager

        get_manager().quantizer("dfp")
        from dfx_quantizer.plugin import quantize_model
    except Exception as exc:  # pragma: no cover - the quantizer plugin is missing
        raise SystemExit(f"the dfp quantizer plugin is needed for MobileNet-SSD: {exc}")
    return quantize_model(model, CalibrationData([{inp: x}]), {"bw": 8, "fl_rule": "maxabs"}).model


def truncate(model, keep_types=EXPORTED):
    """The prefix of ``model`` made of exported operators; outputs: its dangling results."""
    import copy

    layers = []
    for layer in model.layers:
        if layer.type not in keep_types or any(i and i not in model.tensors for i in layer.inputs):
            continue
        if any(i and not model.tensors[i].is_constant and i not in model.inputs
               and not any(i in l.outputs for l in layers) for i in layer.inputs):
            continue
        layers.append(layer)
    produced = [o for l in layers for o in l.outputs]
    used = {i for l in layers for i in l.inputs}
    outputs = [o for o in produced if o not in used]
    m = copy.copy(model)
    m.layers = layers
    m.outputs = outputs
    keep = set(model.inputs) | set(produced) | {i for l in layers for i in l.inputs if i}
    m.tensors = {n: t for n, t in model.tensors.items() if n in keep}
    return m


# ---------------------------------------------------------------- dfx -> ONNX QDQ
def to_onnx_qdq(model, path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    qname = {}   # dfx tensor -> name of its int8 (quantized) ONNX value

    def const(name, arr):
        inits.append(numpy_helper.from_array(arr, name))
        return name

    def scale_of(fl):
        return np.float32(2.0 ** -fl)

    def q(src_float, fl, out):
        s = const(out + "_s", np.array(scale_of(fl), np.float32))
        z = const(out + "_z", np.array(0, np.int8))
        nodes.append(helper.make_node("QuantizeLinear", [src_float, s, z], [out]))
        return out

    def dq(name_q, fl, out):
        s = const(out + "_s", np.array(scale_of(fl), np.float32))
        z = const(out + "_z", np.array(0, np.int8))
        nodes.append(helper.make_node("DequantizeLinear", [name_q, s, z], [out]))
        return out

    def fl_of(t):
        f = t.qformat
        if f.per_channel:
            raise SystemExit(f"per-channel tensor {t.name} is not exported")
        return f.fl

    fname = {}

    def act_f(name):   # float value of an int8 activation (one DequantizeLinear per tensor)
        if name not in fname:
            fname[name] = dq(qname[name], fl_of(model.tensors[name]), name + "_dq")
        return fname[name]

    inp = model.inputs[0]
    for layer in model.layers:
        L, ins, out = layer, layer.inputs, layer.outputs[0]
        yt = model.tensors[out]
        if L.type == "Requantize":
            src = ins[0] if model.tensors[ins[0]].qformat is None else act_f(ins[0])
            qname[out] = q(src, fl_of(yt), out + "_q")
            continue
        x = act_f(ins[0])
        if L.type in ("Conv2D", "FullyConnected"):
            w = model.tensors[ins[1]]
            wq = np.asarray(w.data).astype(np.int8)
            wname = dq(const(ins[1] + "_q", wq), fl_of(w), ins[1] + "_dq")
            sx = fl_of(model.tensors[ins[0]])
            node_in = [x, wname]
            if len(ins) > 2 and ins[2]:
                b = model.tensors[ins[2]]
                bval = np.asarray(b.data).astype(np.float64) * 2.0 ** -fl_of(b)
                fb = sx + fl_of(w)
                bq = np.round(bval * 2.0 ** fb).astype(np.int32)
                bs = const(ins[2] + "_s", np.array(2.0 ** -fb, np.float32))
                bz = const(ins[2] + "_z", np.array(0, np.int32))
                nodes.append(helper.make_node("DequantizeLinear", [const(ins[2] + "_q", bq), bs, bz], [ins[2] + "_dq"]))
                node_in.append(ins[2] + "_dq")
            if L.type == "Conv2D":
                o = L.op
                nodes.append(helper.make_node(
                    "Conv", node_in, [out + "_f"], kernel_shape=[o.kernel_h, o.kernel_w],
                    strides=[o.stride_h, o.stride_w], dilations=[o.dilation_h, o.dilation_w],
                    pads=[o.pad_top, o.pad_left, o.pad_bottom, o.pad_right], group=o.group))
            else:
                flat = out + "_flat"
                nodes.append(helper.make_node("Flatten", [x], [flat], axis=1))
                node_in[0] = flat
                nodes.append(helper.make_node("Gemm", node_in, [out + "_f"], transB=1))
        elif L.type == "Relu":
            nodes.append(helper.make_node("Relu", [x], [out + "_f"]))
        elif L.type == "Pool2D":
            o = L.op
            if o.type != 0 or o.global_:
                raise SystemExit("only max pooling is exported")
            nodes.append(helper.make_node(
                "MaxPool", [x], [out + "_f"], kernel_shape=[o.kernel_h, o.kernel_w],
                strides=[o.stride_h, o.stride_w], pads=[o.pad_top, o.pad_left, o.pad_bottom, o.pad_right],
                ceil_mode=int(bool(o.ceil_mode))))
        else:
            raise SystemExit(f"operator {L.type} is not exported")
        qname[out] = q(out + "_f", fl_of(yt), out + "_q")
    outs = []
    for name in model.outputs:
        outs.append(helper.make_tensor_value_info(act_f(name), TensorProto.FLOAT,
                                                  ["N"] + list(model.tensors[name].shape[1:])))
    shape = ["N"] + list(model.tensors[inp].shape[1:])
    graph = helper.make_graph(nodes, "dfx_qdq", [helper.make_tensor_value_info(inp, TensorProto.FLOAT, shape)],
                              outs, inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


# ---------------------------------------------------------------- workers (one engine per process)
def vm_hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def timeit(fn, runs: int, budget: float = 1.0) -> tuple[float, float]:
    """(fastest, median) of at least ``runs`` runs, more (up to 5000) until ``budget`` seconds
    have passed, so that short runs are sampled long enough to see a quiet moment."""
    fn()
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < runs or (time.perf_counter() - start < budget and len(times) < 5000):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.min(times)), float(np.median(times))


def worker(engine: str, path: str, batch: int, runs: int) -> dict:
    base = vm_hwm_mb()
    rng = np.random.default_rng(1)
    if engine == "native":
        import ctypes

        from dfx_native import _lib

        lib = _lib.load()
        m, s = ctypes.c_void_p(), ctypes.c_void_p()
        assert lib.dfx_model_open_file(path.encode(), 0, ctypes.byref(m)) == 0, lib.dfx_last_error()
        arena, total = ctypes.c_size_t(), ctypes.c_size_t()
        lib.dfx_model_arena_size(m, batch, 0, ctypes.byref(arena), ctypes.byref(total))
        assert lib.dfx_session_create(m, batch, None, 0, 0, ctypes.byref(s)) == 0, lib.dfx_last_error()
        info = _lib.TensorInfo()
        lib.dfx_model_tensor_info(m, lib.dfx_model_input(m, 0), ctypes.byref(info))
        shape = (batch,) + tuple(info.shape[i] for i in range(1, info.rank))
        x = rng.uniform(-1, 1, shape).astype(np.float32)

        def run():
            lib.dfx_session_set_input_f32(s, 0, x.ctypes.data, x.size)
            assert lib.dfx_session_run(s) == 0, lib.dfx_last_error()

        t, med = timeit(run, runs)
        return {"time": t, "median": med, "hwm_mb": vm_hwm_mb(), "base_mb": base, "arena": arena.value, "act_sum": total.value,
                "kernels": lib.dfx_kernels_name().decode()}
    if engine == "numpy":
        from dfxsdk.io import load
        from dfxsdk.plugins import get_manager

        model = load(path)
        ref = get_manager().backend("numpy")
        inp = model.inputs[0]
        x = rng.uniform(-1, 1, (batch,) + tuple(model.tensors[inp].shape[1:])).astype(np.float32)
        t, med = timeit(lambda: ref.run(model, {inp: x}), runs)
        return {"time": t, "median": med, "hwm_mb": vm_hwm_mb(), "base_mb": base}
    if engine == "ort":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opt = path + ".opt.onnx"
        so.optimized_model_filepath = opt
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        i = sess.get_inputs()[0]
        x = rng.uniform(-1, 1, (batch,) + tuple(i.shape[1:])).astype(np.float32)
        t, med = timeit(lambda: sess.run(None, {i.name: x}), runs)
        import onnx

        ops: dict[str, int] = {}
        for n in onnx.load(opt).graph.node:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
        return {"time": t, "median": med, "hwm_mb": vm_hwm_mb(), "base_mb": base, "ops": ops, "version": ort.__version__}
    raise SystemExit(f"unknown engine {engine}")


def spawn(engine: str, path: Path, batch: int, runs: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", engine, str(path), str(batch), str(runs)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"rc {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- report
def bench(name: str, model, workdir: Path, batch: int, runs: int, skip_numpy: bool) -> None:
    from dfxsdk.io import save

    full = workdir / f"{name}.dfx"
    save(model, full)
    part = truncate(model)
    part_path = workdir / f"{name}_convs.dfx"
    save(part, part_path)
    onnx_path = workdir / f"{name}_qdq.onnx"
    to_onnx_qdq(part, onnx_path)
    res = {"native": spawn("native", full, batch, runs), "native (convs)": spawn("native", part_path, batch, runs)}
    if not skip_numpy:
        res["numpy"] = spawn("numpy", full, batch, max(1, min(runs, 3)))
    res["ort (convs)"] = spawn("ort", onnx_path, batch, runs)
    print(f"\n== {name}, batch {batch} ({len(model.layers)} layers; compared with ORT: {len(part.layers)} layers "
          f"{sorted({l.type for l in part.layers})}, outputs {len(part.outputs)})")
    for k, v in res.items():
        if "error" in v:
            print(f"  {k:16s} FAILED: {v['error']}")
            continue
        extra = ""
        if "arena" in v:
            extra = (f"  arena {v['arena'] / 1024:.0f} KiB vs sum of activations {v['act_sum'] / 1024:.0f} KiB "
                     f"({v['arena'] / max(1, v['act_sum']):.2f}x)  kernels={v['kernels']}")
        if "ops" in v:
            extra = f"  ORT {v['version']} optimized graph: {v['ops']}"
        print(f"  {k:16s} {v['time'] * 1e3:10.3f} ms (median {v['median'] * 1e3:.3f})   peak RSS {v['hwm_mb']:7.1f} MB "
              f"(interpreter+imports {v['base_mb']:.1f} MB){extra}")
    nat, natc = res["native"].get("time"), res["native (convs)"].get("time")
    if "numpy" in res and res["numpy"].get("time") and nat:
        r = res["numpy"]["time"] / nat
        print(f"  native vs numpy reference: {r:.1f}x faster (goal >= 20x: {'met' if r >= 20 else 'NOT met'})")
    if res["ort (convs)"].get("time") and natc:
        r = natc / res["ort (convs)"]["time"]
        print(f"  native / ORT time on the same convolutions: {r:.2f} (goal <= 2: {'met' if r <= 2 else 'NOT met'})")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _, _, engine, path, batch, runs = sys.argv
        print(json.dumps(worker(engine, path, int(batch), int(runs))))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--skip-numpy", action="store_true")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "plugins"))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_native_"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores; every engine single-threaded, own process; work dir {workdir}")
    if (LENET / "lenet.prototxt").is_file():
        lenet = lenet_model()
        for batch in (1, 64):
            bench("lenet", lenet, workdir, batch, max(args.runs, 20), args.skip_numpy)
    else:
        print(f"LeNet skipped: {LENET} is absent")
    if SSD_PROTO.is_file():
        bench("mobilenet_ssd", ssd_model(workdir), workdir, 1, args.runs, args.skip_numpy)
    else:
        print(f"MobileNet-SSD skipped: {SSD_PROTO} is absent")


if __name__ == "__main__":
    main()

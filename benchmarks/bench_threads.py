"""Threads of a native session: N threads against one on the same network, side by side.

    python benchmarks/bench_threads.py [--net ssd|detector|lenet] [--threads N ...] [--batch B]
                                       [--seconds S] [--slice S] [--workdir DIR] [--no-ort]

The network (benchmarks/native_nets.py, 8-bit by the ``dfp`` quantizer; default MobileNet-SSD 300x300,
whole network) gets one libdfx session per thread count, all in this process. The sessions are first
checked to give bit-identical outputs, then run in turn, --slice seconds each, until each has run for
--seconds. Per thread count the table gives the fastest and the median run (wall clock), the CPU time
the process spent per run (all threads; CPU / wall near N means the N threads really ran side by side,
far below N that they waited for cores) and the speed-up over one thread, from the fastest runs and from
the medians. On a machine that other work loads, the fastest run is the one least disturbed; the load
average before and after is printed so that a reader can judge.

The machine's reference (unless --no-ort): onnxruntime, in the same process and interleaved with the
libdfx sessions, runs the network's conv body (benchmarks/native_nets.conv_body: onnxruntime has no
DetectionOutput) quantized by its own ``quantize_static`` (QDQ, uint8 activations, per-channel int8
weights: its fastest int8 form, as benchmarks/bench_native.py) with intra_op_num_threads 1 and each N; its
speed-up shows what the machine's cores give a mature engine (two vCPUs on one physical core, or a shared
memory bus, give it little too). This is not a test: nothing is asserted about speed.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

import native_nets as nets  # noqa: E402

NETS = {
    "ssd": (lambda work: nets.mobilenet_ssd(), 1),
    "detector": (nets.detector, 1),
    "lenet": (lambda work: nets.lenet(), 64),
}


class Session:
    """One libdfx session of the model at ``path`` with ``threads`` threads, fed one fixed random input."""

    def __init__(self, lib: ctypes.CDLL, model: ctypes.c_void_p, batch: int, threads: int) -> None:
        from dfx_native import _lib

        self.lib = lib
        self.model = model
        opt = _lib.SessionOptions(size=ctypes.sizeof(_lib.SessionOptions), batch=batch, threads=threads)
        self.handle = ctypes.c_void_p()
        if lib.dfx_session_create_ex(model, ctypes.byref(opt), ctypes.byref(self.handle)):
            raise SystemExit(lib.dfx_last_error().decode())
        self.threads = lib.dfx_session_threads(self.handle)
        info = _lib.TensorInfo()
        lib.dfx_model_tensor_info(model, lib.dfx_model_input(model, 0), ctypes.byref(info))
        shape = (batch,) + tuple(info.shape[i] for i in range(1, info.rank))
        self.x = np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32)
        self.wall: list[float] = []
        self.cpu = 0.0

    def run(self) -> None:
        self.lib.dfx_session_set_input_f32(self.handle, 0, self.x.ctypes.data, self.x.size)
        if self.lib.dfx_session_run(self.handle):
            raise SystemExit(self.lib.dfx_last_error().decode())

    def outputs(self) -> list[bytes]:
        from dfx_native import _lib

        out = []
        for i in range(self.lib.dfx_model_num_outputs(self.model)):
            view = _lib.View()
            self.lib.dfx_session_get_output(self.handle, i, ctypes.byref(view))
            size = view.count * np.dtype(_lib.VIEW_DTYPES[view.dtype]).itemsize
            out.append(ctypes.string_at(view.data, size) if size else b"")
        return out

    def timed_slice(self, seconds: float) -> None:
        c0, end = time.process_time(), time.perf_counter() + seconds
        while True:
            t0 = time.perf_counter()
            self.run()
            t1 = time.perf_counter()
            self.wall.append(t1 - t0)
            if t1 >= end:
                break
        self.cpu += time.process_time() - c0


class OrtSession:
    """onnxruntime on the ONNX file at ``path`` with ``threads`` intra-op threads (timed as Session)."""

    def __init__(self, path: Path, batch: int, threads: int) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.threads = threads
        i = self.sess.get_inputs()[0]
        self.feed = {i.name: np.random.default_rng(1).uniform(-1, 1, (batch,) + tuple(i.shape[1:])).astype(np.float32)}
        self.wall: list[float] = []
        self.cpu = 0.0

    def run(self) -> None:
        self.sess.run(None, self.feed)

    timed_slice = Session.timed_slice


def ort_file(net: str, workdir: Path) -> Path:
    """onnxruntime's int8 form of ``net``'s float conv body in ``workdir`` (made on first use)."""
    from native_onnx import ort_quantize_static, to_onnx

    path = workdir / f"{net}_ort_qs.onnx"
    if not path.exists():
        build, _ = NETS[net]
        fmodel = build(workdir)
        to_onnx(nets.conv_body(fmodel), workdir / f"{net}_ort_float.onnx")
        ort_quantize_static(workdir / f"{net}_ort_float.onnx", path,
                            [nets.random_input(fmodel, 1, seed) for seed in range(2)])
    return path


def _have_ort() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _table(title: str, runs: list) -> None:
    print(title)
    print(f"{'threads':>7} {'runs':>6} {'fastest ms':>11} {'median ms':>10} {'cpu/run ms':>11} {'cpu/wall':>8} "
          f"{'speed-up (fastest)':>19} {'speed-up (median)':>18}")
    one = runs[0]
    for s in runs:
        fast, med = min(s.wall), statistics.median(s.wall)
        cpu = s.cpu / len(s.wall)
        print(f"{s.threads:>7} {len(s.wall):>6} {fast * 1e3:>11.2f} {med * 1e3:>10.2f} {cpu * 1e3:>11.2f} "
              f"{s.cpu / sum(s.wall):>8.2f} {min(one.wall) / fast:>18.2f}x {statistics.median(one.wall) / med:>17.2f}x")


def model_file(net: str, workdir: Path) -> Path:
    """The 8-bit .dfx of ``net`` in ``workdir`` (made on first use)."""
    from dfxsdk.io import save

    path = workdir / f"{net}_int8.dfx"
    if not path.exists():
        build, _ = NETS[net]
        save(nets.quantize8(build(workdir)), path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--net", choices=sorted(NETS), default="ssd", help="network (default ssd: MobileNet-SSD)")
    ap.add_argument("--threads", type=int, nargs="+", default=[2], metavar="N",
                    help="thread counts compared with one thread (default 2)")
    ap.add_argument("--batch", type=int, help="batch (default 1; lenet 64)")
    ap.add_argument("--seconds", type=float, default=10.0, help="run time of each thread count (default 10)")
    ap.add_argument("--slice", type=float, default=0.5, help="length of one turn (default 0.5 s)")
    ap.add_argument("--workdir", type=Path, help="where the .dfx is kept (default: a temporary folder)")
    ap.add_argument("--no-ort", action="store_true", help="leave out the onnxruntime reference")
    args = ap.parse_args(argv)
    from dfx_native import _lib

    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        path = model_file(args.net, workdir)
        batch = args.batch or NETS[args.net][1]
        lib = _lib.load()
        model = ctypes.c_void_p()
        if lib.dfx_model_open_file(str(path).encode(), 0, ctypes.byref(model)):
            raise SystemExit(lib.dfx_last_error().decode())
        counts = [1] + [t for t in args.threads if t != 1]
        sessions = [Session(lib, model, batch, t) for t in counts]
        for s in sessions:
            s.run()
        reference = sessions[0].outputs()
        for s in sessions[1:]:
            if s.outputs() != reference:
                raise SystemExit(f"{s.threads} threads: outputs differ from one thread")
        orts = []
        if not args.no_ort and _have_ort():
            opath = ort_file(args.net, workdir)
            orts = [OrtSession(opath, batch, t) for t in counts]
            for s in orts:
                s.run()
        load0 = os.getloadavg()
        while min(sum(s.wall) for s in sessions + orts) < args.seconds:
            for s in sessions + orts:
                s.timed_slice(args.slice)
        load1 = os.getloadavg()
        lib.dfx_model_close(model)
    print(f"{args.net} batch {batch}, kernels {lib.dfx_kernels_name().decode()}, {os.cpu_count()} CPUs; "
          f"outputs bit-identical for every thread count")
    print(f"load average (1 min) {load0[0]:.2f} before, {load1[0]:.2f} after")
    _table("libdfx, whole network:", sessions)
    if orts:
        import onnxruntime

        _table(f"onnxruntime {onnxruntime.__version__} (the machine's reference), int8 conv body, "
               "intra_op_num_threads:", orts)
    elif not args.no_ort:
        print("onnxruntime reference: onnxruntime is not installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

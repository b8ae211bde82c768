"""One inference engine per process, timed in slices so that engines can be interleaved.

    python benchmarks/native_engines.py ENGINE MODEL BATCH

ENGINE is ``native`` (libdfx through ctypes), ``ort`` (onnxruntime, one intra-op thread) or ``ncnn``
(the PyPI package, ``opt.num_threads = 1``, weights from ``DataReaderFromEmpty`` as ncnn's benchncnn).
The worker loads the model, runs it twice, prints one JSON line of facts, then answers each
``run SECONDS`` line on stdin with the count of the runs made in that slice and the fastest run by
two clocks: wall time and the process's CPU time (which, on a machine that other work loads, leaves
out the time the engine waited for a core; on a quiet machine the two agree).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "DFX_THREADS": "1"}


def _native(path: str, batch: int) -> tuple[Callable[[], None], dict]:
    import ctypes

    sys.path.insert(0, str(ROOT / "plugins"))
    from dfx_native import _lib

    lib = _lib.load()
    m, s = ctypes.c_void_p(), ctypes.c_void_p()
    if lib.dfx_model_open_file(path.encode(), 0, ctypes.byref(m)) or \
            lib.dfx_session_create(m, batch, None, 0, 0, ctypes.byref(s)):
        raise SystemExit(lib.dfx_last_error().decode())
    info = _lib.TensorInfo()
    lib.dfx_model_tensor_info(m, lib.dfx_model_input(m, 0), ctypes.byref(info))
    shape = (batch,) + tuple(info.shape[i] for i in range(1, info.rank))
    x = np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32)

    def run() -> None:
        lib.dfx_session_set_input_f32(s, 0, x.ctypes.data, x.size)
        if lib.dfx_session_run(s):
            raise SystemExit(lib.dfx_last_error().decode())

    return run, {"kernels": lib.dfx_kernels_name().decode()}


def _ort(path: str, batch: int) -> tuple[Callable[[], None], dict]:
    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    so.optimized_model_filepath = path + ".opt.onnx"
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    i = sess.get_inputs()[0]
    x = np.random.default_rng(1).uniform(-1, 1, (batch,) + tuple(i.shape[1:])).astype(np.float32)
    ops: dict[str, int] = {}
    for n in onnx.load(so.optimized_model_filepath).graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    fused = sum(v for k, v in ops.items() if "QLinearConv" in k)
    return lambda: sess.run(None, {i.name: x}), {"ops": ops, "fused_convs": fused, "version": ort.__version__}


def _ncnn(path: str, batch: int) -> tuple[Callable[[], None], dict]:
    import ncnn

    net = ncnn.Net()
    net.opt.num_threads = 1
    net.opt.use_vulkan_compute = False
    if net.load_param(path) or net.load_model(ncnn.DataReaderFromEmpty()):
        raise SystemExit(f"ncnn could not load {path}")
    x = ncnn.Mat(np.random.default_rng(1).uniform(-1, 1, (3, 300, 300)).astype(np.float32))

    def run() -> None:
        ex = net.create_extractor()
        ex.input("data", x)
        ret, _ = ex.extract("output")
        if ret:
            raise SystemExit(f"ncnn extract failed: {ret}")

    return run, {"version": getattr(ncnn, "__version__", "?")}


ENGINES = {"native": _native, "ort": _ort, "ncnn": _ncnn}


def worker(engine: str, path: str, batch: int) -> None:
    """The loop of one engine's process (see the module docstring)."""
    run, facts = ENGINES[engine](path, batch)
    run()
    run()
    print(json.dumps(facts), flush=True)
    for line in sys.stdin:
        if not line.startswith("run"):
            break
        budget = float(line.split()[1])
        wall, cpu, n, start = float("inf"), float("inf"), 0, time.perf_counter()
        while n == 0 or time.perf_counter() - start < budget:
            t0, c0 = time.perf_counter(), time.process_time()
            run()
            cpu = min(cpu, time.process_time() - c0)
            wall = min(wall, time.perf_counter() - t0)
            n += 1
        print(json.dumps({"wall": wall, "cpu": cpu, "runs": n, "spent": time.perf_counter() - start}), flush=True)


class Engine:
    """A worker process seen from the benchmark: start it, give it time slices, stop it."""

    def __init__(self, label: str, engine: str, path: Path, batch: int) -> None:
        self.label, self.runs, self.spent = label, 0, 0.0
        self.best = {"wall": float("inf"), "cpu": float("inf")}   # fastest run by each clock
        self.error: str | None = None
        self.proc = subprocess.Popen([sys.executable, __file__, engine, str(path), str(batch)], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env={**os.environ, **THREAD_ENV})
        self.facts = self._answer() or {}

    def _answer(self) -> dict | None:
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read().strip().splitlines()
            self.error = err[-1] if err else f"exit {self.proc.wait()}"
            return None
        return json.loads(line)

    def slice(self, seconds: float) -> None:
        """Run for about ``seconds`` and keep the fastest run seen so far."""
        if self.error:
            return
        self.proc.stdin.write(f"run {seconds}\n")
        self.proc.stdin.flush()
        ans = self._answer()
        if ans:
            self.best = {k: min(v, ans[k]) for k, v in self.best.items()}
            self.runs += ans["runs"]
            self.spent += ans["spent"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait()


def interleave(engines: list[Engine], total: float, slices: int) -> None:
    """Give each engine ``slices`` turns in rotation until each has run at least ``total`` seconds."""
    for _ in range(slices):
        for e in engines:
            e.slice(total / slices)
    for e in engines:
        while not e.error and e.spent < total:
            e.slice(total - e.spent)


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2], int(sys.argv[3]))

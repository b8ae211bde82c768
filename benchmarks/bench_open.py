"""How the cost of opening a .dfx file grows with the size of its weights.

    python benchmarks/bench_open.py                 # 1 MB, 100 MB and 1 GB of weights
    python benchmarks/bench_open.py --sizes 1M,64M  # other sizes (K, M, G suffixes)

For each size it builds a synthetic model (a few large INT8 tensors), saves it
to a temporary folder and times ``dfxsdk.load`` without and with
``verify_checksums``: the median of several runs, after one untimed open that
brings the file into the page cache (so the figures measure the reader, not
the disk). Opening without checksums maps the file and validates the graph,
so it should not grow with the weights; with checksums it reads every byte.
No assertions: this prints figures and ratios against the smallest size.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import dfxsdk
from dfxsdk import DataType, Layer, Model, QFormat, Tensor, ops

_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
TENSORS = 4
WIDTH = 4096


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("B")
    if text and text[-1] in _UNITS:
        return int(float(text[:-1]) * _UNITS[text[-1]])
    return int(text)


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def synthetic_model(weight_bytes: int) -> Model:
    """x -> Requantize -> TENSORS parallel FullyConnected layers with INT8 weights."""
    rows = max(1, weight_bytes // (TENSORS * WIDTH))
    block = (np.arange(rows * WIDTH, dtype=np.int64) % 251 - 125).astype(np.int8)
    m = Model(name=f"bench-{weight_bytes}")
    m.add_tensor(Tensor("x", (1, WIDTH)))
    m.add_tensor(Tensor("xq", (1, WIDTH), DataType.INT8, QFormat(8, 4)))
    m.add_layer(Layer("quant", ops.Requantize(), ["x"], ["xq"]))
    for i in range(TENSORS):
        m.add_tensor(Tensor(f"w{i}", (rows, WIDTH), DataType.INT8, QFormat(8, 7),
                            _data=block.reshape(rows, WIDTH)))
        m.add_tensor(Tensor(f"b{i}", (rows,), DataType.INT32, QFormat(16, 11),
                            _data=np.zeros(rows, np.int32)))
        m.add_tensor(Tensor(f"y{i}", (1, rows), DataType.INT8, QFormat(8, 2)))
        m.add_layer(Layer(f"fc{i}", ops.FullyConnected(), ["xq", f"w{i}", f"b{i}"], [f"y{i}"]))
    m.inputs, m.outputs = ["x"], [f"y{i}" for i in range(TENSORS)]
    return m


def time_open(path: Path, verify: bool, runs: int) -> float:
    dfxsdk.load(path, verify_checksums=verify)  # warm the page cache, untimed
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model = dfxsdk.load(path, verify_checksums=verify)
        times.append(time.perf_counter() - start)
        del model
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,100M,1G",
                        help="comma-separated weight sizes (default: 1M,100M,1G)")
    parser.add_argument("--runs", type=int, default=9, help="timed opens per case (median)")
    parser.add_argument("--dir", default=None, help="folder for the temporary files")
    args = parser.parse_args(argv)
    sizes = sorted(parse_size(s) for s in args.sizes.split(","))

    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="dfx-bench-") as tmp:
        for size in sizes:
            free = shutil.disk_usage(tmp).free
            if free < size * 1.2 + (64 << 20):
                print(f"skipping {human(size)}: needs about {human(size * 1.2)}, "
                      f"{human(free)} free in {tmp}", file=sys.stderr)
                continue
            path = Path(tmp) / f"w{size}.dfx"
            model = synthetic_model(size)
            start = time.perf_counter()
            file_size = dfxsdk.save(model, path)
            save_s = time.perf_counter() - start
            del model
            fast = time_open(path, False, args.runs)
            full = time_open(path, True, args.runs)
            rows.append((size, file_size, save_s, fast, full))
            path.unlink()

    if not rows:
        print("no size fitted on the disk")
        return 1
    base_fast, base_full = rows[0][3], rows[0][4]
    print(f"dfxsdk {dfxsdk.__version__}: open a .dfx file (median of {args.runs}, warm page cache)")
    header = (f"{'weights':>10} {'file':>10} {'save':>9} {'open':>10} {'x':>7} "
              f"{'open+crc':>10} {'x':>7} {'GB/s':>7}")
    print(header)
    print("-" * len(header))
    for size, file_size, save_s, fast, full in rows:
        rate = file_size / full / 1e9
        print(f"{human(size):>10} {human(file_size):>10} {save_s:8.2f}s {fast * 1e3:8.2f}ms "
              f"{fast / base_fast:6.2f}x {full * 1e3:8.1f}ms {full / base_full:6.1f}x {rate:7.2f}")
    print(f"\n'x' columns: ratio to the {human(rows[0][0])} case. 'open' maps the file and "
          "validates header, graph and structure;\n'open+crc' also checks every tensor's "
          "CRC-32, value range and zero padding (load(verify_checksums=True));\n"
          "'GB/s' is the file size over the 'open+crc' time.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

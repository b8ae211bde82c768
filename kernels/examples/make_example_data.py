"""Writes kernels/examples/data/ for the classify example and its CTest.

- ``tiny_shapes.dfx``: the shipped default model (examples/tiny_shapes.py, 8-bit
  Ristretto formats) converted with its input scale and ``--labels``;
- ``plus_sign.u8``: one raw 16x16 gray test image (256 bytes) of a plus sign,
  the first such test image that the NumPy reference classifies correctly.

    python kernels/examples/make_example_data.py [OUTDIR]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
LABELS = ["horizontal bar", "vertical bar", "plus sign", "square outline"]  # examples/tiny_shapes.py
PLUS = LABELS.index("plus sign")


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path(__file__).resolve().parent / "data"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run([sys.executable, str(ROOT / "examples" / "tiny_shapes.py"), str(work)], check=True,
                       stdout=subprocess.DEVNULL)
        (work / "labels.txt").write_text("\n".join(LABELS) + "\n")
        subprocess.run([sys.executable, "-m", "dfxsdk", "convert", str(work / "tiny_shapes.prototxt"),
                        str(work / "tiny_shapes.caffemodel"), "--ristretto", str(work / "tiny_shapes_quantized.prototxt"),
                        "--input-scale", "0.00390625", "--labels", str(work / "labels.txt"),
                        "-o", str(out / "tiny_shapes.dfx")], check=True, stdout=subprocess.DEVNULL)
        test = np.load(work / "test.npz")
    import dfxsdk

    model = dfxsdk.load(out / "tiny_shapes.dfx")
    name = model.inputs[0]
    for x, y in zip(test["x"], test["y"]):
        if y != PLUS:
            continue
        logits = model.run({name: model.preprocessing[name].apply(x[None])}, backend="numpy")
        if int(np.argmax(next(iter(logits.values()))[0])) == PLUS:
            (out / "plus_sign.u8").write_bytes(x.transpose(1, 2, 0).tobytes())  # H, W, C
            return 0
    print("no plus sign test image is classified correctly", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

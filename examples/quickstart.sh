#!/usr/bin/env bash
# The main job on the shipped default model, from a fresh clone:
# set up .venv, build a small Caffe model + Ristretto prototxt, convert it to .dfx,
# inspect it, run it on sample images, evaluate it against the float network, then
# quantize the float model with dfxsdk's own quantizer and evaluate that on the C library.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
out=examples/out
dfx=.venv/bin/dfxsdk
.venv/bin/python examples/tiny_shapes.py "$out"
"$dfx" convert "$out/tiny_shapes.prototxt" "$out/tiny_shapes.caffemodel" \
    --ristretto "$out/tiny_shapes_quantized.prototxt" --input-scale 0.00390625 -o "$out/tiny_shapes.dfx"
"$dfx" inspect "$out/tiny_shapes.dfx"
"$dfx" run "$out/tiny_shapes.dfx" --input "$out/sample.npy" -o "$out/sample_out.npz"
"$dfx" eval "$out/tiny_shapes.dfx" --data "$out/test.npz" --float

# Without Ristretto: calibrate the float model and choose formats here, then run it on the C library.
"$dfx" quantize "$out/tiny_shapes.prototxt" "$out/tiny_shapes.caffemodel" --input-scale 0.00390625 \
    --calib "$out/test.npz" --calib-samples 200 --no-progress -o "$out/tiny_shapes_dfp.dfx"
"$dfx" eval "$out/tiny_shapes_dfp.dfx" --data "$out/test.npz" --backend native

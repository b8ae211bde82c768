"""Regenerate ``_proto/caffe_pb2.py`` from ``caffe.proto`` with the pinned protoc.

Run from anywhere::

    python plugins/dfx_caffe/generate_proto.py           # rewrite the module
    python plugins/dfx_caffe/generate_proto.py --check   # exit 1 if stale

The compiler is grpcio-tools==1.85.1 from PyPI (``python -m grpc_tools.protoc``,
the project's ``dev`` extra). The schema is compiled under the import path
``dfx_caffe/caffe.proto`` so that its descriptor cannot collide with another
package's ``caffe.proto`` in the same process.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = HERE / "caffe.proto"
TARGET = HERE / "_proto" / "caffe_pb2.py"
PINNED_GRPCIO_TOOLS = "1.85.1"


def generate() -> bytes:
    """Compile caffe.proto and return the generated module's bytes."""
    try:
        from importlib.metadata import version

        have = version("grpcio-tools")
    except Exception:  # noqa: BLE001 - reported below
        have = None
    if have != PINNED_GRPCIO_TOOLS:
        raise SystemExit(f"grpcio-tools=={PINNED_GRPCIO_TOOLS} is required (found {have}); "
                         f"pip install grpcio-tools=={PINNED_GRPCIO_TOOLS}")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src" / "dfx_caffe"
        src.mkdir(parents=True)
        shutil.copyfile(PROTO, src / "caffe.proto")
        out = Path(tmp) / "out"
        out.mkdir()
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{src.parent}",
                        f"--python_out={out}", "dfx_caffe/caffe.proto"], check=True)
        return (out / "dfx_caffe" / "caffe_pb2.py").read_bytes()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the module is stale")
    args = parser.parse_args(argv)
    fresh = generate()
    current = TARGET.read_bytes() if TARGET.exists() else b""
    if args.check:
        if fresh != current:
            print(f"{TARGET} is stale; run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    TARGET.write_bytes(fresh)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

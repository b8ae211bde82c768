"""``dfxsdk compile``: a .dfx network as standalone C source (see dfxsdk.ccompile)."""

from __future__ import annotations

import argparse

from ..ccompile import TARGETS, compile_model

_DESCRIPTION = """Compile a .dfx model to standalone C: the weights as const arrays (stored,
packed layout), one straight-line NAME_run() calling the dfx kernels with every
shift and format baked in, a static arena sized by the memory planner, and the
kernel sources the model needs (only those). No heap, no file I/O.

Build:  cc -O2 OUTDIR/*.c -lm   (plus your main.c; #include "NAME.h")
NAME.h documents the entry point, the buffers (shapes, formats, sizes) and the
preprocessing. The output folder is written atomically; an earlier compile
output there is replaced, any other existing non-empty folder is refused.
--target neon (AArch64) adds the NEON kernels and picks the dot product ones at
run time when the CPU has them (Linux HWCAP)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compile", help="compile a .dfx model to standalone C source",
                       description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="path of the .dfx file")
    p.add_argument("--output", "-o", required=True, metavar="OUTDIR", help="folder to write the sources into")
    p.add_argument("--prefix", metavar="NAME", help="C name prefix (default: the model file's name)")
    p.add_argument("--target", choices=TARGETS, default="portable", help="kernel set (default portable)")
    p.add_argument("--batch", type=int, default=1, help="samples per NAME_run call (default 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    r = compile_model(args.model, args.output, prefix=args.prefix, target=args.target, batch=args.batch)
    print(f"{r.outdir}: {r.prefix}.c, {r.prefix}.h and {len(r.sources) - 1} kernel source(s) "
          f"({', '.join(k.lower() for k in r.kernels)}); arena {r.arena_bytes} bytes")
    print(f"build: cc -O2 {r.outdir}/*.c -lm")
    return 0

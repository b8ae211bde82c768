"""Bounded structure-aware fuzzing: NumPy and the C library agree on every swept or mutated file.

Each conformance vector is swept over the edges of the allowed fl and bw
ranges (every tensor, per-channel fl included) and mutated; both backends run
every file both loaders accept and must give identical integers (float
outputs within the spec's tolerance), or both refuse. The long run, under
AddressSanitizer and UBSan, is the command in kernels/fuzz/dfx_sweep.py.
"""

from __future__ import annotations

import sys

from tests.support.paths import CONFORMANCE, KERNELS

sys.path.insert(0, str(KERNELS / "fuzz"))
import dfx_mutate  # noqa: E402
import dfx_sweep  # noqa: E402

VECTORS = sorted(CONFORMANCE.glob("*.dfx"))


def test_sweep_and_mutants_agree(native, tmp_path):
    from dfxsdk.plugins import get_manager

    seeds = [dfx_mutate.Seed.from_bytes(p.name, p.read_bytes()) for p in VECTORS]
    files = [(f"{s.name}:{label}", blob) for s in seeds
             for label, blob in dfx_mutate.sweep(s, fls=(-64, -33, 0, 33, 64), bws=(1, 32))]
    files += list(dfx_mutate.mutants(seeds, 150, seed=7))
    verdicts = dfx_mutate.Verdicts(str(tmp_path))
    ref = get_manager().backend("numpy")
    kinds = []
    for label, blob in files:
        kind, detail = dfx_sweep.compare_file(str(tmp_path / "f.dfx"), blob, verdicts, ref, native)
        assert kind != "disagree", f"{label}: {detail}"
        kinds.append(kind)
    assert kinds.count("ran") > len(files) // 4 and kinds.count("refused") > 0

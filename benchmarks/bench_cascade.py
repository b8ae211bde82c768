"""A cascade of three networks alternated on the native backend: cost per pass vs the sum of each alone.

    python benchmarks/bench_cascade.py [--quick] [--seconds S]

The networks are MTCNN's P-Net (det1, one 96x128 pyramid level), R-Net (det2, 8 candidate boxes of
24x24) and O-Net (det3, 2 boxes of 48x48) from ../shared/testdata/mtcnn, real weights, quantized to
8 bits by the ``dfp`` quantizer. Each is run through the native backend (``NativeBackend.run``, the
Python path a user takes), alone and alternated A, B, C, A, B, C ...; rounds of the two are
interleaved, and each network gets as many calls alone as inside the cascade. Every call is timed
by the process's CPU time (on a machine that other work loads, it leaves out the time spent
waiting for a core): a network's cost is its fastest call, alone or inside the cascade, and the
cost of a pass is the sum of the three networks' fastest calls inside the cascade (switching
costs, such as reopening a model, fall inside those calls). The fastest whole pass by wall time
is printed too; on a loaded machine it needs three undisturbed calls in a row and overstates.
The backend keeps a session per model and batch open (a bounded LRU cache), so a pass should
cost the sum of the three alone (goal: within 10 %). The same cascade with a cache of one session
(every switch reopens a model) is shown for contrast.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

import native_nets as nets  # noqa: E402

CASCADE = (("det1", (1, 3, 96, 128)), ("det2", (8, 3, 24, 24)), ("det3", (2, 3, 48, 48)))


def _fastest(fns, seconds: float) -> tuple[list[float], float]:
    """Call ``fns`` in turn for about ``seconds``: the fastest call of each (CPU time), and the fastest
    whole turn (wall time)."""
    best, whole, start = [float("inf")] * len(fns), float("inf"), time.perf_counter()
    while whole == float("inf") or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        for i, fn in enumerate(fns):
            c1 = time.process_time()
            fn()
            best[i] = min(best[i], time.process_time() - c1)
        whole = min(whole, time.perf_counter() - t0)
    return best, whole


def main(argv: list[str] | None = None) -> None:
    from dfx_native.backend import NativeBackend

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run (0.1 s per measurement, two rounds)")
    ap.add_argument("--seconds", type=float, default=1.0, help="time per round of the cascade (and of the three alone)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    seconds, rounds = (0.1, 2) if args.quick else (args.seconds, args.rounds)
    if not nets.MTCNN.is_dir():
        raise SystemExit(f"cascade skipped: {nets.MTCNN} is absent")
    models = [nets.quantize8(nets.mtcnn(net, shape)) for net, shape in CASCADE]
    feeds = [nets.random_input(m, shape[0], seed=i) for i, (m, (_, shape)) in enumerate(zip(models, CASCADE))]
    cached, single = NativeBackend(), NativeBackend(max_sessions=1)

    def calls(backend) -> list:
        return [lambda m=m, x=x: backend.run(m, x) for m, x in zip(models, feeds)]

    inf = float("inf")
    alone = [inf] * len(models)
    inside = {"cached": [inf] * len(models), "one session": [inf] * len(models)}
    whole = {"cached": inf, "one session": inf}
    for _ in range(rounds):
        for i, fn in enumerate(calls(cached)):
            alone[i] = min(alone[i], _fastest([fn], seconds / len(models))[0][0])
        for key, backend in (("cached", cached), ("one session", single)):
            best, turn = _fastest(calls(backend), seconds)
            inside[key] = [min(a, b) for a, b in zip(inside[key], best)]
            whole[key] = min(whole[key], turn)
    total = sum(alone)
    print(f"native kernels: {__import__('dfx_native._lib', fromlist=['load']).load().dfx_kernels_name().decode()}")
    for (net, shape), t in zip(CASCADE, alone):
        print(f"  {net} {shape}: {t * 1e3:.3f} ms alone")
    print(f"  sum of the three alone:            {total * 1e3:.3f} ms (CPU time)")
    for key, backend in (("cached", cached), ("one session", single)):
        cost = sum(inside[key])
        what = f"session cache of {backend.max_sessions}" if key == "cached" else "one session"
        print(f"  cascade, {what}: {cost * 1e3:.3f} ms per pass = {cost / total:.3f}x the sum"
              f"{' (goal <= 1.10)' if key == 'cached' else ''}; fastest whole pass {whole[key] * 1e3:.3f} ms; "
              f"models opened {backend.models_opened}, sessions created {backend.sessions_created}")


if __name__ == "__main__":
    main()

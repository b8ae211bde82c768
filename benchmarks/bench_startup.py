"""Start-up time of the ``dfxsdk`` command: ``--version`` should take under 0.15 s.

    python benchmarks/bench_startup.py             # 15 runs of each command
    python benchmarks/bench_startup.py --runs 40

Each command runs as a new process, as a user's shell would start it (the
``dfxsdk`` script next to this Python, else ``python -m dfxsdk``); the figure
is the median wall time of the runs after one untimed warm-up run (the OS
file cache warm). ``python -c pass`` is the floor no command can go below.
``--version`` imports neither numpy nor any plugin; ``--help`` builds every
subcommand's parser (numpy, no plugin); ``plugins`` loads every plugin.
No assertions: this prints figures (issue 18 sets the target for --version).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_VERSION_S = 0.15


def dfxsdk_command() -> list[str]:
    script = Path(sys.executable).with_name("dfxsdk")
    if script.exists():
        return [str(script)]
    found = shutil.which("dfxsdk")
    return [found] if found else [sys.executable, "-m", "dfxsdk"]


def median_seconds(cmd: list[str], runs: int) -> float:
    subprocess.run(cmd, capture_output=True, check=True)  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs per command (default 15)")
    args = parser.parse_args(argv)
    base = dfxsdk_command()
    cases = [("python -c pass", [sys.executable, "-c", "pass"]),
             ("dfxsdk --version", base + ["--version"]),
             ("dfxsdk --help", base + ["--help"]),
             ("dfxsdk plugins", base + ["plugins"])]
    print(f"median of {args.runs} runs, {' '.join(base)}")
    for label, cmd in cases:
        t = median_seconds(cmd, args.runs)
        note = ""
        if label == "dfxsdk --version":
            note = f"  (target < {TARGET_VERSION_S:.2f} s: {'met' if t < TARGET_VERSION_S else 'NOT met'})"
        print(f"  {label:<20} {t * 1000:7.1f} ms{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

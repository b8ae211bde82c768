"""A minimal progress bar for long work (calibration, evaluation)."""

from __future__ import annotations

import sys
import time


class Progress:
    """A one-line progress bar on stderr; a line every 10 s when stderr is not a terminal."""

    def __init__(self, total: int, label: str, enabled: bool = True) -> None:
        self.total, self.label, self.done = total, label, 0
        self.tty = sys.stderr.isatty()
        self.enabled = enabled
        self.start = self.last = time.monotonic()

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            frac = self.done / max(self.total, 1)
            bar = "#" * int(30 * frac)
            rate = self.done / max(now - self.start, 1e-9)
            sys.stderr.write(f"\r{self.label} [{bar:<30}] {self.done}/{self.total} {rate:.0f}/s")
            sys.stderr.flush()
            self.last = now
        elif now - self.last >= 10 or self.done >= self.total:
            sys.stderr.write(f"{self.label}: {self.done}/{self.total}\n")
            self.last = now

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()

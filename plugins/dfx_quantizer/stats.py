"""One-pass streaming statistics of tensors, for choosing fractional lengths.

Each :class:`TensorStats` keeps, per tensor: the element count, the number of
zeros, max|x| and a histogram of log2|x|. The histogram has fixed edges
2**(LOG_MIN + i/BINS_PER_OCTAVE) (32 bins per octave over 2**-48 .. 2**48,
3072 bins), so batches merge without rescaling and no range has to be known
before the first batch. Every power of two is a bin edge, which makes the
quantities the fl rules need exact at octave boundaries: the fraction of
values above 2**k (percentile) and the split between values that round to
zero, round normally and saturate (mean squared error).

Constants (weights) keep their exact values instead of a histogram
(:attr:`TensorStats.values`), so rules evaluate them exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from dfxsdk.errors import DfxInputError
from dfxsdk.formats import QFormat
from dfxsdk.graph import Model
from dfxsdk.progress import Progress

BINS_PER_OCTAVE = 32
LOG_MIN, LOG_MAX = -48, 48
NUM_BINS = (LOG_MAX - LOG_MIN) * BINS_PER_OCTAVE
#: Lower edge of every bin (and the upper edge of the last one).
EDGES = np.exp2(LOG_MIN + np.arange(NUM_BINS + 1) / BINS_PER_OCTAVE)


@dataclass
class TensorStats:
    """Streaming statistics of the magnitudes of one tensor's values."""

    name: str
    count: int = 0
    zeros: int = 0
    max_abs: float = 0.0
    hist: np.ndarray = field(default_factory=lambda: np.zeros(NUM_BINS, np.int64))
    #: Exact values (constants only), for exact error measures.
    values: np.ndarray | None = None
    #: False: only count, zeros and max|x| are kept (faster, for rules that need no more).
    histogram: bool = True

    def update(self, x: np.ndarray) -> None:
        """Add the values of ``x`` (any shape)."""
        a = np.abs(np.asarray(x, np.float64)).reshape(-1)
        a = a[np.isfinite(a)]
        nz = a[a > 0]
        self.count += a.size
        self.zeros += a.size - nz.size
        if nz.size:
            self.max_abs = max(self.max_abs, float(nz.max()))
            if not self.histogram:
                return
            idx = np.floor((np.log2(nz) - LOG_MIN) * BINS_PER_OCTAVE).astype(np.int64)
            np.clip(idx, 0, NUM_BINS - 1, out=idx)
            self.hist += np.bincount(idx, minlength=NUM_BINS)

    @classmethod
    def of(cls, name: str, x: np.ndarray) -> TensorStats:
        """Statistics of a whole array (a constant): exact values, no histogram."""
        s = cls(name, histogram=False)
        s.update(x)
        s.values = np.asarray(x, np.float64).reshape(-1)
        return s

    def _need_histogram(self) -> None:
        if not self.histogram:
            raise ValueError(f"statistics of '{self.name}' were collected without a histogram")

    def percentile(self, p: float) -> float:
        """The smallest bin edge v with at least p % of |x| <= v (never above max|x|).

        Exact (the smallest such value) for constants.
        """
        if self.count == 0 or self.max_abs == 0:
            return 0.0
        self._need_histogram()
        need = self.count * min(max(p, 0.0), 100.0) / 100.0
        if self.zeros >= need:
            return 0.0
        cum = self.zeros + np.cumsum(self.hist)
        i = int(np.searchsorted(cum, need - 1e-9))
        return float(min(EDGES[min(i + 1, NUM_BINS)], self.max_abs))

    def mse(self, fmt: QFormat) -> float:
        """Mean squared error of quantizing these values to ``fmt`` (per element).

        Exact for constants (rounding half away from zero, whatever ``fmt``
        says: the tie rule changes almost nothing). From the histogram otherwise: a value below half a
        step becomes 0 (error v**2), one above the largest code saturates
        (error (v - max)**2), any other has the uniform rounding error
        step**2 / 12; v is the bin's midpoint, capped at max|x|.
        """
        if self.count == 0:
            return 0.0
        if self.values is not None:
            scale = 2.0 ** fmt.fl
            v = self.values * scale
            a = np.abs(v)
            q = np.clip(np.copysign(np.floor(a + 0.5), v), fmt.qmin, fmt.qmax)   # half away from zero
            err = (q - v) / scale
            return float(np.mean(err * err))
        self._need_histogram()
        step = 2.0 ** -fmt.fl
        top = fmt.qmax * step
        v = np.minimum((EDGES[:-1] + EDGES[1:]) / 2, self.max_abs)
        err = np.where(v < step / 2, v * v, np.where(v > top + step / 2, (v - top) ** 2, step * step / 12))
        return float(np.dot(self.hist, err) / self.count)


def collect(model: Model, batches: Iterable[dict[str, np.ndarray]], tensors: Sequence[str], *,
            limit: int | None = None, backend: str = "numpy", progress: bool = False,
            total: int | None = None, histogram: bool = True) -> dict[str, TensorStats]:
    """Run ``model`` in float mode over ``batches`` once, gathering stats of ``tensors``.

    Only the first ``limit`` samples are used (all when None). Each batch is
    checked against the model's inputs before it runs. Without ``histogram``
    only count, zeros and max|x| are gathered.
    """
    from dfxsdk.plugins import get_manager

    pm = get_manager()
    runner = pm.backend(backend)
    wanted = list(dict.fromkeys(tensors))
    out = {n: TensorStats(n, histogram=histogram) for n in wanted}
    seen = 0
    bar = Progress(total if limit is None else min(limit, total or limit), "calibration",
                   enabled=progress and total is not None)
    for batch in batches:
        n = batch_size(model, batch)
        if limit is not None:
            if seen >= limit:
                break
            if seen + n > limit:
                batch = {k: v[:limit - seen] for k, v in batch.items()}
                n = limit - seen
        res = pm.call_backend(runner, model, batch, mode="float", outputs=wanted)  # contract-checked
        for name in wanted:
            out[name].update(res[name])
        seen += n
        bar.update(n)
    bar.close()
    if seen == 0:
        raise DfxInputError("the calibration data holds no samples")
    return out


def batch_size(model: Model, batch: dict[str, np.ndarray]) -> int:
    """Samples in ``batch``; DfxInputError when it does not fit the model's inputs."""
    n = None
    for name in model.inputs:
        if name not in batch:
            raise DfxInputError(f"calibration batch lacks input '{name}' (has {sorted(batch)})")
        x = np.asarray(batch[name])
        want = model.tensors[name].shape
        if x.ndim != len(want) or tuple(x.shape[1:]) != tuple(want[1:]):
            raise DfxInputError(f"calibration batch for input '{name}' has shape {x.shape}, the model "
                                f"expects (N,{','.join(map(str, want[1:]))})")
        if n is not None and x.shape[0] != n:
            raise DfxInputError("calibration inputs have different batch sizes")
        n = x.shape[0]
    return n or 0


def log2_ceil(v: float) -> int:
    """ceil(log2 v) for v > 0 (exact at powers of two)."""
    m, e = math.frexp(v)          # v = m * 2**e, 0.5 <= m < 1
    return e - 1 if m == 0.5 else e

"""Rules that choose a fractional length for a bit width, from tensor statistics.

A rule is a function ``rule(stats, bw, role, options) -> fl | None`` where
``role`` is ``"params"`` (weights) or ``"activations"``; None means "no
information" (an all-zero tensor), and the caller substitutes a fallback.
Rules live in :data:`RULES`; :func:`register` adds one (a third-party plugin
can register its own rule at import time).

Built-in rules:

``ristretto``
    Ristretto's tool, exactly: params il = ceil(log2 max|w|) + 1, activations
    il = ceil(log2 max|a|) (one bit less on purpose: values in the top octave
    saturate), fl = bw - il.
``maxabs``
    The finest fl that never overflows: the largest fl with
    max|x| * 2**fl <= 2**(bw-1) - 1/2 (so that max|x| rounds to at most the
    largest code), as Vitis AI's NonOverflow.
``percentile``
    ``maxabs`` applied to the p-th percentile of |x| (option ``percentile``,
    default 99.99) for activations; weights use ``maxabs`` (they are few and
    every outlier weight matters).
``mse``
    The fl among maxabs .. maxabs + 6 with the least mean squared error
    (exact for weights, from the histogram for activations); ties go to the
    wider range.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from dfxsdk.errors import DfxInputError
from dfxsdk.formats import FL_MAX, FL_MIN, QFormat

from .stats import TensorStats, log2_ceil

Rule = Callable[[TensorStats, int, str, dict[str, Any]], "int | None"]
RULES: dict[str, Rule] = {}
#: Rules that only need max|x| (statistics can skip the histogram for them).
MAX_ONLY: set[str] = set()
#: One line per rule, for --help.
DESCRIPTIONS: dict[str, str] = {}
#: How far past the no-overflow fl the mse rule looks.
MSE_SPAN = 6


def register(name: str, rule: Rule, description: str = "", *, max_only: bool = False) -> Rule:
    """Add ``rule`` under ``name`` (replacing any); ``max_only``: it reads only count and max|x|."""
    RULES[name] = rule
    DESCRIPTIONS[name] = description
    (MAX_ONLY.add if max_only else MAX_ONLY.discard)(name)
    return rule


def rule(name: str) -> Rule:
    """The rule called ``name``; DfxInputError listing the known ones otherwise."""
    try:
        return RULES[name]
    except KeyError:
        raise DfxInputError(f"unknown fl rule '{name}' (known: {', '.join(sorted(RULES))})") from None


def clamp_fl(fl: int) -> int:
    return max(FL_MIN, min(FL_MAX, int(fl)))


def choose(name: str, stats: TensorStats, bw: int, role: str, options: dict[str, Any] | None = None,
           fallback: int | None = None) -> int:
    """The fl rule ``name`` gives (clamped to the format's range); ``fallback`` (or bw - 1) for no data."""
    fl = rule(name)(stats, bw, role, options or {})
    if fl is None:
        fl = bw - 1 if fallback is None else fallback
    return clamp_fl(fl)


def fl_no_overflow(value: float, bw: int) -> int | None:
    """The largest fl with value * 2**fl <= 2**(bw-1) - 1/2 (None for value 0)."""
    if value <= 0 or not math.isfinite(value):
        return None
    limit = 2.0 ** (bw - 1) - 0.5
    fl = math.floor(math.log2(limit / value))
    while value * 2.0 ** fl > limit:       # guard against log2 rounding
        fl -= 1
    while value * 2.0 ** (fl + 1) <= limit:
        fl += 1
    return fl


def _ristretto(stats: TensorStats, bw: int, role: str, options: dict[str, Any]) -> int | None:
    if stats.max_abs <= 0:
        return None
    il = log2_ceil(stats.max_abs) + (1 if role == "params" else 0)
    return bw - il


def _maxabs(stats: TensorStats, bw: int, role: str, options: dict[str, Any]) -> int | None:
    return fl_no_overflow(stats.max_abs, bw)


def _percentile(stats: TensorStats, bw: int, role: str, options: dict[str, Any]) -> int | None:
    if role == "params":
        return fl_no_overflow(stats.max_abs, bw)
    p = float(options.get("percentile", 99.99))
    return fl_no_overflow(stats.percentile(p), bw)


def _mse(stats: TensorStats, bw: int, role: str, options: dict[str, Any]) -> int | None:
    start = fl_no_overflow(stats.max_abs, bw)
    if start is None:
        return None
    best, best_err = start, math.inf
    for fl in range(start, start + MSE_SPAN + 1):
        err = stats.mse(QFormat(bw, clamp_fl(fl)))
        if err < best_err * (1 - 1e-9):
            best, best_err = fl, err
    return best


# -- per-channel: the built-in rules on all channels at once ----------------------------

def _v_no_overflow(mx: np.ndarray, bw: int) -> np.ndarray:
    limit = 2.0 ** (bw - 1) - 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        fl = np.floor(np.log2(limit / mx))
    fl = np.where(mx > 0, fl, 0.0)
    fl -= (mx * np.exp2(fl) > limit)
    fl += (mx * np.exp2(fl + 1) <= limit) & (mx > 0)
    return np.where(mx > 0, fl, np.nan)


def _v_ristretto(w: np.ndarray, bw: int, role: str, options: dict[str, Any]) -> np.ndarray:
    mx = np.abs(w).max(axis=1)
    m, e = np.frexp(mx)
    il = np.where(m == 0.5, e - 1, e) + (1 if role == "params" else 0)
    return np.where(mx > 0, bw - il, np.nan)


def _v_maxabs(w: np.ndarray, bw: int, role: str, options: dict[str, Any]) -> np.ndarray:
    return _v_no_overflow(np.abs(w).max(axis=1), bw)


def _v_mse(w: np.ndarray, bw: int, role: str, options: dict[str, Any]) -> np.ndarray:
    start = _v_no_overflow(np.abs(w).max(axis=1), bw)
    base = np.nan_to_num(start)
    qmin, qmax = -(2.0 ** (bw - 1)), 2.0 ** (bw - 1) - 1
    errs = []
    for k in range(MSE_SPAN + 1):
        scale = np.exp2(np.clip(base + k, FL_MIN, FL_MAX))[:, None]
        v = w * scale
        q = np.clip(np.copysign(np.floor(np.abs(v) + 0.5), v), qmin, qmax)
        errs.append(np.mean(((q - v) / scale) ** 2, axis=1))
    best = np.argmin(np.stack(errs, axis=1), axis=1)       # first minimum: the wider range
    return np.where(np.isnan(start), np.nan, base + best)


#: Vectorized per-channel forms of rules, for weights: f(w as (channels, n), bw, role, options) -> fl
#: per channel (NaN: no information). Rules without one are applied channel by channel.
PER_CHANNEL: dict[str, Callable[..., np.ndarray]] = {
    "ristretto": _v_ristretto, "maxabs": _v_maxabs, "percentile": _v_maxabs, "mse": _v_mse}


def choose_per_channel(name: str, w: np.ndarray, axis: int, bw: int, role: str,
                       options: dict[str, Any] | None = None, fallback: int | None = None) -> tuple[int, ...]:
    """One fl per index of ``axis`` of constant ``w`` (``fallback`` for all-zero channels)."""
    rule(name)
    w2 = np.moveaxis(np.asarray(w, np.float64), axis, 0).reshape(np.shape(w)[axis], -1)
    fb = bw - 1 if fallback is None else fallback
    fast = PER_CHANNEL.get(name)
    if fast is not None and RULES[name] is _BUILTIN.get(name):
        fls = fast(w2, bw, role, options or {})
        return tuple(clamp_fl(fb if np.isnan(v) else int(v)) for v in fls)
    return tuple(choose(name, TensorStats.of(f"[{i}]", row), bw, role, options, fb) for i, row in enumerate(w2))


register("ristretto", _ristretto, "Ristretto's rule: il = ceil(log2 max)+1 (params), ceil(log2 max) (activations)",
         max_only=True)
register("maxabs", _maxabs, "no overflow: the finest fl that holds max|x|", max_only=True)
register("percentile", _percentile, "activations: maxabs of the p-th percentile of |x|; weights: maxabs")
register("mse", _mse, "least mean squared error over fl = maxabs .. maxabs+6")
_BUILTIN = {"ristretto": _ristretto, "maxabs": _maxabs, "percentile": _percentile, "mse": _mse}

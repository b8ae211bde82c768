"""Choosing bit widths: Ristretto's search and a greedy per-layer search.

Both measure a candidate by building it and running it on the scoring data
with the numpy backend in integer mode. The score (in percent) is top-1
accuracy when labels are given, otherwise the agreement (argmax equality) of
the candidate's score tensor with the float model's. The margin is absolute,
in percentage points, as Ristretto's ``--error_margin``: a candidate passes
when ``score >= baseline - margin``.

Ristretto's search (tools/ristretto, quantization.cpp), with one addition:
    try 16, 8, 4, 2, 1 bits separately for convolution weights (Conv2D and
    Deconv2D), fully connected weights and activations (input and output of
    every convolution and fully connected layer), everything else float; keep
    for each part the last width before the first that breaks the margin
    (none: the part stays float); combine. Ristretto stops there without
    checking the combination. Here the combination is scored and, while it
    breaks the margin, the part that lost the most on its own at its chosen
    width gets twice the bits (a part at 16 bits becomes float), and the new
    combination is scored again. Every step is logged.

Per-layer search:
    start from the Ristretto search's (checked) result; then, one knob at a
    time, lower it to the next width (16 -> 8 -> 4 -> 2 -> 1) as long as the
    whole network still passes. The knobs are each layer's weights, largest
    weight count first, then each layer's activations (its input and output
    together), largest output first. Greedy and single-pass: a knob that fails
    is not tried again, so the order matters; every accepted step was scored
    on the full network, so the result is inside the margin by construction.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from dfxsdk.errors import DfxInputError
from dfxsdk.fixedpoint import dequantize
from dfxsdk.graph import Model

from . import scores
from .apply import LayerPlan, Plan, quant_layers

WIDTHS = (16, 8, 4, 2, 1)
PARTS = ("conv", "fc", "act")


class Scorer:
    """Scores models on fixed data against the float model (see :mod:`.scores`).

    With labels: top-1 accuracy of the argmax of the score tensor (the first
    graph output, or ``score_tensor``). Without: the mean over the score tensors
    (every graph output, or ``score_tensor``) of their agreement with the float
    model: the share of boxes found again for a DetectionOutput, the fidelity
    ``100 * (1 - noise / signal)`` otherwise. :meth:`measure` also gives a second
    figure that breaks ties between equal scores: with labels the mean
    log-probability of the labels, else the mean SQNR (dB) of the outputs.
    """

    def __init__(self, float_model: Model, batches: Sequence[dict[str, np.ndarray]],
                 labels: np.ndarray | None, score_tensor: str | None = None, *,
                 backend: str | None = None, limit: int | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        from dfxsdk.plugins import get_manager

        self.manager = get_manager()
        #: Runs the candidates (integer mode): the native backend when it can, the float model: numpy.
        self.backend = scores.fast_backend(float_model) if backend is None else _backend(backend)
        self.float_backend = _backend("numpy")
        self.tensors = [score_tensor] if score_tensor else list(float_model.outputs)
        for t in self.tensors:
            if t not in float_model.tensors:
                raise DfxInputError(f"no tensor named '{t}' to score")
        self.batches = limit_batches(batches, limit)
        n = sum(next(iter(b.values())).shape[0] for b in self.batches)
        if n == 0:
            raise DfxInputError("no samples to score on")
        self.labels = None if labels is None else np.asarray(labels, np.int64)[:n]
        if self.labels is not None and len(self.labels) != n:
            raise DfxInputError(f"{len(self.labels)} labels for {n} scoring samples")
        self.n = n
        self.log = log or (lambda s: None)
        self.evaluations = 0
        self.detections = {t for t in self.tensors
                           if (p := float_model.producer(t)) is not None and p.type == "DetectionOutput"}
        producer = float_model.producer(self.tensors[0])
        self.probabilities = producer is not None and producer.type == "Softmax"
        self.reference = self.outputs(float_model, "float")
        self.baseline = self.measure_outputs(self.reference)[0]

    def outputs(self, model: Model, mode: str = "integer") -> dict[str, list[np.ndarray]]:
        """Real values of every score tensor, per batch."""
        out: dict[str, list[np.ndarray]] = {t: [] for t in self.tensors}
        for batch in self.batches:
            backend = self.float_backend if mode == "float" else self.backend
            res = self.manager.call_backend(backend, model, batch, mode=mode, outputs=self.tensors)
            for t in self.tensors:
                v = res[t]
                q = model.tensors[t].qformat
                if q is not None and v.dtype.kind == "i":
                    v = dequantize(v, q, np.float64)
                out[t].append(np.asarray(v, np.float64))
        return out

    def measure_outputs(self, outs: dict[str, list[np.ndarray]]) -> tuple[float, float]:
        """(score in percent, tie-breaker) of outputs (see the class docstring)."""
        sqnr = float(np.mean([scores.sqnr(np.concatenate([r.reshape(-1) for r in self.reference[t]]),
                                          np.concatenate([v.reshape(-1) for v in outs[t]]))
                              for t in self.tensors]))
        if self.labels is not None:
            flat = np.concatenate([v.reshape(v.shape[0], -1) for v in outs[self.tensors[0]]])
            preds = flat.argmax(axis=1)
            return 100.0 * float(np.mean(preds == self.labels)), self._log_likelihood(flat)
        parts = []
        for t in self.tensors:
            if t in self.detections:
                parts.append(scores.box_agreement(self.reference[t], outs[t]))
            else:
                parts.append(np.mean([scores.fidelity(r, v) for r, v in zip(self.reference[t], outs[t])]))
        return float(np.mean(parts)), sqnr

    def _log_likelihood(self, flat: np.ndarray) -> float:
        """Mean log-probability of the labels (the tensor's values if a Softmax made it, else their softmax)."""
        if not self.probabilities:
            z = flat - flat.max(axis=1, keepdims=True)
            flat = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        return float(np.mean(np.log(np.maximum(flat[np.arange(len(flat)), self.labels], 1e-12))))

    def measure(self, model: Model) -> tuple[float, float]:
        """(score in percent, tie-breaker) of ``model`` in integer mode."""
        self.evaluations += 1
        return self.measure_outputs(self.outputs(model, "integer"))

    def score(self, model: Model) -> float:
        """Score of ``model`` in integer mode, in percent."""
        return self.measure(model)[0]

    @property
    def what(self) -> str:
        if self.labels is not None:
            return "top-1 accuracy"
        return "agreement with the float model (" + ", ".join(
            f"{t}: {'boxes found again' if t in self.detections else 'fidelity'}" for t in self.tensors) + ")"


def _backend(name: str):
    from dfxsdk.plugins import get_manager

    return get_manager().backend(name)


def limit_batches(batches: Sequence[dict[str, np.ndarray]], limit: int | None) -> list[dict[str, np.ndarray]]:
    """The batches holding the first ``limit`` samples (all when None)."""
    if limit is None:
        return list(batches)
    out, seen = [], 0
    for b in batches:
        if seen >= limit:
            break
        n = next(iter(b.values())).shape[0]
        out.append(b if seen + n <= limit else {k: v[:limit - seen] for k, v in b.items()})
        seen += min(n, limit - seen)
    return out


@dataclass
class SearchResult:
    """What a search chose and how it got there."""

    plan: Plan
    score: float
    baseline: float
    widths: dict[str, int | None] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    evaluations: int = 0


def part_of(layer_type: str) -> str:
    return "fc" if layer_type == "FullyConnected" else "conv"


def combined_plan(model: Model, widths: dict[str, int | None], only: Sequence[str] = PARTS) -> Plan:
    """The plan giving each part its width (parts not in ``only``, or None, stay float)."""
    plan = {}
    for layer in quant_layers(model):
        wp = widths.get(part_of(layer.type)) if part_of(layer.type) in only else None
        wa = widths.get("act") if "act" in only else None
        plan[layer.name] = LayerPlan(wa, wa, wp)
    return plan


def uniform_plan(model: Model, bw_conv: int | None, bw_fc: int | None, bw_act: int | None) -> Plan:
    return combined_plan(model, {"conv": bw_conv, "fc": bw_fc, "act": bw_act})


def _fmt(w: int | None) -> str:
    return "float" if w is None else f"{w}-bit"


def ristretto_search(model: Model, evaluate: Callable[[Plan], float], baseline: float, margin: float, *,
                     widths: Sequence[int] = WIDTHS, check_combined: bool = True,
                     echo: Callable[[str], None] | None = None) -> SearchResult:
    """Ristretto's bit width search, plus the check (and back-off) of the combination."""
    log: list[str] = []

    def say(line: str) -> None:
        log.append(line)
        if echo:
            echo(line)

    floor = baseline - margin
    say(f"baseline {baseline:.2f} %, margin {margin:g} pp: a candidate passes at >= {floor:.2f} %")
    present = {part_of(l.type) for l in quant_layers(model)} | {"act"}
    chosen: dict[str, int | None] = {}
    loss_at: dict[str, float] = {}
    for part in PARTS:
        if part not in present:
            continue
        chosen[part] = None
        for bw in widths:
            s = evaluate(combined_plan(model, {part: bw}, only=(part,)))
            ok = s >= floor
            say(f"  {part:>4} {bw:>2}-bit: {s:.2f} %{'' if ok else '  (breaks the margin)'}")
            if not ok:
                break
            chosen[part] = bw
            loss_at[part] = baseline - s
    say("chosen: " + ", ".join(f"{p} {_fmt(w)}" for p, w in chosen.items()))
    plan = combined_plan(model, chosen)
    score = evaluate(plan)
    say(f"combined: {score:.2f} %{'' if score >= floor else '  (breaks the margin)'}")
    while check_combined and score < floor:
        raisable = [p for p, w in chosen.items() if w is not None]
        if not raisable:
            break
        part = max(raisable, key=lambda p: (loss_at.get(p, 0.0), -PARTS.index(p)))
        old = chosen[part]
        chosen[part] = None if old >= max(widths) else min(w for w in (*widths, 32) if w > old)
        if chosen[part] == 32:
            chosen[part] = None
        plan = combined_plan(model, chosen)
        score = evaluate(plan)
        say(f"back-off: {part} {_fmt(old)} -> {_fmt(chosen[part])} (it lost {loss_at.get(part, 0):.2f} pp alone): "
            f"{score:.2f} %{'' if score >= floor else '  (breaks the margin)'}")
        # measure the raised part's own loss again, so the next choice is fair
        if chosen[part] is not None:
            loss_at[part] = baseline - evaluate(combined_plan(model, {part: chosen[part]}, only=(part,)))
        else:
            loss_at[part] = 0.0
    return SearchResult(plan, score, baseline, dict(chosen), log)


def per_layer_search(model: Model, start: Plan, evaluate: Callable[[Plan], float], baseline: float,
                     margin: float, *, widths: Sequence[int] = WIDTHS, start_score: float | None = None,
                     echo: Callable[[str], None] | None = None) -> SearchResult:
    """Greedy per-layer lowering of bit widths from ``start`` (see the module docstring)."""
    log: list[str] = []

    def say(line: str) -> None:
        log.append(line)
        if echo:
            echo(line)

    floor = baseline - margin
    plan = dict(start)
    score = evaluate(plan) if start_score is None else start_score
    say(f"per-layer search from {score:.2f} % (passes at >= {floor:.2f} %)")
    layers = quant_layers(model)
    by_weights = sorted(layers, key=lambda l: -model.tensors[l.inputs[1]].size)
    by_output = sorted(layers, key=lambda l: -int(np.prod(model.tensors[l.outputs[0]].shape[1:])))
    knobs = [(l.name, "params") for l in by_weights] + [(l.name, "act") for l in by_output]
    for name, knob in knobs:
        while True:
            p = plan[name]
            cur = p.bw_params if knob == "params" else p.bw_out
            lower = [w for w in widths if cur is None or w < cur]
            if not lower:
                break
            nxt = max(lower)
            trial = dict(plan)
            trial[name] = LayerPlan(p.bw_in, p.bw_out, nxt) if knob == "params" else \
                LayerPlan(nxt, nxt, p.bw_params)
            s = evaluate(trial)
            ok = s >= floor
            say(f"  {name} {knob} {_fmt(cur)} -> {_fmt(nxt)}: {s:.2f} %{'' if ok else '  (kept ' + _fmt(cur) + ')'}")
            if not ok:
                break
            plan, score = trial, s
    return SearchResult(plan, score, baseline, {}, log)


def stderr_echo(line: str) -> None:
    print(line, file=sys.stderr)


Knob = tuple[str, str]


def fl_search(knobs: Sequence[Knob], measure: Callable[[dict[Knob, int]], tuple[float, float]], *,
              start: dict[Knob, int] | None = None, rounds: int = 2, step_limit: int = 2,
              max_evaluations: int | None = None, echo: Callable[[str], None] | None = None,
              ) -> tuple[dict[Knob, int], tuple[float, float], list[str]]:
    """Greedy search of fl offsets on the task score (coordinate descent).

    Each round visits every knob in order and tries its fl one lower and one
    higher than now (at most ``step_limit`` away from the rule's choice); a move
    is kept when (score, SQNR) improves, compared as a pair (the SQNR breaks
    ties of a discrete score). Stops early when a round changes nothing, or
    after ``max_evaluations`` candidates (the best so far is kept).
    """
    evaluations = 0
    log: list[str] = []

    def say(line: str) -> None:
        log.append(line)
        if echo:
            echo(line)

    offsets = dict(start or {})
    best = measure(offsets)
    say(f"fl search from {best[0]:.2f} % (tie-break {best[1]:.3f}), {len(knobs)} knobs")
    for r in range(rounds):
        moved = False
        for knob in knobs:
            if max_evaluations is not None and evaluations >= max_evaluations:
                say(f"  time budget used up after {evaluations} candidates: search stopped")
                return offsets, best, log
            cur = offsets.get(knob, 0)
            for d in (-1, 1):
                if abs(cur + d) > step_limit:
                    continue
                trial = dict(offsets)
                trial[knob] = cur + d
                got = measure(trial)
                evaluations += 1
                if got > best:
                    say(f"  round {r + 1}: {knob[0]} {knob[1]} fl {cur + d:+d}: {got[0]:.2f} % "
                        f"(tie-break {got[1]:.3f})")
                    offsets, best, moved = trial, got, True
                    break
        if not moved:
            break
    return offsets, best, log

"""The "dfp" quantizer: calibration, fl rules, bit width search, graph building.

Entry point ``dfp = "dfx_quantizer.plugin"`` in group ``dfxsdk``. From Python,
:func:`quantize_model` returns the model together with what was chosen and
measured (:class:`QuantizeResult`); :meth:`DfpQuantizer.quantize` returns only
the model, as the plugin API says.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dfxsdk.errors import DfxInputError, DfxUnsupportedError
from dfxsdk.graph import Model, Tensor
from dfxsdk.hookspecs import hookimpl
from dfxsdk.providers import CalibrationData, PluginInfo, Quantizer

from . import __version__, emit, fl_rules, rounding, search
from .apply import (
    BIAS_MODES,
    FormatChooser,
    LayerFormats,
    Plan,
    Settings,
    build,
    limited_tensors,
    quant_layers,
    stat_tensors,
    weight_stats,
)
from .stats import batch_size, collect

SEARCHES = ("none", "ristretto", "per-layer")
DEFAULTS: dict[str, Any] = {
    "bw": 8, "bw_conv": None, "bw_fc": None, "bw_act": None, "search": "none", "margin": 1.0,
    "fl_rule": "mse", "fl_rule_params": None, "percentile": 99.99, "per_channel": False,
    "bias": "int32", "ristretto_stats": False, "stats_samples": None, "score_samples": None,
    "score_output": None, "progress": False, "verbose": False,
    "emit_ristretto": None, "prototxt": None, "source_files": None,
    "rounding": None, "bias_correction": False, "fl_search": None, "rounding_samples": 500,
    "rounding_iterations": 100, "time_budget": 300.0,
}
ROUNDINGS = ("learned", "nearest")
FL_SEARCHES = ("score", "none")


@dataclass
class Options:
    """The quantizer's options, checked (see :data:`DEFAULTS` and ``dfxsdk quantize --help``)."""

    bw: int = 8
    bw_conv: int | None = None
    bw_fc: int | None = None
    bw_act: int | None = None
    search: str = "none"
    margin: float = 1.0
    fl_rule: str = "mse"
    fl_rule_params: str | None = None
    percentile: float = 99.99
    per_channel: bool = False
    bias: str = "int32"
    ristretto_stats: bool = False
    stats_samples: int | None = None
    score_samples: int | None = None
    score_output: str | None = None
    progress: bool = False
    verbose: bool = False
    emit_ristretto: str | None = None
    prototxt: str | None = None
    source_files: list[str] | None = None
    #: None: "learned", or "nearest" when reproducing Ristretto (:meth:`ristretto_way`).
    rounding: str | None = None
    bias_correction: bool = False
    #: None: "score", or "none" when reproducing Ristretto.
    fl_search: str | None = None
    rounding_samples: int = 500
    rounding_iterations: int = 100
    time_budget: float = 300.0

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> Options:
        unknown = set(options) - set(DEFAULTS)
        values = {k: (DEFAULTS[k] if options.get(k) is None else options[k]) for k in DEFAULTS}
        del unknown  # other keys (for other quantizers) are ignored
        opts = cls(**values)
        if opts.rounding is None:
            opts.rounding = "nearest" if opts.ristretto_way() else "learned"
        if opts.fl_search is None:
            opts.fl_search = "none" if opts.ristretto_way() else "score"
        opts.check()
        return opts

    def ristretto_way(self) -> bool:
        """Reproducing Ristretto (its fl rule or statistics, or a Ristretto prototxt written):
        then the rule's fl and nearest rounding are the defaults."""
        return self.fl_rule == "ristretto" or bool(self.ristretto_stats) or bool(self.emit_ristretto)

    def check(self) -> None:
        for name in ("bw", "bw_conv", "bw_fc", "bw_act"):
            v = getattr(self, name)
            if v is not None and not 1 <= int(v) <= 16:
                raise DfxInputError(f"--{name.replace('_', '-')} must be 1..16, got {v}")
        if self.search not in SEARCHES:
            raise DfxInputError(f"unknown search '{self.search}' (known: {', '.join(SEARCHES)})")
        if not self.margin >= 0:
            raise DfxInputError(f"--margin must be >= 0 percentage points, got {self.margin}")
        fl_rules.rule(self.fl_rule)
        if self.fl_rule_params:
            fl_rules.rule(self.fl_rule_params)
        if not 0 < self.percentile <= 100:
            raise DfxInputError(f"--percentile must be in (0, 100], got {self.percentile}")
        if self.bias not in BIAS_MODES:
            raise DfxInputError(f"unknown --bias '{self.bias}' (known: {', '.join(BIAS_MODES)})")
        if self.emit_ristretto:
            if self.per_channel:
                raise DfxInputError("--emit-ristretto cannot be used with --per-channel: Ristretto has one "
                                    "weight fl per layer")
            src = self.ristretto_source()
            if src is None:
                raise DfxInputError("--emit-ristretto needs the network's prototxt: give --prototxt FILE "
                                    "(the model did not come from a prototxt)")
            emit.check_source(Path(src))
        if self.rounding not in ROUNDINGS:
            raise DfxInputError(f"unknown --rounding '{self.rounding}' (known: {', '.join(ROUNDINGS)})")
        if self.fl_search not in FL_SEARCHES:
            raise DfxInputError(f"unknown --fl-search '{self.fl_search}' (known: {', '.join(FL_SEARCHES)})")
        if not self.time_budget > 0:
            raise DfxInputError(f"--time-budget must be > 0 seconds, got {self.time_budget}")
        if int(self.rounding_iterations) < 1:
            raise DfxInputError(f"--rounding-iterations must be >= 1, got {self.rounding_iterations}")
        for name in ("stats_samples", "score_samples", "rounding_samples"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise DfxInputError(f"--{name.replace('_', '-')} must be >= 1, got {v}")

    def ristretto_source(self) -> str | None:
        """The prototxt --emit-ristretto edits: --prototxt, else the prototxt the model came from."""
        if self.prototxt:
            return self.prototxt
        for f in self.source_files or ():
            if str(f).lower().endswith((".prototxt", ".pbtxt", ".pt")):
                return str(f)
        return None

    def settings(self) -> Settings:
        return Settings(rule=self.fl_rule, params_rule=self.fl_rule_params, per_channel=self.per_channel,
                        bias=self.bias, ristretto_stats=self.ristretto_stats,
                        rule_options={"percentile": self.percentile})


@dataclass
class QuantizeResult:
    """The quantized model and what was chosen and measured."""

    model: Model
    plan: Plan
    formats: dict[str, LayerFormats]
    baseline: float | None = None
    score: float | None = None
    score_what: str = ""
    log: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    evaluations: int = 0
    #: What an emitted Ristretto prototxt cannot express exactly.
    notes: list[str] = field(default_factory=list)
    #: The plan after each search stage ("ristretto", "per-layer").
    stages: dict[str, Plan] = field(default_factory=dict)


def check_model(model: Model) -> None:
    """Refuse models the quantizer cannot start from (before any work).

    A model whose activations are all float is a float model, even when some
    constants are stored as integers (:func:`float_constants` takes those).
    """
    quantized = next((t for t in model.tensors.values() if t.qformat is not None and not t.is_constant), None)
    if quantized is not None:
        raise DfxUnsupportedError(f"the model is already quantized (activation '{quantized.name}' has format "
                                  f"{quantized.qformat.describe()}); give the float model it was made from",
                                  file=model.source)
    if not quant_layers(model):
        raise DfxUnsupportedError("the model has no convolution or fully connected layer to quantize",
                                  file=model.source)


def check_data(model: Model, data: CalibrationData, opts: Options) -> list[dict[str, np.ndarray]]:
    """Materialise and check the calibration batches and labels (before any work)."""
    batches = []
    total = 0
    for b in data.batches:
        n = batch_size(model, b)
        if n:
            batches.append({k: np.asarray(v) for k, v in b.items()})
            total += n
    if total == 0:
        raise DfxInputError("the calibration data holds no samples")
    if data.num_samples is not None and data.num_samples != total:
        raise DfxInputError(f"the calibration data says {data.num_samples} samples but holds {total}")
    score = opts.score_output or model.outputs[0]
    if score not in model.tensors:
        raise DfxInputError(f"no tensor named '{score}' to score (--score-output)", file=model.source)
    if data.labels is not None:
        labels = np.asarray(data.labels).reshape(-1)
        if len(labels) != total:
            raise DfxInputError(f"{len(labels)} labels for {total} calibration samples")
        classes = int(np.prod(model.tensors[score].shape[1:]))
        if labels.size and (labels.min() < 0 or labels.max() >= classes):
            raise DfxInputError(f"labels must lie in 0..{classes - 1} (the classes of '{score}'), "
                                f"got {int(labels.min())}..{int(labels.max())}")
    return batches


def float_constants(model: Model) -> Model:
    """``model``, or a copy whose integer constants hold their real values in float32."""
    if not any(t.is_constant and t.qformat is not None for t in model.tensors.values()):
        return model
    tensors = {name: Tensor.constant(name, t.real().astype(np.float32)) if t.is_constant and t.qformat else t
               for name, t in model.tensors.items()}
    return dataclasses.replace(model, tensors=tensors, layers=list(model.layers))


def quantize_model(model: Model, data: CalibrationData, options: dict[str, Any] | None = None, *,
                   echo: Callable[[str], None] | None = None) -> QuantizeResult:
    """Quantize ``model`` (float) with calibration ``data``; see ``dfxsdk quantize --help``."""
    opts = Options.from_dict(options or {})
    check_model(model)
    model = float_constants(model)  # integer weights of a float model are re-quantized from their values
    if opts.emit_ristretto:
        emit.check_layers(model, Path(opts.ristretto_source()))
    batches = check_data(model, data, opts)
    total = sum(batch_size(model, b) for b in batches)
    echo = echo or (search.stderr_echo if opts.verbose else None)
    settings = opts.settings()
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    where = stat_tensors(model, settings.ristretto_stats)
    wanted = sorted({n for pair in where.values() for n in pair} | set(limited_tensors(model)))
    act = collect(model, batches, wanted, limit=opts.stats_samples, progress=opts.progress, total=total,
                  histogram=opts.fl_rule not in fl_rules.MAX_ONLY)
    wst = weight_stats(model, settings.per_channel)
    timings["calibration"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    chooser = FormatChooser(model, act, wst, settings)
    bw_conv = opts.bw_conv or opts.bw
    bw_fc = opts.bw_fc or opts.bw
    bw_act = opts.bw_act or opts.bw
    log: list[str] = []
    baseline = score = None
    evaluations = 0
    scorer = None
    stages: dict[str, Plan] = {}
    if opts.search != "none":
        scorer = search.Scorer(model, batches, data.labels, opts.score_output, limit=opts.score_samples)
        cache: dict[tuple, float] = {}

        def evaluate(plan: Plan) -> float:
            key = tuple(sorted((k, v.bw_in, v.bw_out, v.bw_params) for k, v in plan.items()))
            if key not in cache:
                cache[key] = scorer.score(build(model, chooser.formats(plan), bias=settings.bias,
                                                activation=chooser.activation))
            return cache[key]

        baseline = scorer.baseline
        log.append(f"scoring: {scorer.what} on {scorer.n} samples")
        if echo:
            echo(log[-1])
        res = search.ristretto_search(model, evaluate, baseline, opts.margin, echo=echo)
        log += res.log
        plan, score = res.plan, res.score
        stages["ristretto"] = plan
        if opts.search == "per-layer":
            res2 = search.per_layer_search(model, plan, evaluate, baseline, opts.margin,
                                           start_score=score, echo=echo)
            log += res2.log
            plan, score = res2.plan, res2.score
            stages["per-layer"] = plan
        evaluations = scorer.evaluations
    else:
        plan = search.uniform_plan(model, bw_conv, bw_fc, bw_act)
    offsets: dict = {}
    source = model
    if opts.fl_search != "none" or opts.rounding != "nearest" or opts.bias_correction:
        source, offsets, score, scorer, more = _refine(model, batches, data, opts, chooser, plan, echo)
        log += more
        if baseline is None:
            baseline = scorer.baseline
        evaluations += scorer.evaluations
    formats = chooser.formats(plan, offsets)
    meta = {
        "quantization.tool": f"dfxsdk dfp {__version__}",
        "quantization.fl_rule": opts.fl_rule + (f", params {opts.fl_rule_params}" if opts.fl_rule_params else ""),
        "quantization.per_channel": str(bool(opts.per_channel)).lower(),
        "quantization.bias": opts.bias,
        "quantization.search": opts.search + (f" (margin {opts.margin:g} pp)" if opts.search != "none" else ""),
        "quantization.calibration_samples": str(min(total, opts.stats_samples or total)),
        "quantization.rounding": opts.rounding + (", bias correction" if opts.bias_correction else ""),
        "quantization.fl_search": opts.fl_search,
    }
    if opts.score_output:
        meta["quantization.score_output"] = opts.score_output
    if log:
        meta["quantization.log"] = "\n".join(log)
    if baseline is not None:
        meta["quantization.scores"] = json.dumps({"what": scorer.what, "samples": scorer.n,
                                                  "float": round(baseline, 4), "quantized": round(score, 4)})
    qmodel = build(source, formats, bias=settings.bias, metadata=meta, activation=chooser.activation)
    qmodel.validate()
    timings["quantization"] = time.perf_counter() - t1
    notes: list[str] = []
    if opts.emit_ristretto:
        notes = emit.emit(qmodel, Path(opts.ristretto_source()), Path(opts.emit_ristretto))
        for note in notes:
            print(f"dfxsdk quantize: note: {note}", file=sys.stderr)
    return QuantizeResult(qmodel, plan, formats, baseline, score, scorer.what if scorer else "", log, timings,
                          evaluations, notes, stages)


def _refine(model: Model, batches: list[dict[str, np.ndarray]], data: CalibrationData, opts: Options,
            chooser: FormatChooser, plan: Plan, echo: Callable[[str], None] | None):
    """fl search on the score (nearest rounding), learned rounding / bias correction at the chosen
    formats, then the activations' fl searched again with the refined weights. Returns the float
    model to build from, the fl offsets, the final score, the scorer and the log."""
    scorer = search.Scorer(model, batches, data.labels, opts.score_output, limit=opts.score_samples)
    log = [f"scoring: {scorer.what} on {scorer.n} samples"]
    bias = opts.bias

    def measure_with(source: Model) -> Callable[[dict], tuple[float, float]]:
        return lambda off: scorer.measure(build(source, chooser.formats(plan, off), bias=bias,
                                                activation=chooser.activation))

    offsets: dict = {}
    knobs = chooser.knobs(plan)
    max_evals = max(1, int(opts.time_budget / 3 / _nominal_evaluation_seconds(model, scorer.n)))
    best = measure_with(model)(offsets)
    log.append(f"rule fl, nearest rounding: {best[0]:.2f} % (tie-break {best[1]:.3f})")
    if opts.fl_search != "none":
        offsets, best, more = search.fl_search(knobs, measure_with(model), max_evaluations=max_evals, echo=echo)
        log += more
    source = model
    if opts.rounding != "nearest" or opts.bias_correction:
        ropts = rounding.RoundingOptions(learned=opts.rounding == "learned", bias_correction=opts.bias_correction,
                                         iterations=opts.rounding_iterations, samples=opts.rounding_samples,
                                         seconds=opts.time_budget / 3)

        def with_moves(m: Model, moves: dict[str, int]) -> Model:
            return build(m, chooser.formats(plan, _moved(offsets, moves)), bias=bias, activation=chooser.activation)

        refined, moves = rounding.refine(model, with_moves, batches, ropts, echo=echo)
        offsets_r = _moved(offsets, moves)
        got = measure_with(refined)(offsets_r)
        what = f"{opts.rounding} rounding" + (" + bias correction" if opts.bias_correction else "")
        log.append(f"{what}: {got[0]:.2f} % (tie-break {got[1]:.3f})")
        if opts.fl_search != "none":
            offsets2, got, more = search.fl_search(knobs, measure_with(refined), start=offsets_r,
                                                   max_evaluations=max_evals, echo=echo)
            log += more
        else:
            offsets2 = offsets_r
        if got >= best:
            source, offsets, best = refined, offsets2, got
        else:
            log.append(f"kept nearest rounding ({best[0]:.2f} % >= {got[0]:.2f} %)")
    return source, offsets, best[0], scorer, log


#: Multiply-adds per nominal second of a scored evaluation (the native backend, with overheads).
EVALUATION_RATE = 2e9


def _nominal_evaluation_seconds(model: Model, samples: int) -> float:
    """Nominal cost of scoring one candidate: the conv/fc multiply-adds over the samples, plus 0.1 s."""
    macs = 0
    for layer in quant_layers(model):
        positions = int(np.prod(model.tensors[layer.outputs[0]].shape[2:] or (1,)))
        macs += model.tensors[layer.inputs[1]].size * positions
    return 0.1 + macs * samples / EVALUATION_RATE


def _moved(offsets: dict, moves: dict[str, int]) -> dict:
    """``offsets`` with each layer's weight fl moved by ``moves``."""
    out = dict(offsets)
    for name, d in moves.items():
        out[("params", name)] = out.get(("params", name), 0) + d
    return out


def _add(group: argparse._ArgumentGroup, *names: str, **kw) -> None:
    group.add_argument(*names, **kw)


class DfpQuantizer(Quantizer):
    """Dynamic fixed point quantizer: Ristretto's rules and search, and better ones."""

    name = "dfp"
    description = "dynamic fixed point: calibration, fl rules (ristretto/maxabs/percentile/mse), " \
                  "Ristretto or per-layer bit width search"

    def add_arguments(self, parser: argparse._ArgumentGroup) -> None:
        rules = ", ".join(f"{k} ({v})" for k, v in fl_rules.DESCRIPTIONS.items())
        _add(parser, "--bw", "--dfp-bw", dest="bw", type=int, metavar="N",
             help="bit width of weights and activations without a search (default 8)")
        _add(parser, "--bw-conv", "--dfp-bw-conv", dest="bw_conv", type=int, metavar="N",
             help="bit width of convolution weights (default --bw)")
        _add(parser, "--bw-fc", "--dfp-bw-fc", dest="bw_fc", type=int, metavar="N",
             help="bit width of fully connected weights (default --bw)")
        _add(parser, "--bw-act", "--dfp-bw-act", dest="bw_act", type=int, metavar="N",
             help="bit width of activations (inputs and outputs of conv/fc layers; default --bw)")
        _add(parser, "--search", "--dfp-search", dest="search", choices=SEARCHES,
             help="choose bit widths: 'ristretto' (Ristretto's 16/8/4/2/1 search per part, then the "
                  "combination checked and backed off until inside the margin) or 'per-layer' (that, "
                  "then lowering layer by layer); default none (use --bw)")
        _add(parser, "--margin", "--dfp-margin", dest="margin", type=float, metavar="PP",
             help="allowed absolute score drop in percentage points (default 1.0)")
        _add(parser, "--fl-rule", "--dfp-fl-rule", dest="fl_rule", choices=sorted(fl_rules.RULES),
             help=f"how fl is chosen for a bit width (default mse): {rules}")
        _add(parser, "--fl-rule-params", "--dfp-fl-rule-params", dest="fl_rule_params",
             choices=sorted(fl_rules.RULES), help="a different rule for the weights")
        _add(parser, "--percentile", "--dfp-percentile", dest="percentile", type=float, metavar="P",
             help="percentile of |x| for --fl-rule percentile (default 99.99)")
        _add(parser, "--per-channel", "--dfp-per-channel", dest="per_channel", action="store_true",
             default=None, help="one weight fl per output channel (helps depthwise convolutions)")
        _add(parser, "--bias", "--dfp-bias", dest="bias", choices=BIAS_MODES,
             help="int32: bias at fl_in + fl_w, no rounding of its own (default); params: the weights' "
                  "format, as Ristretto")
        _add(parser, "--ristretto-stats", "--dfp-ristretto-stats", dest="ristretto_stats",
             action="store_true", default=None,
             help="collect statistics as Ristretto's tool does: each blob's value after in-place layers")
        _add(parser, "--stats-samples", "--dfp-stats-samples", dest="stats_samples", type=int, metavar="N",
             help="calibrate on the first N samples only (Ristretto: 10 batches of 64 = 640)")
        _add(parser, "--score-samples", "--dfp-score-samples", dest="score_samples", type=int, metavar="N",
             help="score search candidates on the first N samples only (default all)")
        _add(parser, "--emit-ristretto", "--dfp-emit-ristretto", dest="emit_ristretto", metavar="OUT.prototxt",
             help="also write a Ristretto prototxt with the chosen formats (for fine-tuning in Ristretto); "
                  "edits the network prototxt given to quantize, or --prototxt (required when the model is "
                  "a .dfx); not with --per-channel")
        _add(parser, "--prototxt", "--dfp-prototxt", dest="prototxt", metavar="FILE",
             help="the prototxt --emit-ristretto edits (deploy or train/val, V2 format)")
        _add(parser, "--score-output", "--dfp-score-output", dest="score_output", metavar="TENSOR",
             help="score only this tensor (default: with labels the first graph output's argmax, without "
                  "labels every graph output against the float model)")
        _add(parser, "--rounding", "--dfp-rounding", dest="rounding", choices=ROUNDINGS,
             help="weight rounding: 'learned' (AdaRound-style, layer by layer against the float layer's "
                  "output on the calibration data; kept only if it scores better) or 'nearest' (default learned; "
                  "nearest with --fl-rule ristretto, --ristretto-stats or --emit-ristretto)")
        _add(parser, "--bias-correction", "--dfp-bias-correction", dest="bias_correction", action="store_true",
             default=None, help="subtract each conv/fc layer's mean output error from its bias (default off)")
        _add(parser, "--fl-search", "--dfp-fl-search", dest="fl_search", choices=FL_SEARCHES,
             help="'score': move each weight and activation fl by up to 2 where the score improves "
                  "(greedy, 2 rounds, before and after learned rounding); 'none': the rule's fl (default score; "
                  "none with --fl-rule ristretto, --ristretto-stats or --emit-ristretto)")
        _add(parser, "--time-budget", "--dfp-time-budget", dest="time_budget", type=float, metavar="S",
             help="nominal seconds for the default methods, a third each to the fl search, learned rounding "
                  "and the second fl search; the work is estimated from the network's size (not timed, so "
                  "results do not depend on the machine's load): a search stops after the candidates that "
                  "fit, learned rounding runs fewer steps (or keeps nearest rounding) where needed (default 300)")
        _add(parser, "--rounding-samples", "--dfp-rounding-samples", dest="rounding_samples", type=int,
             metavar="N", help="calibration samples learned rounding fits on (default 500)")
        _add(parser, "--rounding-iterations", "--dfp-rounding-iterations", dest="rounding_iterations", type=int,
             metavar="N", help="optimisation steps of learned rounding per layer (default 100)")

    def quantize(self, model: Model, data: CalibrationData, options: dict[str, Any]) -> Model:
        return quantize_model(model, data, options).model


@hookimpl
def dfxsdk_plugin_info() -> PluginInfo:
    return PluginInfo(name="dfx-quantizer", version=__version__, api_version=(1, 0),
                      description="dynamic fixed point quantizer (dfp)")


@hookimpl
def dfxsdk_quantizers() -> list[Quantizer]:
    return [DfpQuantizer()]

"""Issue 18: plugins a stranger can trust. Each finding of the review, reproduced.

Name ownership and clashes, the backend contract (unsupported layers, junk
results), validation of what `save` cannot write, isolation (printing and
exiting plugins, the off switches, lazy loading) and the smaller points.
Plugins are fake distributions on a temporary sys.path entry (as pip would
install them); the ones that must really exit the process run in a
subprocess. The shadowing plugin installed with pip into a fresh venv is in
test_plugins_venv.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dfxsdk
from dfxsdk import DfxFormatError, DfxPluginError, DfxUnsupportedError, Model, Tensor, ops, plugins
from dfxsdk.formats import QFormat
from dfxsdk.plugins import PluginManager
from dfxsdk.providers import Backend, Claim, CustomOperator, Importer, PluginInfo, Quantizer

from tests.support.cli import cli
from tests.support.paths import ROOT as REPO
from tests.support.plugins import EXAMPLE, ZEROS_NAMED_NUMPY, make_dist, plugin_source, tutorial_blocks

PLUGIN_MODULES = ("dfx_caffe", "dfx_numpy", "dfx_native", "dfx_onnx", "dfx_quantizer")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_plugins: None) -> Path:
    """A sys.path entry for fake distributions, a fresh process-wide registry, no disabled plugins."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv(plugins.DISABLE_ENV, raising=False)
    return root


class _Plugin:
    """A plugin object registered from code."""

    def __init__(self, name: str, **hooks) -> None:
        self._name = name
        for hook, value in hooks.items():
            setattr(self, hook, value)

    def dfxsdk_plugin_info(self) -> PluginInfo:
        return PluginInfo(self._name, "2.0", (1, 0))


def tiny_model() -> Model:
    """x (N,4) -> FullyConnected -> Relu -> y, float."""
    m = Model(name="tiny")
    m.add_tensor(Tensor("x", (1, 4)))
    m.inputs = ["x"]
    m.add_tensor(Tensor.constant("w", np.eye(3, 4, dtype=np.float32)))
    fc = m.append(ops.FullyConnected(), ["x", "w"], name="fc")
    relu = m.append(ops.Relu(), fc.outputs, name="relu")
    m.outputs = relu.outputs
    return m


def saved_tiny(where: Path) -> Path:
    path = where / "tiny.dfx"
    dfxsdk.save(tiny_model(), path)
    np.save(where / "x.npy", np.arange(8, dtype=np.float32).reshape(2, 4))
    return path


# -- 1. names are owned ----------------------------------------------------------------------

def test_a_third_party_numpy_backend_cannot_shadow_the_reference(site: Path, tmp_path: Path) -> None:
    # the entry point sorts before every first-party one, as in the review
    make_dist(site, "fast-numpy", "6.6.6", {"aaa": "aaa_shadow"},
              {"aaa_shadow.py": plugin_source("fastnp", "6.6.6", ZEROS_NAMED_NUMPY, {"backends": "[Zeros()]"})})
    model = saved_tiny(tmp_path)
    r = cli("run", str(model), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "o.npz"))
    assert r.code == 0, r.err
    out = np.load(tmp_path / "o.npz")["relu"]
    np.testing.assert_array_equal(out, np.maximum(np.arange(8, dtype=np.float32).reshape(2, 4)[:, :3], 0))
    assert "warning: plugin 'aaa' (package fast-numpy 6.6.6) is not used" in r.err
    assert "provides a backend named 'numpy', a name of dfxsdk's own plugins" in r.err
    pm = plugins.get_manager()
    assert pm.owner(pm.backend("numpy")).package == "dfxsdk"
    listed = json.loads(cli("plugins", "--json").out)
    assert [f["package"] for f in listed["failed"]] == ["fast-numpy"]


@pytest.mark.parametrize("entry_point, plugin, kind, name", [
    ("native", "mine", "backend", "fast"),           # a first-party entry point name
    ("x1", "dfx-caffe", "backend", "fast"),         # a first-party plugin name
    ("x2", "mine", "importer", "caffe"),            # first-party provider names
    ("x3", "mine", "quantizer", "dfp"),
])
def test_first_party_names_are_reserved(site: Path, entry_point: str, plugin: str, kind: str, name: str) -> None:
    module = f"squat_{entry_point}"
    cls = {"backend": "Backend", "importer": "Importer", "quantizer": "Quantizer"}[kind]
    body = {"backend": "def run(self, model, inputs, *, mode=None, outputs=None): return {}",
            "importer": "def import_model(self, paths, options): return None",
            "quantizer": "def quantize(self, model, data, options): return model"}[kind]
    classes = f"""
class P({cls}):
    name = "{name}"
    {body}
"""
    make_dist(site, "squatter", "1.0", {entry_point: module},
              {f"{module}.py": plugin_source(plugin, "1.0", classes, {f"{kind}s": "[P()]"})})
    pm = plugins.get_manager()
    failure = next(f for f in pm.failures if f.package == "squatter")
    assert "dfxsdk's own plugins" in failure.reason
    assert not any(p.package == "squatter" for p in pm.plugins)
    assert {"numpy", "native"} <= {b.name for b in pm.backends()}
    assert {"caffe"} <= {i.name for i in pm.importers()} and pm.quantizer("dfp")


CLASHING = """
class Fast(Backend):
    name = "fast"
    supported_ops = frozenset({"FullyConnected", "Relu"})

    def run(self, model, inputs, *, mode=None, outputs=None):
        raise AssertionError("a backend in a name clash must never run")

class Cl(Importer):
    name = "clashfmt"
    extensions = (".clash",)

    def import_model(self, paths, options):
        raise AssertionError("an importer in a name clash must never run")
"""


def test_a_clash_between_two_distributions_refuses_both(site: Path, tmp_path: Path) -> None:
    for dist, plugin in (("fast-a", "fa"), ("fast-b", "fb")):
        module = plugin + "_clash"
        make_dist(site, dist, "1.0", {plugin: module}, {f"{module}.py": plugin_source(
            plugin, "1.0", CLASHING, {"backends": "[Fast()]", "importers": "[Cl()]"})})
    model = saved_tiny(tmp_path)
    both = re.compile(r"backend 'fast' is provided by plugin 'fa' 1\.0 from package fast-a 1\.0 and plugin 'fb' "
                      r"1\.0 from package fast-b 1\.0: a name clash, so none of them is used")
    r = cli("run", str(model), "--input", str(tmp_path / "x.npy"), "--backend", "fast", "-o", str(tmp_path / "o.npz"))
    assert r.code == 4 and both.search(r.err), r.err
    assert not (tmp_path / "o.npz").exists()
    np.savez(tmp_path / "d.npz", x=np.ones((4, 4), np.float32), y=np.zeros(4, np.int64))
    r = cli("eval", str(model), "--data", str(tmp_path / "d.npz"), "--backend", "fast")
    assert r.code == 4 and both.search(r.err), r.err
    src = tmp_path / "m.clash"
    src.write_text("x")
    r = cli("convert", str(src), "-o", str(tmp_path / "m.dfx"))
    assert r.code == 4 and "importer 'clashfmt' is provided by plugin 'fa'" in r.err and "fast-b" in r.err
    # switching one of them off gives the name back to the other
    with plugins.fresh_registry():
        r = cli("-p", "no:fb", "plugins", "--json")
        data = json.loads(r.out)
    assert [d["name"] for d in data["disabled"]] == ["fb"]
    assert any(b["name"] == "fast" for p in data["plugins"] for b in p["backends"])


# -- 2. the backend contract ---------------------------------------------------------------------

class _Junk(Backend):
    name = "junk"
    modes = ("integer", "float")
    supported_ops = frozenset({"FullyConnected", "Relu"})

    def __init__(self, answer) -> None:
        self.answer = answer

    def run(self, model, inputs, *, mode=None, outputs=None):
        return self.answer(model, inputs)


def _with_backend(backend: Backend) -> PluginManager:
    pm = PluginManager(load_entry_points=False)
    import dfx_numpy.plugin

    pm.register(dfx_numpy.plugin)
    pm.register(_Plugin("junkplug", dfxsdk_backends=lambda: [backend]))
    return pm


def _ok(model, inputs):
    n = len(inputs["x"])
    return {"relu": np.zeros((n, 3), np.float32)}


@pytest.mark.parametrize("answer, message", [
    (lambda m, i: [np.zeros((2, 3), np.float32)], "returned list, not a dict of arrays"),
    (lambda m, i: {}, "returned no array for 'relu'"),
    (lambda m, i: {"relu": np.zeros((2, 4), np.float32)}, "'relu' has shape (2, 4), expected (2, 3)"),
    (lambda m, i: {"relu": np.zeros((2, 3), np.float64)}, "'relu' is float64, expected float32 in integer mode"),
    (lambda m, i: {"relu": [[0.0] * 3] * 2}, "'relu' is a list, not a numpy array"),
])
def test_junk_results_are_a_plugin_error(answer, message: str, tmp_path: Path) -> None:
    model_path = saved_tiny(tmp_path)
    with plugins.fresh_registry(_with_backend(_Junk(answer))):
        r = cli("run", str(model_path), "--input", str(tmp_path / "x.npy"), "--backend", "junk",
                "-o", str(tmp_path / "o.npz"))
        assert r.code == 4, r.err
        assert "backend 'junk' of plugin 'junkplug' 2.0 broke the backend contract" in r.err
        assert message in r.err
        assert not (tmp_path / "o.npz").exists()
        with pytest.raises(DfxPluginError, match=re.escape(message)):
            tiny_model().run({"x": np.zeros((2, 4), np.float32)}, backend="junk")


def test_results_are_checked_per_mode() -> None:
    model = tiny_model()
    with plugins.fresh_registry(_with_backend(_Junk(_ok))):
        assert model.run({"x": np.zeros((2, 4), np.float32)}, backend="junk", mode="float")["relu"].shape == (2, 3)
        with pytest.raises(DfxUnsupportedError, match="backend 'junk' .* has no mode 'simulate'"):
            model.run({"x": np.zeros((2, 4), np.float32)}, backend="junk", mode="simulate")
        # the reference backend keeps the contract in every mode (int32 codes for integer tensors)
        q = tiny_model()
        for name in ("x", "fc", "relu"):
            q.tensors[name] = dataclasses.replace(q.tensors[name], dtype=dfxsdk.DataType.INT16,
                                                  qformat=QFormat(16, 8))
        for mode, dtype in (("integer", np.int32), ("float", np.float32), ("simulate", np.float64)):
            out = q.run({"x": np.ones((3, 4), np.float32)}, mode=mode, outputs=["fc", "relu"])
            assert {a.dtype for a in out.values()} == {np.dtype(dtype)}, mode


def test_a_backend_lacking_operators_is_unsupported(tmp_path: Path) -> None:
    class NoOps(Backend):
        name = "noops"

        def run(self, model, inputs, *, mode=None, outputs=None):
            raise AssertionError("must not run")

    model_path = saved_tiny(tmp_path)
    with plugins.fresh_registry(_with_backend(NoOps())):
        r = cli("run", str(model_path), "--input", str(tmp_path / "x.npy"), "--backend", "noops",
                "-o", str(tmp_path / "o.npz"))
        assert r.code == 3, r.err
        assert "backend 'noops' of plugin 'junkplug' 2.0 cannot run layer(s) fc (FullyConnected), relu (Relu)" \
            in r.err
        assert not (tmp_path / "o.npz").exists()
        with pytest.raises(DfxUnsupportedError, match=r"cannot run layer\(s\) fc \(FullyConnected\)"):
            tiny_model().run({"x": np.zeros((1, 4), np.float32)}, backend="noops")


def test_eval_checks_the_backend_too(tmp_path: Path) -> None:
    model_path = saved_tiny(tmp_path)
    np.savez(tmp_path / "d.npz", x=np.ones((4, 4), np.float32), y=np.zeros(4, np.int64))
    with plugins.fresh_registry(_with_backend(_Junk(lambda m, i: {"relu": "nope"}))):
        r = cli("eval", str(model_path), "--data", str(tmp_path / "d.npz"), "--backend", "junk")
    assert r.code == 4 and "broke the backend contract" in r.err, r.err


# -- 3. validation is complete -----------------------------------------------------------------

@dataclasses.dataclass
class _MyOp(ops.Relu):
    """A plugin's own operator class: not something the format can store."""


@pytest.mark.parametrize("spoil, field", [
    (lambda m: setattr(m.layers[1], "op", _MyOp()), "op"),
    (lambda m: m.metadata.update(epochs=3), "metadata['epochs']"),
    (lambda m: m.metadata.update({4: "x"}), "metadata[4]"),
    (lambda m: setattr(m, "format_version", (2, 0)), "format_version"),
    (lambda m: setattr(m, "format_version", (1, 9)), "format_version"),
    (lambda m: setattr(m, "producer_version", 1.0), "producer_version"),
    (lambda m: setattr(m.layers[0], "origin", 7), "origin"),
])
def test_what_save_cannot_write_is_refused_by_validate(spoil, field: str, tmp_path: Path) -> None:
    model = tiny_model()
    spoil(model)
    with pytest.raises(DfxFormatError) as exc:
        model.validate()
    assert exc.value.field == field
    with pytest.raises(DfxFormatError):
        dfxsdk.save(model, tmp_path / "m.dfx")
    assert not (tmp_path / "m.dfx").exists()


def test_format_version_of_a_loaded_model_round_trips(tmp_path: Path) -> None:
    loaded = dfxsdk.load(saved_tiny(tmp_path))
    assert loaded.format_version == (1, 0)
    dfxsdk.save(loaded, tmp_path / "again.dfx")    # (1, 0) is what save writes: accepted


class _BadImporter(Importer):
    name = "badout"
    extensions = (".badout",)

    def import_model(self, paths, options):
        model = tiny_model()
        model.layers[1].op = _MyOp()
        return model


class _BadQuantizer(Quantizer):
    name = "badq"

    def quantize(self, model, data, options):
        out = tiny_model()
        out.metadata["bits"] = 8
        return out


def test_invalid_output_of_an_importer_or_quantizer_is_a_plugin_error(tmp_path: Path) -> None:
    pm = PluginManager(load_entry_points=False)
    pm.register(_Plugin("outplug", dfxsdk_importers=lambda: [_BadImporter()],
                        dfxsdk_quantizers=lambda: [_BadQuantizer()]))
    src = tmp_path / "m.badout"
    src.write_text("x")
    with plugins.fresh_registry(pm):
        r = cli("convert", str(src), "-o", str(tmp_path / "m.dfx"))
    assert r.code == 4, r.err
    assert "importer 'badout' of plugin 'outplug' 2.0 imported" in r.err and "an invalid model" in r.err
    assert "field 'op'" in r.err and "internal error" not in r.err
    assert not (tmp_path / "m.dfx").exists()
    with pytest.raises(DfxPluginError, match=r"quantizer 'badq' of plugin 'outplug' 2.0 returned an invalid "
                                             r"model: .*metadata\['bits'\]"):
        pm.call_quantizer(pm.quantizer("badq"), tiny_model(), None, {})


# -- 4. isolation and control (real processes) ----------------------------------------------------

NOISY = """
print("hello from a noisy plugin")
from dfxsdk.hookspecs import hookimpl
from dfxsdk.providers import PluginInfo

@hookimpl
def dfxsdk_plugin_info():
    print("info from a noisy plugin")
    return PluginInfo(name="noisy", version="1", api_version=(1, 0))
"""

EXITER = "import os\nos._exit(0)\n"


def _dfxsdk(*args: str, site: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != plugins.DISABLE_ENV}
    full["PYTHONPATH"] = os.pathsep.join([str(site), full.get("PYTHONPATH", "")])
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "dfxsdk", *args], capture_output=True, text=True, env=full,
                          timeout=300)


@pytest.fixture
def rogue_site(tmp_path: Path) -> Path:
    root = tmp_path / "rogue"
    make_dist(root, "noisy-plugin", "1", {"noisy": "noisy_plugin"}, {"noisy_plugin.py": NOISY})
    make_dist(root, "exiting-plugin", "1", {"exiter": "exiting_plugin"}, {"exiting_plugin.py": EXITER})
    return root


def test_printing_and_exiting_plugins_are_contained(rogue_site: Path, tmp_path: Path) -> None:
    model = saved_tiny(tmp_path)
    r = _dfxsdk("plugins", "--json", site=rogue_site)        # loads every plugin
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)                                # stdout stayed JSON
    assert "hello from a noisy plugin" in r.stderr and "info from a noisy plugin" in r.stderr
    failed = {f["name"]: f["reason"] for f in data["failed"]}
    assert re.fullmatch(r"while being imported, called os\._exit\(0\) \(exiting_plugin\.py:2\); dfxsdk refused "
                        r"to exit", failed["exiter"])
    assert "noisy" in {p["name"] for p in data["plugins"]}

    out = tmp_path / "o.npz"
    r = _dfxsdk("run", str(model), "--input", str(tmp_path / "x.npy"), "-o", str(out), site=rogue_site)
    assert r.returncode == 0 and out.exists(), r.stderr      # not a silent exit 0 without output
    assert "warning: plugin 'exiter' (package exiting-plugin 1) is not used: while being imported, called " \
           "os._exit(0)" in r.stderr
    assert "-p no:exiter" in r.stderr
    r = _dfxsdk("inspect", "--json", str(model), site=rogue_site)
    assert r.returncode == 0 and json.loads(r.stdout)

    # switched off: never imported, not reported
    for how in ({"env": {plugins.DISABLE_ENV: "exiter,noisy"}, "args": ()},
                {"env": {}, "args": ("-p", "no:exiter", "-p", "no:noisy")}):
        r = _dfxsdk(*how["args"], "run", str(model), "--input", str(tmp_path / "x.npy"), "-o", str(out),
                    site=rogue_site, env=how["env"])
        assert r.returncode == 0 and "exiter" not in r.stderr and "noisy" not in r.stderr, r.stderr
    r = _dfxsdk("plugins", "--json", site=rogue_site, env={plugins.DISABLE_ENV: "all"})
    data = json.loads(r.stdout)
    assert {d["name"] for d in data["disabled"]} == {"exiter", "noisy"} and not data["failed"]
    assert "numpy" in {p["name"] for p in data["plugins"]}    # first-party plugins stay


def test_an_exit_inside_a_provider_call_is_refused(site: Path, tmp_path: Path) -> None:
    class Exits(Backend):
        name = "exits"
        supported_ops = frozenset({"FullyConnected", "Relu"})

        def run(self, model, inputs, *, mode=None, outputs=None):
            os._exit(0)

    with plugins.fresh_registry(_with_backend(Exits())):
        with pytest.raises(DfxPluginError, match=r"backend 'exits' .* called os\._exit\(0\)"):
            tiny_model().run({"x": np.zeros((1, 4), np.float32)}, backend="exits")


def _imported_modules(*args: str, cwd: Path | None = None) -> set[str]:
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "dfxsdk", *args], capture_output=True,
                       text=True, cwd=cwd, timeout=300)
    assert r.returncode == 0, r.stderr
    return {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("args", [("--version",), ("--help",), ("inspect", "{model}"), ("convert", "--help")])
def test_commands_that_need_no_plugin_import_none(args: tuple[str, ...], tmp_path: Path) -> None:
    model = saved_tiny(tmp_path)
    modules = _imported_modules(*(a.replace("{model}", str(model)) for a in args))
    loaded = sorted(m for m in modules if m.split(".")[0] in PLUGIN_MODULES)
    if args == ("convert", "--help"):   # convert's help lists every importer's options: plugins load
        assert any(m.startswith("dfx_caffe") for m in loaded)
    else:
        assert loaded == [], loaded
    if args == ("--version",):
        assert "numpy" not in modules and "pluggy" not in modules


# -- 5. the smaller points ----------------------------------------------------------------------------

class _HalfOptions(Importer):
    name = "half"
    extensions = (".half",)

    def add_arguments(self, parser) -> None:
        parser.add_argument("--half-first", action="store_true")
        parser.add_argument("--half-first", action="store_true")   # a clash: argparse raises

    def import_model(self, paths, options):
        return tiny_model()


def test_add_arguments_failing_half_way_leaves_no_option(tmp_path: Path) -> None:
    pm = PluginManager(load_entry_points=False)
    pm.register(_Plugin("halfplug", dfxsdk_importers=lambda: [_HalfOptions()]))
    src = tmp_path / "m.half"
    src.write_text("x")
    with plugins.fresh_registry(pm):
        help_text = cli("convert", "--help")
        assert "--half-first" not in help_text.out
        assert help_text.err.count("importer 'half' could not add its options") == 1
        r = cli("convert", str(src), "-o", str(tmp_path / "m.dfx"))
        assert r.code == 0, r.err
        r = cli("convert", str(src), "--half-first", "-o", str(tmp_path / "m.dfx"))
        assert r.code == 2 and "unrecognized arguments: --half-first" in r.err
        assert "could not add" not in cli("run", "--help").err   # only commands with plugin options ask


def test_registering_the_same_unhashable_plugin_twice() -> None:
    @dataclasses.dataclass
    class Unhashable:             # a dataclass with eq=True has __hash__ = None
        label: str = "u"

        def dfxsdk_plugin_info(self) -> PluginInfo:
            return PluginInfo("unhashable", "1", (1, 0))

    pm = PluginManager(load_entry_points=False)
    plugin = Unhashable()
    for _ in range(2):
        with pytest.raises(DfxPluginError, match="is a Unhashable, which is unhashable; register a module"):
            pm.register(plugin)
    assert pm.plugins == []


def test_quantize_takes_a_float_model_with_integer_constants(tmp_path: Path) -> None:
    model = tiny_model()
    w = model.tensors["w"]
    model.tensors["w"] = Tensor.constant("w", np.round(w.data * 64), QFormat(8, 6))
    assert not model.is_quantized
    path = tmp_path / "intw.dfx"
    dfxsdk.save(model, path)
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32))
    r = cli("quantize", str(path), "--calib", str(tmp_path / "calib.npy"), "--no-progress",
            "-o", str(tmp_path / "q.dfx"))
    assert r.code == 0, r.err
    assert dfxsdk.load(tmp_path / "q.dfx").is_quantized
    # a quantized model is refused, naming the tensor and not any importer
    r = cli("quantize", str(tmp_path / "q.dfx"), "--calib", str(tmp_path / "calib.npy"), "--no-progress",
            "-o", str(tmp_path / "q2.dfx"))
    assert r.code == 3 and re.search(r"already quantized \(activation '\w+' has format", r.err), r.err
    assert "Caffe" not in r.err and "ristretto" not in r.err


def test_importer_options_on_quantize_as_on_convert() -> None:
    convert_help = cli("convert", "--help").out
    quantize_help = cli("quantize", "--help").out
    assert "--ristretto" in convert_help and "caffe importer:" in convert_help
    assert "--ristretto" in quantize_help and "caffe importer:" in quantize_help


@pytest.fixture
def example(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The npzgraph example plugin 'installed', its sample files in tmp_path/sample."""
    import runpy
    import shutil

    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    make_dist(site, "dfx-npzgraph", "1.0.0", {"npzgraph": "dfx_npzgraph.plugin"})
    work = tmp_path / "sample"
    work.mkdir()
    shutil.copy(EXAMPLE / "samples" / "tiny_cnn.json", work)
    runpy.run_path(str(EXAMPLE / "samples" / "make_weights.py"), run_name="x")["main"](["x", str(work)])
    return work


def test_quantize_passes_importer_options(example: Path) -> None:
    args = ["quantize", str(example / "tiny_cnn.json"), "--calib", str(example / "bars.npy"), "--no-progress",
            "-o", str(example / "q.dfx")]
    r = cli(*args)                                     # the sample is quantized: refused
    assert r.code == 3 and "already quantized" in r.err, r.err
    r = cli(*args, "--npzgraph-float")                 # the importer's own option: a float model
    assert r.code == 0, r.err
    assert dfxsdk.load(example / "q.dfx").is_quantized


def test_the_example_claims_its_graph_without_weights(example: Path) -> None:
    (example / "tiny_cnn.npz").unlink()
    r = cli("convert", str(example / "tiny_cnn.json"), "-o", str(example / "t.dfx"))
    assert r.code == 2, r.err
    assert re.search(r"importer 'npzgraph' \(plugin 'npzgraph' 1\.0\.0 from package dfx-npzgraph 1\.0\.0\) "
                     r"recognises .*tiny_cnn\.json, but its weights file .*tiny_cnn\.npz is missing", r.err), r.err


def test_claims_can_say_mine_but_the_weights_are_missing(tmp_path: Path) -> None:
    class Twofile(Importer):
        name = "twofile"
        extensions = (".graph",)

        def claims(self, paths):
            if not super().claims(paths):
                return False
            weights = paths[0].with_suffix(".weights")
            return True if weights.exists() else Claim(f"its weights file {weights.name} is missing")

        def import_model(self, paths, options):
            return tiny_model()

    pm = PluginManager(load_entry_points=False)
    pm.register(_Plugin("twoplug", dfxsdk_importers=lambda: [Twofile()]))
    graph = tmp_path / "net.graph"
    graph.write_text("g")
    with plugins.fresh_registry(pm):
        r = cli("convert", str(graph), "-o", str(tmp_path / "net.dfx"))
        assert r.code == 2
        assert "importer 'twofile' (plugin 'twoplug' 2.0) recognises" in r.err
        assert "but its weights file net.weights is missing" in r.err
        (tmp_path / "net.weights").write_text("w")
        assert cli("convert", str(graph), "-o", str(tmp_path / "net.dfx")).code == 0
    assert bool(Claim("x")) is True and bool(Claim()) is True     # a bool to old callers


# -- 6. the graph builder ---------------------------------------------------------------------------

class _Stack(CustomOperator):
    name = "test.Stack"

    def infer_shapes(self, input_shapes, options):
        return [(input_shapes[0][0], sum(s[1] for s in input_shapes))] * options[0]

    def reference(self, inputs, options):
        return [np.concatenate(inputs, axis=1)] * options[0]


def test_model_append_infers_shapes_and_makes_the_tensors(site: Path) -> None:
    model = tiny_model()
    assert model.tensors["fc"].shape == (1, 3) and model.layers[0].outputs == ["fc"]
    q = model.append(ops.Requantize(), ["relu"], qformats=QFormat(8, 4))
    assert q.name == "requantize_2" and model.tensors[q.outputs[0]].dtype == dfxsdk.DataType.INT8
    # a custom operator through its provider: given, or found among installed plugins
    op = ops.Custom(name="test.Stack", options=bytes([2]))
    with pytest.raises(DfxFormatError, match="no installed plugin provides the custom operator 'test.Stack'"):
        model.append(op, ["x", "relu"], name="stack")
    assert "stack" not in model.tensors and len(model.layers) == 3
    two = model.append(op, ["x", "relu"], name="stack", custom_operator=_Stack())
    assert two.outputs == ["stack:0", "stack:1"] and model.tensors["stack:1"].shape == (1, 7)
    plugins.get_manager().register(_Plugin("stackplug", dfxsdk_custom_operators=lambda: [_Stack()]))
    again = model.append(op, ["x", "relu"], name="stack2")
    assert model.tensors[again.outputs[0]].shape == (1, 7)
    model.outputs = [again.outputs[0]]
    model.validate()
    # errors name the layer and leave the model as it was
    before = (len(model.layers), len(model.tensors))
    with pytest.raises(DfxFormatError) as exc:
        model.append(ops.FullyConnected(), ["x", "relu"], name="fc2")
    assert exc.value.layer == "fc2" and "input shapes" in str(exc.value)
    with pytest.raises(DfxFormatError, match="output tensor 'fc' exists already"):
        model.append(ops.Relu(), ["x"], name="r", outputs=["fc"])
    assert (len(model.layers), len(model.tensors)) == before


def test_first_party_importers_the_example_and_the_tutorial_use_the_builder() -> None:
    texts = {rel: (REPO / rel).read_text() for rel in (
        "plugins/dfx_caffe/build.py", "plugins/dfx_onnx/convert.py",
        "examples/npz_importer/src/dfx_npzgraph/importer.py")}
    texts["tutorial"] = tutorial_blocks()[0]["mlp-dfx/mlp_dfx/importer.py"]
    for where, text in texts.items():
        assert "model.append(" in text, where
        assert "model.add_layer(" not in text and ".infer_shapes(" not in text, where


# -- 7. the compatibility table ----------------------------------------------------------------------

def test_the_compatibility_table_and_the_example_pin_match_this_release() -> None:
    import tomllib

    from dfxsdk.container import FORMAT_VERSION
    from dfxsdk.hookspecs import PLUGIN_API_VERSION

    text = (REPO / "spec" / "plugins.md").read_text()
    section = text.split("### Compatibility", 1)[1].split("\n### ", 1)[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| dfxsdk release")]
    release, api, fmt = rows[-1]
    major, minor, _ = dfxsdk.__version__.split(".", 2)
    assert release == f"{major}.{minor}.x"
    assert api == ".".join(map(str, PLUGIN_API_VERSION)) and fmt == ".".join(map(str, FORMAT_VERSION))
    pin = f"dfxsdk>={major}.{minor},<{major}.{int(minor) + 1}" if major == "0" else f"dfxsdk>={major},<{int(major) + 1}"
    assert f'dependencies = ["{pin}"]' in section
    deps = tomllib.loads((REPO / "examples" / "npz_importer" / "pyproject.toml").read_text())["project"]
    assert pin in deps["dependencies"]

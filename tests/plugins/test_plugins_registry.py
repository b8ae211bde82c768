"""The plugin registry and `dfxsdk plugins`: discovery, explicit registration, API
versions, and broken plugins (raising on import, wrong API version, an importer
that claims a file and then fails on it) that must leave the others usable."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest

import dfxsdk
from dfxsdk import DfxImportError, DfxPluginError, DfxUnsupportedError, Layer, Model, Tensor, hookspecs, ops, plugins
from dfxsdk.errors import DfxInputError
from dfxsdk.hookspecs import hookimpl
from dfxsdk.plugins import PluginManager, api_compatible
from dfxsdk.providers import Backend, CustomOperator, Importer, PluginInfo, Quantizer

from tests.support.cli import cli
from tests.support.plugins import EXAMPLE, make_dist

_ids = itertools.count()


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_plugins: None) -> Path:
    """A fresh sys.path entry for fake distributions, and a fresh process-wide registry."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return root


def _unique(prefix: str) -> str:
    return f"{prefix}_{next(_ids)}_{id(_ids) % 9973}"


GOOD = """
    from dfxsdk.hookspecs import hookimpl
    from dfxsdk.providers import Importer, PluginInfo

    class Txt(Importer):
        name = "{name}"
        extensions = (".{name}",)
        def import_model(self, paths, options):
            from dfxsdk import Model
            return Model()

    @hookimpl
    def dfxsdk_plugin_info():
        return PluginInfo(name="{name}", version="1.2.3", api_version={api})

    @hookimpl
    def dfxsdk_importers():
        return [Txt()]
"""

RAISES_ON_IMPORT = """
    import json
    json.loads("{")   # a bug at import time
"""

# Claims *.bad files; import_model fails in a way given by the file's content.
CLAIM_THEN_FAIL = """
    from dfxsdk import DfxImportError
    from dfxsdk.hookspecs import hookimpl
    from dfxsdk.providers import Importer, PluginInfo

    class Bad(Importer):
        name = "badfmt"
        description = "claims .bad files, then fails on them"
        extensions = (".bad",)
        def import_model(self, paths, options):
            text = paths[0].read_text()
            if text.startswith("polite"):
                raise DfxImportError("header is missing", file=str(paths[0]), field="header")
            if text.startswith("none"):
                return None
            table = {}
            return table["layers"]   # KeyError: a bug in the plugin

    @hookimpl
    def dfxsdk_plugin_info():
        return PluginInfo(name="badfmt", version="0.0.1", api_version=(1, 0))

    @hookimpl
    def dfxsdk_importers():
        return [Bad()]
"""


def install_example(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The npzgraph example plugin, 'installed' as pip would (dist-info + package on sys.path)."""
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    make_dist(site, "dfx-npzgraph", "1.0.0", {"npzgraph": "dfx_npzgraph.plugin"})


def sample_files(where: Path) -> tuple[Path, Path]:
    import runpy
    import shutil

    shutil.copy(EXAMPLE / "samples" / "tiny_cnn.json", where / "tiny_cnn.json")
    runpy.run_path(str(EXAMPLE / "samples" / "make_weights.py"), run_name="not_main")["main"](["x", str(where)])
    return where / "tiny_cnn.json", where / "bars.npy"


# -- the three broken plugins of the acceptance, with a good one next to them -------

@pytest.fixture
def broken_world(site: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    names = {"boom": _unique("boom"), "future": _unique("future"), "bad": _unique("badfmt")}
    make_dist(site, "boom-plugin", "0.1", {"boom": f"{names['boom']}"},
              {f"{names['boom']}.py": RAISES_ON_IMPORT})
    make_dist(site, "future-plugin", "3.0", {"future": names["future"]},
              {f"{names['future']}.py": GOOD.format(name="fut", api=(1, 7))})
    make_dist(site, "badfmt-plugin", "0.0.1", {"badfmt": names["bad"]},
              {f"{names['bad']}.py": CLAIM_THEN_FAIL})
    install_example(site, monkeypatch)
    return names


def test_plugins_lists_failures_and_the_rest(broken_world: dict[str, str]) -> None:
    r = cli("plugins")
    assert r.code == 0, r.err
    out = r.out
    # every plugin with its package and version, and what it provides
    assert re.search(r"npzgraph 1\.0\.0 +\(package dfx-npzgraph 1\.0\.0", out)
    assert re.search(r"importer +npzgraph +\.json \.npz", out)
    assert re.search(r"badfmt 0\.0\.1 +\(package badfmt-plugin 0\.0\.1", out)
    assert re.search(r"backend +numpy", out)
    # the import failure: which plugin, which package, what and where
    assert "FAILED boom  (package boom-plugin 0.1" in out
    assert re.search(r"import failed: JSONDecodeError: .*\(boom_\w+\.py:3\)", out)
    # the API version failure
    assert "FAILED future  (package future-plugin 3.0" in out
    assert "'fut' 1.2.3 was written for plugin API 1.7, but this dfxsdk implements plugin API 1.0" in out
    assert "2 plugin(s) could not be loaded; the others are usable" in r.err

    strict = cli("plugins", "--strict")
    assert strict.code == 4
    data = json.loads(cli("plugins", "--json").out)
    failed = {f["name"]: f for f in data["failed"]}
    assert set(failed) == {"boom", "future"}
    assert failed["boom"]["package"] == "boom-plugin"
    loaded = {p["name"]: p for p in data["plugins"]}
    assert loaded["npzgraph"]["package"] == "dfx-npzgraph"
    assert loaded["npzgraph"]["importers"][0]["extensions"] == [".json", ".npz"]
    debug = cli("--debug", "plugins")
    assert "Traceback (most recent call last)" in debug.out


def test_claim_then_fail_is_a_plugin_error(broken_world: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "model.bad"
    bad.write_text("garbage")
    out = tmp_path / "out.dfx"
    r = cli("convert", str(bad), "-o", str(out))
    assert r.code == 4, r.err
    errors = [line for line in r.err.splitlines() if line.startswith("dfxsdk convert: error:")]
    assert len(errors) == 1, r.err   # one line (the others: a warning per plugin that failed to load)
    msg = errors[0]
    assert "importer 'badfmt' of plugin 'badfmt' 0.0.1 from package badfmt-plugin 0.0.1" in msg
    assert f"failed while importing {bad}" in msg
    assert re.search(r"KeyError: 'layers' \(badfmt_\w+\.py:\d+\)", msg)
    assert "a bug in the plugin" in msg and "internal error" not in msg
    assert not out.exists()

    # a plugin error raised on purpose reaches the user as written
    bad.write_text("polite")
    r = cli("convert", str(bad), "-o", str(out))
    assert r.code == 2
    assert f"{bad}: field 'header': header is missing" in r.err
    # returning something that is not a model is a broken contract
    bad.write_text("none")
    r = cli("convert", str(bad), "-o", str(out))
    assert r.code == 4 and "returned NoneType, not a dfxsdk.Model" in r.err
    assert not out.exists()


def test_other_plugins_stay_usable(broken_world: dict[str, str], tmp_path: Path) -> None:
    graph, bars = sample_files(tmp_path)
    out = tmp_path / "tiny.dfx"
    r = cli("convert", str(graph), "-o", str(out))
    assert r.code == 0, r.err
    r = cli("inspect", str(out))
    assert r.code == 0 and "integrity: OK" in r.out
    r = cli("run", str(out), "--input", str(bars), "-o", str(tmp_path / "o.npz"))
    assert r.code == 0, r.err
    assert "top class per sample: 0, 1, 2" in r.out
    # naming a failed plugin's importer says it failed to load
    r = cli("convert", str(graph), "--importer", "fut", "-o", str(out))
    assert r.code == 3
    assert "no importer named 'fut'" in r.err and "failed to load: boom, future" in r.err


def test_system_exit_on_import_is_contained(site: Path) -> None:
    name = _unique("exiter")
    make_dist(site, "exiter", "1", {"exiter": name}, {f"{name}.py": "import sys\nsys.exit(3)\n"})
    pm = PluginManager()
    fail = next(f for f in pm.failures if f.name == "exiter")
    assert re.fullmatch(r"while being imported, called sys\.exit\(3\) \(exiter_\w+\.py:2\); dfxsdk refused to exit",
                        fail.reason), fail.reason
    assert any(b.name == "numpy" for b in pm.backends())


# -- API versions --------------------------------------------------------------------

@pytest.mark.parametrize("version, ok", [
    ((1, 0), True), ([1, 0], True), ((0, 9), False), ((1, 1), False), ((2, 0), False),
    ((1,), False), ("1.0", False), ((1, 0, 0), False), ((True, 0), False), (None, False), ((1, -1), False),
])
def test_api_compatible(version, ok: bool) -> None:
    assert hookspecs.PLUGIN_API_VERSION == (1, 0)
    assert api_compatible(version) is ok


class _Plugin:
    """A plugin object registered from code."""

    def __init__(self, name: str = "objplug", api=(1, 0), **hooks) -> None:
        self._name, self._api = name, api
        for hook, value in hooks.items():
            setattr(self, hook, value)

    def dfxsdk_plugin_info(self) -> PluginInfo:
        return PluginInfo(self._name, "9.9", self._api)


@pytest.mark.parametrize("api, shown", [((2, 0), "2.0"), ((1, 5), "1.5")])
def test_wrong_api_version_is_refused_at_registration(api, shown: str) -> None:
    pm = PluginManager(load_entry_points=False)
    plugin = _Plugin(api=api)
    with pytest.raises(DfxPluginError) as exc:
        pm.register(plugin)
    assert f"written for plugin API {shown}, but this dfxsdk implements plugin API 1.0 (it loads plugins " \
           "written for 1.0)" in str(exc.value)
    assert exc.value.exit_code == 4
    assert pm.plugins == []
    plugin._api = (1, 0)            # nothing of the refused plugin stayed registered
    assert pm.register(plugin).info.name == "objplug"


@pytest.mark.parametrize("api", ["1.0", (1,), (1, 0, 0), (True, 0), None])
def test_malformed_api_version_says_what_to_write(api) -> None:
    pm = PluginManager(load_entry_points=False)
    with pytest.raises(DfxPluginError) as exc:
        pm.register(_Plugin(api=api))
    message = str(exc.value)
    assert f"gives api_version {api!r}, which is not a (major, minor) pair of ints; write " \
           "api_version=(1, 0) for this dfxsdk's plugin API 1.0" in message
    assert "implements plugin API 1.0" not in message   # no "written for '1.0', this dfxsdk implements 1.0"


def test_explicit_registration_from_code(tmp_path: Path) -> None:
    class Imp(Importer):
        name = "objimp"
        extensions = (".obj1",)

        def import_model(self, paths, options):
            return Model(name="x")

    pm = PluginManager(load_entry_points=False)
    plugin = _Plugin(dfxsdk_importers=lambda: [Imp()])
    loaded = pm.register(plugin)
    assert loaded.info.name == "objplug" and loaded.source == "registered from code"
    imp = pm.importer_for([tmp_path / "a.OBJ1"])
    assert pm.owner(imp) is loaded
    assert pm.call_importer(imp, [tmp_path / "a.obj1"], {}).name == "x"
    with pytest.raises(DfxPluginError, match="already registered"):
        pm.register(plugin)


def test_module_plugin_registered_from_code_knows_its_package() -> None:
    import dfx_numpy.plugin

    pm = PluginManager(load_entry_points=False)
    loaded = pm.register(dfx_numpy.plugin)
    assert loaded.package == "dfxsdk"
    assert pm.backend("numpy").name == "numpy"


# -- contract checks at registration ---------------------------------------------------

class _Imp(Importer):
    name = "i1"

    def import_model(self, paths, options):
        raise AssertionError


@pytest.mark.parametrize("hooks, message", [
    ({"dfxsdk_importers": lambda: "nope"}, "dfxsdk_importers must return a list of Importer, got str"),
    ({"dfxsdk_importers": lambda: [object()]}, "returned <object object"),
    ({"dfxsdk_importers": lambda: [_Imp(), _Imp()]}, "two Importers named 'i1'"),
    ({"dfxsdk_backends": lambda: [_Imp()]}, "not an instance of dfxsdk.providers.Backend"),
    ({"dfxsdk_importers": lambda: 1 / 0}, "dfxsdk_importers raised ZeroDivisionError: division by zero"),
    ({"dfxsdk_importer": lambda: []}, "unknown hook(s) dfxsdk_importer"),
])
def test_broken_contract_refuses_the_whole_plugin(hooks: dict, message: str) -> None:
    pm = PluginManager(load_entry_points=False)
    with pytest.raises(DfxPluginError) as exc:
        pm.register(_Plugin(**hooks))
    assert message in str(exc.value)
    assert pm.plugins == [] and pm.importers() == []


def test_malformed_provider_attributes() -> None:
    class Imp(_Imp):
        extensions = ".json"      # a string, not a tuple

    class Be(Backend):
        name = "b"
        modes = ()

        def run(self, model, inputs, *, mode=None, outputs=None):
            return {}

    pm = PluginManager(load_entry_points=False)
    with pytest.raises(DfxPluginError, match=r"'i1'.extensions must be a collection of strings"):
        pm.register(_Plugin(dfxsdk_importers=lambda: [Imp()]))
    with pytest.raises(DfxPluginError, match=r"'b'.modes must be a non-empty collection"):
        pm.register(_Plugin(dfxsdk_backends=lambda: [Be()]))


def test_a_name_clash_refuses_both_providers() -> None:
    pm = PluginManager(load_entry_points=False)
    pm.register(_Plugin("p1", dfxsdk_importers=lambda: [_Imp()]))
    pm.register(_Plugin("p2", dfxsdk_importers=lambda: [_Imp()]))
    assert pm.importers() == []
    with pytest.raises(DfxPluginError) as exc:
        pm.importer("i1")
    assert exc.value.exit_code == 4
    assert "importer 'i1' is provided by plugin 'p1' 9.9 and plugin 'p2' 9.9: a name clash, so none of " \
           "them is used" in str(exc.value)
    with pytest.raises(DfxPluginError, match="plugin 'p1' .* is already loaded"):
        pm.register(_Plugin("p1"))
    assert [p.info.name for p in pm.plugins] == ["p1", "p2"]
    pm.disable(["p2"])              # switching one off gives the name back to the other
    assert pm.importer("i1") is pm.plugins[0].importers[0]


def test_hook_signature_mismatch_is_a_plugin_error(site: Path) -> None:
    name = _unique("sig")
    make_dist(site, "sig", "1", {"sig": name}, {f"{name}.py": """
        from dfxsdk.hookspecs import hookimpl
        from dfxsdk.providers import PluginInfo

        @hookimpl
        def dfxsdk_plugin_info(config):
            return PluginInfo("sig", "1", (1, 0))
    """})
    pm = PluginManager()
    fail = next(f for f in pm.failures if f.name == "sig")
    assert "PluginValidationError" in fail.reason and "config" in fail.reason
    assert pm.backend("numpy")


# -- importer selection and guarded calls ------------------------------------------------

def test_importer_for_reports_claims_that_raise(tmp_path: Path) -> None:
    class Crashy(_Imp):
        name = "crashy"

        def claims(self, paths):
            raise RuntimeError("sniffing went wrong")

    pm = PluginManager(load_entry_points=False)
    pm.register(_Plugin(dfxsdk_importers=lambda: [Crashy()]))
    with pytest.raises(DfxInputError) as exc:
        pm.importer_for([tmp_path / "x.q"])
    assert "no importer recognises" in str(exc.value)
    assert "importer 'crashy' (plugin 'objplug' 9.9) raised RuntimeError in claims(): sniffing went wrong" \
        in str(exc.value)


def test_several_claimers_must_be_disambiguated(tmp_path: Path) -> None:
    class A(_Imp):
        name = "a"
        extensions = (".x",)

    class B(_Imp):
        name = "b"
        extensions = (".x",)

    pm = PluginManager(load_entry_points=False)
    pm.register(_Plugin("pa", dfxsdk_importers=lambda: [A()]))
    pm.register(_Plugin("pb", dfxsdk_importers=lambda: [B()]))
    with pytest.raises(DfxInputError, match=r"several importers claim .*: a \(plugin 'pa' 9.9\), "
                                            r"b \(plugin 'pb' 9.9\); choose one with --importer"):
        pm.importer_for([tmp_path / "m.x"])


def test_call_quantizer_and_guard() -> None:
    class Q(Quantizer):
        name = "q"

        def quantize(self, model, data, options):
            return model.tensors["missing"]

    pm = PluginManager(load_entry_points=False)
    pm.register(_Plugin(dfxsdk_quantizers=lambda: [Q()]))
    with pytest.raises(DfxPluginError, match=r"quantizer 'q' of plugin 'objplug' 9.9 failed while "
                                             r"quantizing 'net': KeyError: 'missing'"):
        pm.call_quantizer(pm.quantizer("q"), Model(name="net"), None, {})
    with pytest.raises(DfxImportError, match="on purpose"):
        with pm.guard(pm.quantizer("q"), "testing"):
            raise DfxImportError("on purpose")
    with pytest.raises(DfxUnsupportedError, match=r"no quantizer named 'z' \(available: q\)"):
        pm.quantizer("z")


# -- backends declare their operators; custom operators --------------------------------

class _Double(CustomOperator):
    name = "test.Double"
    description = "2x"

    def infer_shapes(self, input_shapes, options):
        return [input_shapes[0]]

    def reference(self, inputs, options):
        return [inputs[0] * np.float32(options[0] if options else 2)]


class _Tiny(Backend):
    name = "tiny"
    supported_ops = frozenset({"Relu", "Custom"})

    def run(self, model, inputs, *, mode=None, outputs=None):
        return {}


def _custom_model() -> Model:
    m = Model(name="c")
    m.add_tensor(Tensor("x", (1, 4)))
    m.add_tensor(Tensor("r", (1, 4)))
    m.add_tensor(Tensor("y", (1, 4)))
    m.add_tensor(Tensor("z", (1, 4)))
    m.add_layer(Layer("relu", ops.Relu(), ["x"], ["r"]))
    m.add_layer(Layer("double", ops.Custom(name="test.Double", options=bytes([3])), ["r"], ["y"]))
    m.add_layer(Layer("soft", ops.Softmax(), ["y"], ["z"]))
    m.inputs, m.outputs = ["x"], ["z"]
    return m


def test_backend_supported_ops_default_unsupported() -> None:
    pm = PluginManager(load_entry_points=False)
    with plugins.fresh_registry(pm):
        _check_supported_ops(pm)


def _check_supported_ops(pm: PluginManager) -> None:
    pm.register(_Plugin(dfxsdk_backends=lambda: [_Tiny()]))
    model = _custom_model()
    assert pm.backend("tiny").unsupported(model) == ["double (Custom test.Double)", "soft (Softmax)"]
    pm.register(_Plugin("ops", dfxsdk_custom_operators=lambda: [_Double()]))
    assert pm.backend("tiny").unsupported(model) == ["soft (Softmax)"]

    class Own(_Tiny):
        name = "own"
        supported_ops = frozenset({"Relu", "Softmax", "test.Double"})

    assert Own().unsupported(model) == []


def test_numpy_backend_runs_custom_operator_reference(site: Path) -> None:
    pm = plugins.get_manager()
    model = _custom_model()
    assert pm.backend("numpy").unsupported(model) == ["double (Custom test.Double)"]
    pm.register(_Plugin("ops", dfxsdk_custom_operators=lambda: [_Double()]))
    x = np.array([[-1.0, 0.0, 1.0, 2.0]], np.float32)
    y = model.run({"x": x}, backend="numpy", outputs=["y"])["y"]
    np.testing.assert_array_equal(y, [[0.0, 0.0, 3.0, 6.0]])
    r = cli("plugins")
    assert re.search(r"operator +test\.Double +v1 +2x", r.out)


def test_public_api_exports() -> None:
    for name in ("Model", "Tensor", "Layer", "Preprocessing", "QFormat", "DataType", "Rounding",
                 "load", "save", "DfxError", "DfxImportError", "DfxUnsupportedError", "DfxPluginError"):
        assert hasattr(dfxsdk, name)
    assert hookimpl.project_name == "dfxsdk"


def test_no_test_reaches_into_a_private_name_of_the_registry() -> None:
    """Tests install registries with dfxsdk.plugins.fresh_registry (or the fresh_plugins fixture)."""
    from tests.support.paths import TESTS

    private = re.compile(r"\b(?:plugins|pm|manager|get_manager\(\))\._[A-Za-z]\w*|setattr\(plugins, \"_")
    found = [f"{path.relative_to(TESTS)}:{n}: {line.strip()}" for path in sorted(TESTS.rglob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1) if private.search(line)
             and "private = re.compile" not in line]
    assert not found, found

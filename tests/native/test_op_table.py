"""The C library's operator table (kernels/src/ops.def) against dfxsdk.ops, the schema and the sources.

This is the test spec/adding-an-operator.md refers to: an operator added in one place and not in
the others fails here. The C enums that mirror the schema (data types, rounding) are compared too."""

from __future__ import annotations

import re

import pytest

from dfxsdk import _fbverify, ctable, ops

from tests.support.paths import KERNELS

SRC = KERNELS / "src"
OPS_DEF = SRC / "ops.def"
ROWS = ctable.read_ops(OPS_DEF)
KERNEL_ROWS = ctable.read_kernels(OPS_DEF)
#: DFX_USE_ macros that name helpers, not kernels (derived in kselect.h)
HELPERS = {"PREPARE", "WEIGHT_ALIGN", "CONST_FLOAT", "DYADIC", "PRIOR_RATIOS"}


def test_every_operator_of_dfxsdk_ops_has_a_row():
    assert [r.name for r in ROWS] == list(ops.OPS)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_row_matches_dfxsdk_ops(row):
    cls = ops.OPS[row.name]
    assert row.code == cls.CODE
    assert row.min_inputs == cls.MIN_INPUTS
    assert row.max_inputs == (-1 if cls.MAX_INPUTS is None else cls.MAX_INPUTS)
    assert row.num_outputs == (-1 if cls.NUM_OUTPUTS is None else cls.NUM_OUTPUTS)
    assert row.integer == cls.INTEGER
    assert row.layout_only == cls.LAYOUT_ONLY


def test_codes_are_the_union_order():
    # the C enum (dfx_internal.h) ends with OP_COUNT = last code + 1: the codes must be 1..N in order
    assert [r.code for r in ROWS] == list(range(1, len(ROWS) + 1))
    assert [r.name for r in ROWS] == _fbverify.OP_TABLES
    assert len({r.id for r in ROWS}) == len(ROWS)


def test_the_c_enum_comes_from_the_table():
    # every OP_<ID> the C sources compare with or switch on is a row (or OP_NONE / OP_COUNT)
    ids = {r.id for r in ROWS} | {"NONE", "COUNT"}
    used = set()
    for f in SRC.rglob("*.[ch]"):
        used |= set(re.findall(r"(?:case |[=!]= |< |> )OP_([A-Z0-9_]+)\b", f.read_text()))
    assert len(used) > 20
    assert used <= ids, sorted(used - ids)


@pytest.mark.parametrize("kernel", sorted(KERNEL_ROWS))
def test_kernel_row_matches_its_source(kernel):
    row = KERNEL_ROWS[kernel]
    fn = f"dfx_{kernel.lower()}"
    assert re.search(rf"\b{fn}\(", (SRC / "kernels.h").read_text()), f"{fn} is not declared in kernels.h"
    text = (SRC / row.file).read_text()
    # the definition sits under a guard naming DFX_USE_<kernel> (kselect.h)
    guard = None
    for line in text.splitlines():
        if line.startswith("#if"):
            guard = line
        elif line.startswith("#endif"):
            guard = None
        elif re.match(rf"^\w[\w *]*\b{fn}\(", line):
            assert guard and f"defined(DFX_USE_{kernel})" in guard and "DFX_ALL_KERNELS" in guard, (row.file, guard)
            break
    else:
        pytest.fail(f"{fn} is not defined in {row.file}")
    if row.also:
        assert (SRC / row.also).is_file()


def test_every_kernel_guard_names_a_table_row_or_a_helper():
    used = set()
    for f in (SRC / "ops").glob("*.c"):
        used |= set(re.findall(r"defined\(DFX_USE_(\w+)\)", f.read_text()))
    assert used - HELPERS <= set(KERNEL_ROWS), sorted(used - HELPERS - set(KERNEL_ROWS))
    assert set(KERNEL_ROWS) <= used


def test_c_sources_use_schema_slots_not_numbers():
    # model.c and fbverify.c take slot numbers and defaults from dfx_schema.h (schema/generate.py)
    for name in ("model.c", "fbverify.c"):
        text = (SRC / name).read_text()
        assert '#include "dfx_schema.h"' in text
        assert not re.search(r"\bfb_(?:i32|i8|u8|f32|vec|str|ref|has|field)\(g, \w+, \d", text), name


def test_c_enums_match_the_schema():
    from dfxsdk.formats import DataType, Rounding

    header = (KERNELS / "include" / "dfx.h").read_text()
    dtypes = {k: int(v) for k, v in re.findall(r"\bDFX_(FLOAT32|INT\d+) = (\d+)", header)}
    assert dtypes == {m.name: m.value for m in DataType}
    internal = (SRC / "dfx_internal.h").read_text()
    rnd = dict(re.findall(r"\bRND_(\w+) = (\d+)", internal))
    c_names = {"HALF_AWAY": "HALF_AWAY_FROM_ZERO", "HALF_EVEN": "HALF_TO_EVEN", "HALF_UP": "HALF_UP",
               "FLOOR": "FLOOR"}
    assert {c_names[k]: int(v) for k, v in rnd.items()} == {m.name: m.value for m in Rounding}
    # storage bits per DataType (model.c) against formats.DataType.bits
    bits = re.search(r"static const int bits\[\] = \{([^}]*)\}", (SRC / "model.c").read_text()).group(1)
    assert [int(b) for b in bits.split(",")] == [DataType(i).bits for i in range(len(DataType))]


#: Schema option fields whose dt_opts field (kernels/src/dfx_internal.h, DT_OPTS) has another name
C_OPTION_NAMES = {"kernel_h": "kh", "kernel_w": "kw", "stride_h": "sh", "stride_w": "sw", "pad_top": "pt",
                  "pad_left": "pl", "pad_bottom": "pb", "pad_right": "pr", "dilation_h": "dh", "dilation_w": "dw",
                  "output_pad_h": "oph", "output_pad_w": "opw", "type": "pool_type", "min": "fmin", "max": "fmax",
                  "coefficients": "coeffs", "value": "pad_value"}


@pytest.fixture(scope="module")
def described_options(native, tmp_path_factory) -> set[str]:
    """The option names dfx_model_describe lists for a layer (every dt_opts field, whatever the operator)."""
    from dfxsdk import DataType, Layer, Model, Tensor, save

    m = Model(name="one")
    for name in ("x", "y"):
        m.add_tensor(Tensor(name, (1, 2), DataType.FLOAT32))
    m.add_layer(Layer("relu", ops.Relu(), ["x"], ["y"]))
    m.inputs.append("x")
    m.outputs.append("y")
    path = tmp_path_factory.mktemp("describe") / "one.dfx"
    save(m, path)
    return set(native.describe_plan(path)["layers"][0]["opts"])


@pytest.mark.parametrize("table", [t for t in _fbverify.OP_TABLES if t != "Custom"])
def test_describe_lists_every_option_of_the_schema(table, described_options):
    # Custom's name, version and option bytes are describe's "custom" object (test_native_custom)
    fields = {C_OPTION_NAMES.get(f, f) for f in _fbverify.FIELD_NAMES[table]}
    assert fields <= described_options, sorted(fields - described_options)


def test_describe_lists_no_option_the_schema_lacks(described_options):
    schema = {C_OPTION_NAMES.get(f, f) for t in _fbverify.OP_TABLES if t != "Custom" for f in _fbverify.FIELD_NAMES[t]}
    assert described_options == schema

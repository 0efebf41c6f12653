from __future__ import annotations

from pathlib import Path

import pytest

from pipezone.core.spec.problems import SpecError
from pipezone.core.spec.yaml_source import YamlLimits, load_yaml, parse_yaml


def test_positions_of_keys_and_values() -> None:
    doc = parse_yaml("name: a\nsource:\n  table: t\n  primary_key: [id, x]\n", "f.yaml")
    assert doc.data == {"name": "a", "source": {"table": "t", "primary_key": ["id", "x"]}}
    assert doc.locate(("source", "table")) == (3, 10)
    assert doc.locate(("source", "table"), key=True) == (3, 3)
    assert doc.locate(("source", "primary_key", 1)) == (4, 21)
    # a missing key points at its nearest existing parent key
    assert doc.locate(("source", "connection")) == (2, 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\na: 2\n", "f.yaml:2:1: a: duplicate key 'a' (first defined on line 1)"),
        ("a:\n\tb: 1\n", "f.yaml:2:1: yaml: tab character: YAML indentation must use spaces"),
        ("", "f.yaml:1:1: (document): file is empty: expected a YAML mapping"),
        ("- 1\n", "f.yaml:1:1: (document): expected a YAML mapping at the top level"),
        ("a: 1\n---\nb: 2\n", "f.yaml:3:1: (document): expected one YAML document, found several"),
        (
            "a: [1, 2\n",
            "f.yaml:2:1: yaml: malformed YAML: did not find expected ',' or ']' (while parsing a flow sequence)",
        ),
    ],
)
def test_malformed_yaml_is_one_located_line(text: str, expected: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_yaml(text, "f.yaml")
    assert [str(p) for p in err.value.problems] == [expected]


def test_nested_duplicate_keys_all_reported() -> None:
    with pytest.raises(SpecError) as err:
        parse_yaml("a:\n  b: 1\n  b: 2\nc: 1\nc: 2\n", "f.yaml")
    assert [(p.line, p.path) for p in err.value.problems] == [(3, "a.b"), (5, "c")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 2024-02-30\n", "f.yaml:1:4: a: not a valid date: day is out of range for month"),
        ("a: !custom x\n", "f.yaml:1:4: a: unsupported YAML tag '!custom'"),
        ("a: !!int three\n", "f.yaml:1:4: a: not a valid integer"),
        ("a: !!bool maybe\n", "f.yaml:1:4: a: not a valid boolean: use true or false"),
        ("a: .inf\n", "f.yaml:1:4: a: infinite and NaN numbers are not allowed"),
        ('a: "x\\e[2J"\n', "f.yaml:1:4: a: control character U+001B is not allowed in text"),
        ("b: &b {x: 1}\nc:\n  <<: *b\n", "f.yaml:3:3: c: YAML merge keys ('<<') are not supported"),
        ("a: &a [1, *a]\n", "f.yaml:1:11: a[1]: recursive alias '*a' (refers to itself)"),
        ("a: *nope\n", "f.yaml:1:4: a: unknown alias '*nope'"),
        ("? [a]\n: 1\n", "f.yaml:1:3: yaml: a mapping key must be a plain value, not a collection"),
    ],
)
def test_values_the_models_cannot_hold_are_located(text: str, expected: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_yaml(text, "f.yaml")
    assert [str(p)[: len(expected)] for p in err.value.problems] == [expected]


def test_anchors_and_aliases_are_fine() -> None:
    doc = parse_yaml("keys: &k [id, ts]\nother: *k\nmerge: '<<'\n", "f.yaml")
    assert doc.data == {"keys": ["id", "ts"], "other": ["id", "ts"], "merge": "<<"}


def test_depth_nodes_and_time_are_bounded() -> None:
    limits = YamlLimits(max_seconds=0.0)
    with pytest.raises(SpecError, match="nested more than 3 levels deep"):
        parse_yaml("a: [[[[1]]]]\n", "f.yaml", YamlLimits(max_depth=3))
    bomb = "a: &a [x, x, x]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\n"
    with pytest.raises(SpecError, match="more than 20 values"):
        parse_yaml(bomb, "f.yaml", YamlLimits(max_nodes=20))
    with pytest.raises(SpecError, match="took over 0 s to read"):
        parse_yaml("a: [" + ", ".join(["1"] * 2000) + "]\n", "f.yaml", limits)


def test_deep_nesting_never_recurses() -> None:
    """200,000 levels crash PyYAML's composer (a C stack overflow); the event reader stops at the limit."""
    with pytest.raises(SpecError, match="nested more than 64 levels deep"):
        parse_yaml("a: " + "[" * 200_000 + "\n", "f.yaml")


def test_files_are_read_within_limits(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * 300_000)
    with pytest.raises(SpecError, match="over the limit of 262,144"):
        load_yaml(big)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("a: données\n".encode("latin-1"))
    with pytest.raises(SpecError, match="not UTF-8 text"):
        load_yaml(latin)
    bom = tmp_path / "bom.yaml"
    bom.write_bytes("\ufeffa: 1\n".encode())
    assert load_yaml(bom).data == {"a": 1}

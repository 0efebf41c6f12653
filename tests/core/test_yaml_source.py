from __future__ import annotations

import pytest

from pipezone.core.problems import SpecError
from pipezone.core.yaml_source import parse_yaml


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

"""Validate one parsed YAML document against a spec model, turning pydantic errors into located problems."""

from __future__ import annotations

import difflib
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from pipezone.core.spec.connection import CONNECTION_TYPES, ConnectionSpec, connection_model
from pipezone.core.spec.problems import KeyPath, Problem
from pipezone.core.spec.yaml_source import YamlDocument

M = TypeVar("M", bound=BaseModel)


def _field_names(model: type[BaseModel], seen: set[type] | None = None) -> set[str]:
    """Every key any nested spec model accepts: the vocabulary for 'did you mean'."""
    seen = seen if seen is not None else set()
    if model in seen:
        return set()
    seen.add(model)
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(info.alias or name)
        for arg in _model_args(info.annotation):
            names |= _field_names(arg, seen)
    return names


def _model_args(annotation: Any) -> list[type[BaseModel]]:
    """Spec models nested in a type annotation (through unions, lists, dicts, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in getattr(annotation, "__args__", ()) or () for model in _model_args(arg)]


def _clean_loc(data: Any, loc: tuple[Any, ...]) -> tuple[KeyPath, bool]:
    """Map a pydantic loc onto the document: drop union tags; flag dict-key errors."""
    path: list[str | int] = []
    current = data
    is_key = False
    for index, part in enumerate(loc):
        if part == "[key]":
            is_key = True
            continue
        if _union_tag(current, part, index < len(loc) - 1):
            continue
        if (
            isinstance(current, dict)
            and part in current
            or isinstance(current, list)
            and isinstance(part, int)
            and 0 <= part < len(current)
        ):
            path.append(part)
            current = current[part]
        elif index == len(loc) - 1 and (isinstance(current, dict) or current is data):
            path.append(part)
        # anything else is a union member tag (e.g. 'not_null', 'str'): not a key in the file
    return tuple(path), is_key


def _union_tag(current: Any, part: Any, more: bool) -> bool:
    """A discriminated union's tag: the entry's own discriminator value (`check: expression`), even when a
    key has the same name (an expression check's `expression` key)."""
    if not more or not isinstance(current, dict) or not isinstance(part, str):
        return False
    return any(value == part for value in current.values() if isinstance(value, str))


def _message(error: dict[str, Any], path: KeyPath, vocabulary: set[str]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else "?"
        close = difflib.get_close_matches(key, sorted(vocabulary), n=1, cutoff=0.75)
        return f"unknown key '{key}'" + (f" (did you mean '{close[0]}'?)" if close else "")
    if kind == "missing":
        return f"missing required key '{path[-1]}'" if path else "missing required key"
    if kind == "union_tag_invalid":
        expected = ctx.get("expected_tags", "")
        key = str(ctx.get("discriminator", "kind")).strip("'")
        return f"unknown {key} '{ctx.get('tag')}': expected one of {expected}"
    if kind == "union_tag_not_found":
        return f"missing required key {ctx.get('discriminator', '')}".rstrip()
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _locate(doc: YamlDocument, error: dict[str, Any], path: KeyPath, is_key: bool, vocabulary: set[str]) -> Problem:
    kind = error["type"]
    if kind == "missing":
        return doc.problem(path, _message(error, path, vocabulary), key=True)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        key = str((error.get("ctx") or {}).get("discriminator", "")).strip("'")
        target = (*path, key) if key else path
        return doc.problem(target, _message(error, path, vocabulary))
    return doc.problem(path, _message(error, path, vocabulary), key=is_key or kind == "extra_forbidden")


def _at_path(at: str | tuple[str | int, ...] | None) -> KeyPath:
    """A model rule's `at`: a dotted path ('source.primary_key', 'quality.0.table') or a tuple of keys
    (for keys with dots in them, such as Spark settings)."""
    if not at:
        return ()
    if isinstance(at, tuple):
        return at
    return tuple(int(part) if part.isdigit() else part for part in at.split("."))


def validate_document(doc: YamlDocument, model: type[M]) -> tuple[M | None, list[Problem]]:
    """Validate; on failure return every problem, one per key path, located in the file."""
    try:
        return model.model_validate(doc.data), []
    except ValidationError as err:
        vocabulary = _field_names(model)
        problems: dict[KeyPath, Problem] = {}
        for error in err.errors(include_url=False):
            at = (error.get("ctx") or {}).get("at")  # a model-level rule naming the key it is about
            extra = _at_path(at)
            loc = (*error["loc"], *extra)
            path, is_key = _clean_loc(doc.data, loc)
            problems.setdefault(path, _locate(doc, error, path, is_key, vocabulary))
        return None, sorted(problems.values())


def validate_connection(doc: YamlDocument) -> tuple[ConnectionSpec | None, list[Problem]]:
    """Pick the model by `type`, so errors talk about the fields of that type only."""
    model = connection_model(doc.data)
    if model is None:
        kind = doc.data.get("type")
        if kind is None:
            return None, [doc.problem(("type",), "missing required key 'type'", key=True)]
        expected = ", ".join(sorted(CONNECTION_TYPES))
        return None, [doc.problem(("type",), f"unknown connection type '{kind}': expected one of {expected}")]
    return validate_document(doc, model)

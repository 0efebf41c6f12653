"""How a document source's records become columns: MongoDB collections and REST endpoints alike.

Documents carry no declared schema. Each read infers one from its records (sources/documents/), so what a
flow chooses here is the shape of nested values, and, for MongoDB, which documents and fields to read.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from pipezone.core.spec.value_types import SpecModel

# Server-side JavaScript: a filter that runs code is refused (it is also gone from MongoDB 8's defaults).
_CODE_OPERATORS = frozenset({"$where", "$function", "$accumulator"})
MAX_FILTER_KEYS = 500


def _walk_keys(value: Any) -> list[str]:
    """Every mapping key of a nested filter, depth first."""
    if isinstance(value, dict):
        return [k for key, inner in value.items() for k in (str(key), *_walk_keys(inner))]
    if isinstance(value, list):
        return [k for inner in value for k in _walk_keys(inner)]
    return []


class DocumentOptions(SpecModel):
    """Which documents to read (MongoDB) and how nested values land in the lake (MongoDB and REST)."""

    filter: dict[str, Any] = Field(
        default_factory=dict,
        description="MongoDB: a query filter (the find() filter document), e.g. {status: {$ne: draft}}; "
        "the incremental window is added to it.",
    )
    projection: dict[str, Literal[0, 1]] = Field(
        default_factory=dict,
        description="MongoDB: fields to include (1) or exclude (0); never excludes the primary key or cursor.",
    )
    nested: Literal["struct", "json"] = Field(
        default="struct",
        description="struct: sub-documents as structs and arrays as arrays (typed, queryable); json: every "
        "sub-document and array as its JSON text (one string column, for shapes that vary too much).",
    )
    sample_size: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="Documents read to describe the columns before a read (init-flow, show); every read then "
        "types the documents it reads, so a field the sample missed is never lost.",
    )

    @field_validator("filter")
    @classmethod
    def _no_code(cls, value: dict[str, Any]) -> dict[str, Any]:
        keys = _walk_keys(value)
        if len(keys) > MAX_FILTER_KEYS:
            raise PydanticCustomError("filter_size", "a filter has at most {n} keys", {"n": MAX_FILTER_KEYS})
        for key in keys:
            if key in _CODE_OPERATORS:
                raise PydanticCustomError(
                    "filter_code",
                    "filter operator '{op}' runs JavaScript on the server: use query operators",
                    {"op": key},
                )
        return value

    @field_validator("projection")
    @classmethod
    def _one_kind(cls, value: dict[str, int]) -> dict[str, int]:
        kinds = {v for k, v in value.items() if k != "_id"}
        if len(kinds) > 1:
            raise PydanticCustomError(
                "projection_mixed", "a projection either includes (1) or excludes (0) fields, not both (except _id)"
            )
        return value

    def keeps(self, field: str) -> bool:
        """Whether the projection reads top-level `field`."""
        if not self.projection:
            return True
        if field in self.projection:
            return self.projection[field] == 1
        including = any(v == 1 for k, v in self.projection.items() if k != "_id")
        return field == "_id" or not including

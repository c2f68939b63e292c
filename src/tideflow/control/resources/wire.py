"""Wire pieces the platform API resources share: error bodies, typed list envelopes, names,
and the guard that keeps JSON the metadata store cannot hold out of request bodies.

Bad input must be a 4xx, never a 500: Postgres rejects NUL characters in text, neither store
can encode lone UTF-16 surrogates, and NaN/Infinity are not JSON. Python's JSON parser accepts
all three, so every request body is checked before it reaches a service.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Generic, Literal, Self, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field, model_validator

from tideflow.control.resources.common import ListParams

T = TypeVar("T")

MAX_DEPTH = 32

CreatedFrom = Literal["terraform", "web", "api"]
DesiredState = Literal["Active", "Paused", "Stopped"]
ConnectorStatus = Literal[
    "Active", "Paused", "Stopped", "Broken", "Starting", "Unassigned", "Unknown"
]
# Lifecycle actions (POST /<resource>/{id}/<action>) and the desired state each sets.
ACTIONS: dict[str, str] = {
    "pause": "Paused",
    "resume": "Active",
    "stop": "Stopped",
    "start": "Active",
}
Name = Annotated[str, Field(min_length=1, max_length=255)]
SecretReturned = Annotated[
    bool,
    Query(
        description="Reveal secret config values (only for roles allowed to read secrets; "
        "masked as '********' otherwise)."
    ),
]


class ErrorOut(BaseModel):
    detail: str | list[dict[str, Any]] = Field(
        description="What went wrong; validation errors may carry FastAPI's list form."
    )
    code: str = Field(description="Stable machine-readable error code.")


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _error("Missing, invalid or expired token"),
    403: _error("The caller's role may not do this"),
    404: _error("Unknown route, or an action on an unknown id"),
    409: _error("The action conflicts with the current state"),
    422: _error("Invalid input (the detail names the field or config key)"),
    429: _error("Rate limited; retry after the Retry-After header"),
}


class Page(BaseModel, Generic[T]):
    """The list envelope; GET by id answers it with zero or one element."""

    result: list[T]
    page: int
    page_size: int
    total: int
    has_next: bool

    @classmethod
    def of(cls, items: list[T], params: ListParams, total: int) -> Self:
        return cls(
            result=items,
            page=params.page,
            page_size=params.page_size,
            total=total,
            has_next=params.page * params.page_size < total,
        )

    @classmethod
    def single(cls, item: T | None) -> Self:
        items = [] if item is None else [item]
        return cls(result=items, page=1, page_size=10, total=len(items), has_next=False)


def unstorable(value: Any) -> str | None:
    """Why ``value`` (parsed JSON) cannot be stored, or None when it can."""
    stack: list[tuple[Any, str, int]] = [(value, "body", 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"{where}: nested deeper than {MAX_DEPTH} levels"
        if isinstance(item, str):
            problem = _bad_text(item)
            if problem:
                return f"{where}: {problem}"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{where}: numbers must be finite"
        elif isinstance(item, dict):
            for key, child in item.items():
                problem = _bad_text(str(key))
                if problem:
                    return f"{where}: key {problem}"
                stack.append((child, f"{where}.{key}", depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
    return None


def _bad_text(text: str) -> str | None:
    if "\x00" in text:
        return "text must not contain NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "text must be valid Unicode (no lone surrogates)"
    return None


class Body(BaseModel):
    """Base of request bodies: rejects values the metadata store cannot hold (422)."""

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        problem = unstorable(data)
        if problem:
            raise ValueError(problem)
        return data


class ConnectorIn(Body):
    """Body of POST and PUT for sources and destinations."""

    name: Name
    connector: str = Field(
        min_length=1, max_length=64, description="Connector code, e.g. postgresql."
    )
    config: dict[str, Any] = Field(
        description="Flat map of dotted config keys; stored verbatim (secrets encrypted)."
    )
    created_from: CreatedFrom = Field(
        "api", description="Where the object was made; omitted on PUT keeps the stored value."
    )
    tags: list[str] | None = Field(
        None, max_length=100, description="Tag ids; omitted on PUT keeps the current tags."
    )

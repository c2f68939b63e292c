"""Wire shapes of the connector catalogue: ``/sources/connectors``, ``/destinations/connectors``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ValueSpec(BaseModel):
    control: str = Field(description="UI control: string, number, toggle, password, one-select.")
    type: Literal["string", "integer", "number", "boolean"]
    raw_values: list[str] | None = Field(None, description="Allowed values, when restricted.")
    default: Any = Field(None, description="Effective default applied by the engine.")


class ConfigEntry(BaseModel):
    name: str = Field(description="The config key, e.g. database.hostname.user.defined.")
    display_name: str
    description: str
    required: bool
    user_defined: bool
    secret: bool
    value: ValueSpec


class ConnectorOut(BaseModel):
    connector: str = Field(description="The connector code.")
    display_name: str
    kind: Literal["source", "destination"]
    config: list[ConfigEntry]

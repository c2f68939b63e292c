"""Wire shapes of /api/connections (streams-API style envelopes)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tideflow.control.resources.wire import Body

Kind = Literal["postgres", "mysql", "mariadb", "kafka"]
OptionValue = str | int | float | bool


class ConnectionCreate(Body):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255, description="Unique name.")
    kind: Kind
    host: str = Field(
        min_length=1,
        max_length=1024,
        description="Host name or IP; for kafka, the bootstrap servers (host:port,host:port).",
    )
    port: int | None = Field(None, ge=1, le=65535)
    username: str | None = Field(None, max_length=255)
    password: str | None = Field(
        None, max_length=4096, description="Encrypted at rest; never returned."
    )
    database: str | None = Field(None, max_length=255)
    options: dict[str, OptionValue] = Field(
        default_factory=dict,
        description="Extra settings. Dotted connector keys (e.g. database.sslmode) are passed "
        "to the streams using this connection verbatim.",
    )


class ConnectionUpdate(Body):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=255)
    kind: Kind | None = None
    host: str | None = Field(None, min_length=1, max_length=1024)
    port: int | None = Field(None, ge=1, le=65535)
    username: str | None = Field(None, max_length=255)
    password: str | None = Field(
        None, max_length=4096, description="Omit to keep the stored password; null clears it."
    )
    database: str | None = Field(None, max_length=255)
    options: dict[str, OptionValue] | None = None


class ConnectionAttributes(BaseModel):
    name: str
    kind: str
    host: str
    port: int | None
    username: str | None
    password: str | None = Field(description='"********" when a password is stored, else null.')
    has_password: bool
    database: str | None
    options: dict[str, OptionValue]
    stream_count: int = Field(description="Streams using this connection.")
    created_at: datetime
    updated_at: datetime


class ConnectionResource(BaseModel):
    id: str
    type: Literal["connection"] = "connection"
    attributes: ConnectionAttributes


class ConnectionDocument(BaseModel):
    data: ConnectionResource


class PageMeta(BaseModel):
    limit: int
    cursor: str | None = Field(description="Cursor of the next page (null on the last page).")
    next_cursor: str | None
    has_more: bool


class ListMeta(BaseModel):
    page: PageMeta


class ConnectionListDocument(BaseModel):
    data: list[ConnectionResource]
    meta: ListMeta


class DeletedAttributes(BaseModel):
    deleted: bool
    deleted_at: datetime


class DeletedResource(BaseModel):
    id: str
    type: str
    attributes: DeletedAttributes


class DeletedDocument(BaseModel):
    data: DeletedResource

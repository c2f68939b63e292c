"""User-managed resources: sources, destinations, pipelines, transforms, topics, tags,
connections.

A source is also a *stream* of the streams API: one row, two faces (``stream_id`` is the
``str_`` id the streams API shows). Connector configs are stored in the client's key order
with secret values replaced by ``{"$secret": "<ciphertext>"}``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tideflow.store.models.base import Base, JsonType, utcnow


class Source(Base):
    __tablename__ = "sources"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    stream_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    connector: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(JsonType)
    created_from: Mapped[str] = mapped_column(String(16), default="api")
    # Active | Paused | Stopped: what the user asked for; the runtime reports what is.
    desired_state: Mapped[str] = mapped_column(String(16), default="Active")
    tags: Mapped[list[str]] = mapped_column(JsonType, default=list)
    # Streams-API face: the pipeline the stream feeds and the connection it uses.
    pipeline_id: Mapped[str | None] = mapped_column(String(64), default=None)
    connection_id: Mapped[str | None] = mapped_column(String(64), default=None)
    # True once the stream has been started at least once (streams API reports "created").
    started: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Destination(Base):
    __tablename__ = "destinations"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    connector: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(JsonType)
    created_from: Mapped[str] = mapped_column(String(16), default="api")
    desired_state: Mapped[str] = mapped_column(String(16), default="Active")
    tags: Mapped[list[str]] = mapped_column(JsonType, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Pipeline(Base):
    __tablename__ = "pipelines"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    source_id: Mapped[str] = mapped_column(ForeignKey("sources.id"), index=True)
    destination_id: Mapped[str] = mapped_column(ForeignKey("destinations.id"), index=True)
    snapshot_new_tables: Mapped[bool] = mapped_column(Boolean, default=False)
    # The "source" and "transforms" objects exactly as the client sent them (echoed back).
    source_body: Mapped[dict[str, Any]] = mapped_column(JsonType)
    destination_body: Mapped[dict[str, Any]] = mapped_column(JsonType)
    transforms: Mapped[list[dict[str, Any]]] = mapped_column(JsonType, default=list)
    created_from: Mapped[str] = mapped_column(String(16), default="api")
    desired_state: Mapped[str] = mapped_column(String(16), default="Active")
    tags: Mapped[list[str]] = mapped_column(JsonType, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Transform(Base):
    __tablename__ = "transforms"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    transform: Mapped[str] = mapped_column(String(32))
    config: Mapped[dict[str, Any]] = mapped_column(JsonType)
    # {version(str): {"implementation", "description", "config", "created_at"}}; immutable.
    implementations: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    preview_version: Mapped[int | None] = mapped_column(Integer, default=None)
    preview_deployed_at: Mapped[datetime | None] = mapped_column(default=None)
    live_version: Mapped[int | None] = mapped_column(Integer, default=None)
    live_deployed_at: Mapped[datetime | None] = mapped_column(default=None)
    created_from: Mapped[str] = mapped_column(String(16), default="api")
    tags: Mapped[list[str]] = mapped_column(JsonType, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Topic(Base):
    """A captured table of a source: ``source_<sourceId>.<schema>.<table>``."""

    __tablename__ = "topics"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    source_id: Mapped[str] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    partition_count: Mapped[int] = mapped_column(Integer, default=1)
    tags: Mapped[list[str]] = mapped_column(JsonType, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Tag(Base):
    __tablename__ = "tags"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    type: Mapped[list[str]] = mapped_column(JsonType, default=list)
    system: Mapped[bool] = mapped_column(Boolean, default=False)
    custom: Mapped[bool] = mapped_column(Boolean, default=True)
    created_from: Mapped[str] = mapped_column(String(16), default="api")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Connection(Base):
    """A stored connection (host, port, credentials) for the streams API.

    ``config`` holds host, port, username, database and options; the password is stored sealed
    as ``{"$secret": "<ciphertext>"}`` under ``password``.
    """

    __tablename__ = "connections"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    config: Mapped[dict[str, Any]] = mapped_column(JsonType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

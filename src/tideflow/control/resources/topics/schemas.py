"""Wire shapes of /topics (as the Streamkap API and its Terraform provider use them)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tideflow.control.resources.wire import Body


class TopicEntity(BaseModel):
    entity_type: str = Field(description="sources")
    entity_id: str
    name: str
    connector: str
    display_name: str
    topic_ids: list[str]
    topic_db_ids: list[str]


class Partitions(BaseModel):
    count: int


class KafkaInfo(BaseModel):
    partitions: Partitions


class TopicOut(BaseModel):
    topic_id: str
    partition_count: int
    id: str
    name: str
    entity: TopicEntity
    kafka: KafkaInfo
    prefix: str
    tags: list[str]


class TopicList(BaseModel):
    result: list[TopicOut]
    page: int
    page_size: int
    total: int
    has_next: bool


class TopicPatch(Body):
    partition_count: int | None = Field(None, ge=1, le=10_000)
    tags: list[str] | None = None


class TopicUpdate(Body):
    payload: TopicPatch

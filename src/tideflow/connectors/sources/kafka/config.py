"""Config model of the ``kafkadirect`` source (streams ``sourceType`` ``kafka``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import field_validator, model_validator

from tideflow.connectors.config import setting
from tideflow.connectors.destinations.kafka.config import KafkaSecurity
from tideflow.connectors.registry import ConnectorSpec, register

AVRO_REFUSED = (
    "format 'avro' needs a schema registry, which Tideflow cannot run yet; "
    "use 'json' (Debezium envelopes, with or without schemas) or 'string'"
)


class KafkaSourceConfig(KafkaSecurity):
    bootstrap: str = setting(
        "127.0.0.1:9092",
        key="kafka.bootstrap.servers",
        display_name="Bootstrap servers",
        description="Comma-separated host:port list of the Kafka brokers to read from.",
    )
    topic_prefix: str | None = setting(
        None,
        key="topic.prefix",
        display_name="Topic prefix",
        description="Read every topic whose name starts with this prefix.",
    )
    topic_include: str | None = setting(
        None,
        key="topic.include.list.user.defined",
        display_name="Topics",
        description="Comma-separated topic names to read (combined with the prefix).",
    )
    format: Literal["string", "json"] = setting(
        "json",
        key="format",
        display_name="Format",
        description="json: Debezium envelopes or plain JSON objects; string: text messages.",
    )
    schemas_enable: bool = setting(
        False,
        key="schemas.enable",
        display_name="Values carry schemas",
        description='Messages are Kafka Connect {"schema", "payload"} objects; the schema '
        "gives exact column types (without it they are inferred from the JSON values).",
    )
    group_id: str | None = setting(
        None,
        key="group.id",
        display_name="Consumer group",
        description="Consumer group whose offsets record progress (default tideflow-<name>).",
    )
    assignment: Literal["group", "manual"] = setting(
        "group",
        key="partition.assignment",
        display_name="Partition assignment",
        description="group: the group's members share the partitions (subscribe). manual: "
        "this source reads every partition of its topics without joining the group (offsets "
        "are still committed to group.id); it starts at once after a crash, with no wait for "
        "the dead member's session to expire, but must be the group's only reader.",
    )

    shard_count: int = setting(
        1,
        key="partition.shard.count",
        display_name="Shards",
        description="manual assignment only: the number of sources sharing these topics by "
        "partition (cluster mode sets it for sharded pipelines); 1 reads every partition.",
    )
    shard_index: int = setting(
        0,
        key="partition.shard.index",
        display_name="Shard",
        description="manual assignment only: read the partitions p with p mod "
        "partition.shard.count equal to this (0-based).",
    )

    @model_validator(mode="after")
    def _check_shard(self) -> KafkaSourceConfig:
        if self.shard_count < 1 or not 0 <= self.shard_index < self.shard_count:
            raise ValueError(
                "partition.shard.index must be from 0 to partition.shard.count - 1 and "
                "partition.shard.count at least 1"
            )
        if self.shard_count > 1 and self.assignment != "manual":
            raise ValueError("partition.shard.count > 1 needs partition.assignment=manual")
        return self

    def owns(self, partition: int) -> bool:
        """Whether this source reads ``partition`` (every one unless sharded)."""
        return partition % self.shard_count == self.shard_index

    @field_validator("format", mode="before")
    @classmethod
    def _refuse_avro(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() == "avro":
            raise ValueError(AVRO_REFUSED)
        return value

    def topics(self) -> list[str]:
        return [t.strip() for t in (self.topic_include or "").split(",") if t.strip()]


register(
    ConnectorSpec(
        code="kafkadirect",
        kind="source",
        display_name="Apache Kafka",
        config_model=KafkaSourceConfig,
        implementation="tideflow.connectors.sources.kafka.source:KafkaSource",
    )
)

"""Config model of the ``kafka`` destination (keys as in the Streamkap API, plus tuning keys)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import field_validator

from tideflow.connectors.config import ConnectorConfig, setting
from tideflow.connectors.registry import ConnectorSpec, register

AVRO_REFUSED = (
    "destination.format 'avro' needs a schema registry, which Tideflow cannot run yet; "
    "use 'json' (with json.schema.enable=true for Kafka Connect schemas)"
)


class KafkaSecurity(ConnectorConfig):
    """Client security keys shared by the Kafka destination and the ``kafkadirect`` source."""

    security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"] = setting(
        "PLAINTEXT",
        key="security.protocol",
        display_name="Security protocol",
        description="Protocol used to talk to the brokers.",
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = setting(
        "PLAIN",
        key="sasl.mechanism",
        display_name="SASL mechanism",
        description="SASL mechanism with the SASL_* protocols.",
    )
    sasl_username: str | None = setting(
        None,
        key="sasl.username",
        display_name="SASL username",
        description="User name with the SASL_* protocols.",
    )
    sasl_password: str | None = setting(
        None,
        key="sasl.password",
        display_name="SASL password",
        secret=True,
        description="Password with the SASL_* protocols.",
    )

    def client_settings(self) -> dict[str, Any]:
        """librdkafka settings for the security keys."""
        conf: dict[str, Any] = {"security.protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL"):
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username or ""
            conf["sasl.password"] = self.sasl_password or ""
        return conf


def parse_mapping(value: str | None) -> dict[str, str]:
    """Parse ``schema.table=topic,schema.table=topic`` (blanks ignored)."""
    mapping: dict[str, str] = {}
    for part in (value or "").split(","):
        if not part.strip():
            continue
        table, sep, topic = part.partition("=")
        if not sep or not table.strip() or not topic.strip():
            raise ValueError(f"'{part.strip()}' is not of the form schema.table=topic")
        mapping[table.strip()] = topic.strip()
    return mapping


class KafkaDestinationConfig(KafkaSecurity):
    bootstrap: str = setting(
        key="kafka.sink.bootstrap",
        display_name="Bootstrap servers",
        description="Comma-separated host:port list of the Kafka brokers.",
    )
    format: Literal["json"] = setting(
        "json",
        key="destination.format",
        display_name="Format",
        description="Message format. Only json is supported (avro needs a schema registry).",
    )
    json_schema_enable: bool = setting(
        False,
        key="json.schema.enable",
        display_name="JSON with schemas",
        description='Wrap keys and values as Kafka Connect {"schema", "payload"} objects.',
    )
    topic_prefix: str = setting(
        "",
        key="topic.prefix",
        display_name="Topic prefix",
        description="Prefix of every topic name (<prefix><schema>.<table><suffix>).",
    )
    topic_suffix: str = setting(
        "",
        key="topic.suffix",
        display_name="Topic suffix",
        description="Suffix of every topic name.",
    )
    schema_registry_url: str | None = setting(
        None,
        key="schema.registry.url.user.defined",
        display_name="Schema registry URL",
        description="Schema registry for avro (accepted and stored; avro is not supported yet).",
    )
    topic_mapping: str | None = setting(
        None,
        key="topic.mapping",
        display_name="Topic mapping",
        description="Comma-separated schema.table=topic overrides of the topic names.",
    )
    partitions: int = setting(
        1,
        key="topic.partitions",
        display_name="Partitions",
        description="Partitions of the topics the destination creates.",
    )
    replication_factor: int = setting(
        1,
        key="topic.replication.factor",
        display_name="Replication factor",
        description="Replication factor of the topics the destination creates.",
    )
    tombstones_on_delete: bool = setting(
        True,
        key="tombstones.on.delete",
        display_name="Tombstones",
        description="Write a tombstone (null value) after each delete so compaction drops the key.",
    )
    transactional: bool = setting(
        False,
        key="transactional",
        display_name="Transactional",
        description="Write each batch in a Kafka transaction (read_committed consumers never "
        "see a partial batch).",
    )
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = setting(
        "lz4",
        key="compression.type",
        display_name="Compression",
        description="Compression codec of produced batches.",
    )
    delivery_timeout_ms: int = setting(
        30000,
        key="delivery.timeout.ms",
        display_name="Delivery timeout (ms)",
        description="How long a message may wait for the broker before the batch fails.",
    )

    @field_validator("format", mode="before")
    @classmethod
    def _refuse_avro(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() == "avro":
            raise ValueError(AVRO_REFUSED)
        return value

    @field_validator("topic_mapping")
    @classmethod
    def _check_mapping(cls, value: str | None) -> str | None:
        parse_mapping(value)
        return value

    @field_validator("partitions", "replication_factor", "delivery_timeout_ms")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    def topics(self) -> dict[str, str]:
        return parse_mapping(self.topic_mapping)


register(
    ConnectorSpec(
        code="kafka",
        kind="destination",
        display_name="Apache Kafka",
        config_model=KafkaDestinationConfig,
        implementation="tideflow.connectors.destinations.kafka.destination:KafkaDestination",
    )
)

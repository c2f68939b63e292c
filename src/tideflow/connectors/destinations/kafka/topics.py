"""Topic names and topic creation for the Kafka destination.

The destination creates its topics itself (with the configured partitions and replication)
rather than relying on broker auto-creation, which is off on well-run clusters and would pick
the broker's defaults.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from tideflow.errors import TerminalError, TransientError
from tideflow.events import TableSchema

_INVALID = re.compile(r"[^a-zA-Z0-9._-]")
MAX_TOPIC_LENGTH = 249

# Errors that no retry can fix: the configuration or the cluster's policy must change.
_TERMINAL = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.INVALID_REPLICATION_FACTOR,
        KafkaError.INVALID_PARTITIONS,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError.POLICY_VIOLATION,
        KafkaError.INVALID_CONFIG,
        KafkaError.INVALID_REQUEST,
    }
)


_DENIED = frozenset(
    {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED}
)


def topic_name(table: TableSchema, prefix: str, suffix: str, mapping: dict[str, str]) -> str:
    """``mapping[schema.table]`` or ``<prefix><schema>.<table><suffix>``.

    Characters Kafka refuses in topic names are replaced by ``_`` (as Debezium does).
    """
    name = mapping.get(table.name) or f"{prefix}{table.schema}.{table.table}{suffix}"
    name = _INVALID.sub("_", name)
    if len(name) > MAX_TOPIC_LENGTH or name in (".", ".."):
        raise TerminalError(
            f"topic name '{name}' for table {table.name} is not valid in Kafka "
            f"(at most {MAX_TOPIC_LENGTH} characters); set topic.mapping for this table"
        )
    return name


def kafka_error(exc: BaseException) -> KafkaError | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


class Topics:
    """Creates missing topics once and remembers the ones known to exist."""

    def __init__(
        self,
        admin: AdminClient,
        *,
        partitions: int,
        replication: int,
        timeout: float,
        unreachable_hint: str = "",
        denied_hint: str = "",
    ) -> None:
        self._unreachable_hint = unreachable_hint
        self._denied_hint = denied_hint
        self._admin = admin
        self._partitions = partitions
        self._replication = replication
        self._timeout = timeout
        self._known: set[str] = set()

    def ensure(self, names: Iterable[str]) -> None:
        """Make sure every topic in ``names`` exists; raise Transient/TerminalError if not."""
        missing = sorted({n for n in names if n not in self._known})
        if not missing:
            return
        try:
            existing = self._admin.list_topics(timeout=self._timeout).topics
        except KafkaException as exc:
            raise TransientError(
                f"cannot read Kafka metadata: {exc}{self._unreachable_hint}"
            ) from None
        for name in missing:
            meta = existing.get(name)
            if meta is not None and meta.error is None:
                self._known.add(name)
        to_create = [n for n in missing if n not in self._known]
        if not to_create:
            return
        futures = self._admin.create_topics(
            [NewTopic(n, self._partitions, self._replication) for n in to_create],
            request_timeout=self._timeout,
            operation_timeout=self._timeout,
        )
        for name, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                err = kafka_error(exc)
                if err is not None and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    pass
                elif err is not None and err.code() in _DENIED:
                    raise TerminalError(
                        f"cannot create Kafka topic '{name}': {err.str()}{self._denied_hint}",
                        code="kafka_denied",
                    ) from None
                elif err is not None and err.code() in _TERMINAL:
                    raise TerminalError(
                        f"cannot create Kafka topic '{name}': {err.str()}",
                        code="kafka_topic",
                    ) from None
                else:
                    raise TransientError(f"cannot create Kafka topic '{name}': {exc}") from None
            self._known.add(name)

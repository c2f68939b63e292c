"""What log mode leaves in Kafka after a delete: consumer groups and topics (``docs/cluster.md``).

Deleting a pipeline or a source through the API only changes the metadata store; the API never
talks to the log's brokers, so a broker outage cannot fail a delete. Every log-mode worker
runs a :class:`Sweeper` that finds, in the store, what deleted units left behind and removes it
from Kafka, then forgets it:

- a log checkpoint ``pipeline:<id>/log`` (or a fan-in / shard variant) of a pipeline that no
  longer exists: its consumer group ``tideflow-pipeline-<unit>`` is deleted;
- a log checkpoint ``log:<source id>`` of a source that no longer exists: its topics
  ``tideflow.<source id>.*`` are deleted. The API refuses to delete a source that pipelines
  still read (409 ``in_use``), so topics only go once their readers are deleted.

Both wait until no worker may still run the unit (no live lease: its runner has stopped, or its
owner died), otherwise the running consumer would recreate the group or the log writer the
topics. The checkpoint row is removed only once Kafka confirmed the deletion (a group or topic
already gone counts as deleted), so a broker outage only delays the cleanup to a later round,
and several workers sweeping at once do no harm.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from sqlalchemy import delete, select

from tideflow.engine.cluster.leases import PIPELINE, SOURCE, aware, db_now
from tideflow.engine.cluster.logmode import group_id, topic_prefix
from tideflow.store.db import Store
from tideflow.store.models.cluster import Lease
from tideflow.store.models.resources import Pipeline, Source
from tideflow.store.models.runtime import Checkpoint

log = logging.getLogger(__name__)

INTERVAL_S = 15.0
TIMEOUT_S = 20.0
# pipeline:<unit>/log[#<shard>/<shards>], unit = <pipeline id> or <pipeline id>/<source id>
_PIPELINE_LOG = re.compile(r"^pipeline:(?P<unit>[^#]+?)/log(#\d+/\d+)?$")
_GONE = {
    KafkaError.GROUP_ID_NOT_FOUND,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
}


@dataclass(frozen=True)
class Leftovers:
    groups: dict[str, list[str]]  # consumer group -> checkpoint units to forget after it
    topics: dict[str, str]  # source id -> its log checkpoint unit

    def __bool__(self) -> bool:
        return bool(self.groups or self.topics)


def leftovers(store: Store) -> Leftovers:
    """Groups and topics of deleted pipelines and sources that no worker may still run."""
    groups: dict[str, list[str]] = {}
    topics: dict[str, str] = {}
    with store.session() as s:
        units = s.scalars(
            select(Checkpoint.unit).where(
                Checkpoint.unit.like("pipeline:%/log%") | Checkpoint.unit.like("log:%")
            )
        ).all()
        if not units:
            return Leftovers({}, {})
        pipelines = set(s.scalars(select(Pipeline.id)).all())
        sources = set(s.scalars(select(Source.id)).all())
        now = db_now(s)
        leases = s.execute(select(Lease.kind, Lease.unit_id, Lease.owner, Lease.expires_at)).all()
    live = [(k, u) for k, u, owner, expires in leases if owner and aware(expires) > now]
    running_pipelines = {u.split("/")[0].split("#")[0] for k, u in live if k == PIPELINE}
    running_sources = {u for k, u in live if k == SOURCE}
    for unit in units:
        if unit.startswith("log:"):
            sid = unit.removeprefix("log:")
            if sid not in sources and sid not in running_sources:
                topics[sid] = unit
            continue
        match = _PIPELINE_LOG.match(unit)
        if match is None:
            continue
        lease_unit = match["unit"]
        pid = lease_unit.split("/")[0]
        if pid not in pipelines and pid not in running_pipelines:
            groups.setdefault(group_id(lease_unit), []).append(unit)
    return Leftovers(groups, topics)


def sweep(store: Store, bootstrap: str, timeout: float = TIMEOUT_S) -> list[str]:
    """Delete what :func:`leftovers` finds; returns the groups and topics removed.

    Raises nothing for a broker that cannot be reached or refuses: what was not deleted stays
    in the store and is tried again by the next sweep (logged once per sweep)."""
    found = leftovers(store)
    if not found:
        return []
    client = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": int(timeout * 1000)})
    done: list[str] = []
    forget: list[str] = []
    for group, units in found.groups.items():
        if _deleted_group(client, group, timeout):
            done.append(group)
            forget += units
    for sid, unit in found.topics.items():
        removed = _deleted_topics(client, topic_prefix(sid), timeout)
        if removed is not None:
            done += removed
            forget.append(unit)
    if forget:
        with store.session() as s:
            s.execute(delete(Checkpoint).where(Checkpoint.unit.in_(forget)))
    return done


def _deleted_group(client: AdminClient, group: str, timeout: float) -> bool:
    try:
        client.delete_consumer_groups([group], request_timeout=timeout)[group].result(timeout)
    except KafkaException as exc:
        if _code(exc) in _GONE:
            return True
        log.warning("log cleanup: consumer group %s not deleted yet: %s", group, exc)
        return False
    except Exception as exc:  # timeouts surface as other exceptions
        log.warning("log cleanup: consumer group %s not deleted yet: %r", group, exc)
        return False
    log.info("log cleanup: deleted consumer group %s of a deleted pipeline", group)
    return True


def _deleted_topics(client: AdminClient, prefix: str, timeout: float) -> list[str] | None:
    """The topics deleted (possibly none left), or None when the broker did not confirm."""
    try:
        names = [t for t in client.list_topics(timeout=timeout).topics if t.startswith(prefix)]
        if not names:
            return []
        futures = client.delete_topics(names, operation_timeout=timeout, request_timeout=timeout)
        for name, future in futures.items():
            try:
                future.result(timeout)
            except KafkaException as exc:
                if _code(exc) not in _GONE:
                    raise
            log.info("log cleanup: deleted topic %s of a deleted source", name)
    except Exception as exc:
        log.warning("log cleanup: topics %s* not deleted yet: %r", prefix, exc)
        return None
    return names


def _code(exc: KafkaException) -> int | None:
    err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    return err.code() if err is not None else None


class Sweeper:
    """A daemon thread of a log-mode worker running :func:`sweep` every ``interval``."""

    def __init__(self, store: Store, bootstrap: str, interval: float = INTERVAL_S) -> None:
        self.store = store
        self.bootstrap = bootstrap
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tideflow-log-cleanup", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(1.0)  # a daemon: a sweep waiting on the broker must not hold exit

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                sweep(self.store, self.bootstrap)
            except Exception:  # the store may be unreachable for a while: next round
                log.warning("log cleanup failed; retrying", exc_info=True)

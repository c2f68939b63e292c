"""What should run: the metadata store read into plain, comparable values.

The supervisor reloads this every reconcile interval. Configs are decrypted and validated into
the connector's config model here, once per row version; a config that cannot be used becomes
an ``error`` on the unit instead of an exception.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import orjson
from sqlalchemy import select

from tideflow.connectors import registry
from tideflow.connectors.config import ConnectorConfig, validate
from tideflow.engine.cluster import shards as cluster_shards
from tideflow.engine.transforms import spec as transforms
from tideflow.envelope import SourceInfo
from tideflow.errors import TideflowError
from tideflow.store.crypto import SecretBox, reveal_config
from tideflow.store.db import Store
from tideflow.store.models.resources import Destination, Pipeline, Source, Transform

ACTIVE, PAUSED, STOPPED = "Active", "Paused", "Stopped"
Policy = Literal["halt", "dead_letter"]
POLICY_KEY = "poison.policy"


def effective_state(*states: str) -> str:
    """A pipeline runs only when it, its source and its destination are all Active."""
    if STOPPED in states:
        return STOPPED
    if PAUSED in states:
        return PAUSED
    return ACTIVE


@dataclass(frozen=True)
class Connector:
    id: str
    name: str
    code: str
    desired: str
    config: ConnectorConfig | None
    error: str | None
    fingerprint: str  # changes when the effective config changes


@dataclass(frozen=True)
class PipelinePlan:
    id: str
    name: str
    source_id: str
    destination: Connector
    desired: str
    effective: str
    checkpoint_unit: str
    topics: frozenset[str] | None  # schema.table names to carry; None = every table
    policy: Policy
    error: str | None
    fingerprint: str
    transforms: tuple[transforms.TransformSpec, ...] = ()  # in pipeline order; () = fast path
    shards: int = 1  # cluster log mode: units splitting the writes by partition (cluster/shards)


@dataclass
class Plan:
    sources: dict[str, Connector] = field(default_factory=dict)
    source_info: dict[str, SourceInfo] = field(default_factory=dict)
    pipelines: dict[str, list[PipelinePlan]] = field(default_factory=lambda: defaultdict(list))

    def all_pipelines(self) -> list[PipelinePlan]:
        return [p for ps in self.pipelines.values() for p in ps]


def checkpoint_unit(pipeline_id: str, source_id: str, primary: bool) -> str:
    """``pipeline:<id>``; a pipeline fed by several sources (streams fan-in) keeps one
    checkpoint per extra source."""
    return f"pipeline:{pipeline_id}" if primary else f"pipeline:{pipeline_id}/{source_id}"


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()


class Planner:
    """Loads plans; caches decrypted, validated configs per row version."""

    def __init__(self, store: Store, secrets: SecretBox) -> None:
        self.store = store
        self.secrets = secrets
        self._configs: dict[tuple[str, str], tuple[Any, Connector]] = {}

    def load(self) -> Plan:
        with self.store.session() as s:
            sources = list(s.scalars(select(Source)))
            destinations = {d.id: d for d in s.scalars(select(Destination))}
            pipelines = list(s.scalars(select(Pipeline)))
            used = {
                t.get("id") for p in pipelines for t in p.transforms or [] if isinstance(t, dict)
            }
            rows = {t.id: t for t in s.scalars(select(Transform).where(Transform.id.in_(used)))}
        plan = Plan()
        for row in sources:
            conn = self._connector(
                "source",
                row.id,
                row.name,
                row.connector,
                row.desired_state,
                row.config,
                row.updated_at,
            )
            plan.sources[row.id] = conn
            db = getattr(conn.config, "dbname", None)
            plan.source_info[row.id] = SourceInfo(
                row.connector, row.name, db if isinstance(db, str) else None
            )
        fan_in: dict[str, list[str]] = defaultdict(list)
        for row in sources:
            if row.pipeline_id:
                fan_in[row.pipeline_id].append(row.id)
        for p in pipelines:
            dest_row = destinations.get(p.destination_id)
            if dest_row is None:
                continue
            dest = self._connector(
                "destination",
                dest_row.id,
                dest_row.name,
                dest_row.connector,
                dest_row.desired_state,
                dest_row.config,
                dest_row.updated_at,
            )
            for source_id in dict.fromkeys([p.source_id, *fan_in.get(p.id, [])]):
                source = plan.sources.get(source_id)
                if source is None:
                    continue
                pipeline = _pipeline(p, source, dest, primary=source_id == p.source_id)
                plan.pipelines[source_id].append(_with_transforms(pipeline, p, rows, self.secrets))
        return plan

    def _connector(
        self,
        kind: registry.Kind,
        id_: str,
        name: str,
        code: str,
        desired: str,
        stored: dict[str, Any],
        updated_at: datetime | None,
    ) -> Connector:
        cache_key = (kind, id_)
        version = (code, updated_at, orjson.dumps(stored, option=orjson.OPT_SORT_KEYS))
        hit = self._configs.get(cache_key)
        if hit is not None and hit[0] == version:
            cached = hit[1]
            return Connector(
                id_, name, code, desired, cached.config, cached.error, cached.fingerprint
            )
        config: ConnectorConfig | None = None
        error: str | None = None
        try:
            revealed = reveal_config(self.secrets, stored)
            fingerprint = _fingerprint(code, revealed)
            config = validate(registry.get(kind, code).config_model, revealed)
        except TideflowError as exc:
            error, fingerprint = exc.message, _fingerprint(code, stored)
        conn = Connector(id_, name, code, desired, config, error, fingerprint)
        self._configs[cache_key] = (version, conn)
        return conn


def _topics(source_id: str, body: dict[str, Any]) -> frozenset[str] | None:
    topics = body.get("topics") if isinstance(body, dict) else None
    if not topics:
        return None
    prefix = f"source_{source_id}."
    return frozenset(str(t).removeprefix(prefix) for t in topics)


def _pipeline(row: Pipeline, source: Connector, dest: Connector, *, primary: bool) -> PipelinePlan:
    body = row.destination_body if isinstance(row.destination_body, dict) else {}
    policy_value = body.get(POLICY_KEY, "halt")
    error = None
    if policy_value not in ("halt", "dead_letter"):
        error = f"{POLICY_KEY} must be halt or dead_letter, not {policy_value!r}"
        policy_value = "halt"
    policy: Policy = "dead_letter" if policy_value == "dead_letter" else "halt"
    topics = _topics(source.id, row.source_body) if primary else None
    shards, shards_error = cluster_shards.parse(dest.code, body)
    return PipelinePlan(
        id=row.id,
        name=row.name,
        source_id=source.id,
        destination=dest,
        desired=row.desired_state,
        effective=effective_state(row.desired_state, source.desired, dest.desired),
        checkpoint_unit=checkpoint_unit(row.id, source.id, primary),
        topics=topics,
        policy=policy,
        error=dest.error or error or shards_error,
        fingerprint=_fingerprint(
            dest.fingerprint, dest.code, sorted(topics or ()), policy, row.destination_id
        ),
        shards=shards,
    )


def _with_transforms(
    plan: PipelinePlan, row: Pipeline, rows: dict[str, Transform], secrets: SecretBox
) -> PipelinePlan:
    """Attach the pipeline's transforms; a version deployed live changes the fingerprint, so
    the pipeline restarts with it."""
    if not row.transforms:
        return plan
    try:
        specs = transforms.for_pipeline(
            list(row.transforms), rows, plan.source_id, lambda c: reveal_config(secrets, c)
        )
    except transforms.Unrunnable as exc:
        return replace(plan, error=plan.error or str(exc))
    identity = [(t.id, t.version, t.code, t.builtin, t.pattern, sorted(t.topics or ()), t.limits)
                for t in specs]  # fmt: skip
    return replace(plan, transforms=specs, fingerprint=_fingerprint(plan.fingerprint, identity))

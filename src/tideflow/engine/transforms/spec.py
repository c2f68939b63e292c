"""Which transforms a pipeline runs: resolved from the metadata store by the planner.

Only the version deployed live (``deploy-job-live/{version}``) runs; builtin-only and
``enrich`` transforms run from their config. Types without an engine here (``rollup``,
``sql_join``) and code transforms never deployed live make the pipeline Broken with a message
saying so, rather than letting records through untransformed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tideflow.engine.transforms import builtins, enrich
from tideflow.engine.transforms.runtime import CODE_FIELDS, Limits
from tideflow.errors import Invalid

RUNNABLE = frozenset({"map_filter", "topic_router", "fan_out", "enrich"})
BUILTIN_KEY = "transforms.builtin"
TIME_KEY = "transforms.limits.time.ms"
MEMORY_KEY = "transforms.limits.memory.mb"
# Stored config → the config with its sealed secrets decrypted (the store's secret box).
Reveal = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class TransformSpec:
    id: str
    name: str
    kind: str
    language: str  # "JavaScript" | "Python"
    version: int
    # (field, source) pairs with code; for enrich, ("enrich", its settings as JSON), so that
    # a config change changes the spec (and the pipeline restarts with it)
    code: tuple[tuple[str, str], ...]
    builtin: tuple[Any, ...]
    pattern: str | None  # transforms.input.topic.pattern
    topics: frozenset[str] | None  # the pipeline's per-topic assignment, schema.table
    limits: Limits
    enrich: enrich.EnrichConfig | None = None

    def applies_to(self, topic: str) -> bool:
        if self.topics is not None:
            return topic in self.topics
        if self.pattern is not None:
            return re.fullmatch(self.pattern, topic) is not None
        return True


class Unrunnable(Exception):
    """The pipeline cannot run its transforms; the message says what to do."""


def _int(config: Mapping[str, Any], key: str, default: int) -> int:
    value = config.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise Unrunnable(f"config key '{key}' must be a positive integer")
    return value


def build(
    row: Any,
    topics: frozenset[str] | None,
    version: int | None = None,
    reveal: Reveal = dict,
) -> TransformSpec:
    """A spec from a ``Transform`` row, of its live version unless ``version`` is given;
    ``reveal`` decrypts the secrets the store keeps sealed (an enrich lookup's password).

    Raises :class:`Unrunnable`."""
    name = row.name
    if row.transform not in RUNNABLE:
        raise Unrunnable(
            f"transform '{name}' is of type {row.transform}, which this release stores but "
            f"cannot execute (supported: {', '.join(sorted(RUNNABLE))}); "
            "remove it from the pipeline"
        )
    version = row.live_version if version is None else version
    versions = row.implementations or {}
    config = dict(row.config or {})
    impl: dict[str, Any] = {}
    if version:
        entry = versions.get(str(version))
        if entry is None:
            raise Unrunnable(f"transform '{name}' live version {version} does not exist")
        impl = dict(entry.get("implementation") or {})
        config.update(entry.get("config") or {})
    config = reveal(config)
    if not version and not config.get(BUILTIN_KEY) and row.transform != "enrich":
        raise Unrunnable(
            f"transform '{name}' has no live version; deploy one with "
            f"PUT /transforms/{row.id}/deploy-job-live/{{version}}"
        )
    try:
        ops = tuple(config.get(BUILTIN_KEY) or ())
        builtins.compile_ops(list(ops))
    except Invalid as exc:
        raise Unrunnable(f"transform '{name}': {exc.message}") from None
    language = str(impl.get("language") or config.get("transforms.language") or "JavaScript")
    language = "Python" if language.lower() == "python" else "JavaScript"
    code = tuple((f, str(impl[f])) for f in CODE_FIELDS if impl.get(f))
    lookup = None
    if row.transform == "enrich":
        try:
            lookup = enrich.parse(config)
        except Invalid as exc:
            raise Unrunnable(f"transform '{name}': {exc.message}") from None
        code = (("enrich", enrich.canonical(config)),)
    pattern = config.get("transforms.input.topic.pattern")
    return TransformSpec(
        id=row.id,
        name=name,
        kind=row.transform,
        language=language,
        version=version or 0,
        code=code,
        builtin=ops,
        pattern=pattern if isinstance(pattern, str) and pattern else None,
        topics=topics,
        limits=Limits(_int(config, TIME_KEY, 1000), _int(config, MEMORY_KEY, 128)),
        enrich=lookup,
    )


def for_pipeline(
    assignments: list[Any], rows: Mapping[str, Any], source_id: str, reveal: Reveal = dict
) -> tuple[TransformSpec, ...]:
    """The pipeline's transforms in listed order; unwound (transform, topic) pairs are merged.

    Raises :class:`Unrunnable`."""
    order: dict[str, set[str] | None] = {}
    prefix = f"source_{source_id}."
    for a in assignments:
        if not isinstance(a, dict) or not a.get("id"):
            continue
        topic = a.get("topic") or a.get("topic_id")
        topics = order.setdefault(a["id"], set())
        if topic and topics is not None:
            topics.add(str(topic).removeprefix(prefix))
        elif not topic:
            order[a["id"]] = None  # assigned without a topic: its own pattern decides
    specs = []
    for tid, topics in order.items():
        row = rows.get(tid)
        if row is None:
            raise Unrunnable(f"transform {tid} no longer exists; remove it from the pipeline")
        specs.append(build(row, frozenset(topics) if topics else None, reveal=reveal))
    return tuple(specs)

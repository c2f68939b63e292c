"""Transforms: config, versioned implementations, and deployment records.

Pipelines execute the version deployed live (see ``tideflow.engine.transforms``). The job
status is ``RUNNING`` only while at least one Active pipeline lists the transform; otherwise
``NOT_DEPLOYED`` or ``DEPLOYED_NOT_RUNNING``.

Implementation versions are immutable: each save adds version ``n + 1``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tideflow.control.context import AppContext
from tideflow.control.resources.common import ListParams, paginate
from tideflow.control.resources.configs import is_object_id, statuses
from tideflow.control.resources.tags.service import check_ids as check_tag_ids
from tideflow.control.resources.transforms import code
from tideflow.control.resources.transforms.schemas import (
    ImplementationUpdate,
    TransformCreate,
    TransformTest,
    TransformUpdate,
)
from tideflow.engine.transforms import spec as transform_spec
from tideflow.engine.transforms import trial
from tideflow.engine.transforms.enrich import EnrichRunner
from tideflow.engine.transforms.spec import RUNNABLE
from tideflow.errors import Conflict, Invalid, NotFound, TerminalError
from tideflow.ids import new_id
from tideflow.store.crypto import reveal_config
from tideflow.store.models.resources import Pipeline, Topic, Transform

NOT_RUNNING_MESSAGE = (
    "Not running: no Active pipeline executes this transform. Pipelines run the version "
    "deployed live; rollup and sql_join transforms are stored but not executed."
)
# Types stored for API compatibility that this release cannot execute.
NOT_EXECUTABLE = frozenset({"rollup", "sql_join"})
# Version ids clients send to mean "the latest saved version".
LATEST_ALIASES = frozenset({"no-version", "latest", "0"})


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def status_of(t: Transform) -> str:
    return "DEPLOYED_NOT_RUNNING" if t.live_version or t.preview_version else "NOT_DEPLOYED"


def _versions(t: Transform) -> dict[str, Any]:
    return dict(t.implementations or {})


def _latest(t: Transform) -> int:
    return max((int(v) for v in _versions(t)), default=0)


def _matching_topics(s: Session, t: Transform) -> list[Topic]:
    pattern = (t.config or {}).get("transforms.input.topic.pattern")
    if not isinstance(pattern, str):
        return []
    try:
        regex = re.compile(pattern)
    except re.error:
        return []
    topics = s.scalars(select(Topic).order_by(Topic.id))
    return [tp for tp in topics if regex.fullmatch(tp.id) or regex.fullmatch(tp.name)]


def to_dict(s: Session, t: Transform) -> dict[str, Any]:
    latest = _latest(t)
    impl = _versions(t).get(str(latest)) if latest else None
    topics = _matching_topics(s, t)
    return {
        "id": t.id,
        "name": t.name,
        "transform": t.transform,
        "transform_type": t.transform,
        "status": status_of(t),
        "config": code.masked(t.config),
        "implementation": impl["implementation"] if impl else None,
        "version": latest,
        "preview_version": t.preview_version,
        "live_version": t.live_version,
        "topic_ids": [tp.id for tp in topics],
        "topics": [tp.name for tp in topics],
        "start_time": None,
        "tags": list(t.tags or []),
        "created_from": t.created_from,
        "created_at": _aware(t.created_at),
        "updated_at": _aware(t.updated_at),
    }


def list_transforms(ctx: AppContext, params: ListParams) -> tuple[list[dict[str, Any]], int]:
    with ctx.store.session() as s:
        rows, total = paginate(s, Transform, params)
        return [to_dict(s, t) for t in rows], total


def get(ctx: AppContext, transform_id: str) -> dict[str, Any] | None:
    with ctx.store.session() as s:
        t = s.get(Transform, transform_id) if is_object_id(transform_id) else None
        return None if t is None else to_dict(s, t)


def create(ctx: AppContext, body: TransformCreate) -> dict[str, Any]:
    name = code.check_config(body.transform, body.config)
    if body.implementation is not None:
        code.check_implementation(
            body.transform, body.config.get("transforms.language"), body.implementation
        )
    try:
        with ctx.store.session() as s:
            _check_unique(s, name)
            t = Transform(
                id=new_id(),
                name=name,
                transform=body.transform,
                config=code.sealed(ctx.secrets, body.config),
                implementations={},
                created_from=body.created_from,
                tags=check_tag_ids(s, body.tags),
            )
            if body.implementation is not None:
                _add_version(t, body.implementation, None, None)
            s.add(t)
            s.flush()
            return to_dict(s, t)
    except IntegrityError:
        raise Invalid(f"transform '{name}' already exists", code="already_exists") from None


def update(ctx: AppContext, body: TransformUpdate) -> dict[str, Any]:
    try:
        with ctx.store.session() as s:
            t = _get(s, body.id)
            kind = body.transform or t.transform
            body.config = code.unmasked(body.config, t.config, ctx.secrets)
            name = code.check_config(kind, body.config)
            if name != t.name:
                _check_unique(s, name)
            if body.implementation is not None:
                latest = _versions(t).get(str(_latest(t)))
                if latest is None or latest["implementation"] != body.implementation:
                    code.check_implementation(
                        kind, body.config.get("transforms.language"), body.implementation
                    )
                    _add_version(t, body.implementation, None, None)
            t.name, t.transform, t.config = name, kind, code.sealed(ctx.secrets, body.config)
            if body.tags is not None:
                t.tags = check_tag_ids(s, body.tags)
            if body.created_from is not None:
                t.created_from = body.created_from
            t.updated_at = _now()
            s.flush()
            return to_dict(s, t)
    except IntegrityError:
        raise Invalid(f"transform '{body.config.get('transforms.name')}' already exists") from None


def delete(ctx: AppContext, transform_id: str) -> dict[str, Any]:
    with ctx.store.session() as s:
        t = _get(s, transform_id)
        users = [
            f"{name} ({pid})"
            for pid, name, transforms in s.execute(
                select(Pipeline.id, Pipeline.name, Pipeline.transforms)
            )
            if any(isinstance(x, dict) and x.get("id") == t.id for x in transforms or [])
        ]
        if users:
            raise Conflict(
                f"transform '{t.name}' is used by pipeline(s) {', '.join(users)}; "
                "remove it from them first"
            )
        out = to_dict(s, t)
        s.delete(t)
        return out


def implementation_details(ctx: AppContext, transform_id: str) -> dict[str, Any]:
    with ctx.store.session() as s:
        t = _get(s, transform_id)
        return _details(t)


def save_implementation(
    ctx: AppContext, transform_id: str, body: ImplementationUpdate
) -> dict[str, Any]:
    with ctx.store.session() as s:
        t = _get(s, transform_id)
        config = (
            code.unmasked(body.config, t.config, ctx.secrets)
            if body.config is not None
            else t.config
        )
        if body.config is not None:
            code.check_config(t.transform, config)
        code.check_implementation(
            t.transform, config.get("transforms.language"), body.implementation
        )
        stored = code.sealed(ctx.secrets, config) if body.config is not None else None
        version = _add_version(t, body.implementation, body.description, stored)
        t.updated_at = _now()
        return _version_out(t, str(version))


def deploy(
    ctx: AppContext, transform_id: str, target: Literal["preview", "live"], version_id: str
) -> dict[str, Any]:
    with ctx.store.session() as s:
        t = _get(s, transform_id)
        if t.transform in NOT_EXECUTABLE:
            raise Invalid(
                f"transform '{t.name}' is of type {t.transform}, which this release stores but "
                f"cannot execute (executable: {', '.join(sorted(RUNNABLE))}); it cannot be "
                "deployed",
                code="not_implemented",
            )
        latest = _latest(t)
        if version_id in LATEST_ALIASES:
            if latest == 0:
                raise Invalid(
                    f"transform '{t.name}' has no implementation yet; save one with "
                    f"PUT /transforms/{t.id}/implementation_details first",
                    code="no_implementation",
                )
            version = latest
        elif version_id.isdigit():
            version = int(version_id)
            if str(version) not in _versions(t):
                raise NotFound(f"transform '{t.name}' has no implementation version {version}")
        else:
            raise Invalid(
                f"version must be a version number or 'no-version' (latest); got '{version_id}'"
            )
        now = _now()
        if target == "live":
            t.live_version, t.live_deployed_at = version, now
        else:
            t.preview_version, t.preview_deployed_at = version, now
        return {
            "id": t.id,
            "transform_id": t.id,
            "target": target,
            "version": version,
            "deployed_at": now,
            "status": status_of(t),
            "running": False,
            "message": NOT_RUNNING_MESSAGE,
        }


def _running_pipelines(s: Session, t: Transform) -> list[str]:
    """Active pipelines that list ``t``: the worker runs a pipeline's transforms or reports it
    Broken, so an Active pipeline with a live version executes it."""
    ids = [
        pid
        for pid, transforms in s.execute(select(Pipeline.id, Pipeline.transforms))
        if any(isinstance(x, dict) and x.get("id") == t.id for x in transforms or [])
    ]
    reported = statuses(s, (f"pipeline:{pid}" for pid in ids))
    return [pid for pid in ids if reported.get(f"pipeline:{pid}") == "Active"]


def job_status(ctx: AppContext, transform_id: str) -> dict[str, Any]:
    with ctx.store.session() as s:
        t = _get(s, transform_id)
        runnable = bool(
            t.live_version
            or (t.config or {}).get("transforms.builtin")
            or t.transform == "enrich"  # runs from its config
        )
        running = runnable and t.transform in RUNNABLE and bool(_running_pipelines(s, t))
        if running:
            return {
                "id": t.id,
                "job_name": f"transform-{t.name}",
                "status": "RUNNING",
                "start_time": _aware(t.live_deployed_at),
                "running": True,
                "execution_available": True,
                "live_version": t.live_version,
                "preview_version": t.preview_version,
                "message": "executed by at least one Active pipeline",
            }
        return {
            "id": t.id,
            "job_name": f"transform-{t.name}",
            "status": status_of(t),
            "start_time": None,
            "running": False,
            "execution_available": t.transform in RUNNABLE,
            "live_version": t.live_version,
            "preview_version": t.preview_version,
            "message": NOT_RUNNING_MESSAGE,
        }


def test(ctx: AppContext, transform_id: str, body: TransformTest) -> dict[str, Any]:
    """Run the transform on sample records in the pipelines' sandbox.

    Raises :class:`trial.CodeError` when the code fails to load or fails on a record."""
    with ctx.store.session() as s:
        t = _get(s, transform_id)
        version = body.version or t.live_version or _latest(t) or None
        if version is not None and str(version) not in _versions(t):
            raise NotFound(f"transform '{t.name}' has no implementation version {version}")
        try:
            spec = transform_spec.build(
                t, None, version, reveal=lambda c: reveal_config(ctx.secrets, c)
            )
        except transform_spec.Unrunnable as exc:
            raise Invalid(str(exc), code="not_runnable") from None
    samples = [trial.sample(r.model_dump(), r.topic) for r in body.records]
    if spec.enrich is not None:
        try:
            outcomes = trial.run(
                spec.language, {}, spec.builtin, spec.limits, samples, EnrichRunner(spec.enrich)
            )
        except TerminalError as exc:  # the lookup table is missing or unreachable
            raise Invalid(exc.message, code="enrich_lookup") from None
    else:
        outcomes = trial.run(spec.language, dict(spec.code), spec.builtin, spec.limits, samples)
    return {
        "transform_id": spec.id,
        "version": version,
        "language": spec.language,
        "results": [
            {"index": i, "dropped": o.dropped, "outputs": o.outputs} for i, o in enumerate(outcomes)
        ],
    }


def _get(s: Session, transform_id: str) -> Transform:
    t = s.get(Transform, transform_id) if is_object_id(transform_id) else None
    if t is None:
        raise NotFound(f"no transform '{transform_id}'")
    return t


def _check_unique(s: Session, name: str) -> None:
    if s.scalar(select(Transform.id).where(Transform.name == name)):
        raise Invalid(f"transform '{name}' already exists", code="already_exists")


def _add_version(
    t: Transform,
    implementation: dict[str, Any],
    description: str | None,
    config: dict[str, Any] | None,
) -> int:
    versions = _versions(t)
    version = _latest(t) + 1
    versions[str(version)] = {
        "implementation": implementation,
        "description": description,
        "config": config,
        "created_at": _now().isoformat(),
    }
    # A new dict so SQLAlchemy sees the JSON column change.
    t.implementations = versions
    return version


def _version_out(t: Transform, version: str) -> dict[str, Any]:
    v = _versions(t)[version]
    return {
        "transform_id": t.id,
        "version_id": version,
        "description": v.get("description"),
        "implementation": v["implementation"],
        "config": code.masked(v.get("config")),
        "created_at": v["created_at"],
    }


def _details(t: Transform) -> dict[str, Any]:
    versions = _versions(t)
    latest = _latest(t)
    return {
        "transform_id": t.id,
        "impl_versions": {v: _version_out(t, v) for v in sorted(versions, key=int)},
        "latest_version": str(latest) if latest else None,
        "preview_version": str(t.preview_version) if t.preview_version else None,
        "live_version": str(t.live_version) if t.live_version else None,
    }

"""Rules sources and destinations share: connector configs, tags, and reported status.

A connector config is stored verbatim (same keys, same JSON types, no defaults added) with
secret values sealed; responses mask secrets unless the caller may and asked to see them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from tideflow.connectors import registry
from tideflow.connectors.config import secret_keys, validate
from tideflow.connectors.registry import ConnectorSpec, Kind
from tideflow.errors import ApiError, Invalid, TerminalError
from tideflow.store.crypto import SECRET_MARK, mask_config, reveal_config, seal_config
from tideflow.store.models.resources import Tag
from tideflow.store.models.runtime import UnitStatus

if TYPE_CHECKING:
    from tideflow.store.crypto import SecretBox

MASK = "********"
STATUSES = frozenset({"Active", "Paused", "Stopped", "Broken", "Starting", "Unassigned", "Unknown"})
_OBJECT_ID = re.compile(r"[0-9a-f]{24}")


class SecretsUnreadable(ApiError):
    status = 500
    code = "secret_key_mismatch"


def is_object_id(value: str) -> bool:
    """Whether ``value`` can be an id of ours (anything else cannot exist: no lookup needed)."""
    return _OBJECT_ID.fullmatch(value) is not None


def aware(dt: datetime) -> datetime:
    # SQLite returns naive datetimes; everything is stored in UTC.
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def checked_config(
    kind: Kind,
    code: str,
    config: dict[str, Any],
    box: SecretBox,
    previous: dict[str, Any] | None = None,
) -> tuple[ConnectorSpec, dict[str, Any]]:
    """Validate a client's config and return what to store (secrets sealed).

    On update, a secret sent back as the mask keeps the stored secret, so a client can PUT
    what it read without ``secret_returned``.
    """
    spec = registry.get(kind, code)
    for key, value in config.items():
        if isinstance(value, dict) and SECRET_MARK in value:
            raise Invalid(f"config key '{key}': objects with a '{SECRET_MARK}' key are reserved")
    secrets = secret_keys(spec.config_model)
    kept: dict[str, Any] = {}
    plain = dict(config)
    for key in secrets:
        stored = (previous or {}).get(key)
        if plain.get(key) == MASK and isinstance(stored, dict) and SECRET_MARK in stored:
            kept[key] = stored
            plain[key] = _reveal(box, {key: stored})[key]
    validate(spec.config_model, plain)
    sealed = seal_config(box, plain, secrets)
    sealed.update(kept)  # same keys, same order: update only replaces values
    return spec, sealed


def shown_config(box: SecretBox, stored: dict[str, Any], reveal: bool) -> dict[str, Any]:
    return _reveal(box, stored) if reveal else mask_config(stored, MASK)


def _reveal(box: SecretBox, stored: dict[str, Any]) -> dict[str, Any]:
    try:
        return reveal_config(box, stored)
    except TerminalError as exc:
        raise SecretsUnreadable(exc.message) from None


def check_tags(session: Session, tags: Iterable[str]) -> None:
    """422 listing the tag ids that do not exist."""
    wanted = list(dict.fromkeys(tags))
    if not wanted:
        return
    valid = [t for t in wanted if is_object_id(t)]
    found = set(session.scalars(select(Tag.id).where(Tag.id.in_(valid)))) if valid else set()
    unknown = [t for t in wanted if t not in found]
    if unknown:
        raise Invalid(f"unknown tag id(s): {', '.join(unknown)}", code="unknown_tag")


def statuses(session: Session, units: Iterable[str]) -> dict[str, str]:
    """The runtime's reported status of each unit that has one."""
    wanted = list(units)
    if not wanted:
        return {}
    rows = session.execute(
        select(UnitStatus.unit, UnitStatus.status).where(UnitStatus.unit.in_(wanted))
    )
    return {unit: status if status in STATUSES else "Unknown" for unit, status in rows}


def status_messages(session: Session, units: Iterable[str]) -> dict[str, str]:
    """The runtime's message (why a unit is Broken or retrying) of each unit that has one."""
    wanted = list(units)
    if not wanted:
        return {}
    rows = session.execute(
        select(UnitStatus.unit, UnitStatus.message).where(UnitStatus.unit.in_(wanted))
    )
    return {unit: message for unit, message in rows if message}


class Reports(NamedTuple):
    """What the runtime reported, read in one query so the parts agree with each other (a unit
    moving between workers changes its status and its worker in one write)."""

    statuses: dict[str, str]
    messages: dict[str, str]
    workers: dict[str, str]  # the worker running the unit (cluster mode: its lease holder)


def reports(session: Session, units: Iterable[str]) -> Reports:
    out = Reports({}, {}, {})
    wanted = list(units)
    if not wanted:
        return out
    rows = session.execute(
        select(UnitStatus.unit, UnitStatus.status, UnitStatus.message, UnitStatus.worker).where(
            UnitStatus.unit.in_(wanted)
        )
    )
    for unit, status, message, worker in rows:
        out.statuses[unit] = status if status in STATUSES else "Unknown"
        if message:
            out.messages[unit] = message
        if worker:
            out.workers[unit] = worker
    return out


def derived_status(desired_state: str, reported: str | None) -> str:
    """What to show as ``connector_status``: the runtime's report when there is one,
    otherwise what the desired state honestly implies."""
    if reported is not None:
        return reported
    return {"Paused": "Paused", "Stopped": "Stopped"}.get(desired_state, "Unassigned")

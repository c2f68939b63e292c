"""Lifecycle actions the control plane asks of the data plane."""

from __future__ import annotations

import time

from tideflow.connectors import registry
from tideflow.connectors.config import validate
from tideflow.engine import status
from tideflow.engine.plan import Connector
from tideflow.engine.source_runner import make_source
from tideflow.errors import TerminalError
from tideflow.store.crypto import SecretBox, reveal_config
from tideflow.store.db import Store
from tideflow.store.models.resources import Source
from tideflow.store.models.runtime import UnitStatus

_RUNNING = (status.ACTIVE, status.STARTING)


def drop_source_upstream(
    store: Store, secrets: SecretBox, source_id: str, force: bool, *, wait: float = 20.0
) -> None:
    """Remove what the source created upstream (slot, publication) before it is deleted.

    Call it after committing ``desired_state = Stopped`` and before deleting the row (the
    config is read from it). Waits up to ``wait`` seconds for the worker to stop the source;
    if it still runs, raises :class:`TerminalError` unless ``force`` (the connector then
    takes the upstream state away from the running reader). Connector errors propagate.
    """
    with store.session() as s:
        row = s.get(Source, source_id)
        if row is None:
            return
        code, name, stored = row.connector, row.name, dict(row.config)
    config = validate(registry.get("source", code).config_model, reveal_config(secrets, stored))
    unit = status.source_unit(source_id)
    deadline = time.monotonic() + wait
    current = _status(store, unit)
    while current in _RUNNING and time.monotonic() < deadline:
        time.sleep(0.2)
        current = _status(store, unit)
    if current in _RUNNING and not force:
        raise TerminalError(
            f"source {name} is still running ({current}); stop it and retry, or force the deletion",
            code="source_running",
        )
    source = make_source(Connector(source_id, name, code, "Stopped", config, None, ""))
    source.drop(force=force)


def _status(store: Store, unit: str) -> str | None:
    with store.session() as s:
        row = s.get(UnitStatus, unit)
        return row.status if row is not None else None

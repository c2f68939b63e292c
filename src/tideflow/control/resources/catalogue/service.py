"""The connector catalogue, generated from the connectors' config models."""

from __future__ import annotations

from tideflow.connectors import registry
from tideflow.connectors.config import catalogue_entries
from tideflow.connectors.registry import ConnectorSpec, Kind
from tideflow.control.resources.catalogue.schemas import ConfigEntry, ConnectorOut
from tideflow.control.resources.common import ListParams
from tideflow.control.resources.wire import Page


def _entry(spec: ConnectorSpec) -> ConnectorOut:
    return ConnectorOut(
        connector=spec.code,
        display_name=spec.display_name,
        kind=spec.kind,
        config=[ConfigEntry.model_validate(e) for e in catalogue_entries(spec.config_model)],
    )


def connectors(kind: Kind, code: str | None, params: ListParams) -> Page[ConnectorOut]:
    """One connector (422 when the code is unknown) or all of a kind, ordered by code."""
    specs = [registry.get(kind, code)] if code is not None else registry.all_specs(kind)
    if params.partial_name:
        needle = params.partial_name.lower()
        specs = [s for s in specs if needle in s.code.lower() or needle in s.display_name.lower()]
    if params.sort_dir == "desc":
        specs.reverse()
    start = (params.page - 1) * params.page_size
    page = [_entry(s) for s in specs[start : start + params.page_size]]
    return Page[ConnectorOut].of(page, params, len(specs))

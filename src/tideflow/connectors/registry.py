"""Connector codes → implementations and config models.

The catalogue the API serves and the validation it applies both come from here, so the API
can only accept connectors the engine can run (an unknown code is a 422).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tideflow.connectors.config import ConnectorConfig
from tideflow.errors import Invalid

Kind = Literal["source", "destination"]


@dataclass(frozen=True)
class ConnectorSpec:
    code: str
    kind: Kind
    display_name: str
    config_model: type[ConnectorConfig]
    # "module:Class" of the runtime implementation, imported lazily so the control plane does
    # not load drivers it never runs.
    implementation: str


_REGISTRY: dict[tuple[Kind, str], ConnectorSpec] = {}


def register(spec: ConnectorSpec) -> None:
    _REGISTRY[(spec.kind, spec.code)] = spec


def get(kind: Kind, code: str) -> ConnectorSpec:
    _load_builtin()
    try:
        return _REGISTRY[(kind, code)]
    except KeyError:
        known = ", ".join(sorted(c for k, c in _REGISTRY if k == kind))
        raise Invalid(
            f"unknown {kind} connector '{code}'; known connectors: {known}",
            code="unknown_connector",
        ) from None


def all_specs(kind: Kind) -> list[ConnectorSpec]:
    _load_builtin()
    return sorted((s for (k, _), s in _REGISTRY.items() if k == kind), key=lambda s: s.code)


def load_implementation(spec: ConnectorSpec) -> type:
    import importlib

    module, _, cls = spec.implementation.partition(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


_loaded = False


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    # Each connector package registers itself from its config module.
    import tideflow.connectors.destinations.files.config
    import tideflow.connectors.destinations.kafka.config
    import tideflow.connectors.destinations.mysql.config
    import tideflow.connectors.destinations.postgres.config
    import tideflow.connectors.sources.kafka.config
    import tideflow.connectors.sources.mysql.config
    import tideflow.connectors.sources.postgres.config  # noqa: F401

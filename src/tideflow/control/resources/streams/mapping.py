"""Streams-API vocabulary ↔ source connector configs (pure functions, no I/O).

A stream is a source seen through the streams API. Its ``sourceType`` names a source
connector, its connection supplies host, port and credentials, and its ``config`` uses short
names (``publication``, ``slot_name``, ``tables``…). This module turns the three into the flat
dotted connector config the platform API and the engine use, and back.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tideflow.errors import Invalid

# sourceType → source connector code.
SOURCE_TYPES: dict[str, str] = {
    "postgres_cdc": "postgresql",
    "mysql_cdc": "mysql",
    "mariadb_cdc": "mariadb",
    "kafka": "kafkadirect",
    "webhook": "webhook",
}
CONNECTOR_SOURCE_TYPES = {code: st for st, code in SOURCE_TYPES.items()}
# Which connection kinds a source type can use; None = it takes no connection.
CONNECTION_KINDS: dict[str, frozenset[str] | None] = {
    "postgres_cdc": frozenset({"postgres"}),
    "mysql_cdc": frozenset({"mysql", "mariadb"}),
    "mariadb_cdc": frozenset({"mariadb", "mysql"}),
    "kafka": frozenset({"kafka"}),
    "webhook": None,
}

_DB_CONNECTION = {
    "host": "database.hostname.user.defined",
    "port": "database.port.user.defined",
    "username": "database.user",
    "password": "database.password",
}
# Connection field → connector key, per source type. Kafka's bootstrap key is whatever the
# connector's config model declares (see ``bootstrap_key``).
CONNECTION_KEYS: dict[str, dict[str, str]] = {
    "postgres_cdc": {**_DB_CONNECTION, "database": "database.dbname"},
    "mysql_cdc": {**_DB_CONNECTION, "database": "database.include.list.user.defined"},
    "mariadb_cdc": {**_DB_CONNECTION, "database": "database.include.list.user.defined"},
    "kafka": {},
    "webhook": {},
}
# Stream config short name → connector key, per source type.
CONFIG_KEYS: dict[str, dict[str, str]] = {
    "postgres_cdc": {
        "publication": "publication.name",
        "slot_name": "slot.name",
        "tables": "table.include.list.user.defined",
        "schemas": "schema.include.list",
        "sslmode": "database.sslmode",
    },
    "mysql_cdc": {
        "tables": "table.include.list.user.defined",
        "databases": "database.include.list.user.defined",
    },
    "mariadb_cdc": {
        "tables": "table.include.list.user.defined",
        "databases": "database.include.list.user.defined",
    },
    "kafka": {
        "topics": "topic.include.list.user.defined",
        "topic_prefix": "topic.prefix",
        "format": "format",
        "schemas_enable": "schemas.enable",
    },
    "webhook": {},
}
# Short names whose value may be a list (joined with commas into the connector key).
LIST_KEYS = frozenset({"tables", "schemas", "databases", "topics"})
# Connection options with a short name; other options must be dotted connector keys.
OPTION_KEYS = {"sslmode": "database.sslmode"}


def connector_for(source_type: str) -> str:
    try:
        return SOURCE_TYPES[source_type]
    except KeyError:
        known = ", ".join(SOURCE_TYPES)
        raise Invalid(
            f"sourceType '{source_type}' is not supported; use one of: {known}",
            code="unknown_source_type",
        ) from None


def source_type_of(connector: str) -> str:
    """The streams-API family of a source connector (its code when it has none)."""
    return CONNECTOR_SOURCE_TYPES.get(connector, connector)


def bootstrap_key(config_keys: Iterable[str]) -> str | None:
    """The connector key that takes Kafka bootstrap servers, if the connector declares one."""
    return next((k for k in config_keys if "bootstrap" in k), None)


def connection_keys(source_type: str, model_keys: Iterable[str]) -> dict[str, str]:
    keys = dict(CONNECTION_KEYS.get(source_type, {}))
    if source_type == "kafka":
        key = bootstrap_key(model_keys)
        if key:
            keys["host"] = key
    return keys


def connection_config(
    source_type: str, settings: dict[str, Any], model_keys: Iterable[str]
) -> dict[str, Any]:
    """Connector config entries that come from a connection's (revealed) settings."""
    out: dict[str, Any] = {}
    keys = connection_keys(source_type, model_keys)
    for field, key in keys.items():
        value = settings.get(field)
        if value is None:
            continue
        if source_type == "kafka" and field == "host" and settings.get("port"):
            value = ",".join(
                h if ":" in h else f"{h}:{settings['port']}" for h in str(value).split(",")
            )
        out[key] = value
    for name, value in (settings.get("options") or {}).items():
        key = OPTION_KEYS.get(name, name)
        if "." in key:
            out[key] = value
    return out


def stream_config(source_type: str, config: dict[str, Any]) -> dict[str, Any]:
    """Connector config entries from a stream's ``config`` (short names or dotted keys)."""
    names = CONFIG_KEYS.get(source_type, {})
    out: dict[str, Any] = {}
    for name, value in config.items():
        if name in names:
            key = names[name]
            if name in LIST_KEYS and isinstance(value, list):
                if not all(isinstance(v, str) for v in value):
                    raise Invalid(f"config.{name} must be a list of strings")
                value = ",".join(v.strip() for v in value)
            out[key] = value
        elif "." in name:
            out[name] = value
        else:
            known = ", ".join(names) or "(none)"
            raise Invalid(
                f"config.{name} is not a {source_type} stream setting; known settings: {known} "
                "(dotted connector keys such as slot.name are also accepted)",
                code="invalid_config",
            )
    return out


def shown_config(
    source_type: str, connector_config: dict[str, Any], hidden: Iterable[str]
) -> dict[str, Any]:
    """The stream's ``config`` as the streams API shows it: short names where there is one,
    connection-derived keys (``hidden``) left out."""
    names = {key: name for name, key in CONFIG_KEYS.get(source_type, {}).items()}
    skip = set(hidden)
    out: dict[str, Any] = {}
    for key, value in connector_config.items():
        if key in skip:
            continue
        name = names.get(key)
        if name is None:
            out[key] = value
        elif name in LIST_KEYS and isinstance(value, str):
            out[name] = [p.strip() for p in value.split(",") if p.strip()]
        else:
            out[name] = value
    return out


def friendly(message: str, source_type: str, model_keys: Iterable[str]) -> str:
    """Point connector keys in a validation message at the stream field that sets them."""
    hints = {
        key: f"connection.{field}"
        for field, key in connection_keys(source_type, model_keys).items()
    }
    hints.update({key: f"config.{name}" for name, key in CONFIG_KEYS.get(source_type, {}).items()})
    for key, hint in hints.items():
        message = message.replace(f"'{key}'", f"'{key}' ({hint})")
    return message

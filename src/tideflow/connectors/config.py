"""Connector config models: the single source of truth for validation and the catalogue.

A connector's config is a flat map with dotted Debezium/Kafka-Connect style keys. Each
connector declares a pydantic model whose fields carry the dotted key as alias and the
catalogue facts (display name, description, secret, control) through :func:`setting`. The API
validates client input with the model but stores the client's map verbatim; the engine builds
the model (with defaults) when it runs the connector.
"""

from __future__ import annotations

import enum
import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from tideflow.errors import Invalid


class ConnectorConfig(BaseModel):
    """Base of every connector config model.

    Unknown keys are accepted and kept (clients such as the Terraform provider send keys an
    engine may not use); known keys are type-checked in lax mode, so ``"5432"`` is a valid port
    but ``"abc"`` is not.
    """

    model_config = ConfigDict(populate_by_name=True, extra="allow", frozen=True)


def setting(
    default: Any = ...,
    *,
    key: str,
    display_name: str,
    description: str,
    secret: bool = False,
    user_defined: bool = True,
    control: str | None = None,
) -> Any:
    """Declare one config key of a connector model."""
    from pydantic import Field

    extra: dict[str, Any] = {
        "display_name": display_name,
        "secret": secret,
        "user_defined": user_defined,
    }
    if control:
        extra["control"] = control
    return Field(default, alias=key, description=description, json_schema_extra=extra)


def secret_keys(model: type[ConnectorConfig]) -> frozenset[str]:
    """The dotted keys whose values are secrets (encrypted at rest, masked in responses)."""
    return frozenset(
        f.alias or name
        for name, f in model.model_fields.items()
        if isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("secret")
    )


def validate(model: type[ConnectorConfig], config: dict[str, Any]) -> ConnectorConfig:
    """Validate a client's config map; raise :class:`Invalid` naming the offending key."""
    try:
        return model.model_validate(config)
    except ValidationError as exc:
        messages = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "config"
            if err["type"] == "missing":
                messages.append(f"config key '{key}' is required")
            else:
                messages.append(f"config key '{key}': {err['msg']}")
        raise Invalid("; ".join(messages), code="invalid_config") from None


def _value_type(annotation: Any) -> tuple[str, list[str] | None]:
    """Map a field annotation to the catalogue's value type and allowed values."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _value_type(non_none[0])
    if typing.get_origin(annotation) is typing.Literal:
        return "string", [str(a) for a in args]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "string", [str(m.value) for m in annotation]
    if annotation is bool:
        return "boolean", None
    if annotation is int:
        return "integer", None
    if annotation is float:
        return "number", None
    return "string", None


def _control(vtype: str, allowed: list[str] | None, secret: bool) -> str:
    """The UI control the catalogue suggests for a key."""
    if secret:
        return "password"
    if allowed:
        return "one-select"
    if vtype == "boolean":
        return "toggle"
    return "number" if vtype in ("integer", "number") else "string"


def catalogue_entries(model: type[ConnectorConfig]) -> list[dict[str, Any]]:
    """One catalogue entry per config key, in declaration order."""
    entries = []
    for name, f in model.model_fields.items():
        extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        vtype, allowed = _value_type(f.annotation)
        control = extra.get("control") or _control(vtype, allowed, bool(extra.get("secret")))
        value: dict[str, Any] = {"control": control, "type": vtype}
        if allowed:
            value["raw_values"] = allowed
        if not f.is_required() and f.default is not None:
            default = f.default.value if isinstance(f.default, enum.Enum) else f.default
            value["default"] = default
        entries.append(
            {
                "name": f.alias or name,
                "display_name": extra.get("display_name", name),
                "description": f.description or "",
                "required": f.is_required(),
                "user_defined": bool(extra.get("user_defined", True)),
                "secret": bool(extra.get("secret", False)),
                "value": value,
            }
        )
    return entries

"""Static checks of transform configs and code (pure functions, no I/O).

A code transform's implementation is a map such as ``{"language": "Python", "value_transform":
"<code>", "key_transform": "<code>", "topic_transform": "<code>", "common_transform": "<code>"}``.
Each code field must define its entry point: ``_streamkap_transform`` (value),
``_streamkap_transform_key`` (key) and ``_streamkap_transform_topic`` (topic). Python is parsed
with :mod:`ast`, so syntax errors are reported with their line; JavaScript gets a light check
for the function name only (no JavaScript parser is bundled).
"""

from __future__ import annotations

import ast
import re
from typing import Any

from tideflow.engine.transforms import enrich
from tideflow.errors import Invalid
from tideflow.store.crypto import SecretBox, reveal_config, seal_config

LANGUAGES = ("Python", "JavaScript")
# SQL-based transforms describe tables and queries rather than functions.
SQL_TYPES = frozenset({"enrich", "sql_join", "rollup"})
SECRET_KEYS = frozenset({"transforms.enrich.password"})
MASK = "********"
PATTERN_KEYS = ("transforms.input.topic.pattern", "transforms.output.topic.pattern")

ENTRY_POINTS = {
    "value_transform": "_streamkap_transform",
    "key_transform": "_streamkap_transform_key",
    "topic_transform": "_streamkap_transform_topic",
}
# Which code fields a transform type needs (at least one of them, non-empty).
REQUIRED_CODE = {
    "map_filter": ("value_transform",),
    "fan_out": ("value_transform",),
    "topic_router": ("topic_transform", "value_transform"),
}


def check_config(transform_type: str, config: dict[str, Any]) -> str:
    """Validate a transform config; return its name. Raises :class:`Invalid` naming the key."""
    name = config.get("transforms.name")
    if not isinstance(name, str) or not name.strip():
        raise Invalid("config key 'transforms.name' is required and must be a non-empty string")
    if len(name) > 255:
        raise Invalid("config key 'transforms.name' must be at most 255 characters")
    language = config.get("transforms.language")
    if language is not None:
        allowed = (*LANGUAGES, "SQL") if transform_type in SQL_TYPES else LANGUAGES
        if language not in allowed:
            raise Invalid(
                f"config key 'transforms.language' must be one of {', '.join(allowed)}; "
                f"got {language!r}"
            )
    for key in PATTERN_KEYS:
        if key in config:
            check_pattern(key, config[key])
    if transform_type == "enrich":
        # Keys present must be valid; missing ones are reported when a pipeline runs it.
        enrich.parse(config, complete=False)
    return name.strip()


def masked(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """``config`` as shown by the API: secrets replaced by :data:`MASK`."""
    if not config or not any(k in config for k in SECRET_KEYS):
        return config
    return {k: MASK if k in SECRET_KEYS and config[k] is not None else v for k, v in config.items()}


def unmasked(
    config: dict[str, Any], stored: dict[str, Any] | None, box: SecretBox
) -> dict[str, Any]:
    """The plain config of a request: a secret sent back as :data:`MASK` keeps the stored one."""
    out = dict(config)
    for k in SECRET_KEYS:
        if out.get(k) == MASK and stored and k in stored:
            out[k] = stored[k]
    return reveal_config(box, out)


def sealed(box: SecretBox, config: dict[str, Any]) -> dict[str, Any]:
    """The config to store: secrets encrypted at rest, like connector configs."""
    return seal_config(box, config, SECRET_KEYS)


def check_pattern(key: str, pattern: Any) -> re.Pattern[str]:
    if not isinstance(pattern, str):
        raise Invalid(f"config key '{key}' must be a string (a regular expression)")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise Invalid(f"config key '{key}' is not a valid regular expression: {exc}") from None


def normalise_language(value: Any) -> str:
    """``JAVASCRIPT``/``javascript``/``JavaScript`` → ``JavaScript`` (likewise Python, SQL)."""
    if not isinstance(value, str):
        raise Invalid("implementation key 'language' must be a string")
    for known in (*LANGUAGES, "SQL"):
        if value.lower() == known.lower():
            return known
    raise Invalid(f"implementation key 'language' must be Python or JavaScript; got {value!r}")


def check_implementation(
    transform_type: str, config_language: str | None, implementation: dict[str, Any]
) -> None:
    """Validate an implementation map for a transform of ``transform_type``."""
    if not implementation:
        raise Invalid("implementation must not be empty")
    raw_language = implementation.get("language", config_language or "JavaScript")
    language = normalise_language(raw_language)
    for field in ENTRY_POINTS:
        value = implementation.get(field)
        if value is not None and not isinstance(value, str):
            raise Invalid(f"implementation key '{field}' must be a string of code")
    required = REQUIRED_CODE.get(transform_type, ())
    if required and not any(implementation.get(f) for f in required):
        raise Invalid(
            f"a {transform_type} transform needs code in implementation key "
            f"'{required[0]}' defining {ENTRY_POINTS[required[0]]}(valueObject, keyObject, "
            "topic, timestamp)"
        )
    if language == "SQL":
        if transform_type not in SQL_TYPES:
            raise Invalid(f"a {transform_type} transform is written in Python or JavaScript")
        return
    for field, entry in ENTRY_POINTS.items():
        code = implementation.get(field)
        if code:
            check_code(language, code, entry, field)


def check_code(language: str, code: str, entry: str, field: str) -> None:
    if language == "Python":
        _check_python(code, entry, field)
    else:
        _check_javascript(code, entry, field)


def _check_python(code: str, entry: str, field: str) -> None:
    try:
        tree = ast.parse(code, filename=field)
    except SyntaxError as exc:
        where = f"line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "")
        raise Invalid(
            f"implementation key '{field}': Python syntax error at {where}: {exc.msg}",
            code="invalid_code",
        ) from None
    defined = {
        node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    if entry not in defined:
        raise Invalid(
            f"implementation key '{field}' must define a top-level function {entry}(valueObject, "
            "keyObject, topic, timestamp)",
            code="invalid_code",
        )


def _check_javascript(code: str, entry: str, field: str) -> None:
    name = re.escape(entry)
    definition = re.compile(
        rf"(\bfunction\s+{name}\s*\()|(\b(?:var|let|const)\s+{name}\s*=)|(^|[;\s]){name}\s*=",
        re.MULTILINE,
    )
    if not definition.search(code):
        raise Invalid(
            f"implementation key '{field}' must define function {entry}(valueObject, keyObject, "
            "topic, timestamp)",
            code="invalid_code",
        )

"""What the language runners share: limits, failures, and the runner contract."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol, TypeGuard

from tideflow.engine.transforms.records import Input, Output

CODE_FIELDS = ("common_transform", "value_transform", "key_transform", "topic_transform")


@dataclass(frozen=True, slots=True)
class Limits:
    """Per record: wall-clock time; per runner: memory."""

    time_ms: int = 1000
    memory_mb: int = 128


@dataclass(frozen=True, slots=True)
class Failure:
    """A record the transform could not handle: thrown, timed out, or out of memory."""

    message: str
    line: int | None = None

    def describe(self, transform: str) -> str:
        where = f" at line {self.line}" if self.line else ""
        return f"transform '{transform}' failed{where}: {self.message}"


Result = Output | Failure


class Runner(Protocol):
    """Runs one transform's code. Owned and called by one pipeline thread only.

    ``run`` returns one result per input, in order; a failing record never fails the others.
    ``close`` releases the engine (a worker process for Python) and may be called twice.
    """

    def run(self, inputs: list[Input]) -> list[Result]: ...

    def close(self) -> None: ...


def _is_name(v: object) -> TypeGuard[str]:
    """``table`` or ``schema.table``: the table part (after the last dot) is not empty."""
    return isinstance(v, str) and bool(v) and not v.endswith(".") and not v.startswith(".")


def topics_of(value: object) -> tuple[str, ...] | Failure | None:
    """A topic function's result: a name, a list of names (fan out), or null (keep)."""
    if value is None:
        return None
    if _is_name(value):
        return (value,)
    if isinstance(value, list) and value and all(_is_name(v) for v in value):
        return tuple(value)
    return Failure(
        "the topic function must return a topic name ('table' or 'schema.table') or a "
        f"non-empty list of names, not {value!r}"
    )


def output_of(value: object, key: object, topic: object) -> Result:
    if topic is None and key is None and type(value) is dict:
        return Output(value)  # the common case, once per record: skip the checks below
    topics = topics_of(topic)
    if isinstance(topics, Failure):
        return topics
    if value is not None and not isinstance(value, dict):
        return Failure(f"the value function must return an object or null, not {value!r}")
    if key is not None:
        if not isinstance(key, dict) or not key:
            return Failure(f"the key function must return a non-empty object, not {key!r}")
        if value is not None:
            # A key field is a column of the row (the Postgres destination upserts on it, the
            # Kafka key is read from it): the key cannot say something else than the value.
            for name, v in key.items():
                if name in value and value[name] != v:
                    return Failure(
                        f"the key function returned {name}={v!r} but the value has "
                        f"{name}={value[name]!r}; a key field must equal the value's field "
                        "(change the value too, or use another name)"
                    )
    return Output(value, key, topics)


_JS_LINE = re.compile(r"<input>:(\d+)")


def js_line(stack: str) -> int | None:
    m = _JS_LINE.search(stack)
    return int(m.group(1)) if m else None

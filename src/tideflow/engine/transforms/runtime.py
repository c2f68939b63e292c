"""What the language runners share: limits, failures, and the runner contract."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

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


def topics_of(value: object) -> tuple[str, ...] | Failure | None:
    """A topic function's result: a name, a list of names (fan out), or null (keep)."""
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    return Failure(f"the topic function must return a topic name or a list of names, not {value!r}")


def output_of(value: object, key: object, topic: object) -> Result:
    if topic is None and key is None and type(value) is dict:
        return Output(value)  # the common case, once per record: skip the checks below
    topics = topics_of(topic)
    if isinstance(topics, Failure):
        return topics
    if value is not None and not isinstance(value, dict):
        return Failure(f"the value function must return an object or null, not {value!r}")
    if key is not None and not isinstance(key, dict):
        return Failure(f"the key function must return an object, not {key!r}")
    return Output(value, key, topics)


_JS_LINE = re.compile(r"<input>:(\d+)")


def js_line(stack: str) -> int | None:
    m = _JS_LINE.search(stack)
    return int(m.group(1)) if m else None

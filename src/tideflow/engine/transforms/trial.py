"""Run a transform on sample records outside any pipeline, in the same sandbox pipelines use.

Used by ``POST /transforms/{id}/test`` and ``tideflow transforms test``. Each sample goes
through the same steps as in a pipeline: builtin operations first, then the code (value, key
and topic functions); the result says whether it was dropped and, otherwise, each output record
with its topic (several when the topic function fans out).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tideflow.engine.transforms import builtins
from tideflow.engine.transforms.javascript import CompileError as JsCompileError
from tideflow.engine.transforms.javascript import JavaScriptWorker
from tideflow.engine.transforms.python_sandbox import CompileError as PyCompileError
from tideflow.engine.transforms.python_sandbox import PythonRunner
from tideflow.engine.transforms.records import Input, Output
from tideflow.engine.transforms.runtime import Failure, Limits, Runner


class CodeError(Exception):
    """The code failed to load (``record`` None) or failed on the sample at index ``record``."""

    def __init__(self, message: str, line: int | None, record: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.record = record

    def describe(self) -> str:
        where = f" at line {self.line}" if self.line else ""
        if self.record is None:
            return f"the transform's code does not load{where}: {self.message}"
        return f"the transform failed on record {self.record}{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One sample's result: ``dropped``, or one output per topic (fan out gives several)."""

    dropped: bool
    outputs: list[dict[str, Any]] = field(default_factory=list)  # {"topic", "key", "value"}


def sample(record: Mapping[str, Any], default_topic: str = "public.sample") -> Input:
    """An :class:`Input` from a sample ``{"value", "key", "topic", "timestamp"}`` object."""
    value = record.get("value")
    if not isinstance(value, dict):
        raise ValueError("each record needs a 'value' object")
    key = record.get("key") or {}
    if not isinstance(key, dict):
        raise ValueError("a record's 'key' must be an object")
    timestamp = record.get("timestamp") or 0
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        raise ValueError("a record's 'timestamp' must be epoch milliseconds")
    return Input(value, key, str(record.get("topic") or default_topic), timestamp)


def load(language: str, code: Mapping[str, str], limits: Limits) -> Runner | None:
    """The runner for ``code`` (None when there is no code). Raises :class:`CodeError`."""
    if not any(code.values()):
        return None
    try:
        if language.lower() == "python":
            return PythonRunner(dict(code), limits)
        return JavaScriptWorker(dict(code), limits)
    except (JsCompileError, PyCompileError) as exc:
        raise CodeError(exc.failure.message, exc.failure.line, None) from None


def run(
    language: str,
    code: Mapping[str, str],
    builtin: Sequence[Any],
    limits: Limits,
    samples: Sequence[Input],
    runner: Runner | None = None,
) -> list[Outcome]:
    """One outcome per sample, in order. Raises :class:`CodeError` on the first failure and
    :class:`tideflow.errors.Invalid` for bad builtin operations.

    ``runner`` (e.g. an enrich lookup) replaces ``code``; it is closed here."""
    ops = builtins.compile_ops(list(builtin))
    if runner is None:
        runner = load(language, code, limits)
    try:
        pending: list[int] = []
        inputs: list[Input] = []
        results: list[Output | Failure | None] = []
        for i, item in enumerate(samples):
            value = builtins.apply(ops, item.value) if ops else item.value
            if value is None:
                results.append(Output(None))
                continue
            pending.append(i)
            inputs.append(Input(value, item.key, item.topic, item.timestamp))
            results.append(None)
        if runner is not None:
            for i, got in zip(pending, runner.run(inputs), strict=True):
                results[i] = got
        else:
            for i, item in zip(pending, inputs, strict=True):
                results[i] = Output(item.value)
    finally:
        if runner is not None:
            runner.close()
    outcomes: list[Outcome] = []
    for i, (item, result) in enumerate(zip(samples, results, strict=True)):
        if isinstance(result, Failure):
            raise CodeError(result.message, result.line, i)
        if result is None or result.value is None:
            outcomes.append(Outcome(dropped=True))
            continue
        key = result.key if result.key is not None else item.key
        outcomes.append(
            Outcome(
                dropped=False,
                outputs=[
                    {"topic": t, "key": key, "value": result.value}
                    for t in result.topics or (item.topic,)
                ],
            )
        )
    return outcomes

"""A pipeline's transforms, applied in order to each batch on the pipeline's thread.

Each transform sees only the records whose topic it applies to (``TransformSpec.applies_to``);
the others pass through in place, so per-key order is kept (invariant 3). A record a
transform fails on is returned as a failure with the event as it was before that transform;
the pipeline runner routes it per the poison policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tideflow.engine.transforms import builtins
from tideflow.engine.transforms.enrich import EnrichRunner
from tideflow.engine.transforms.javascript import JavaScriptWorker
from tideflow.engine.transforms.python_sandbox import CompileError, PythonRunner, WorkerRunner
from tideflow.engine.transforms.records import Input, Output, Rebuilder, render
from tideflow.engine.transforms.runtime import Failure, Result, Runner
from tideflow.engine.transforms.spec import TransformSpec
from tideflow.errors import TerminalError
from tideflow.events import ChangeEvent, Op


class TransformError(TerminalError):
    """A transform failed on a record and the poison policy is ``halt``."""

    code = "transform_error"


@dataclass(frozen=True, slots=True)
class Failed:
    event: ChangeEvent
    message: str


class _Step:
    def __init__(self, spec: TransformSpec) -> None:
        self.spec = spec
        self.ops = builtins.compile_ops(list(spec.builtin))
        self.runner: Runner | None = None
        if spec.enrich is not None:
            self.runner = EnrichRunner(spec.enrich)
        elif spec.code:
            code = dict(spec.code)
            try:
                if spec.language == "Python":
                    self.runner = PythonRunner(code, spec.limits)
                else:
                    self.runner = JavaScriptWorker(code, spec.limits)
            except CompileError as exc:
                where = f" at line {exc.failure.line}" if exc.failure.line else ""
                raise TransformError(
                    f"cannot load transform '{spec.name}' v{spec.version}{where}: "
                    f"{exc.failure.message}"
                ) from None

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()


class Chain:
    """Owned by one pipeline runner thread; :meth:`close` stops any worker process."""

    def __init__(self, specs: tuple[TransformSpec, ...]) -> None:
        self._steps: list[_Step] = []
        self._rebuild = Rebuilder()
        try:
            for spec in specs:
                self._steps.append(_Step(spec))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for step in self._steps:
            step.close()

    def apply(self, events: list[ChangeEvent]) -> tuple[list[ChangeEvent], list[Failed]]:
        failed: list[Failed] = []
        for step in self._steps:
            events = self._step(step, events, failed)
        return events, failed

    def _step(
        self, step: _Step, events: list[ChangeEvent], failed: list[Failed]
    ) -> list[ChangeEvent]:
        runner = step.runner
        if not isinstance(runner, WorkerRunner) or len(events) <= _PIPELINE_CHUNK:
            part = self._prepare(step, events)
            if part.inputs and runner is not None:
                return self._finish(step, part, runner.run(part.inputs), failed)
            return self._finish(step, part, [Output(i.value) for i in part.inputs], failed)
        # The worker is another process: hand it one chunk, then render the next chunk
        # and rebuild the previous one while it runs, so the two use two cores, not one after
        # the other. One request in flight at a time, so neither side can block the other's
        # pipe.
        out: list[ChangeEvent] = []
        chunks = [events[i : i + _PIPELINE_CHUNK] for i in range(0, len(events), _PIPELINE_CHUNK)]
        current = self._prepare(step, chunks[0])
        runner.send(current.inputs)
        for k in range(len(chunks)):
            following = self._prepare(step, chunks[k + 1]) if k + 1 < len(chunks) else None
            results = runner.receive()
            if following is not None:
                runner.send(following.inputs)
            out.extend(self._finish(step, current, results, failed))
            if following is not None:
                current = following
        return out

    def _prepare(self, step: _Step, events: list[ChangeEvent]) -> _Part:
        spec = step.spec
        part = _Part(events)
        applies: dict[str, bool] = {}  # per table name: applies_to may run a regex
        for i, e in enumerate(events):
            if e.op == Op.TRUNCATE:
                continue
            name = e.table.name
            ok = applies.get(name)
            if ok is None:
                ok = applies[name] = spec.applies_to(name)
            if not ok:
                continue
            item = render(e, name)
            part.slots.append(i)
            part.rendered.append(item.value)
            if not step.ops:
                part.inputs.append(item)
                part.results.append(None)  # filled from the runner
                continue
            value = builtins.apply(step.ops, item.value)  # on a copy: item.value stays as is
            if value is None:
                part.results.append(Output(None))
            else:
                part.inputs.append(Input(value, item.key, item.topic, item.timestamp))
                part.results.append(None)
        return part

    def _finish(
        self, step: _Step, part: _Part, ran: list[Result], failed: list[Failed]
    ) -> list[ChangeEvent]:
        """``part``'s events with the results (``ran``: one per input) applied."""
        events = part.events
        if not part.slots:
            return events
        it = iter(ran)
        results = [r if r is not None else next(it) for r in part.results]
        rebuild = self._rebuild.rebuild
        replaced: dict[int, list[ChangeEvent]] = {}
        for i, result, before in zip(part.slots, results, part.rendered, strict=True):
            event = events[i]
            if isinstance(result, Failure):
                failed.append(Failed(event, result.describe(step.spec.name)))
                replaced[i] = []
            elif result.value is None:
                replaced[i] = []  # filtered out
            elif result.topics is None:
                replaced[i] = [rebuild(event, result, event.table.name, before)]
            else:
                replaced[i] = [rebuild(event, result, t, before) for t in result.topics]
        if len(replaced) == len(events):  # every record went through this step
            return [e for i in range(len(events)) for e in replaced[i]]
        out: list[ChangeEvent] = []
        for i, e in enumerate(events):
            found = replaced.get(i)
            if found is None:
                out.append(e)
            else:
                out.extend(found)
        return out


# Events per chunk when overlapping with the Python worker: big enough that the round trip
# is amortised, small enough that the first and last chunk (not overlapped) stay short.
_PIPELINE_CHUNK = 1000


class _Part:
    """One chunk of a batch between rendering and rebuilding."""

    __slots__ = ("events", "inputs", "rendered", "results", "slots")

    def __init__(self, events: list[ChangeEvent]) -> None:
        self.events = events
        self.slots: list[int] = []  # indexes into events of the records this step sees
        self.rendered: list[dict[str, Any]] = []  # per slot: its rendered input value
        self.results: list[Output | None] = []  # per slot: None = the runner's next result
        self.inputs: list[Input] = []  # what the runner gets

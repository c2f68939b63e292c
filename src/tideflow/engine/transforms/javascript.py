"""JavaScript transforms in an embedded QuickJS engine.

QuickJS has no file, network or process API unless the host adds one, and we add none: the
only way in is the JSON string of each record. Memory is capped per context and every call
is interrupted after the per-record time limit. QuickJS holds the GIL while it runs, so the
time limit is also what bounds the pause other pipelines see from a runaway transform.
"""

from __future__ import annotations

from typing import Any

import orjson
import quickjs

from tideflow.engine.transforms.python_sandbox import WorkerRunner
from tideflow.engine.transforms.records import Input
from tideflow.engine.transforms.runtime import Failure, Limits, Result, js_line, output_of

# JSON in and out: crossing the boundary with one string is much cheaper than converting
# objects field by field. Records go in batches (one parse and one stringify per batch, one
# Python→QuickJS call); __tideflow_call runs one record, to attribute a failure (below).
_DRIVER = """
function __tideflow_one(a) {
  var v = typeof _streamkap_transform === 'function'
    ? _streamkap_transform(a[0], a[1], a[2], a[3]) : a[0];
  var k = typeof _streamkap_transform_key === 'function'
    ? _streamkap_transform_key(a[0], a[1], a[2], a[3]) : null;
  var t = typeof _streamkap_transform_topic === 'function'
    ? _streamkap_transform_topic(a[0], a[1], a[2], a[3]) : null;
  return [v === undefined ? null : v, k === undefined ? null : k, t === undefined ? null : t];
}
function __tideflow_call(json) {
  return JSON.stringify(__tideflow_one(JSON.parse(json)));
}
function __tideflow_only_value() {
  return typeof _streamkap_transform_key !== 'function'
    && typeof _streamkap_transform_topic !== 'function';
}
function __tideflow_batch(json, onlyValue) {
  // [[[topic, [key field names]], ...], [[value, [key values], shape index, timestamp], ...]]:
  // topic and key names once per batch, not once per record (less JSON to parse).
  var b = JSON.parse(json), shapes = b[0], items = b[1], out = new Array(items.length);
  for (var i = 0; i < items.length; i++) {
    var it = items[i], shape = shapes[it[2]], names = shape[1], values = it[1], key = {};
    for (var j = 0; j < names.length; j++) key[names[j]] = values[j];
    var r = __tideflow_one([it[0], key, shape[0], it[3]]);
    out[i] = onlyValue ? r[0] : r;
  }
  return JSON.stringify(out);
}
"""
# Records per batch call to start with. The time limit applies to each call as a whole, so a
# batch never holds the GIL longer than one record could; when a batch overruns without any
# single record doing so, the transform is slow rather than stuck and batches shrink.
_FIRST_CHUNK = 512


def batch_results(data: str | bytes, only_value: bool) -> list[Result]:
    """The results in ``__tideflow_batch``'s JSON output."""
    outs = orjson.loads(data)
    if only_value:
        return [output_of(o, None, None) for o in outs]
    return [output_of(o[0], o[1], o[2]) for o in outs]


def batch_inputs(data: str | bytes) -> list[Input]:
    """The inputs of a :func:`batch_json` string."""
    shapes, items = orjson.loads(data)
    return [
        Input(value, dict(zip(shapes[s][1], keys, strict=True)), shapes[s][0], ts)
        for value, keys, s, ts in items
    ]


def batch_json(chunk: list[Input]) -> str:
    """The batch argument of ``__tideflow_batch`` (see the driver)."""
    shapes: dict[tuple[str, tuple[str, ...]], int] = {}
    items = []
    for i in chunk:
        shape = (i.topic, tuple(i.key))
        index = shapes.get(shape)
        if index is None:
            index = shapes[shape] = len(shapes)
        items.append((i.value, list(i.key.values()), index, i.timestamp))
    return orjson.dumps((list(shapes), items)).decode()


class CompileError(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def _failure(exc: Exception) -> Failure:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if "interrupted" in first:
        first = "exceeded the time limit"
    elif "out of memory" in first or first == "null":
        # When even the error object cannot be allocated, QuickJS throws null.
        first = "exceeded the memory limit (or threw null)"
    return Failure(first, js_line(text))


class JavaScriptRunner:
    def __init__(self, code: dict[str, str], limits: Limits) -> None:
        self.code = code
        self.limits = limits
        self._chunk = _FIRST_CHUNK
        self._ctx = self._context()

    def _context(self) -> Any:
        ctx = quickjs.Context()
        ctx.set_memory_limit(self.limits.memory_mb * 1024 * 1024)
        ctx.set_time_limit(self.limits.time_ms / 1000)
        for field in ("common_transform", "value_transform", "key_transform", "topic_transform"):
            source = self.code.get(field)
            if source:
                try:
                    ctx.eval(source)
                except quickjs.JSException as exc:
                    raise CompileError(_failure(exc)) from None
        ctx.eval(_DRIVER)
        self._call = ctx.get("__tideflow_call")
        self._batch = ctx.get("__tideflow_batch")
        # Without key and topic functions the batch returns values only (less JSON again).
        self._only_value = bool(ctx.eval("__tideflow_only_value()"))
        return ctx

    def run(self, inputs: list[Input]) -> list[Result]:
        results: list[Result] = []
        for start in range(0, len(inputs), self._chunk):
            chunk = inputs[start : start + self._chunk]
            if len(chunk) == 1:
                results.extend(self._one_by_one(chunk))
                continue
            try:
                outs = self._batch(batch_json(chunk), self._only_value)
            except quickjs.JSException as exc:
                results.extend(self.recover(chunk, exc))
                continue
            results.extend(batch_results(outs, self._only_value))
        return results

    @property
    def only_value(self) -> bool:
        """Whether batch calls return values only (no key or topic function)."""
        return self._only_value

    @property
    def whole_batches(self) -> bool:
        """Whether a batch may go to QuickJS in one call (no overrun made batches shrink)."""
        return self._chunk == _FIRST_CHUNK

    def run_json(self, batch: str) -> str:
        """One QuickJS call on a :func:`batch_json` string; its JSON result (see
        :func:`batch_results`). Raises ``quickjs.JSException`` (then use :meth:`recover`)."""
        return str(self._batch(batch, self._only_value))

    def recover(self, chunk: list[Input], exc: Exception) -> list[Result]:
        """Results of ``chunk`` after its batch call raised ``exc``: the chunk runs again
        record by record so only the faulty record fails, with its own message and line.
        Transforms keep no state between records, so running the others twice changes
        nothing."""
        limit = _failure(exc).message.startswith("exceeded")
        if limit:
            self._ctx = self._context()  # may be left inconsistent
        again = self._one_by_one(chunk)
        if limit and not any(
            isinstance(r, Failure) and r.message.startswith("exceeded") for r in again
        ):
            self._chunk = max(1, self._chunk // 2)
        return again

    def _one_by_one(self, inputs: list[Input]) -> list[Result]:
        results: list[Result] = []
        for item in inputs:
            arg = orjson.dumps((item.value, item.key, item.topic, item.timestamp)).decode()
            try:
                out = orjson.loads(self._call(arg))
            except quickjs.JSException as exc:
                failure = _failure(exc)
                results.append(failure)
                if failure.message.startswith("exceeded"):
                    # An interrupted or starved context may be left inconsistent: start over.
                    self._ctx = self._context()
                continue
            results.append(output_of(out[0], out[1], out[2]))
        return results

    def close(self) -> None:
        self._ctx = None


class JavaScriptWorker(WorkerRunner):
    """JavaScript code run by :class:`JavaScriptRunner` in a worker process
    (:mod:`.javascript_child`): what pipelines use, so QuickJS never holds their GIL.

    A batch travels as :func:`batch_json`, which the worker hands to QuickJS as is; the reply
    is ``B`` + QuickJS's own output, or ``R`` + per-record results after a fault (see the
    worker), so the common case decodes JSON once, here."""

    module = "tideflow.engine.transforms.javascript_child"
    language = "JavaScript"
    _only_value = False

    def _started(self, reply: dict[str, Any]) -> None:
        self._only_value = bool(reply.get("only_value"))

    def _request(self, inputs: list[Input]) -> bytes:
        return batch_json(inputs).encode()

    def _parse(self, data: bytes) -> list[Result]:
        if data[:1] == b"B":
            return batch_results(data[1:], self._only_value)
        return super()._parse(data[1:])

"""The JavaScript transform worker process (run by :class:`~.javascript.JavaScriptWorker`).

Started as ``python -I -m tideflow.engine.transforms.javascript_child``. It runs the code in
QuickJS exactly as :class:`~.javascript.JavaScriptRunner` does in-process (same memory limit
and time limit, same record-by-record re-run of a failing batch), so that QuickJS — which
holds the GIL while it runs — never stalls the pipelines' threads, and its work overlaps with
the pipeline thread's. QuickJS gives the code no file, network or process API; the worker
also forbids new processes and file writes for itself.

Protocol: 4-byte big-endian length + message. ``{"code", "limits"}`` → ``{"ok": true,
"only_value": bool}`` or ``{"error", "line"}`` (JSON); then each batch as
:func:`~.javascript.batch_json` → ``B`` + QuickJS's output for the batch, passed through
undecoded (the common case), or ``R`` + a JSON list of ``[0, value, key, topics]`` /
``[1, message, line]`` per record when the batch call failed and the records were run one by
one (or the batches had to shrink).
"""

from __future__ import annotations

import resource
import struct
import sys
from typing import Any

import orjson
import quickjs

from tideflow.engine.transforms.javascript import CompileError, JavaScriptRunner, batch_inputs
from tideflow.engine.transforms.runtime import Failure, Limits


def _read_bytes(stream: Any) -> bytes:
    head = stream.read(4)
    if len(head) < 4:
        raise SystemExit(0)
    (n,) = struct.unpack(">I", head)
    data: bytes = stream.read(n)
    return data


def _write_bytes(stream: Any, data: bytes) -> None:
    stream.write(struct.pack(">I", len(data)) + data)
    stream.flush()


def _write(stream: Any, doc: Any) -> None:
    _write_bytes(stream, orjson.dumps(doc))


def main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    init = orjson.loads(_read_bytes(stdin))
    limits = Limits(init["limits"]["time_ms"], init["limits"]["memory_mb"])
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    try:
        runner = JavaScriptRunner(init["code"], limits)
    except CompileError as exc:
        _write(stdout, {"error": exc.failure.message, "line": exc.failure.line})
        return
    _write(stdout, {"ok": True, "only_value": runner.only_value})
    while True:
        batch = _read_bytes(stdin)
        if runner.whole_batches:
            try:
                _write_bytes(stdout, b"B" + runner.run_json(batch.decode()).encode())
                continue
            except quickjs.JSException as exc:
                results = runner.recover(batch_inputs(batch), exc)
        else:
            results = runner.run(batch_inputs(batch))
        reply = [
            [1, r.message, r.line] if isinstance(r, Failure) else [0, r.value, r.key, r.topics]
            for r in results
        ]
        _write_bytes(stdout, b"R" + orjson.dumps(reply))


if __name__ == "__main__":
    main()

"""The JavaScript transform worker process (run by :class:`~.javascript.JavaScriptWorker`).

Started as ``python -I -m tideflow.engine.transforms.javascript_child``. It runs the code in
QuickJS exactly as :class:`~.javascript.JavaScriptRunner` does in-process (same memory limit
and time limit, same record-by-record re-run of a failing batch), so that QuickJS — which
holds the GIL while it runs — never stalls the pipelines' threads, and its work overlaps with
the pipeline thread's. QuickJS gives the code no file, network or process API; the worker
also forbids new processes and file writes for itself.

Protocol: that of :mod:`.sandbox_child` (4-byte big-endian length + JSON; ``{"code",
"limits"}`` → ``{"ok": true}`` or ``{"error", "line"}``; then lists of ``[value, key, topic,
ts]`` → lists of ``[0, value, key, topics]`` or ``[1, message, line]``).
"""

from __future__ import annotations

import resource
import struct
import sys
from typing import Any

import orjson

from tideflow.engine.transforms.javascript import CompileError, JavaScriptRunner
from tideflow.engine.transforms.records import Input
from tideflow.engine.transforms.runtime import Failure, Limits


def _read(stream: Any) -> Any:
    head = stream.read(4)
    if len(head) < 4:
        raise SystemExit(0)
    (n,) = struct.unpack(">I", head)
    return orjson.loads(stream.read(n))


def _write(stream: Any, doc: Any) -> None:
    data = orjson.dumps(doc)
    stream.write(struct.pack(">I", len(data)) + data)
    stream.flush()


def main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    init = _read(stdin)
    limits = Limits(init["limits"]["time_ms"], init["limits"]["memory_mb"])
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    try:
        runner = JavaScriptRunner(init["code"], limits)
    except CompileError as exc:
        _write(stdout, {"error": exc.failure.message, "line": exc.failure.line})
        return
    _write(stdout, {"ok": True})
    while True:
        batch = _read(stdin)
        results = runner.run([Input(v, k, t, ts) for v, k, t, ts in batch])
        _write(
            stdout,
            [
                [1, r.message, r.line] if isinstance(r, Failure) else [0, r.value, r.key, r.topics]
                for r in results
            ],
        )


if __name__ == "__main__":
    main()

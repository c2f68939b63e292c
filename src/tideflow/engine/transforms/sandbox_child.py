"""The Python transform worker process (run by :mod:`.python_sandbox`; never imported there).

Started as ``python -I -m tideflow.engine.transforms.sandbox_child``. Before running user code
it limits itself: address space (RLIMIT_AS), no new processes (RLIMIT_NPROC=0), no file
writes (RLIMIT_FSIZE=0), and an audit hook that refuses opening files, sockets, process
creation and importing modules outside an allow-list, for the rest of its life (audit hooks
cannot be removed). User code also gets builtins without ``open``/``eval``/``exec`` and an
``__import__`` that only hands out the pre-imported allow-listed modules.

Protocol on stdin/stdout: 4-byte big-endian length + JSON. First message ``{"code", "limits"}``
→ ``{"ok": true}`` or ``{"error", "line"}``; then a list of ``[value, key, topic, ts]`` → a list
of ``[0, value, key, topic]`` or ``[1, message, line]``.
"""

from __future__ import annotations

import base64
import builtins
import collections
import datetime
import decimal
import functools
import hashlib
import hmac
import itertools
import json
import math
import re
import resource
import signal
import statistics
import string
import struct
import sys
import time
import traceback
import uuid
from typing import Any

import orjson

ALLOWED = {
    m.__name__: m
    for m in (
        base64,
        collections,
        datetime,
        decimal,
        functools,
        hashlib,
        hmac,
        itertools,
        json,
        math,
        re,
        statistics,
        string,
        uuid,
    )
}
_BLOCKED_PREFIXES = (
    "open",
    "socket.",
    "subprocess.",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.kill",
    "os.remove",
    "os.unlink",
    "os.rename",
    "os.mkdir",
    "os.rmdir",
    "os.listdir",
    "os.scandir",
    "os.chdir",
    "os.chmod",
    "os.chown",
    "os.truncate",
    "os.link",
    "os.symlink",
    "os.putenv",
    "os.unsetenv",
    "shutil.",
    "ctypes.",
    "_posixsubprocess.",
    "pty.",
    "fcntl.",
    "mmap.",
    "urllib.",
    "http.",
    "ftplib.",
    "smtplib.",
    "webbrowser.",
    "code.__new__",
    "sys.setprofile",
    "sys.settrace",
    "compile",
    "exec",
)
_REMOVED_BUILTINS = (
    "open",
    "eval",
    "exec",
    "compile",
    "input",
    "breakpoint",
    "exit",
    "quit",
    "help",
    "memoryview",
    "__loader__",
    "__spec__",
)


class _Timeout(BaseException):
    """Per-record time limit (a BaseException so ``except Exception`` in user code can't eat it)."""


class _Sink:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


_armed = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _armed:
        return
    if event == "import" and args and str(args[0]).split(".")[0] not in ALLOWED:
        raise PermissionError(f"import of {args[0]} is not allowed in a transform")
    if event.startswith(_BLOCKED_PREFIXES):
        raise PermissionError(f"{event} is not allowed in a transform")


def _import(
    name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
) -> Any:
    top = name.split(".")[0]
    if level or top not in ALLOWED:
        raise ImportError(f"import of {name} is not allowed in a transform")
    return ALLOWED[top]


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


def _line(exc: BaseException) -> int | None:
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith("<transform"):
            line = frame.lineno
    if (
        line is None
        and isinstance(exc, SyntaxError)
        and exc.filename
        and exc.filename.startswith("<transform")
    ):
        line = exc.lineno
    return line


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _Timeout):
        return "exceeded the time limit"
    if isinstance(exc, MemoryError):
        return "exceeded the memory limit"
    return f"{type(exc).__name__}: {exc}"


# The time limit: a periodic interval timer runs for the whole batch and its handler fails the
# call in progress once that call has run for ``_limit`` seconds. Arming a one-shot timer
# around every call instead costs two setitimer system calls per call (~1.5 µs per record,
# a quarter of the worker's time on a trivial transform). A call is stopped between ``_limit``
# and ``_limit`` + one tick.
_started: float | None = None  # when the call in progress started; None between calls
_limit = 1.0
_TICKS_PER_LIMIT = 4


def _on_alarm(signum: int, frame: Any) -> None:
    started = _started
    if started is not None and time.monotonic() - started >= _limit:
        raise _Timeout


def _load(code: dict[str, str]) -> dict[str, Any]:
    safe = {k: v for k, v in vars(builtins).items() if k not in _REMOVED_BUILTINS}
    safe["__import__"] = _import
    namespace: dict[str, Any] = {"__builtins__": safe, "__name__": "transform"}
    for field in ("common_transform", "value_transform", "key_transform", "topic_transform"):
        source = code.get(field)
        if source:
            exec(builtins.compile(source, f"<transform:{field}>", "exec"), namespace)
    return namespace


def _call(fn: Any, args: list[Any]) -> Any:
    global _started
    _started = time.monotonic()
    try:
        return fn(*args)
    finally:
        _started = None


def main() -> None:
    global _armed, _limit
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr = _Sink()  # user print() goes nowhere
    init = _read(stdin)
    _limit = init["limits"]["time_ms"] / 1000
    tick = _limit / _TICKS_PER_LIMIT
    memory = init["limits"]["memory_mb"] * 1024 * 1024
    signal.signal(signal.SIGALRM, _on_alarm)
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    sys.addaudithook(_audit)
    try:
        namespace = _load(init["code"])
    except BaseException as exc:
        _write(stdout, {"error": _describe(exc), "line": _line(exc)})
        return
    _armed = True
    value_fn = namespace.get("_streamkap_transform")
    key_fn = namespace.get("_streamkap_transform_key")
    topic_fn = namespace.get("_streamkap_transform_topic")
    _write(stdout, {"ok": True})
    while True:
        batch = _read(stdin)
        out: list[Any] = []
        signal.setitimer(signal.ITIMER_REAL, tick, tick)
        for args in batch:
            try:
                value = _call(value_fn, args) if value_fn else args[0]
                key = _call(key_fn, args) if key_fn else None
                topic = _call(topic_fn, args) if topic_fn else None
                out.append([0, value, key, topic])
            except BaseException as exc:  # any failure is this record's
                out.append([1, _describe(exc), _line(exc)])
        signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            data = orjson.dumps(out)  # one serialisation per batch in the common case
        except BaseException:
            data = orjson.dumps([_checked(row) for row in out])
        stdout.write(struct.pack(">I", len(data)) + data)
        stdout.flush()


def _checked(row: list[Any]) -> list[Any]:
    """``row``, or this record's failure when the parent could not read it."""
    try:
        orjson.dumps(row)
    except BaseException as exc:
        return [1, _describe(exc), _line(exc)]
    return row


if __name__ == "__main__":
    main()

"""Transforms in a separate, limited worker process: Python (:mod:`.sandbox_child`) and
JavaScript (:mod:`.javascript_child`).

One round trip per batch. The child enforces the per-record time limit itself (an interval
timer for Python, QuickJS's interrupt for JavaScript); the parent also keeps a deadline for the
whole batch and, when the child overruns it or dies (e.g. stuck inside C code, killed by the
kernel), kills it, starts a fresh one and re-runs the batch one record at a time so only the
guilty record fails. Running in another process, a runaway transform never holds the
pipelines' GIL, and the worker's work overlaps with the pipeline thread's (see ``Chain``).
"""

from __future__ import annotations

import os
import selectors
import struct
import subprocess
import sys
import time
from typing import IO, Any

import orjson

from tideflow.engine.transforms.records import Input
from tideflow.engine.transforms.runtime import Failure, Limits, Result, output_of

_GRACE_S = 2.0  # start-up and IPC slack on top of the per-record limits


class CompileError(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class _Died(Exception):
    """The worker died, or (``overran``) did not answer before the batch's deadline."""

    def __init__(self, overran: bool = False) -> None:
        super().__init__()
        self.overran = overran


class WorkerRunner:
    """A :class:`~.runtime.Runner` whose code runs in a worker process (``module``)."""

    module = "tideflow.engine.transforms.sandbox_child"
    language = "Python"

    def __init__(self, code: dict[str, str], limits: Limits) -> None:
        self.code = code
        self.limits = limits
        self._proc: subprocess.Popen[bytes] | None = None
        self._pending: tuple[list[Input], float] | None = None  # sent, not yet received
        self._sent = False
        self._start()

    def _start(self) -> None:
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0"}
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-m", self.module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )
        init = {
            "code": self.code,
            "limits": {"time_ms": self.limits.time_ms, "memory_mb": self.limits.memory_mb},
        }
        try:
            self._send_bytes(orjson.dumps(init))
            reply = orjson.loads(self._receive_bytes(time.monotonic() + _GRACE_S + 10))
        except _Died:
            self.close()
            raise CompileError(
                Failure(f"the {self.language} transform worker failed to start")
            ) from None
        if "error" in reply:
            self.close()
            raise CompileError(Failure(reply["error"], reply.get("line")))
        self._started(reply)

    def _started(self, reply: dict[str, Any]) -> None:
        """The worker's answer to the init message (subclasses may read settings from it)."""

    def _request(self, inputs: list[Input]) -> bytes:
        """A batch as the worker reads it."""
        return orjson.dumps([(i.value, i.key, i.topic, i.timestamp) for i in inputs])

    def _parse(self, data: bytes) -> list[Result]:
        """The worker's reply to a batch: one result per input."""
        return _results(orjson.loads(data))

    def _send_bytes(self, data: bytes) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        try:
            proc.stdin.write(struct.pack(">I", len(data)) + data)
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise _Died from None

    def _receive_bytes(self, deadline: float) -> bytes:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        head = _read_exact(proc.stdout, 4, deadline)
        (n,) = struct.unpack(">I", head)
        return _read_exact(proc.stdout, n, deadline)

    def run(self, inputs: list[Input]) -> list[Result]:
        self.send(inputs)
        return self.receive()

    def send(self, inputs: list[Input]) -> None:
        """Start a batch; :meth:`receive` gets its results. One batch at a time."""
        if self._pending is not None:  # an earlier batch was abandoned (its caller raised)
            self._pending = None
            self._restart()  # its reply must not be read as this batch's
        per_record = self.limits.time_ms / 1000 * 3  # value, key and topic functions
        self._pending = (inputs, time.monotonic() + per_record * len(inputs) + _GRACE_S)
        self._sent = False
        if inputs:
            try:
                self._send_bytes(self._request(inputs))
                self._sent = True
            except _Died:
                pass  # receive() restarts the worker and re-runs the batch

    def receive(self) -> list[Result]:
        assert self._pending is not None
        (inputs, deadline), self._pending = self._pending, None
        if not inputs:
            return []
        if self._sent:
            try:
                return self._parse(self._receive_bytes(deadline))
            except _Died:
                pass
        self._restart()
        per_record = self.limits.time_ms / 1000 * 3
        results: list[Result] = []
        for item in inputs:
            try:
                results.extend(self._batch([item], per_record + _GRACE_S))
            except _Died as exc:
                self._restart()
                # Overran: e.g. stuck in C code, or a CPU-time limit (QuickJS's) starved of
                # CPU on a loaded machine; otherwise killed, e.g. by the kernel.
                what = "the time limit" if exc.overran else "its limits"
                results.append(Failure(f"exceeded {what}; the worker process was stopped"))
        return results

    def _batch(self, inputs: list[Input], timeout: float) -> list[Result]:
        self._send_bytes(self._request(inputs))
        return self._parse(self._receive_bytes(time.monotonic() + timeout))

    def _restart(self) -> None:
        self.close()
        self._start()

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


class PythonRunner(WorkerRunner):
    """Python code in the :mod:`.sandbox_child` worker."""


def _results(replies: list[Any]) -> list[Result]:
    return [output_of(r[1], r[2], r[3]) if r[0] == 0 else Failure(r[1], r[2]) for r in replies]


def _read_exact(stream: IO[bytes], n: int, deadline: float) -> bytes:
    fd = stream.fileno()
    chunks: list[bytes] = []
    remaining = n
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while remaining:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise _Died(overran=True)
            chunk = os.read(fd, remaining)
            if not chunk:
                raise _Died
            chunks.append(chunk)
            remaining -= len(chunk)
    return b"".join(chunks)

"""Helpers for tests that use the real Kafka broker of scripts/services/kafka.sh."""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.support.proxy import Proxy

BOOTSTRAP = "127.0.0.1:9092"
SASL_BOOTSTRAP = "127.0.0.1:9094"
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "services" / "kafka.sh"
T = TypeVar("T")


def broker(action: str = "start") -> None:
    """Run the service script (start is idempotent and waits until the broker answers)."""
    subprocess.run(["bash", str(SCRIPT), action], check=True, capture_output=True, timeout=300)


def is_up() -> bool:
    return subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True).returncode == 0


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def admin() -> AdminClient:
    return AdminClient({"bootstrap.servers": BOOTSTRAP})


def delete_topics_with_prefix(prefix: str) -> None:
    client = admin()
    names = [t for t in client.list_topics(timeout=10).topics if t.startswith(prefix)]
    if names:
        for future in client.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result()


def read_topic(
    topic: str,
    *,
    count: int,
    isolation: str = "read_committed",
    timeout: float = 30.0,
    settle: float = 0.0,
) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of the first ``count`` messages of partition 0, polled with a deadline.

    ``settle`` keeps polling that long after ``count`` is reached, to catch extra messages.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "group.id": unique("reader"),
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: list[tuple[bytes | None, bytes | None]] = []
    deadline = time.monotonic() + timeout
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            if len(out) >= count:
                settle_until = settle_until or time.monotonic() + settle
                if time.monotonic() >= settle_until:
                    break
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                    continue
                raise AssertionError(f"consume failed: {err}")
            out.append((msg.key(), msg.value()))
    finally:
        consumer.close()
    return out


def wait_until(what: str, check: Callable[[], T | None], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def dest_config(**overrides: Any) -> dict[str, Any]:
    return {"kafka.sink.bootstrap": BOOTSTRAP, **overrides}


def every_kind_table() -> Any:
    """A table with one column of every portable column kind."""
    from tideflow.events import Column, TableSchema

    cols = (
        Column("id", "int4", "int", nullable=False, key=True),
        Column("f", "float8", "float"),
        Column("d", "numeric(12,3)", "decimal"),
        Column("b", "bool", "bool"),
        Column("t", "text", "text", nullable=False),
        Column("by", "bytea", "bytes"),
        Column("dt", "date", "date"),
        Column("tm", "time", "time"),
        Column("ttz", "timetz", "timetz"),
        Column("ts", "timestamp", "timestamp"),
        Column("tstz", "timestamptz", "timestamptz"),
        Column("iv", "interval", "interval"),
        Column("u", "uuid", "uuid"),
        Column("j", "jsonb", "json"),
        Column("ai", "int4[]", "array"),
        Column("an", "numeric[]", "array"),
        Column("e", "mood", "enum"),
        Column("o", "point", "other"),
    )
    return TableSchema("public", "every_kind", cols, ("id",), version=3)


def every_kind_row(i: int, **changes: Any) -> dict[str, Any]:
    import datetime as dt
    from decimal import Decimal

    row: dict[str, Any] = {
        "id": i,
        "f": 1.5 * i,
        "d": Decimal("12345.678") + i,
        "b": i % 2 == 0,
        "t": f'text ü {i} "quoted"',
        "by": bytes([0, 1, 2, 255, i]),
        "dt": dt.date(2024, 2, 29),
        "tm": dt.time(23, 59, 58, 123456),
        "ttz": "10:11:12+02",
        "ts": dt.datetime(2024, 1, 2, 3, 4, 5, 678901),
        "tstz": dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
        "iv": "P1DT2H",
        "u": "6f1c2a5e-6b3c-4f4a-9b5e-0b9a8e7d6c5b",
        "j": '{"a": [1, 2, {"b": null}]}',
        "ai": [1, None, 3],
        "an": [Decimal("1.10"), Decimal("-2")],
        "e": "happy",
        "o": "(1,2)",
    }
    row.update(changes)
    return row


def every_op_events() -> list[Any]:
    """r, c, u, u with an unchanged (TOAST) value, d, t — with nulls and non-finite floats."""
    from tideflow.events import UNCHANGED, ChangeEvent, Op

    table = every_kind_table()
    nulls = {c.name: None for c in table.columns if c.nullable}
    ts = 1_700_000_000_000
    return [
        ChangeEvent(Op.READ, table, None, every_kind_row(1), {"lsn": 100}, ts, 700, True),
        ChangeEvent(Op.CREATE, table, None, every_kind_row(2), {"lsn": 200}, ts + 1, 701),
        ChangeEvent(
            Op.UPDATE,
            table,
            every_kind_row(2),
            every_kind_row(2, **{**nulls, "f": float("inf")}),
            {"lsn": 300},
            ts + 2,
            702,
        ),
        ChangeEvent(
            Op.UPDATE,
            table,
            None,
            every_kind_row(2, j=UNCHANGED, f=float("-inf")),
            {"lsn": 400},
            ts + 3,
            703,
        ),
        ChangeEvent(Op.DELETE, table, every_kind_row(1), None, {"lsn": 500}, ts + 4, 704),
        ChangeEvent(Op.TRUNCATE, table, None, None, {"lsn": 600}, ts + 5, 705),
    ]


class BrokerProxy(Proxy):
    """A cuttable :class:`~tests.support.proxy.Proxy` in front of one broker of this cluster.

    A Kafka client only uses the bootstrap address for its first request: the metadata
    response tells it to connect to the broker's advertised address (127.0.0.1:9092), which
    would bypass a plain proxy. This one rewrites that address in every response (the host is
    followed by the port as a 4-byte integer in Metadata, DescribeCluster and FindCoordinator
    responses alike, so the rewrite keeps every length), so all traffic goes through it and
    ``cut()`` really takes the broker away from the client.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 9092) -> None:
        super().__init__(host, port)
        self._advertised = host.encode() + struct.pack(">i", port)
        self._rewritten = host.encode() + struct.pack(">i", self.port)

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            from_broker = src.getpeername()[:2] == self.target
        except OSError:
            from_broker = False
        if not from_broker:
            super()._pipe(src, dst)
            return
        try:
            while True:
                head = _recv_exact(src, 4)
                if head is None:
                    break
                body = _recv_exact(src, struct.unpack(">i", head)[0])
                if body is None:
                    break
                dst.sendall(head + body.replace(self._advertised, self._rewritten))
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)

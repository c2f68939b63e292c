"""Pure logic of the Kafka connectors: config, topic names, schemas, decoding, positions."""

from __future__ import annotations

import base64
import datetime as dt
from decimal import Decimal
from typing import Any

import orjson
import pytest

from tideflow.connectors.config import validate
from tideflow.connectors.destinations.kafka import schema
from tideflow.connectors.destinations.kafka.config import KafkaDestinationConfig
from tideflow.connectors.destinations.kafka.serializer import Serializer
from tideflow.connectors.destinations.kafka.topics import topic_name
from tideflow.connectors.sources.kafka import position
from tideflow.connectors.sources.kafka.config import KafkaSourceConfig
from tideflow.connectors.sources.kafka.decode import Decoder, Received
from tideflow.engine import positions
from tideflow.errors import Invalid, TerminalError
from tideflow.events import ChangeEvent, Column, Op, TableSchema

BASE = {"kafka.sink.bootstrap": "127.0.0.1:9092"}
TABLE = TableSchema("public", "t", (Column("id", "int4", "int", False, True),), ("id",))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"destination.format": "avro"}, "schema registry"),
        ({"topic.mapping": "public.t"}, "schema.table=topic"),
        ({"topic.partitions": 0}, "at least 1"),
        ({"json.schema.enable": "maybe"}, "json.schema.enable"),
    ],
    ids=["avro", "bad-mapping", "zero-partitions", "bad-bool"],
)
def test_destination_config_rejects(config: dict[str, Any], message: str) -> None:
    with pytest.raises(Invalid, match=message):
        validate(KafkaDestinationConfig, {**BASE, **config})


def test_source_config_rejects_avro() -> None:
    with pytest.raises(Invalid, match="schema registry"):
        validate(KafkaSourceConfig, {"format": "avro"})


def test_destination_config_defaults() -> None:
    cfg = KafkaDestinationConfig.model_validate({**BASE, "json.schema.enable": "true"})
    assert (cfg.format, cfg.json_schema_enable, cfg.partitions, cfg.tombstones_on_delete) == (
        "json",
        True,
        1,
        True,
    )


@pytest.mark.parametrize(
    ("schema_name", "table", "mapping", "expected"),
    [
        ("public", "orders", {}, "p.public.orders.s"),
        ("my schema", "ordérs/2", {}, "p.my_schema.ord_rs_2.s"),
        ("public", "orders", {"public.orders": "custom"}, "custom"),
    ],
    ids=["plain", "sanitised", "mapped"],
)
def test_topic_names(schema_name: str, table: str, mapping: dict[str, str], expected: str) -> None:
    t = TableSchema(schema_name, table, TABLE.columns, TABLE.key)
    assert topic_name(t, "p.", ".s", mapping) == expected


def test_overlong_topic_name_is_terminal() -> None:
    t = TableSchema("s", "x" * 300, TABLE.columns, TABLE.key)
    with pytest.raises(TerminalError, match=r"topic\.mapping"):
        topic_name(t, "", "", {})


def test_array_element_types() -> None:
    def items(source_type: str) -> Any:
        return schema.column_schema(Column("a", source_type, "array"))["items"]["type"]

    assert [items("int4[]"), items("_float8"), items("numeric[]"), items("text[]")] == [
        "int64",
        "float64",
        "string",
        "string",
    ]


def test_keyless_tables_have_null_keys() -> None:
    keyless = TableSchema("public", "log", (Column("msg", "text", "text"),), ())
    event = ChangeEvent(Op.CREATE, keyless, None, {"msg": "x"}, {"lsn": 1}, 0)
    assert Serializer(schemas=True, name="n").key(event, "topic") is None


def _debezium(field: dict[str, Any], value: Any) -> Received:
    fields = [{"field": "id", "type": "int32", "optional": False}, {**field, "field": "v"}]
    row = {"type": "struct", "optional": True, "fields": fields}
    doc = {
        "schema": {
            "type": "struct",
            "fields": [{**row, "field": "before"}, {**row, "field": "after"}],
        },
        "payload": {
            "before": None,
            "after": {"id": 1, "v": value},
            "source": {
                "connector": "postgresql",
                "schema": "public",
                "table": "t",
                "ts_ms": 5,
                "lsn": 42,
                "txId": 9,
                "snapshot": "false",
            },
            "op": "c",
            "ts_ms": 6,
        },
    }
    key = {
        "schema": {"type": "struct", "fields": [{"field": "id", "type": "int32"}]},
        "payload": {"id": 1},
    }
    return Received("srv.public.t", 0, 0, orjson.dumps(key), orjson.dumps(doc), 7)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ({"type": "int32", "name": "io.debezium.time.Date"}, 19782, dt.date(2024, 2, 29)),
        (
            {"type": "int64", "name": "io.debezium.time.MicroTimestamp"},
            1_704_164_645_678_901,
            dt.datetime(2024, 1, 2, 3, 4, 5, 678901),
        ),
        (
            {"type": "int64", "name": "io.debezium.time.NanoTimestamp"},
            1_704_164_645_678_901_000,
            dt.datetime(2024, 1, 2, 3, 4, 5, 678901),
        ),
        (
            {"type": "int64", "name": "io.debezium.time.MicroTime"},
            3_723_000_001,
            dt.time(1, 2, 3, 1),
        ),
        (
            {"type": "string", "name": "io.debezium.time.ZonedTimestamp"},
            "2024-01-02T03:04:05Z",
            dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        ),
        (
            {
                "type": "bytes",
                "name": "org.apache.kafka.connect.data.Decimal",
                "parameters": {"scale": "2"},
            },
            base64.b64encode((-12345).to_bytes(2, "big", signed=True)).decode(),
            Decimal("-123.45"),
        ),
        (
            {"type": "struct", "name": "io.debezium.data.VariableScaleDecimal"},
            {"scale": 1, "value": base64.b64encode(b"\x01\x00").decode()},
            Decimal("25.6"),
        ),
        ({"type": "string", "name": "io.debezium.data.Json"}, '{"a":1}', '{"a":1}'),
    ],
    ids=["date", "micro-ts", "nano-ts", "micro-time", "zoned-ts", "decimal", "var-decimal", "json"],
)
def test_debezium_encodings_decode(field: dict[str, Any], value: Any, expected: Any) -> None:
    event = Decoder(format="json").decode(_debezium(field, value))
    assert event is not None and event.after is not None
    assert event.after["v"] == expected
    assert (event.table.name, event.table.key, event.position, event.txid) == (
        "public.t",
        ("id",),
        {"lsn": 42},
        9,
    )
    assert event.commit_ts_ms == 5


def test_non_json_value_is_a_terminal_error_naming_the_message() -> None:
    with pytest.raises(TerminalError, match=r"t\[0\]@3.*format=string"):
        Decoder(format="json").decode(Received("t", 0, 3, None, b"not json", 0))


def test_positions_order_by_consumed_offsets() -> None:
    older = position.make({"a:0": 5, "b:0": 1})
    newer = position.make({"a:0": 5, "b:0": 2})
    assert positions.before(older, newer)
    assert not positions.before(newer, older)
    assert position.offsets_of(newer) == {"a:0": 5, "b:0": 2}
    assert [(tp.topic, tp.partition, tp.offset) for tp in position.topic_partitions(newer)] == [
        ("a", 0, 5),
        ("b", 0, 2),
    ]

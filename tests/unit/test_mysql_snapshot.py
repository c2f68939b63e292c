"""MySQL snapshot pieces that are pure logic: MySQL filter lexing, signal-table watermarks,
text-protocol values mapped to what the binlog path produces."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from tideflow.connectors.sources.mysql.snapshot import value_converter
from tideflow.engine.snapshot import filters, watermark
from tideflow.events import Message


@pytest.mark.parametrize(
    "predicate",
    ["id > 10", "name LIKE 'O''Brien%'", "`order` = 3 AND vc <> 'a # b'", "id % 10 = 0"],
)
def test_mysql_filter_accepts_plain_predicates(predicate: str) -> None:
    assert filters.check_mysql(predicate) == predicate


@pytest.mark.parametrize(
    ("predicate", "why"),
    [
        ("vc = 'a\\' OR 1 = 1", "backslash"),
        ("id > 0 # rest", "'#'"),
        ("`x'` = 1", "unterminated"),
        ("SLEEP(5) = 0", "SLEEP"),
        ("LOAD_FILE('/etc/passwd') IS NULL", "LOAD_FILE"),
        ("id > 0; DROP TABLE t", "';'"),
    ],
    ids=["backslash", "hash", "backtick-quote", "sleep", "load-file", "semicolon"],
)
def test_mysql_filter_refuses_what_mysql_lexes_differently(predicate: str, why: str) -> None:
    with pytest.raises(filters.FilterError, match=why):
        filters.check_mysql(predicate)


def _signal_message(row: dict[str, object]) -> Message:
    return Message(watermark.SIGNAL_PREFIX, orjson.dumps(row), {"binlog_pos": 4})


@pytest.mark.parametrize("kind", ["low", "high", "blocking"])
def test_signal_row_round_trips_as_a_watermark(kind: watermark.Kind) -> None:
    mark = watermark.Watermark("run:task:3", kind)
    row_id, kind_name, data = watermark.signal_row(watermark.encode(mark))
    assert len(row_id) <= 42  # fits Debezium's signal table
    row = {"id": row_id, "type": kind_name, "data": data}
    assert watermark.decode(_signal_message(row)) == mark
    # binlog_row_metadata=MINIMAL: no column names, values in table order
    unnamed = {"UNKNOWN_COL0": row_id, "UNKNOWN_COL1": kind_name, "UNKNOWN_COL2": data}
    assert watermark.decode(_signal_message(unnamed)) == mark


def test_other_signal_rows_are_not_watermarks() -> None:
    body = watermark.encode(watermark.Watermark("a", "low"))
    other = {"id": "1", "type": "execute-snapshot", "data": body}
    assert watermark.decode(_signal_message(other)) is None
    wrong_kind = {"id": "1", "type": "snapshot-window-close", "data": body}
    assert watermark.decode(_signal_message(wrong_kind)) is None
    assert watermark.decode(Message("other", b"{}", {})) is None


@pytest.mark.parametrize(
    ("column_type", "text_value", "binlog_value"),
    [
        ("bit(1)", b"\x01", True),
        ("bit(1)", b"\x00", False),
        ("bit(12)", b"\x0f\xff", b"\x0f\xff"),
        ("float", 1.1, 1.100000023841858),
        ("double", 1.1, 1.1),
        ("datetime", "0000-00-00 00:00:00", None),
        ("date", "0000-00-00", None),
        ("timestamp(3)", "0000-00-00 00:00:00", datetime(1970, 1, 1, tzinfo=UTC)),
        ("timestamp", datetime(2024, 1, 2, 3, 4, 5), datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("inet4", "10.0.0.1", "10.0.0.1"),
        ("binary(4)", b"ab\0\0", b"ab\0\0"),
    ],
)
def test_text_protocol_values_equal_binlog_values(
    column_type: str, text_value: object, binlog_value: object
) -> None:
    convert = value_converter(column_type)
    assert (convert(text_value) if convert is not None else text_value) == binlog_value

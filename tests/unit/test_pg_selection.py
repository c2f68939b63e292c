"""Config parsing of the postgresql source: selections, column filters, positions, errors."""

from __future__ import annotations

from typing import Any

import pytest

from tideflow.connectors.config import validate
from tideflow.connectors.sources.postgres.config import PostgresSourceConfig
from tideflow.connectors.sources.postgres.connection import classify
from tideflow.connectors.sources.postgres.position import format_lsn, lsn_of, parse_lsn
from tideflow.connectors.sources.postgres.selection import Selection, column_filter
from tideflow.errors import Invalid, TerminalError, TransientError


def config(**extra: Any) -> PostgresSourceConfig:
    base = {
        "database.hostname.user.defined": "db.example",
        "database.user": "cdc",
        "database.password": "x",
        "database.dbname": "shop",
    }
    return PostgresSourceConfig.model_validate({**base, **extra})


def test_selection_dedups_and_drops_tables_covered_by_schemas() -> None:
    cfg = config(
        **{
            "table.include.list.user.defined": "public.a, b, sales.c, public.a",
            "schema.include.list": "sales",
        }
    )
    sel = Selection.of(cfg)
    assert sel.tables == (("public", "a"), ("public", "b"))
    assert sel.schemas == ("sales",)
    assert Selection.of(config()).empty


def test_column_filter() -> None:
    assert column_filter(config()) is None
    keep = column_filter(
        config(
            **{
                "column.include.list.user.defined": "public.a.x, public.a.y",
                "column.exclude.list.user.defined": "public.b.secret, c.pwd",
            }
        )
    )
    assert keep is not None
    assert keep("public", "a", "x") and not keep("public", "a", "z")
    assert keep("public", "b", "anything") and not keep("public", "b", "secret")
    assert not keep("public", "c", "pwd")


def test_heartbeat_interval_key() -> None:
    assert config().heartbeat_interval_ms == 10000
    assert config(**{"heartbeat.interval.ms": "2500"}).heartbeat_interval_ms == 2500


def test_lsn_round_trip() -> None:
    assert format_lsn(parse_lsn("16/B374D848")) == "16/B374D848"
    assert lsn_of({"lsn": 5}) == 5
    assert lsn_of({"lsn": "0/10"}) == 16
    for bad in ({}, {"lsn": -1}, {"lsn": "x"}, {"lsn": True}, {"lsn": 1.5}):
        with pytest.raises(TerminalError):
            lsn_of(bad)


@pytest.mark.parametrize(
    ("message", "error", "text"),
    [
        (
            'connection to server at "h", port 5432 failed: FATAL:  password authentication '
            'failed for user "cdc"',
            TerminalError,
            "password authentication failed for user 'cdc' at db.example:5432",
        ),
        (
            'connection to server at "h", port 5432 failed: Connection refused\n\tIs the server',
            TransientError,
            "cannot reach Postgres at db.example:5432: Connection refused",
        ),
        ('FATAL:  database "shop" does not exist', TerminalError, "database 'shop' does not exist"),
        (
            "FATAL:  must be superuser or replication role to start walsender",
            TerminalError,
            "ALTER ROLE cdc WITH REPLICATION",
        ),
        (
            'FATAL:  no pg_hba.conf entry for replication connection from host "1.2.3.4"',
            TerminalError,
            "host replication cdc",
        ),
        ("server closed the connection unexpectedly", TransientError, "cannot reach"),
        ('replication slot "s" is active for PID 42', TransientError, "holds the slot"),
    ],
)
def test_classify(message: str, error: type[Exception], text: str) -> None:
    result = classify(config(), message)
    assert isinstance(result, error)
    assert text in result.message


@pytest.mark.parametrize("name", ["Upper", "with-dash", "", "x" * 64])
def test_slot_name_must_be_a_valid_postgres_slot_name(name: str) -> None:
    with pytest.raises(Invalid, match=r"config key 'slot\.name'.*lower-case letters"):
        validate(PostgresSourceConfig, {**config().model_dump(by_alias=True), "slot.name": name})

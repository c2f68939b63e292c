"""Widened source columns reach the Postgres destination: real pgoutput Relation messages from
the postgresql source, applied by the postgresql destination, compared by checksum."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.test_pg_destination import config as dest_config
from tests.integration.test_pg_source import changes, commits, make_config, poll_until, sql
from tests.support import pg
from tideflow.connectors.destinations.postgres.destination import PostgresDestination
from tideflow.connectors.sources.postgres.source import PostgresSource
from tideflow.engine.errors import PoisonRecord
from tideflow.events import Batch, Record

pytestmark = pytest.mark.integration

COLUMNS = "id, s, n, v, r, a"


@pytest.fixture
def dbs() -> Iterator[tuple[str, str]]:
    with pg.temp_database("tfwsrc") as src, pg.temp_database("tfwdst") as dst:
        yield src, dst


class Pipe:
    """A source streaming into a destination, one batch per transaction seen."""

    def __init__(self, src_db: str, dst_db: str, **dest: Any) -> None:
        self.source = PostgresSource(
            make_config(src_db, **{"heartbeat.enabled": False}), name="widen"
        )
        self.dest = PostgresDestination(dest_config(dst_db, **dest), name="widen")
        self.source.open(None)
        self.dest.open()

    def sync(self, transactions: int) -> None:
        """Stream ``transactions`` commits into the destination."""
        got = poll_until(self.source, lambda r: len(commits(r)) >= transactions)
        self.write(got)

    def write(self, records: list[Record]) -> None:
        self.dest.write(Batch(changes(records), commits(records)[-1].position))

    def close(self) -> None:
        self.dest.close()
        self.source.close()
        self.source.drop(force=True)


@pytest.fixture
def pipe(dbs: tuple[str, str]) -> Iterator[Pipe]:
    src, dst = dbs
    sql(
        src,
        "CREATE TABLE t (id smallint PRIMARY KEY, s smallint, n numeric(6,2), v varchar(5),"
        " r real, a int2[])",
    )
    p = Pipe(src, dst)
    try:
        yield p
    finally:
        p.close()


def same(src: str, dst: str, columns: str = COLUMNS) -> None:
    expected = pg.table_checksum(src, "public.t", columns)
    assert pg.table_checksum(dst, "dst.t", columns) == expected
    assert expected[0] > 0


def dest_types(dst: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(pg.dsn(dst)) as conn:
        rows = conn.execute(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'dst.t'::regclass AND attnum > 0 AND NOT attisdropped"
        ).fetchall()
    return {str(name): str(type_) for name, type_ in rows}


def test_widened_source_columns_are_widened_at_the_destination(
    dbs: tuple[str, str], pipe: Pipe
) -> None:
    src, dst = dbs
    sql(src, "INSERT INTO t VALUES (1, 32767, 9999.99, 'abcde', 1.5, '{1,2}')")
    pipe.sync(1)
    same(src, dst)

    sql(
        src,
        "ALTER TABLE t ALTER COLUMN id TYPE integer, ALTER COLUMN s TYPE integer,"
        " ALTER COLUMN n TYPE numeric(12,4), ALTER COLUMN v TYPE varchar(20),"
        " ALTER COLUMN r TYPE double precision, ALTER COLUMN a TYPE int4[]",
        "INSERT INTO t VALUES (40000, 2000000000, 12345678.1234, 'twenty chars long ok',"
        " 1.000000000001, '{2000000000}')",
        "UPDATE t SET s = -2000000000, n = 0.0001 WHERE id = 1",
    )
    pipe.sync(2)
    same(src, dst)

    sql(
        src,
        "ALTER TABLE t ALTER COLUMN s TYPE bigint, ALTER COLUMN n TYPE numeric,"
        " ALTER COLUMN v TYPE text",
        "INSERT INTO t VALUES (3, 9000000000000000000, 1e40, repeat('x', 500), 2, NULL)",
    )
    pipe.sync(1)
    same(src, dst)
    types = dest_types(dst)
    assert (types["id"], types["s"], types["n"], types["r"], types["a"]) == (
        "integer",
        "bigint",
        "numeric",
        "double precision",
        "integer[]",
    )


def test_a_narrowed_source_column_keeps_the_wide_destination_column(
    dbs: tuple[str, str], pipe: Pipe
) -> None:
    src, dst = dbs
    sql(
        src,
        "ALTER TABLE t ALTER COLUMN s TYPE bigint",
        "INSERT INTO t VALUES (1, 9000000000000000000, 1, 'a', 1, NULL)",
    )
    pipe.sync(1)
    sql(
        src,
        "DELETE FROM t",
        "ALTER TABLE t ALTER COLUMN s TYPE smallint, ALTER COLUMN n TYPE numeric(4,1)",
        "INSERT INTO t VALUES (2, 7, 1.5, 'b', 1, NULL)",
    )
    pipe.sync(2)
    same(src, dst, "id, s, trim_scale(n), v, r, a")  # the wider scale shows 1.5 as 1.50
    assert dest_types(dst)["s"] == "bigint"
    assert dest_types(dst)["n"] == "numeric(6,2)"


def test_a_change_to_another_family_refuses_only_rows_that_do_not_fit(
    dbs: tuple[str, str], pipe: Pipe
) -> None:
    """smallint → text at the source: the destination column stays smallint; a value it
    cannot hold is a poison record naming the column (dead-lettered or halting by policy)."""
    src, dst = dbs
    sql(src, "INSERT INTO t VALUES (1, 1, 1, 'a', 1, NULL)")
    pipe.sync(1)
    sql(
        src,
        "ALTER TABLE t ALTER COLUMN s TYPE text",
        "INSERT INTO t VALUES (2, '42', 1, 'b', 1, NULL)",
        "INSERT INTO t VALUES (3, 'forty-two', 1, 'c', 1, NULL)",
    )
    got = poll_until(pipe.source, lambda r: len(commits(r)) >= 2)
    with pytest.raises(PoisonRecord) as info:
        pipe.write(got)
    (letter,) = info.value.letters
    assert letter.event.after is not None and letter.event.after["id"] == 3
    assert "smallint" in letter.error and "forty-two" in letter.error
    assert dest_types(dst)["s"] == "smallint"

"""Binary snapshot chunks (ADR 0005) on real Postgres servers.

A chunk read with ``COPY ... (FORMAT binary)`` decodes to exactly the rows, keys and progress
keys the COPY text of the same rows gives (every type binary chunks carry, NULLs, BC and
infinite times, numeric edge cases, escapes); the Postgres destination loads it as it is, with
the metadata its per-row path writes, replays it without a visible effect, and takes it row
by row where the binary form cannot load (another column type, a changed metadata default).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.integration.test_pg_destination import destinations
from tests.support import api, pg
from tideflow.connectors.sources.postgres.config import PostgresSourceConfig
from tideflow.connectors.sources.postgres.snapshot import PostgresChunkReader
from tideflow.engine.snapshot.reader import ChunkRows
from tideflow.events import Batch, SnapshotChunk

_TABLE = """
CREATE TABLE public.bt (
    id bigint PRIMARY KEY, i2 smallint, i4 int, b bool, t text, vc varchar(20), bc char(5),
    nm name, f8 float8, d date, ts timestamp, tstz timestamptz, n numeric,
    n2 numeric(12, 2), u uuid, jb jsonb, by bytea
)
"""
_COLUMNS = "i2, i4, b, t, vc, bc, nm, f8, d, ts, tstz, n, n2, u, jb, by"
_EDGES: list[tuple[Any, ...]] = [
    (1, *[None] * 16),
    (2, -32768, 2147483647, True, "tab\there\nnl\\back ünï ✓", "", "ab", "name",
     "Infinity", "0044-03-15 BC", "10000-01-01 00:00:00", "0001-01-01 00:00:00+00",
     "-123456789012345678901234567890.000000000000000000001", "-0.50",
     "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", '{"b": 1, "a": "x"}', b"\x00\xff\x10"),
    (3, 32767, -2147483648, False, "\\N", "x" * 20, "abcde", "", "-0", "infinity",
     "-infinity", "infinity", "Infinity", "0.00", None, "null", b""),
    (4, 0, 0, None, "", None, None, None, "1e300", "2000-01-01", "1999-12-31 23:59:59.5",
     "2024-01-01 00:00:00.5+00", "0.0000001", "9999999999.99", None, '[1, "2", {}]', None),
    (5, 1, -1, True, "\r\x0b\x0c\x08", "q", "z", "n", "0.1", "1999-12-31",
     "2024-02-29 23:59:59.999999", "1970-01-01 00:00:00+00", "100000000", "-0.01", None,
     "{}", b"x"),
    (6, 2, 2, True, "t", "v", "c", "n", "-1.5e-300", "-infinity", "infinity",
     "-infinity", "-Infinity", "0", None, None, None),
    (7, 3, 3, False, "t", "v", "c", "n", "123.456", "4713-11-24 BC",
     "0001-12-31 23:59:59 BC", "294276-12-31 23:59:59.999999+00", "NaN", "1", None, None,
     None),
]  # fmt: skip
_EXTRA = range(100, 2600)  # enough rows for the destination to load in parallel parts


@pytest.fixture(scope="module")
def source_db() -> Iterator[str]:
    with pg.temp_database("binsrc") as src:
        with psycopg.connect(pg.dsn(src), autocommit=True) as conn:
            conn.execute(_TABLE)
            # interval: no binary decoder; json, oid: the destination maps them to jsonb and
            # bigint, which read another binary form
            for kind, value in (("interval", "1 day"), ("json", "{}"), ("oid", "7")):
                conn.execute(f"CREATE TABLE public.other_{kind} (id int PRIMARY KEY, v {kind})")
                conn.execute(f"INSERT INTO public.other_{kind} VALUES (1, %s)", (value,))
            marks = ", ".join(["%s"] * 17)
            for row in _EDGES:
                conn.execute(f"INSERT INTO public.bt (id, {_COLUMNS}) VALUES ({marks})", row)
            conn.execute(
                f"INSERT INTO public.bt (id, {_COLUMNS}) SELECT g, g % 30000, g * 7, g % 2 = 0,"
                " 'row ' || g, 'v' || g, 'c', 'nm', g / 7.0, DATE '2020-01-01' + g,"
                " TIMESTAMP '2020-01-01' + g * INTERVAL '1 minute',"
                " TIMESTAMPTZ '2020-01-01 00:00:00+00' + g * INTERVAL '1.5 second',"
                " g / 3.0, g / 100.0, md5(g::text)::uuid,"
                " jsonb_build_object('g', g), int8send(g)"
                f" FROM generate_series({_EXTRA.start}, {_EXTRA.stop - 1}) g"
            )
        yield src


def _read(
    src: str,
    binary: bool,
    table: str = "public.bt",
    bounds: tuple[tuple[str, ...] | None, tuple[str, ...] | None] = (None, None),
    where: str | None = None,
) -> ChunkRows:
    config = PostgresSourceConfig.model_validate(api.pg_source_config(src, table))
    reader = PostgresChunkReader(config)
    reader.binary_chunks = binary
    try:
        plan = reader.plan(table, None)
        return reader.read_chunk(plan, bounds[0], bounds[1], where)
    finally:
        reader.close()


def _chunk(read: ChunkRows) -> SnapshotChunk:
    assert read.chunk is not None
    return dataclasses.replace(read.chunk, commit_ts_ms=1_700_000_000_123)


@pytest.mark.parametrize(
    ("bounds", "where"),
    [
        ((None, None), None),
        ((("3",), ("150",)), None),
        ((("2000",), None), None),
        ((None, None), "id < 10 OR id % 97 = 0"),
        ((("9999",), None), None),
    ],
    ids=["all", "bounded", "to-the-end", "filtered", "empty"],
)
def test_binary_chunk_decodes_as_the_text_chunk(
    source_db: str, bounds: tuple[Any, Any], where: str | None
) -> None:
    text, binary = (
        _read(source_db, False, bounds=bounds, where=where),
        _read(source_db, True, bounds=bounds, where=where),
    )
    tc, bc = _chunk(text), _chunk(binary)
    assert not tc.binary and bc.binary
    assert bc.rows == tc.rows and bc.columns == tc.columns
    assert binary.last == text.last
    # repr: NaN equals itself, and a numeric's scale (1.50 vs 1.5) counts
    assert [repr(bc.decode(x)) for x in bc.lines()] == [repr(tc.decode(x)) for x in tc.lines()]
    assert [bc.key(x) for x in bc.lines()] == [tc.key(x) for x in tc.lines()]
    assert [repr(e.after) for e in bc.events()] == [repr(e.after) for e in tc.events()]


@pytest.mark.parametrize("kind", ["interval", "json", "oid"])
def test_a_table_with_another_type_is_read_as_text(source_db: str, kind: str) -> None:
    read = _read(source_db, True, table=f"public.other_{kind}")
    assert read.chunk is not None and not read.chunk.binary and read.chunk.rows == 1


def _dest_rows(dbname: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg.dsn(dbname)) as conn:
        return conn.execute(sql).fetchall()


def _same_contents(src: str, dst: str, table: str = "dst.bt") -> None:
    query = f"SELECT ROW(id, {_COLUMNS})::text FROM {{}} ORDER BY id"  # as text: BC dates
    assert _dest_rows(dst, query.format(table)) == _dest_rows(src, query.format("public.bt"))


@pytest.fixture
def dest_db() -> Iterator[str]:
    with pg.temp_database("bindst") as name:
        yield name


def test_destination_loads_a_binary_chunk_and_replays_it_unchanged(
    source_db: str, dest_db: str
) -> None:
    chunk = _chunk(_read(source_db, True))
    assert chunk.rows == len(_EDGES) + len(_EXTRA) and chunk.binary
    with destinations(dest_db) as make:
        dest = make(**{"delete.soft.user.defined": True})
        assert dest._write_chunk(chunk)  # loaded as it is, not row by row
        _same_contents(source_db, dest_db)
        meta = _dest_rows(
            dest_db, "SELECT DISTINCT __source_ts_ms, __source_lsn, __deleted FROM dst.bt"
        )
        assert meta == [(chunk.commit_ts_ms, None, False)]
        # Replayed (a crash before the checkpoint) with a later time: the upsert path.
        again = dataclasses.replace(chunk, commit_ts_ms=chunk.commit_ts_ms + 5)
        assert dest._write_chunk(again)
        _same_contents(source_db, dest_db)
        meta = _dest_rows(dest_db, "SELECT DISTINCT __source_ts_ms FROM dst.bt")
        assert meta == [(again.commit_ts_ms,)]
    # Outside a snapshot load the default leaves the time NULL, as before.
    with psycopg.connect(pg.dsn(dest_db)) as conn:
        conn.execute("INSERT INTO dst.bt (id) VALUES (-1)")
        row = conn.execute("SELECT __source_ts_ms FROM dst.bt WHERE id = -1").fetchone()
        assert row == (None,)


def test_another_column_type_or_default_takes_the_chunk_row_by_row(
    source_db: str, dest_db: str
) -> None:
    chunk = _chunk(_read(source_db, True))
    with psycopg.connect(pg.dsn(dest_db), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA dst")
        conn.execute(_TABLE.replace("public.bt", "dst.bt").replace("i4 int", "i4 bigint"))
        conn.execute("CREATE TABLE dst.bt2 (LIKE dst.bt)")
    with destinations(dest_db) as make:
        dest = make()
        assert not dest._write_chunk(chunk)  # i4 is bigint here: binary int4 cannot load
        dest.write(Batch(chunk=chunk))
        _same_contents(source_db, dest_db)
        assert _dest_rows(dest_db, "SELECT DISTINCT __source_ts_ms FROM dst.bt") == [
            (chunk.commit_ts_ms,)
        ]


def test_an_older_table_gets_the_time_default_and_a_user_default_is_kept(
    source_db: str, dest_db: str
) -> None:
    chunk = _chunk(_read(source_db, True))
    for default, binary in (("DROP DEFAULT", True), ("SET DEFAULT 7", False)):
        with psycopg.connect(pg.dsn(dest_db), autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS dst.bt")
        with destinations(dest_db) as make:
            make()._write_chunk(chunk)  # creates the table
        with psycopg.connect(pg.dsn(dest_db), autocommit=True) as conn:
            conn.execute("TRUNCATE dst.bt")
            conn.execute(f"ALTER TABLE dst.bt ALTER __source_ts_ms {default}")
        with destinations(dest_db) as make:
            dest = make()
            # No default (a table from before binary chunks): the catalogue gives it ours.
            # A default of the user's is not ours to rely on: row by row.
            assert dest._write_chunk(chunk) is binary
            dest.write(Batch(chunk=chunk))
        _same_contents(source_db, dest_db)
        assert _dest_rows(dest_db, "SELECT DISTINCT __source_ts_ms FROM dst.bt") == [
            (chunk.commit_ts_ms,)
        ]

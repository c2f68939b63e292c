"""Chunk bounds of Postgres snapshots on a real server: a dense one-column integer primary key
is cut by key value (no query reading a chunk's worth of keys per bound), anything else by row
count; either way the chunks cover the table once and hold at most ``size`` rows."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.support import api, pg
from tideflow.connectors.sources.postgres.config import PostgresSourceConfig
from tideflow.connectors.sources.postgres.snapshot import PostgresChunkReader
from tideflow.engine.snapshot.reader import TablePlan, TextKey

SIZE = 1000


@pytest.fixture
def src() -> Iterator[str]:
    with pg.temp_database("bounds") as name:
        with psycopg.connect(pg.dsn(name), autocommit=True) as conn:
            conn.execute("CREATE TABLE public.dense (id int PRIMARY KEY, v text)")
            conn.execute("INSERT INTO public.dense SELECT g, 'v' FROM generate_series(1, 10000) g")
            conn.execute("CREATE TABLE public.sparse (id bigint PRIMARY KEY)")
            conn.execute("INSERT INTO public.sparse SELECT g * 10 FROM generate_series(1, 5000) g")
            conn.execute("CREATE TABLE public.named (k text PRIMARY KEY)")
            conn.execute("INSERT INTO public.named SELECT 'k' || g FROM generate_series(1, 3000) g")
            conn.execute(  # never analyzed
                "CREATE TABLE public.fresh (id int PRIMARY KEY) WITH (autovacuum_enabled = off)"
            )
            conn.execute("ANALYZE public.dense, public.sparse, public.named")
            conn.execute("INSERT INTO public.fresh SELECT generate_series(1, 3000)")
        yield name


@pytest.fixture
def reader(src: str) -> Iterator[PostgresChunkReader]:
    config = PostgresSourceConfig.model_validate(api.pg_source_config(src, "public.dense"))
    r = PostgresChunkReader(config)
    yield r
    r.close()


def _bounds(
    reader: PostgresChunkReader, plan: TablePlan, predicate: str | None = None
) -> list[TextKey | None]:
    out: list[TextKey | None] = []
    after: TextKey | None = None
    while True:
        upto = reader.boundary(plan, after, SIZE, predicate)
        out.append(upto)
        if upto is None:
            return out
        after = upto


def _covers_once(reader: PostgresChunkReader, plan: TablePlan, bounds: list[TextKey | None]) -> int:
    """Read every chunk; each holds at most SIZE rows, together each row once."""
    seen: list[object] = []
    after: TextKey | None = None
    for upto in bounds:
        chunk = reader.read_chunk(plan, after, upto, None).chunk
        assert chunk is not None and chunk.rows <= SIZE
        seen += [chunk.key(x) for x in chunk.lines()]
        after = upto
    assert len(seen) == len(set(seen))
    return len(seen)


def test_a_dense_integer_key_is_cut_by_value(reader: PostgresChunkReader, src: str) -> None:
    plan = reader.plan("public.dense", None)
    bounds = _bounds(reader, plan)
    assert bounds == [(str(n),) for n in range(1000, 10000, 1000)] + [None]
    assert _covers_once(reader, plan, bounds) == 10000
    # Rows added past the highest key once bounds were cut: the bounds go on to cover them.
    with psycopg.connect(pg.dsn(src), autocommit=True) as conn:
        conn.execute("INSERT INTO public.dense SELECT g, 'v' FROM generate_series(10001, 12500) g")
    assert reader.boundary(plan, ("9000",), SIZE, None) == ("10000",)
    assert reader.boundary(plan, ("11000",), SIZE, None) == ("12000",)
    assert reader.boundary(plan, ("12000",), SIZE, None) is None
    # Everything deleted meanwhile: the next chunk is the last.
    with psycopg.connect(pg.dsn(src), autocommit=True) as conn:
        conn.execute("DELETE FROM public.dense")
    assert reader.boundary(plan, ("12000",), SIZE, None) is None


@pytest.mark.parametrize(
    ("table", "predicate", "rows"),
    [
        ("public.sparse", None, 5000),  # a tenth of the value range used
        ("public.named", None, 3000),  # not an integer
        ("public.fresh", None, 3000),  # no row estimate yet
        ("public.dense", "v = 'v'", 10000),  # filtered: density unknown
    ],
    ids=["sparse", "text-key", "no-estimate", "filtered"],
)
def test_other_tables_are_cut_by_row_count(
    reader: PostgresChunkReader, table: str, predicate: str | None, rows: int
) -> None:
    plan = reader.plan(table, None)
    bounds = _bounds(reader, plan, predicate)
    # A bound per SIZE rows, then the (here empty) rest: one more than cutting by value gives.
    assert len(bounds) == rows // SIZE + 1
    assert _covers_once(reader, plan, bounds) == rows
    if table == "public.sparse":
        assert bounds[0] == ("10000",)  # the key of the 1000th row, not 1000 values on

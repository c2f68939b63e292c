"""A source workload covering every mapped Postgres type, driven by pgbench or directly.

The same table definition is used by end-to-end tests, chaos tests and benchmarks; contents are
compared between source and destination with checksums over a normalised text form.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.support import pg

SCHEMA = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TABLE public.items (
    id bigint PRIMARY KEY,
    i2 smallint,
    i4 integer,
    n numeric(30, 10),
    f double precision,
    t text,
    vc varchar(40),
    b boolean,
    d date,
    tm time,
    ts timestamp,
    tstz timestamptz,
    iv interval,
    u uuid,
    j json,
    jb jsonb,
    by bytea,
    ia integer[],
    ta text[],
    m mood,
    p posint,
    big text
);
ALTER TABLE public.items ALTER COLUMN big SET STORAGE EXTERNAL;
"""

# Normalised text of every column so that compatible destination types compare equal
# (json vs jsonb, float formatting).
COLUMNS = (
    "id, i2, i4, n, f::numeric(40,6)::text AS f, t, vc, b, d, tm, ts, tstz, iv, u, "
    "j::jsonb::text AS j, jb::text AS jb, encode(by, 'hex') AS by, ia, ta, m::text AS m, "
    "p::int AS p, md5(big) AS big"
)

ROW_VALUES = (
    ":id, (:id % 30000)::smallint, (:id * 7)::int, (:id * 1.0000000001)::numeric(30,10), "
    ":id / 3.0, 'text ' || :id, 'vc' || :id, (:id % 2 = 0), date '2024-01-01' + (:id % 1000)::int, "
    "time '12:00' + (:id % 3600) * interval '1 second', timestamp '2024-01-01' + :id * "
    "interval '1 minute', timestamptz '2024-01-01 00:00+00' + :id * interval '1 second', "
    "(:id % 100) * interval '1 day 2 hours', md5(:id::text)::uuid, "
    "json_build_object('id', :id, 'tags', json_build_array('a', 'b')), "
    "jsonb_build_object('k', :id), decode(md5(:id::text), 'hex'), ARRAY[:id, :id + 1], "
    "ARRAY['x' || :id, 'quote\"s', NULL], (ARRAY['sad','ok','happy'])[1 + :id % 3]::mood, "
    "(1 + :id % 1000)::int, "
    "CASE WHEN :id % 50 = 0 THEN repeat(md5(:id::text), 400) ELSE 'small' END"
)

PGBENCH_SCRIPT = f"""
\\set id random(1, 20000)
\\set id2 random(1, 20000)
\\set id3 random(1, 20000)
BEGIN;
INSERT INTO public.items VALUES ({ROW_VALUES}) ON CONFLICT (id) DO UPDATE SET
  i4 = excluded.i4 + 1, t = excluded.t || ' upd', n = excluded.n + 1, jb = excluded.jb;
UPDATE public.items SET i2 = (i2 + 1) % 30000, tstz = now() WHERE id = :id2;
DELETE FROM public.items WHERE id = :id3 AND i4 % 5 = 0;
END;
"""


# The same columns in types a snapshot reads as binary COPY (ADR 0005): the values the
# workload writes still fit (assignment casts to text, json to jsonb, the domain's integer).
_PLAIN_TYPES = {
    "    tm time,": "    tm text,",
    "    iv interval,": "    iv text,",
    "    j json,": "    j jsonb,",
    "    ia integer[],": "    ia text,",
    "    ta text[],": "    ta text,",
    "    m mood,": "    m text,",
    "    p posint,": "    p integer,",
}
PLAIN_SCHEMA = SCHEMA
for _old, _new in _PLAIN_TYPES.items():
    assert _old in PLAIN_SCHEMA, _old
    PLAIN_SCHEMA = PLAIN_SCHEMA.replace(_old, _new)


def create_schema(dbname: str, *, plain: bool = False) -> None:
    """Create ``public.items``; ``plain``: only columns of types binary snapshot chunks carry."""
    with psycopg.connect(pg.dsn(dbname), autocommit=True) as conn:
        conn.execute(PLAIN_SCHEMA if plain else SCHEMA)


def insert_range(dbname: str, start: int, count: int) -> None:
    """Insert ids [start, start + count) in one transaction (a large transaction)."""
    values = ROW_VALUES.replace(":id", "g").replace("%", "%%")
    with psycopg.connect(pg.dsn(dbname)) as conn:
        conn.execute(
            f"INSERT INTO public.items SELECT {values} "
            "FROM generate_series(%s::bigint, %s::bigint) g "
            "ON CONFLICT (id) DO NOTHING",
            (start, start + count - 1),
        )


def touch_toast_rows(dbname: str) -> None:
    """Update rows with a TOASTed value without touching it: pgoutput sends it as unchanged."""
    with psycopg.connect(pg.dsn(dbname)) as conn:
        conn.execute("UPDATE public.items SET i4 = i4 + 1000 WHERE length(big) > 8000")


def run_pgbench(
    dbname: str,
    *,
    seconds: int | None = None,
    transactions: int | None = None,
    clients: int = 2,
    rate: int | None = None,
) -> subprocess.CompletedProcess[str]:
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(PGBENCH_SCRIPT)
        script = f.name
    args = [
        "pgbench",
        "-n",
        "-h",
        pg.HOST,
        "-p",
        str(pg.PORT),
        "-U",
        pg.USER,
        "-c",
        str(clients),
        "-j",
        str(clients),
        "-f",
        script,
    ]
    if seconds is not None:
        args += ["-T", str(seconds)]
    if transactions is not None:
        args += ["-t", str(transactions)]
    if rate is not None:
        args += ["-R", str(rate)]
    try:
        return subprocess.run(
            [*args, dbname],
            env={**os.environ, "PGPASSWORD": pg.PASSWORD},
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        Path(script).unlink(missing_ok=True)


def checksum(dbname: str, schema: str = "public", table: str = "items") -> tuple[int, str]:
    return pg.table_checksum(dbname, f'"{schema}"."{table}"', COLUMNS, order_by="id")

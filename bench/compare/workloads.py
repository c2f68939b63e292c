"""Source-side workloads and the source's expected state.

A streaming workload is written once per repetition into a fresh database, after one
publication per contender and a template slot were created; each contender then replays the
identical WAL from its own copy of the template slot (``pg_copy_logical_replication_slot``).
Publications must exist before the changes are written: pgoutput resolves them with the
historic catalog at each change's position.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
from tests.support import pg

from bench.run import INSERT, TABLE, insert_rows

BENCH_TABLE = "public.bench"
# (column, kind) in key order; kinds drive how a sink value is normalised in verify.py.
BENCH_COLUMNS = [
    ("id", "int"),
    ("account", "int"),
    ("amount", "dec"),
    ("note", "str"),
    ("created", "ts"),
]
SNAP_TABLE = "public.snap"
SNAP_COLUMNS = [
    ("id", "int"),
    ("account", "int"),
    ("amount", "dec"),
    ("status", "str"),
    ("note", "str"),
    ("created", "ts"),
]

# One transaction per loop iteration: 60 % inserts of new ids, 30 % updates and 10 % deletes of
# earlier ids (an update or delete of an already deleted id changes nothing and is not counted).
MIX_PROCEDURE = """
CREATE PROCEDURE public.bench_mix(n int, INOUT ins bigint, INOUT upd bigint, INOUT del bigint)
LANGUAGE plpgsql AS $$
DECLARE
  i int;
  next_id bigint := 1;
  k bigint;
  c int;
BEGIN
  FOR i IN 1..n LOOP
    IF i % 10 < 6 OR next_id < 10 THEN
      INSERT INTO public.bench (id, account, amount, note)
      VALUES (next_id, next_id % 1000, (next_id % 100000) / 100.0, repeat(md5(next_id::text), 3));
      next_id := next_id + 1;
      ins := ins + 1;
    ELSIF i % 10 < 9 THEN
      k := 1 + (i::bigint * 7919) % (next_id - 1);
      UPDATE public.bench SET amount = amount + 1, account = account + 1,
        note = repeat(md5((k + i)::text), 3) WHERE id = k;
      GET DIAGNOSTICS c = ROW_COUNT;
      upd := upd + c;
    ELSE
      k := 1 + (i::bigint * 104729) % (next_id - 1);
      DELETE FROM public.bench WHERE id = k;
      GET DIAGNOSTICS c = ROW_COUNT;
      del := del + c;
    END IF;
    COMMIT;
  END LOOP;
END $$
"""


@dataclass
class Stream:
    """A written workload that contenders replay: database, publications, template slot."""

    db: str
    publications: dict[str, str]
    template: str
    end_lsn: str = ""
    expected: dict[str, int] = field(default_factory=dict)  # change events by op c/u/d

    @property
    def events(self) -> int:
        return sum(self.expected.values())

    def slot_for(self, contender: str) -> str:
        """A fresh copy of the template slot for one contender (dropped with the database)."""
        slot = f"cmp_{contender}_{time.time_ns() % 10**9}"
        with psycopg.connect(pg.dsn(self.db), autocommit=True) as conn:
            conn.execute("SELECT pg_copy_logical_replication_slot(%s, %s)", (self.template, slot))
        return slot

    def drop_slot(self, slot: str) -> None:
        with psycopg.connect(pg.dsn(self.db), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                "WHERE slot_name = %s AND active_pid IS NOT NULL",
                (slot,),
            )
            deadline = time.monotonic() + 30
            while True:
                try:
                    conn.execute(
                        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                        "WHERE slot_name = %s",
                        (slot,),
                    )
                    return
                except psycopg.errors.ObjectInUse:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)


@contextmanager
def stream(
    contenders: list[str], write: Callable[[str], dict[str, int]], *, sentinel: bool = True
) -> Iterator[Stream]:
    """A fresh database with the bench table, one publication per contender and a template
    slot, then ``write(db)`` (returns the expected events by op). Dropped afterwards.

    With ``sentinel``, one more row (id 0) is inserted last, and ``end_lsn`` is the WAL insert
    position taken inside its transaction before the insert: every change of the workload is
    before it and the sentinel's first record after it, so ``pg_recvlogical --endpos`` stops
    as soon as it has received the whole workload (the cluster-wide current LSN would make it
    wait for a keepalive, other databases write WAL too)."""
    with pg.temp_database("cmpsrc") as db:
        with psycopg.connect(pg.dsn(db), autocommit=True) as conn:
            conn.execute(TABLE)
            conn.execute(MIX_PROCEDURE)
            pubs = {}
            for name in contenders:
                pubs[name] = f"cmp_pub_{name}"
                conn.execute(f"CREATE PUBLICATION {pubs[name]} FOR TABLE {BENCH_TABLE}")
            template = f"cmp_template_{time.time_ns() % 10**9}"
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (template,))
        s = Stream(db, pubs, template)
        s.expected = write(db)
        if sentinel:
            with psycopg.connect(pg.dsn(db)) as conn:
                row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
                assert row is not None
                s.end_lsn = str(row[0])
                conn.execute(INSERT, (0, 0))
                conn.commit()
            s.expected["c"] = s.expected.get("c", 0) + 1
        yield s


def bulk(rows: int, per_tx: int = 100_000) -> Callable[[str], dict[str, int]]:
    """``rows`` inserts of ~150 bytes in ``per_tx``-row transactions."""

    def write(db: str) -> dict[str, int]:
        insert_rows(db, rows, per_tx=per_tx)
        return {"c": rows, "u": 0, "d": 0}

    return write


def mix(transactions: int) -> Callable[[str], dict[str, int]]:
    """``transactions`` single-row transactions, inserts/updates/deletes mixed (6:3:1)."""

    def write(db: str) -> dict[str, int]:
        with psycopg.connect(pg.dsn(db), autocommit=True) as conn:
            # Only the commit's fsync wait is skipped; the WAL and the stream are the same.
            conn.execute("SET synchronous_commit = off")
            row = conn.execute("CALL public.bench_mix(%s, 0, 0, 0)", (transactions,)).fetchone()
            assert row is not None
        return {"c": int(row[0]), "u": int(row[1]), "d": int(row[2])}

    return write


def paced_inserts(db: str, rate: int, seconds: float, start_id: int) -> int:
    """Insert ``rate`` rows/s for ``seconds`` in 100-per-second ticks (``rate/100``-row
    transactions every 10 ms), ids from ``start_id``; returns the number of rows written."""
    per_tick, tick = max(1, rate // 100), 0.01
    next_id, deadline = start_id, time.perf_counter() + seconds
    with psycopg.connect(pg.dsn(db), autocommit=True) as conn:
        t0 = time.perf_counter()
        while time.perf_counter() < deadline:
            conn.execute(INSERT, (next_id, next_id + per_tick - 1))
            next_id += per_tick
            t0 += tick
            time.sleep(max(0.0, t0 - time.perf_counter()))
    return next_id - start_id


def source_state(db: str, table: str, columns: list[tuple[str, str]]) -> dict[int, int]:
    """{primary key: hash of the row's normalised values} of the source table."""
    from bench.compare.verify import row_hash

    names = ", ".join(c for c, _ in columns)
    out: dict[int, int] = {}
    with psycopg.connect(pg.dsn(db)) as conn, conn.cursor(name="state") as cur:
        cur.itersize = 50_000
        cur.execute(f"SELECT {names} FROM {table}")
        for row in cur:
            out[int(row[0])] = row_hash(row[1:])
    return out

"""A MariaDB source workload over every mapped type, and normalised reads of its copies.

Source rows (MariaDB), Postgres destination rows and MySQL destination rows are read into one
normal form per column, so contents can be compared whatever each side's column types are
(``timestamptz`` vs UTC ``DATETIME``, ``jsonb`` vs JSON text, ``bool`` vs ``BIT(1)``, ...).
"""

from __future__ import annotations

import hashlib
import json
import random
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from tests.support import mysql, pg

TABLE = """
CREATE TABLE `{db}`.`t` (
  id BIGINT UNSIGNED PRIMARY KEY, ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT,
  mi MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED,
  d DECIMAL(30,10), f FLOAT, db DOUBLE, dt DATETIME(6), ts TIMESTAMP(3) NULL, dd DATE,
  tm TIME(6), y YEAR, c CHAR(5), vc VARCHAR(300), tx TEXT, j JSON, e ENUM('a','b','c'),
  s SET('x','y','z'), b1 BIT(1), b12 BIT(12), bl BLOB, bn BINARY(4), vb VARBINARY(10),
  u UUID, ip INET6, dt0 DATETIME NULL, d0 DATE NULL
)"""

# How each column compares (anything not listed compares as-is).
KIND = {
    "id": "num", "ti": "num", "tiu": "num", "si": "num", "mi": "num", "i": "num", "iu": "num",
    "bi": "num", "bu": "num", "d": "num", "f": "num", "db": "num", "y": "num", "extra": "num",
    "dt": "ts", "ts": "ts", "dt0": "ts", "dd": "date", "d0": "date", "tm": "time",
    "j": "json", "s": "set", "b1": "bool", "b12": "bytes", "bl": "bytes", "bn": "bytes",
    "vb": "bytes", "u": "text", "ip": "text",
}  # fmt: skip


def row_values(rng: random.Random, key: int) -> dict[str, Any]:
    """One row's values (SQL parameters), covering each type's edges now and then."""
    edge = rng.random() < 0.1
    return {
        "id": key,
        "ti": -128 if edge else rng.randint(-100, 100),
        "tiu": 255 if edge else rng.randint(0, 200),
        "si": -32768 if edge else rng.randint(-3000, 3000),
        "mi": 16777215 if edge else rng.randint(0, 10**6),
        "i": -2147483648 if edge else rng.randint(-(10**9), 10**9),
        "iu": 4294967295 if edge else rng.randint(0, 10**9),
        "bi": -9223372036854775808 if edge else rng.randint(-(10**15), 10**15),
        "bu": 18446744073709551615 if edge else rng.randint(0, 10**18),
        "d": Decimal(rng.randint(-(10**18), 10**18)) / Decimal(10**10),
        "f": rng.randint(-1000, 1000) / 4,  # exact in FLOAT
        "db": rng.randint(-(10**9), 10**9) / 1024,
        "dt": datetime(2024, 1, 1) + timedelta(microseconds=rng.randint(0, 10**14)),
        "ts": None
        if edge
        else datetime(2024, 1, 1) + timedelta(milliseconds=rng.randint(0, 10**10)),
        "dd": date(2000, 1, 1) + timedelta(days=rng.randint(0, 20000)),
        "tm": timedelta(microseconds=rng.randint(0, 86399 * 10**6)),
        "y": rng.randint(1901, 2155),
        "c": rng.choice(["", "ab", "abcde"]),
        "vc": rng.choice(["héllo wörld ✓", "x" * 240, "quote ' \" \\ ", ""]) + str(key),
        "tx": "long text " * rng.randint(0, 50),
        "j": json.dumps({"k": key, "a": [1, 2.5, "x"], "n": None, "s": "ü"}),
        "e": rng.choice(["a", "b", "c", None]),
        "s": rng.choice(["", "x", "z,x", "x,y,z"]),
        "b1": rng.randint(0, 1),
        "b12": rng.randint(0, 4095),
        "bl": rng.randbytes(rng.randint(0, 40)),
        "bn": rng.randbytes(rng.randint(1, 4)),
        "vb": rng.randbytes(rng.randint(0, 10)),
        "u": f"123e4567-e89b-12d3-a456-{rng.randint(0, 2**48 - 1):012x}",
        "ip": rng.choice(["::1", f"2001:db8::{key:x}00", "::ffff:10.0.0.1", "2001:db8::"]),
        "dt0": "0000-00-00 00:00:00" if edge else None,
        "d0": "0000-00-00" if edge else "2024-02-29",
    }


def _placeholders(values: dict[str, Any]) -> tuple[str, str]:
    cols = ", ".join(f"`{c}`" for c in values)
    marks = ", ".join(f"b'{values[c]:b}'" if c in ("b1", "b12") else "%s" for c in values)
    return cols, marks


def upsert(cur: Any, db: str, values: dict[str, Any]) -> None:
    cols, marks = _placeholders(values)
    params = [v for c, v in values.items() if c not in ("b1", "b12")]
    cur.execute(f"REPLACE INTO `{db}`.`t` ({cols}) VALUES ({marks})", params)


def random_ops(
    db: str,
    rng: random.Random,
    n: int,
    keys: int,
    extra: bool = False,
    port: int = mysql.PORT,
) -> None:
    """``n`` transactions of 1 to 5 inserts/updates/deletes on keys ``1..keys``."""
    with mysql.connect(autocommit=False, port=port) as conn, conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = ''")  # zero dates
        columns = {r[0] for r in _q(cur, f"SHOW COLUMNS FROM `{db}`.`t`")}
        for _ in range(n):
            for _ in range(rng.randint(1, 5)):
                key = rng.randint(1, keys)
                roll = rng.random()
                if roll < 0.15:
                    cur.execute(f"DELETE FROM `{db}`.`t` WHERE id = %s", (key,))
                elif roll < 0.45:
                    sets = "vc = CONCAT(LEFT(vc, 250), '+'), i = i + 1, ts = NOW(3)"
                    if "extra" in columns:
                        sets += ", extra = COALESCE(extra, 0) + 1"
                    cur.execute(f"UPDATE `{db}`.`t` SET {sets} WHERE id = %s", (key,))
                else:
                    values = {c: v for c, v in row_values(rng, key).items() if c in columns}
                    if "extra" in columns and extra:
                        values["extra"] = rng.randint(0, 1000)
                    upsert(cur, db, values)
            conn.commit()


def _q(cur: Any, sql: str) -> list[Any]:
    cur.execute(sql)
    return list(cur.fetchall())


def _norm(kind: str | None, v: Any) -> Any:
    if v is None:
        return None
    if kind == "num":
        return Decimal(str(v)) if isinstance(v, float) else Decimal(v)
    if kind == "ts":
        if isinstance(v, str):
            return None if v.startswith("0000") else datetime.fromisoformat(v)
        return v.astimezone(UTC).replace(tzinfo=None) if v.tzinfo else v
    if kind == "date":
        return None if isinstance(v, str) and v.startswith("0000") else v
    if kind == "time":
        if isinstance(v, time):
            return timedelta(
                hours=v.hour, minutes=v.minute, seconds=v.second, microseconds=v.microsecond
            )
        return v
    if kind == "json":
        return json.loads(v) if isinstance(v, str | bytes) else v
    if kind == "set":
        items = v if isinstance(v, set) else str(v).split(",")
        return ",".join(sorted(i for i in items if i))
    if kind == "bool":
        return bool(int.from_bytes(v, "big")) if isinstance(v, bytes) else bool(v)
    if kind == "bytes":
        return bytes(v)
    if kind == "text":
        return str(v)
    return v


def _fold(columns: list[str], rows: list[Any]) -> dict[Any, tuple[Any, ...]]:
    return {
        Decimal(r[0]): tuple(_norm(KIND.get(c), v) for c, v in zip(columns, r, strict=True))
        for r in rows
    }


def source_columns(db: str, port: int = mysql.PORT) -> list[str]:
    return [r[0] for r in mysql.execute_on(port, f"SHOW COLUMNS FROM `{db}`.`t`")]


def source_rows(db: str, columns: list[str], port: int = mysql.PORT) -> dict[Any, tuple[Any, ...]]:
    cols = ", ".join(f"`{c}`" for c in columns)
    rows = mysql.execute_on(port, "SET time_zone = '+00:00'", f"SELECT {cols} FROM `{db}`.`t`")
    return _fold(columns, rows)


def mysql_rows(db: str, columns: list[str], port: int = mysql.PORT) -> dict[Any, tuple[Any, ...]]:
    return source_rows(db, columns, port)


def pg_rows(dbname: str, columns: list[str], schema: str = "public") -> dict[Any, tuple[Any, ...]]:
    cols = ", ".join(f'"{c}"' for c in columns)
    with psycopg.connect(pg.dsn(dbname)) as conn:
        rows = conn.execute(f'SELECT {cols} FROM "{schema}"."t"').fetchall()
    return _fold(columns, rows)


def digest(rows: dict[Any, tuple[Any, ...]]) -> tuple[int, str]:
    """(row count, sha256 of the normal form in key order): a short comparable summary."""
    h = hashlib.sha256()
    for key in sorted(rows):
        h.update(repr(rows[key]).encode())
    return len(rows), h.hexdigest()[:16]

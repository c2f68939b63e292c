"""The dead-letter table: events the destination refused, kept as Debezium envelopes.

``<schema>.tideflow_dead_letters`` is keyed by the event's fingerprint, so a replayed batch
does not duplicate its dead letters.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from tideflow.engine.errors import DeadLetter
from tideflow.envelope import Renderer, SourceInfo, json_value

TABLE = "tideflow_dead_letters"


def write(
    conn: psycopg.Connection[tuple[object, ...]],
    schema: str,
    destination: str,
    info: SourceInfo,
    letters: Sequence[DeadLetter],
) -> None:
    table = sql.Identifier(schema, TABLE)
    renderer = Renderer(info)
    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                "fingerprint text PRIMARY KEY, destination text NOT NULL, "
                "source_table text NOT NULL, record_key jsonb, position jsonb NOT NULL, "
                "op text NOT NULL, error text NOT NULL, event jsonb NOT NULL, "
                "created_at timestamptz NOT NULL DEFAULT now())"
            ).format(table)
        )
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL(
                    "INSERT INTO {} (fingerprint, destination, source_table, record_key, "
                    "position, op, error, event) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (fingerprint) DO NOTHING"
                ).format(table),
                [
                    (
                        letter.fingerprint(),
                        destination,
                        letter.event.table.name,
                        Jsonb(json_value(list(letter.event.key()))),
                        Jsonb(letter.event.position),
                        letter.event.op.value,
                        letter.error,
                        Jsonb(renderer.render(letter.event)),
                    )
                    for letter in letters
                ],
            )

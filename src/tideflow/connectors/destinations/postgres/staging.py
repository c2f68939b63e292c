"""Session-local staging tables that batches are COPYed into before set-based statements.

One temporary table per destination table layout, created outside data transactions (a rolled
back batch must not take the staging table with it) and emptied by ``ON COMMIT DELETE ROWS``.
Inside one transaction a staging table used twice is truncated first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import psycopg
from psycopg import sql

from tideflow.connectors.destinations.postgres.copy_text import RowRenderer
from tideflow.connectors.destinations.postgres.tables import DestTable


class Stager:
    def __init__(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        self.conn = conn
        self._names: dict[tuple[str, str, tuple[tuple[str, str], ...]], str] = {}
        self._dirty: set[str] = set()
        self._counter = 0
        self.renderer = RowRenderer(conn, conn.info.encoding)

    def prepare(self, dest: DestTable) -> None:
        """Create the staging table of ``dest``'s current layout (outside a transaction)."""
        layout = (dest.schema, dest.name, tuple(dest.columns.items()))
        if layout in self._names:
            return
        self._counter += 1
        name = f"_tf_stage_{self._counter}"
        columns = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in dest.columns.items()
        )
        self.conn.execute(
            sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DELETE ROWS").format(
                sql.Identifier(name), columns
            )
        )
        self._names[layout] = name

    def begin(self) -> None:
        """A new data transaction starts: every staging table is empty."""
        self._dirty.clear()

    def load(
        self,
        dest: DestTable,
        columns: Sequence[str],
        rows: Iterable[Sequence[object]] = (),
        *,
        text: Iterable[str] | None = None,
    ) -> sql.Identifier:
        """COPY ``rows`` (or ``text``: COPY lines already rendered, in chunks) into ``dest``'s
        staging table; returns its name."""
        name = self._names[(dest.schema, dest.name, tuple(dest.columns.items()))]
        ident = sql.Identifier(name)
        if name in self._dirty:
            self.conn.execute(sql.SQL("TRUNCATE {}").format(ident))
        self._dirty.add(name)
        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
            ident, sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        if text is None:
            self.copy_rows(copy_sql, [dest.columns.get(c, "") for c in columns], rows)
        else:
            self.copy_text(copy_sql, text)
        return ident

    def copy_rows(
        self, copy_sql: sql.Composed, types: Sequence[str], rows: Iterable[Sequence[object]]
    ) -> None:
        """Run ``copy_sql`` (a text ``COPY ... FROM STDIN``) with ``rows`` rendered per column
        type (see :mod:`.copy_text`): one ``write`` per chunk instead of one per row."""
        self.copy_text(copy_sql, self.renderer.lines(types, rows))

    def copy_text(self, copy_sql: sql.Composed, chunks: Iterable[str]) -> None:
        """Run ``copy_sql`` with COPY text already rendered, one ``write`` per chunk."""
        with self.conn.cursor().copy(copy_sql) as copy:
            for text in chunks:
                copy.write(text)

    def forget(self) -> None:
        """The session ended: its temporary tables are gone."""
        self._names.clear()
        self._dirty.clear()

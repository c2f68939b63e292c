"""pytest plugin: fail the session when it leaves replication slots behind, and drop them.

Slots left behind by tests once pinned 48 GB of WAL on the shared Postgres. At session start
the plugin records the slots and the Tideflow-like publications (``tf_pub_*``,
``tideflow*``) on the shared server; at session end a slot that is new and stays inactive for
``TIDEFLOW_SLOT_GUARD_GRACE`` seconds (default 10) is reported as a failure by name and
dropped, and so are new Tideflow-like publications.

Other people run suites against the same server at the same time, so the guard only looks at
the databases that are this session's: those it created (through
``tests.support.pg.create_database``, which every suite uses) and ``postgres``, where tests
create slots directly. Another session's temporary databases, and the paused sources in them,
are never touched. In those databases a new slot that is active, or becomes active during the
grace period, belongs to a live process and is left alone, and so are publications of a
database where a slot is active. The guard is silent when Postgres is not reachable
(``make unit`` runs without services) and off with ``TIDEFLOW_SLOT_GUARD=0``.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg import sql

from tests.support import pg

_PUBLICATIONS = "pubname LIKE 'tf\\_pub\\_%' OR pubname LIKE 'tideflow%'"
_SHARED = "postgres"  # the maintenance database tests create slots in directly


@dataclass
class Leftovers:
    slots: list[str] = field(default_factory=list)
    publications: list[tuple[str, str]] = field(default_factory=list)  # (database, name)

    def __bool__(self) -> bool:
        return bool(self.slots or self.publications)

    def describe(self) -> str:
        parts = []
        if self.slots:
            parts.append("replication slots " + ", ".join(sorted(self.slots)))
        if self.publications:
            names = ", ".join(f"{db}.{name}" for db, name in sorted(self.publications))
            parts.append("publications " + names)
        return "; ".join(parts)


def _connect(dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(pg.dsn(dbname) + " connect_timeout=3", autocommit=True)


def _slots(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, tuple[str, bool]]:
    """slot name → (database, active), for every slot on the server."""
    rows = conn.execute(
        "SELECT slot_name::text, coalesce(database::text, ''), active FROM pg_replication_slots"
    ).fetchall()
    return {str(name): (str(db), bool(active)) for name, db, active in rows}


def _databases(conn: psycopg.Connection[tuple[object, ...]]) -> set[str]:
    rows = conn.execute(
        "SELECT datname::text FROM pg_database WHERE datallowconn AND NOT datistemplate"
    ).fetchall()
    return {str(r[0]) for r in rows}


def _publications(databases: set[str]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for db in databases:
        # A database dropped meanwhile by someone else's test is simply skipped.
        with contextlib.suppress(psycopg.Error), _connect(db) as conn:
            rows = conn.execute(f"SELECT pubname::text FROM pg_publication WHERE {_PUBLICATIONS}")
            found |= {(db, str(r[0])) for r in rows.fetchall()}
    return found


@dataclass
class SlotGuard:
    grace: float
    slots: set[str] = field(default_factory=set)
    publications: set[tuple[str, str]] = field(default_factory=set)
    created: set[str] = field(default_factory=set)  # databases this session created

    @property
    def databases(self) -> set[str]:
        """The databases this session answers for."""
        return {_SHARED, *self.created}

    @classmethod
    def start(cls, grace: float) -> SlotGuard | None:
        """Record what exists now; None when the server is not reachable."""
        try:
            with _connect() as conn:
                guard = cls(grace, set(_slots(conn)))
        except psycopg.Error:
            return None
        guard.publications = _publications(guard.databases)
        return guard

    def leftovers(self) -> Leftovers:
        """New slots inactive for the whole grace period, and new publications in databases
        where no slot is active (a live reader may be about to use one)."""
        with _connect() as conn:
            now = _slots(conn)
            ours = self.databases & _databases(conn)
            suspects = {s for s, (db, active) in now.items() if s not in self.slots and db in ours}
            suspects = {s for s in suspects if not now[s][1]}
            publications = _publications(ours) - self.publications
            deadline = time.monotonic() + self.grace
            while (suspects or publications) and time.monotonic() < deadline:
                time.sleep(0.5)
                now = _slots(conn)
                # Gone (dropped by its owner) or taken by a live walsender: not a leak.
                suspects = {s for s in suspects if s in now and not now[s][1]}
                busy = {db for db, active in now.values() if active}
                publications = {(db, p) for db, p in publications if db not in busy}
            publications &= _publications({db for db, _ in publications})
        return Leftovers(sorted(suspects), sorted(publications))

    def drop(self, leftovers: Leftovers) -> None:
        with _connect() as conn:
            for slot in leftovers.slots:
                # Taken by someone in the meantime (ObjectInUse) or already gone: leave it.
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        for db, name in leftovers.publications:
            with contextlib.suppress(psycopg.Error), _connect(db) as conn:
                conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name)))


_KEY = pytest.StashKey[SlotGuard | None]()


def _record_created(guard: SlotGuard) -> None:
    """Make ``pg.create_database`` tell the guard which databases are this session's."""
    create = pg.create_database

    def recording(prefix: str = "tf") -> str:
        name = create(prefix)
        guard.created.add(name)
        return name

    pg.create_database = recording


def pytest_sessionstart(session: pytest.Session) -> None:
    enabled = os.environ.get("TIDEFLOW_SLOT_GUARD", "1") != "0"
    grace = float(os.environ.get("TIDEFLOW_SLOT_GUARD_GRACE", "10"))
    guard = SlotGuard.start(grace) if enabled else None
    if guard is not None:
        _record_created(guard)
    session.stash[_KEY] = guard


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    guard = session.stash.get(_KEY, None)
    if guard is None:
        return
    try:
        leftovers = guard.leftovers()
        if leftovers:
            guard.drop(leftovers)
    except psycopg.Error:
        return  # the server went away during the session: the suites reported that already
    if not leftovers:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = (
        f"slot guard: this session left {leftovers.describe()} behind (inactive for "
        f"{guard.grace:.0f} s after the last test); dropped them. Drop what a test creates."
    )
    if reporter is not None:
        reporter.write_sep("=", "leaked replication state", red=True)
        reporter.write_line(message, red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED

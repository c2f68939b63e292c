"""Preflight and connection errors of the postgresql source against real servers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support import pg
from tests.support.pgcluster import ClusterUnavailable, free_port, throwaway_cluster
from tideflow.connectors.base import Problem
from tideflow.connectors.sources.postgres.config import PostgresSourceConfig
from tideflow.connectors.sources.postgres.source import PostgresSource
from tideflow.errors import TerminalError, TransientError

pytestmark = pytest.mark.integration


def make_config(db: str, tables: str = "public.t", **extra: Any) -> PostgresSourceConfig:
    tag = uuid.uuid4().hex[:8]
    return PostgresSourceConfig.model_validate(
        {
            "database.hostname.user.defined": pg.HOST,
            "database.port.user.defined": pg.PORT,
            "database.user": pg.USER,
            "database.password": pg.PASSWORD,
            "database.dbname": db,
            "database.sslmode": "disable",
            "table.include.list.user.defined": tables,
            "slot.name": f"tf_pre_{tag}",
            "publication.name": f"tf_pre_{tag}",
            **extra,
        }
    )


def sql(db: str, *statements: str) -> None:
    with psycopg.connect(pg.dsn(db), autocommit=True) as conn:
        for s in statements:
            conn.execute(s)


def by_check(problems: list[Problem]) -> dict[str, Problem]:
    return {p.check: p for p in problems}


@pytest.fixture(scope="module")
def db() -> Iterator[str]:
    with pg.temp_database("tfpre") as name:
        sql(
            name,
            "CREATE TABLE t (id int PRIMARY KEY, v text)",
            "CREATE TABLE orders (note text)",  # no key, REPLICA IDENTITY DEFAULT
            "CREATE TABLE audit (note text)",
            "ALTER TABLE audit REPLICA IDENTITY FULL",
        )
        yield name


@pytest.fixture(scope="module")
def replica_level_port() -> Iterator[int]:
    """A second cluster with wal_level=replica (the Postgres default outside this project)."""
    try:
        with throwaway_cluster(wal_level="replica") as port:
            yield port
    except ClusterUnavailable as exc:
        pytest.skip(f"cannot create a second Postgres cluster here: {exc}")


def test_a_good_config_passes(db: str) -> None:
    assert PostgresSource(make_config(db), name="x").preflight() == []


def test_wrong_password(db: str) -> None:
    config = make_config(db, **{"database.password": "wrong"})
    problems = PostgresSource(config, name="x").preflight()
    assert problems == [
        Problem(
            "authentication",
            f"password authentication failed for user 'postgres' at {pg.HOST}:{pg.PORT}",
        )
    ]
    with pytest.raises(TerminalError, match="password authentication failed"):
        PostgresSource(config, name="x").open(None)


def test_unreachable_host_is_quick_and_transient(db: str) -> None:
    config = make_config(db, **{"database.port.user.defined": free_port()})
    started = time.monotonic()
    (problem,) = PostgresSource(config, name="x").preflight()
    assert time.monotonic() - started < 10
    assert problem.check == "connectivity" and problem.fatal
    assert problem.message.startswith(f"cannot reach Postgres at {pg.HOST}:{config.port}")
    assert "Connection refused" in problem.message
    with pytest.raises(TransientError, match="cannot reach Postgres"):
        PostgresSource(config, name="x").open(None)


def test_missing_database() -> None:
    config = make_config("no_such_db_tf")
    (problem,) = PostgresSource(config, name="x").preflight()
    assert problem.check == "database"
    assert problem.message == f"database 'no_such_db_tf' does not exist at {pg.HOST}:{pg.PORT}"


def test_missing_table_and_schema(db: str) -> None:
    config = make_config(db, tables="public.t,public.nope", **{"schema.include.list": "ghost"})
    problems = PostgresSource(config, name="x").preflight()
    messages = [p.message for p in problems if p.check == "tables"]
    assert messages == [
        f"schema ghost does not exist in database {db}",
        f"table public.nope does not exist in database {db}",
    ]
    assert all(p.fatal for p in problems)


def test_keyless_table_is_a_warning(db: str) -> None:
    config = make_config(db, tables="public.t,public.orders,public.audit")
    problems = PostgresSource(config, name="x").preflight()
    assert problems == [
        Problem(
            "replica_identity",
            "table public.orders has no primary key and REPLICA IDENTITY is DEFAULT; updates and "
            "deletes cannot be captured (and Postgres rejects them while the table is "
            "published): run ALTER TABLE public.orders REPLICA IDENTITY FULL or add a primary "
            "key",
            fatal=False,
        )
    ]


def test_nothing_to_capture(db: str) -> None:
    problems = PostgresSource(make_config(db, tables=""), name="x").preflight()
    assert [p.check for p in problems] == ["tables"]


@pytest.fixture
def plain_user(db: str) -> Iterator[str]:
    """A login role without REPLICATION that may read public.t but owns nothing."""
    role = f"tf_plain_{uuid.uuid4().hex[:8]}"
    sql("postgres", f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
    sql(db, f"GRANT SELECT ON public.t TO {role}")
    try:
        yield role
    finally:
        sql(db, f"DROP OWNED BY {role}")
        sql("postgres", f"DROP ROLE {role}")


def test_user_without_replication_or_ownership(db: str, plain_user: str) -> None:
    config = make_config(
        db,
        tables="public.t,public.orders",
        **{"database.user": plain_user, "database.password": "pw"},
    )
    problems = by_check(PostgresSource(config, name="x").preflight())
    assert problems["replication_privilege"].message == (
        f"user '{plain_user}' has no REPLICATION attribute at {pg.HOST}:{pg.PORT}: run ALTER ROLE "
        f"{plain_user} WITH REPLICATION (RDS: GRANT rds_replication TO {plain_user})"
    )
    assert problems["table_privilege"].message == (
        f"user '{plain_user}' cannot SELECT from public.orders: run GRANT SELECT ON public.orders "
        f"TO {plain_user}"
    )
    assert "cannot be created" in problems["publication"].message
    assert all(p.fatal for c, p in problems.items() if c != "replica_identity")
    with pytest.raises(TerminalError):
        PostgresSource(config, name="x").open(None)


def test_replication_user_that_owns_its_tables_can_stream(db: str) -> None:
    """The least-privileged setup: REPLICATION + table owner, no superuser."""
    role = f"tf_repl_{uuid.uuid4().hex[:8]}"
    sql("postgres", f"CREATE ROLE {role} LOGIN REPLICATION PASSWORD 'pw'")
    sql(db, f'GRANT CREATE ON DATABASE "{db}" TO {role}', "CREATE TABLE owned (id int PRIMARY KEY)")
    sql(db, f"ALTER TABLE owned OWNER TO {role}")
    config = make_config(
        db,
        tables="public.owned",
        **{"database.user": role, "database.password": "pw", "heartbeat.interval.ms": 200},
    )
    source = PostgresSource(config, name="x")
    try:
        assert source.preflight() == []
        source.open(None)
        sql(db, "INSERT INTO owned VALUES (1)")
        got: list[Any] = []
        deadline = time.monotonic() + 30
        while not any(getattr(r, "after", None) == {"id": 1} for r in got):
            assert time.monotonic() < deadline
            got += source.poll(0.5, 100)
        source.close()
        source.drop()
    finally:
        source.close()
        sql(db, "DROP TABLE owned")
        sql(db, f"DROP OWNED BY {role}")
        sql("postgres", f"DROP ROLE {role}")


def test_wal_level_replica(replica_level_port: int) -> None:
    config = make_config(
        "postgres", tables="public.t", **{"database.port.user.defined": replica_level_port}
    )
    with psycopg.connect(
        f"host=127.0.0.1 port={replica_level_port} user=postgres password=postgres",
        autocommit=True,
    ) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY)")
    problems = by_check(PostgresSource(config, name="x").preflight())
    assert list(problems) == ["wal_level"]
    assert problems["wal_level"].message.startswith(
        f"wal_level is 'replica' at 127.0.0.1:{replica_level_port}; logical replication needs "
        "wal_level=logical: run ALTER SYSTEM SET wal_level = logical and restart Postgres"
    )
    with pytest.raises(TerminalError, match="wal_level"):
        PostgresSource(config, name="x").open(None)

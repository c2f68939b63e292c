"""The session slot guard (tests/support/slot_guard.py), run on small inner pytest sessions."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.support import pg

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

LEAK = """
import psycopg
from tests.support import pg

def test_leaks_a_slot():
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')")
"""

HOLD = """
import psycopg
from tests.support import pg
from tideflow.connectors.sources.postgres.replication import ReplicationStream
from tideflow.errors import TransientError

HELD = []

def test_holds_a_slot_past_the_session():
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')")
    stream = ReplicationStream(pg.dsn() + " replication=database", lambda m, s: TransientError(m))
    stream.start("{slot}", 0, [("proto_version", "1"), ("publication_names", "x")], confirmed=0)
    HELD.append(stream)  # still streaming when the session ends, like another live process
"""

IN_DATABASE = """
import psycopg
from tests.support import pg

def test_leaves_a_slot_in_a_database():
    name = {create}
    with psycopg.connect(pg.dsn(name), autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')")
    print("DATABASE", name)
"""

OTHERS = """
import uuid
import psycopg
from tests.support import pg

def create_elsewhere():
    name = "tfother_" + uuid.uuid4().hex[:10]
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:  # not through pg.create_database
        conn.execute(f'CREATE DATABASE "{name}"')
    return name
"""


def run_session(tmp_path: Path, body: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_inner.py").write_text(body)
    plugins = ["-p", "tests.support.slot_guard", "-p", "no:cacheprovider"]
    config = ["-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path)]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *plugins, *config, str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TIDEFLOW_SLOT_GUARD_GRACE": "1", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def slot_exists(slot: str) -> bool:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,))
        return row.fetchone() is not None


def drop_slot(slot: str) -> None:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE slot_name = %s AND NOT active",
            (slot,),
        )


def test_a_leaked_inactive_slot_fails_the_session_and_is_dropped(tmp_path: Path) -> None:
    slot = f"tf_guard_{uuid.uuid4().hex[:8]}"
    try:
        done = run_session(tmp_path, LEAK.format(slot=slot))
        assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
        assert slot in done.stdout and "1 passed" in done.stdout
        assert not slot_exists(slot)
    finally:
        drop_slot(slot)


def test_a_slot_still_active_at_the_end_is_not_counted(tmp_path: Path) -> None:
    slot = f"tf_guard_{uuid.uuid4().hex[:8]}"
    try:
        done = run_session(tmp_path, HOLD.format(slot=slot))
        assert done.returncode == pytest.ExitCode.OK, done.stdout + done.stderr
        assert "leaked" not in done.stdout
    finally:
        for _ in range(50):
            drop_slot(slot)
            if not slot_exists(slot):
                break
            time.sleep(0.1)  # the walsender of the exited holder lets go of the slot
        assert not slot_exists(slot)


def test_an_unreachable_server_is_not_an_error(tmp_path: Path) -> None:
    done = run_session(tmp_path, "def test_nothing():\n    pass\n", TIDEFLOW_TEST_PG_PORT="1")
    assert done.returncode == pytest.ExitCode.OK, done.stdout + done.stderr


def database_of(output: str) -> str:
    found = re.search(r"DATABASE (\S+)", output)
    assert found is not None, output
    return found.group(1)


@pytest.mark.parametrize("ours", [True, False], ids=["this session's database", "another's"])
def test_only_slots_in_this_sessions_databases_count(tmp_path: Path, ours: bool) -> None:
    slot = f"tf_guard_{uuid.uuid4().hex[:8]}"
    create = "pg.create_database('tfguard')" if ours else "create_elsewhere()"
    body = (OTHERS if not ours else "") + IN_DATABASE.format(create=create, slot=slot)
    done = run_session(tmp_path, body + "\n", PYTEST_ADDOPTS="-s")
    try:
        database = database_of(done.stdout)
        if ours:
            assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
            assert slot in done.stdout and not slot_exists(slot)
        else:
            assert done.returncode == pytest.ExitCode.OK, done.stdout + done.stderr
            assert slot_exists(slot)  # someone else's: left alone
    finally:
        drop_slot(slot)
        pg.drop_database(database)

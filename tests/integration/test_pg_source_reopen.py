"""Acknowledgements across a reopen of the postgresql source (invariant 1).

After a network blip the runtime reopens the source from the oldest checkpoint of the running
pipelines while those pipelines still write, and acknowledge, batches the previous instance
read. The slot must never be confirmed past what is both acknowledged and delivered.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.integration.test_pg_source import commits, make_config, poll_until, slot_lsn, sql
from tideflow.connectors.sources.postgres.source import PostgresSource
from tideflow.errors import TransientError

pytestmark = pytest.mark.integration


def hold(src: PostgresSource, slot: str, expected: int, seconds: float) -> None:
    """Keep polling (status updates go out) and check the slot stays at ``expected``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        src.poll(0.2, 100)
        assert slot_lsn(slot) == expected


def wait_slot(src: PostgresSource, slot: str, expected: int) -> None:
    deadline = time.monotonic() + 15
    while slot_lsn(slot) != expected:
        assert time.monotonic() < deadline, f"slot at {slot_lsn(slot)}, expected {expected}"
        src.poll(0.2, 100)


def test_reopen_ahead_of_a_held_position_does_not_confirm_it(
    db: str, opened: Callable[..., PostgresSource]
) -> None:
    """Reopened at a running pipeline's checkpoint while a paused pipeline holds an older one:
    the slot stays where the runtime acknowledged it."""
    sql(db, "CREATE TABLE t (id int PRIMARY KEY)")
    config = make_config(db, **{"heartbeat.enabled": False})
    src = opened(config)
    sql(db, "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)", "INSERT INTO t VALUES (3)")
    first, _, third = commits(poll_until(src, lambda r: len(commits(r)) >= 3))
    src.ack(first.position)
    wait_slot(src, config.slot_name, first.position["lsn"])
    src.close()

    again = opened(config, third.position)
    hold(again, config.slot_name, first.position["lsn"], 3.0)  # > the 1 s status prompt
    again.ack(first.position)  # the runtime's minimum, held by the paused pipeline
    hold(again, config.slot_name, first.position["lsn"], 1.5)
    sql(db, "INSERT INTO t VALUES (4)")
    (fourth,) = commits(poll_until(again, lambda r: bool(commits(r))))
    again.ack(fourth.position)
    wait_slot(again, config.slot_name, fourth.position["lsn"])


def test_ack_of_a_position_read_before_a_cut_waits_for_the_replay(
    db: str, opened: Callable[..., PostgresSource]
) -> None:
    """The runtime acknowledges, after the reopen, a commit the previous instance delivered:
    accepted, and confirmed only once this instance has delivered it again."""
    sql(db, "CREATE TABLE t (id int PRIMARY KEY)")
    config = make_config(db, **{"heartbeat.enabled": False})
    src = opened(config)
    sql(db, "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)", "INSERT INTO t VALUES (3)")
    first, second, third = commits(poll_until(src, lambda r: len(commits(r)) >= 3))
    src.ack(first.position)
    wait_slot(src, config.slot_name, first.position["lsn"])

    # The cut: the walsender goes away (tests/support/proxy.py cannot carry it, libpq's
    # blocking connect holds the GIL the in-process proxy needs).
    sql(
        "postgres",
        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = %s",
        params=(config.slot_name,),
    )
    with pytest.raises(TransientError):
        poll_until(src, lambda r: False, timeout=30)
    src.close()
    again = opened(config, first.position)  # the oldest durable checkpoint
    # Pipelines finish the batches read before the cut and the runtime acks their end.
    again.ack(third.position)
    assert slot_lsn(config.slot_name) == first.position["lsn"]

    replay = poll_until(again, lambda r: len(commits(r)) >= 1, max_records=1)
    assert commits(replay)[0].position == second.position
    assert slot_lsn(config.slot_name) <= second.position["lsn"]
    replay += poll_until(again, lambda r: any(c.position == third.position for c in commits(r)))
    wait_slot(again, config.slot_name, third.position["lsn"])

    # A later commit is delivered but not acknowledged: the slot stays at the ack.
    sql(db, "INSERT INTO t VALUES (4)")
    poll_until(again, lambda r: bool(commits(r)))
    hold(again, config.slot_name, third.position["lsn"], 2.5)

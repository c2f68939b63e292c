"""Backoff schedule (engine/retry.py): 1 s doubling to 30 s, jittered down by up to 20 %."""

from __future__ import annotations

import pytest

from tideflow.engine.retry import Backoff


def test_schedule_without_jitter() -> None:
    b = Backoff(random=lambda: 0.0)
    assert [b.next_delay() for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_jitter_only_shortens_and_never_exceeds_the_cap() -> None:
    b = Backoff(random=lambda: 1.0)
    delays = [b.next_delay() for _ in range(7)]
    assert delays == pytest.approx([0.8, 1.6, 3.2, 6.4, 12.8, 24.0, 24.0])


def test_reset_starts_over() -> None:
    b = Backoff(random=lambda: 0.0)
    b.next_delay()
    b.next_delay()
    b.reset()
    assert b.next_delay() == 1
    assert b.attempt == 1


def test_many_failures_do_not_overflow() -> None:
    b = Backoff(random=lambda: 0.0)
    for _ in range(10_000):
        delay = b.next_delay()
    assert delay == 30

"""Exponential backoff with jitter: 1 s doubling to 30 s (the connector contract)."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays for consecutive failures of one unit.

    The n-th delay (n from 0) is ``min(maximum, initial * factor**n)`` reduced by up to
    ``jitter`` (a fraction) at random, so that units failing together do not retry in lockstep
    and a delay never exceeds ``maximum``.
    """

    initial: float = 1.0
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2
    random: Callable[[], float] = field(default=random.random, repr=False)
    attempt: int = 0

    def base(self, attempt: int) -> float:
        return float(min(self.maximum, self.initial * self.factor ** min(attempt, 64)))

    def next_delay(self) -> float:
        """The delay before the next retry; counts the failure."""
        delay = self.base(self.attempt) * (1.0 - self.jitter * self.random())
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


def wait(stop: threading.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True when stopped."""
    return stop.wait(max(0.0, seconds))

"""Runtime tuning and the services every runner shares."""

from __future__ import annotations

from dataclasses import dataclass, field

from tideflow.engine.batching import Limits
from tideflow.engine.checkpoints import Checkpoints
from tideflow.engine.metrics import Metrics
from tideflow.engine.status import StatusBoard


@dataclass(frozen=True)
class RuntimeConfig:
    """Defaults favour latency at low rates and throughput at high rates.

    Memory per source is bounded (invariant 6) by roughly
    ``(queue_depth + 2) * max(limits.max_bytes, coalesce_events events)`` plus one poll of
    ``max_poll_records`` records, whatever the transaction sizes.
    """

    limits: Limits = field(default_factory=Limits)
    queue_depth: int = 4  # batches waiting per pipeline before the source stops polling
    max_poll_records: int = 2000
    poll_timeout: float = 0.2  # also bounds how long acks and stop requests wait
    # A pipeline merges batches already waiting in its queue into one write, up to this many
    # events: fewer transactions and fsyncs when the destination is the bottleneck.
    coalesce_events: int = 20000
    reconcile_interval: float = 0.5
    drain_timeout: float = 15.0  # graceful stop: flush and checkpoint, then abandon
    retry_initial: float = 1.0
    retry_max: float = 30.0
    healthy_after: float = 60.0  # a unit running this long forgets its earlier failures
    generation: int = 0  # checkpoint fencing generation (cluster mode fences per source lease)


@dataclass
class Services:
    config: RuntimeConfig
    checkpoints: Checkpoints
    status: StatusBoard
    metrics: Metrics

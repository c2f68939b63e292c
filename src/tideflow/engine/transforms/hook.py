"""The pipeline runner's one entry into transforms: apply the chain, route failures.

A failed record follows the pipeline's poison policy like a record the destination refused:
``halt`` stops the pipeline (Broken, naming the transform, line and message) before anything of
the batch is written; ``dead_letter`` stores it with the destination's dead letters first, then
the rest of the batch is written (a crash in between replays the batch: the letters are
idempotent, nothing is silently dropped).
"""

from __future__ import annotations

import logging
from typing import Any

from tideflow.engine.errors import DeadLetter
from tideflow.engine.metrics import UnitMetrics
from tideflow.engine.plan import PipelinePlan
from tideflow.engine.transforms.chain import Chain, TransformError
from tideflow.events import Batch

log = logging.getLogger(__name__)


class Transforms:
    """Created and used on the pipeline runner's thread only."""

    def __init__(self, plan: PipelinePlan, metrics: UnitMetrics, unit: str) -> None:
        self.policy = plan.policy
        self.metrics = metrics
        self.unit = unit
        self.chain = Chain(plan.transforms)

    def apply(self, batch: Batch, dest: Any) -> Batch:
        if not batch.events:
            return batch
        events, failed = self.chain.apply(batch.events)
        if failed:
            self.metrics.transform_errors += len(failed)
            write_letters = getattr(dest, "write_dead_letters", None)
            if self.policy != "dead_letter" or not callable(write_letters):
                more = f" (and {len(failed) - 1} more records)" if len(failed) > 1 else ""
                raise TransformError(f"{failed[0].message}{more}")
            write_letters([DeadLetter(f.event, f.message) for f in failed])
            self.metrics.dead_letters += len(failed)
            log.warning(
                "%s: %d records dead-lettered by transforms: %s",
                self.unit,
                len(failed),
                failed[0].message,
                extra={"unit": self.unit},
            )
        return Batch(events, batch.position, batch.last_commit_ts_ms, batch.bytes)

    def close(self) -> None:
        self.chain.close()

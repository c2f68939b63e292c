"""A ``tideflow worker`` process: a :class:`~tideflow.engine.worker.Worker` that runs only the
units it holds leases on, until stopped or drained."""

from __future__ import annotations

import logging
import os
import threading
import time

from tideflow.engine.cluster.cleanup import Sweeper
from tideflow.engine.cluster.keeper import GuardedStatusBoard, Keeper
from tideflow.engine.cluster.leases import ClusterConfig, Leases
from tideflow.engine.cluster.retention import RetentionWatch
from tideflow.engine.config import RuntimeConfig
from tideflow.engine.worker import Worker
from tideflow.store.crypto import SecretBox
from tideflow.store.db import Store

log = logging.getLogger(__name__)


class Member:
    """One cluster worker.

    :meth:`run` blocks until ``stop`` is set (SIGTERM/SIGINT) or a drain request was honoured;
    either way it hands every unit over gracefully (flush, checkpoint, release) before it
    returns, waiting at most ``drain_timeout`` plus one lease round.
    """

    def __init__(
        self,
        store: Store,
        secrets: SecretBox,
        worker_id: str,
        *,
        runtime: RuntimeConfig | None = None,
        cluster: ClusterConfig | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.runtime = runtime or RuntimeConfig()
        self.cluster = cluster or ClusterConfig()
        self.leases = Leases(store, worker_id, self.cluster)
        board = GuardedStatusBoard(store, worker_id)
        self.keeper = Keeper(store, self.leases, self.cluster, board)
        self.worker = Worker(
            store,
            secrets,
            worker_id=worker_id,
            config=self.runtime,
            assignment=self.keeper,
            status_board=board,
        )
        if self.worker.sampler is not None:  # one writer of a source's slot metrics
            self.worker.sampler.samples_source = lambda sid: sid in self.keeper.held()
            if self.cluster.log_mode:
                watch = RetentionWatch(store, self.cluster.log_bootstrap)
                self.worker.sampler.log_retention = watch
        # Log mode: removes the consumer groups and topics of deleted pipelines and sources.
        self.sweeper = Sweeper(store, self.cluster.log_bootstrap) if self.cluster.log_mode else None

    def run(self, stop: threading.Event) -> None:
        warned = False
        while (wait := self.leases.register(os.getpid())) > 0:
            if not warned:
                log.warning(
                    "another process still heartbeats as worker %s; starting in %.0fs at most "
                    "(when its heartbeat is older than the lease TTL)",
                    self.worker_id,
                    wait,
                )
                warned = True
            if stop.wait(min(wait, 1.0)):
                return
        self.keeper.start()
        self.worker.start()
        if self.sweeper is not None:
            self.sweeper.start()
        log.info("worker %s is running", self.worker_id)
        while not stop.wait(0.5):
            if self.keeper.drained.is_set():
                log.info("worker %s drained: every unit was handed over", self.worker_id)
                break
        self.shutdown()

    def shutdown(self) -> None:
        self.keeper.drain()
        limit = self.runtime.drain_timeout + 2 * self.cluster.heartbeat_interval + 5
        deadline = time.monotonic() + limit
        while not self.keeper.drained.wait(0.2) and time.monotonic() < deadline:
            pass
        if not self.keeper.drained.is_set():
            log.warning("drain did not finish in %.0fs; leases will expire instead", limit)
        self.worker.stop()
        self.keeper.stop()
        if self.sweeper is not None:
            self.sweeper.stop()

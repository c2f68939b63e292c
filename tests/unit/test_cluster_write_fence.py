"""Write-side fencing in the pipeline runner: no destination write while the fence says the
lease may have expired (a frozen worker waking up), the batch is written once it allows."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy.orm import Session

from tests.support.server import wait_until
from tideflow.connectors import registry
from tideflow.connectors.config import validate
from tideflow.engine.checkpoints import Checkpoints
from tideflow.engine.config import RuntimeConfig, Services
from tideflow.engine.metrics import Metrics
from tideflow.engine.pipeline_runner import PipelineRunner
from tideflow.engine.plan import Connector, PipelinePlan
from tideflow.engine.status import StatusBoard
from tideflow.envelope import SourceInfo
from tideflow.events import Batch, ChangeEvent, Column, Op, TableSchema
from tideflow.store.db import Store


class Gate:
    """A checkpoint fence whose ``may_write`` the test opens."""

    def __init__(self) -> None:
        self.open = threading.Event()

    def generation(self, session: Session, unit_name: str) -> int:
        return 0

    def may_write(self) -> bool:
        return self.open.is_set()


def test_a_batch_waits_for_the_lease_and_is_written_once_it_is_renewed(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/meta.db")
    store.migrate()
    lake = tmp_path / "lake"
    model = registry.get("destination", "files").config_model
    config = validate(model, {"path.user.defined": str(lake), "format.user.defined": "parquet"})
    dest = Connector("d1", "d1", "files", "Active", config, None, "fp")
    plan = PipelinePlan(
        id="p1",
        name="p1",
        source_id="s1",
        destination=dest,
        desired="Active",
        effective="Active",
        checkpoint_unit="pipeline:p1",
        topics=None,
        policy="halt",
        error=None,
        fingerprint="fp",
    )
    gate = Gate()
    services = Services(
        RuntimeConfig(), Checkpoints(store, fence=gate), StatusBoard(store, "w"), Metrics()
    )
    abort = threading.Event()
    runner = PipelineRunner(plan, SourceInfo("postgresql", "s1", "db"), services, abort, None)
    key = Column("id", "int4", "int", nullable=False, key=True)
    table = TableSchema("public", "t", (key,), ("id",))
    event = ChangeEvent(Op.CREATE, table, None, {"id": 1}, {"lsn": 10}, 1_700_000_000_000, 1)
    runner.start()
    try:
        assert runner.offer(Batch([event], {"lsn": 10}, 1_700_000_000_000, 10), 5)
        time.sleep(1.5)  # what must not happen: give the runner time to (wrongly) write
        assert runner.durable() is None
        assert not [p for p in lake.rglob("*") if p.is_file()]
        gate.open.set()  # renewed: the same batch goes out
        wait_until(lambda: runner.durable() == {"lsn": 10}, 30, what="the batch to be durable")
        assert [p for p in lake.rglob("*") if p.is_file()]
    finally:
        runner.finish()
        runner.join(10)
        abort.set()

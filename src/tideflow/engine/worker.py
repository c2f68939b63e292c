"""The data-plane worker (placeholder until the runtime lands)."""

from __future__ import annotations

from tideflow.store.crypto import SecretBox
from tideflow.store.db import Store


class Worker:
    def __init__(self, store: Store, secrets: SecretBox, *, worker_id: str) -> None:
        self.store = store
        self.secrets = secrets
        self.worker_id = worker_id

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

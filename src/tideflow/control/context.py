"""What request handlers and services share: settings, the store, the secret box."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from tideflow.control.resources.builtin import ensure_builtin_tags
from tideflow.settings import Settings
from tideflow.store.crypto import SecretBox
from tideflow.store.db import Store


@dataclass
class AppContext:
    settings: Settings
    store: Store
    secrets: SecretBox
    # Per-process state owned by individual modules (e.g. rate-limit buckets).
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> AppContext:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = Store(settings.resolved_database_url())
        store.migrate()
        with store.session() as session:
            ensure_builtin_tags(session)
        return cls(
            settings=settings,
            store=store,
            secrets=SecretBox.from_settings(settings.secret_key, settings.data_dir),
        )

    def close(self) -> None:
        self.store.dispose()


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx

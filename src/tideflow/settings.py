"""Process-wide settings, read from ``TIDEFLOW_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIDEFLOW_", extra="ignore")

    data_dir: Path = Path(".tideflow")
    # SQLite under data_dir when unset; a postgresql+psycopg:// URL for production/cluster mode.
    database_url: str | None = None
    secret_key: str | None = None
    admin_client_id: str | None = None
    admin_secret: str | None = None
    access_token_ttl_seconds: int = 3600
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    # Token bucket per credential: sustained requests/second and burst size.
    rate_limit_per_second: float = 50.0
    rate_limit_burst: int = 200
    log_level: str = "INFO"

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'metadata.db').resolve()}"


@lru_cache
def get_settings() -> Settings:
    return Settings()

"""ORM models. Import every model module here so Alembic sees the full metadata."""

from tideflow.store.models import auth, cluster, metrics, resources, runtime
from tideflow.store.models.base import Base

__all__ = ["Base", "auth", "cluster", "metrics", "resources", "runtime"]

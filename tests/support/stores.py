"""Migrated metadata stores for tests that use the store directly, without a server: a test
module's ``store`` fixture enters :func:`migrated`, parametrised over :data:`BACKENDS` where the
test must hold on both."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import pg
from tideflow.store.db import Store

BACKENDS = ("sqlite", "postgres")


@contextmanager
def migrated(backend: str, tmp_path: Path, prefix: str = "tfmeta") -> Iterator[Store]:
    """A store migrated to the head revision, disposed of on exit.

    ``backend`` is ``"sqlite"`` (a file in ``tmp_path``) or ``"postgres"`` (a fresh database on
    the test server named ``<prefix>_<random>``, dropped on exit).
    """
    if backend == "sqlite":
        s = Store(f"sqlite:///{tmp_path}/meta.db")
        try:
            s.migrate()
            yield s
        finally:
            s.dispose()
        return
    if backend != "postgres":
        raise ValueError(f"unknown metadata backend {backend!r}")
    name = pg.create_database(prefix)
    s = Store(pg.url(name))
    try:
        s.migrate()
        yield s
    finally:
        s.dispose()
        pg.drop_database(name)

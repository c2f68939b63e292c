"""A metadata-store outage is the client's to retry: 503 with Retry-After, never a 500, and the
API answers again once the store is back (pooled connections are re-opened)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import pg
from tests.support.proxy import Proxy
from tests.support.server import Server, wait_until

pytestmark = pytest.mark.integration


def test_metadata_store_outage_answers_503_then_recovers(tmp_path: Path) -> None:
    name = pg.create_database("tfmeta")
    proxy = Proxy(pg.HOST, pg.PORT).start()
    url = f"postgresql://{pg.USER}:{pg.PASSWORD}@{pg.HOST}:{proxy.port}/{name}"
    srv = Server(tmp_path / "srv", database_url=url, worker=False).start()
    try:
        with srv.client() as c:
            assert c.get("/sources").status_code == 200
            proxy.cut()
            for path in ("/sources", "/pipelines", "/api/streams"):
                r = c.get(path)
                assert r.status_code == 503, (path, r.status_code, r.text)
                assert r.headers["Retry-After"] == "5"
            assert c.get("/sources").json()["code"] == "store_unavailable"
            assert c.get("/api/streams").json()["errors"][0]["status"] == "503"
            proxy.restore()
            wait_until(lambda: c.get("/sources").status_code == 200, 30, what="API back")
    finally:
        srv.stop()
        proxy.stop()
        pg.drop_database(name)

"""Auth against a live server: token exchange, expiry, refresh rotation and revocation, roles,
API keys, rate limiting, request ids, and that every endpoint but a few needs a token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.platform_helpers import SOURCE_PASSWORD, create_source, unique
from tests.support.server import ADMIN_ID, ADMIN_SECRET, Server, wait_until

PUBLIC = {
    ("GET", "/healthz"),
    ("POST", "/auth/access-token"),
    ("POST", "/auth/access-token/refresh"),
    ("POST", "/auth/access-token/revoke"),
}


def exchange(server: Server, client_id: str = ADMIN_ID, secret: str = ADMIN_SECRET) -> Any:
    r = httpx.post(
        f"{server.url}/auth/access-token", json={"client_id": client_id, "secret": secret}
    )
    assert r.status_code == 200, r.text
    return r.json()


def refresh(server: Server, token: str) -> httpx.Response:
    return httpx.post(f"{server.url}/auth/access-token/refresh", json={"refresh_token": token})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def status_with(server: Server, token: str, path: str = "/transforms") -> int:
    return httpx.get(f"{server.url}{path}", headers=bearer(token)).status_code


def credential(api: httpx.Client, role: str) -> dict[str, Any]:
    r = api.post("/auth/credentials", json={"role": role, "description": f"test {role}"})
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(
        tmp_path_factory.mktemp("ttl"),
        worker=False,
        extra_env={"TIDEFLOW_ACCESS_TOKEN_TTL_SECONDS": "2"},
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_token_exchange_shape(server: Server) -> None:
    before = datetime.now(UTC)
    body = exchange(server)
    assert set(body) == {"accessToken", "refreshToken", "expires", "expiresIn"}
    assert isinstance(body["accessToken"], str) and body["accessToken"]
    assert isinstance(body["refreshToken"], str) and body["refreshToken"]
    assert isinstance(body["expiresIn"], int) and body["expiresIn"] > 0
    expires = datetime.fromisoformat(body["expires"])
    assert expires.tzinfo is not None
    delta = (expires - before).total_seconds()
    assert body["expiresIn"] - 5 <= delta <= body["expiresIn"] + 5
    assert status_with(server, body["accessToken"]) == 200


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [(ADMIN_ID, "wrong-secret"), ("no-such-client", ADMIN_SECRET), (ADMIN_ID, ADMIN_SECRET + "x")],
    ids=["wrong-secret", "unknown-client", "secret-with-suffix"],
)
def test_bad_credentials_are_401(server: Server, client_id: str, secret: str) -> None:
    r = httpx.post(
        f"{server.url}/auth/access-token", json={"client_id": client_id, "secret": secret}
    )
    assert r.status_code == 401
    assert "invalid" in r.json()["detail"]


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Bearer garbage",
        "Basic dGVzdDp0ZXN0",
        "Bearer tfa.e30.AAAA",
        "Bearer tfk_not-a-real-key",
    ],
    ids=["missing", "empty", "garbage", "basic", "forged", "unknown-api-key"],
)
def test_missing_or_garbage_token_is_401(server: Server, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    r = httpx.get(f"{server.url}/transforms", headers=headers)
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "unauthorized"
    r = httpx.get(f"{server.url}/api/streams", headers=headers)
    assert r.status_code == 401
    assert r.json()["errors"][0]["status"] == "401"


def test_tampered_and_refresh_tokens_are_not_access_tokens(server: Server) -> None:
    body = exchange(server)
    prefix, payload, sig = body["accessToken"].split(".")
    flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    assert status_with(server, f"{prefix}.{payload}.{flipped}") == 401
    assert status_with(server, body["refreshToken"]) == 401


def test_expired_access_token_is_401_and_refresh_works(short_lived: Server) -> None:
    body = exchange(short_lived)
    assert body["expiresIn"] == 2
    assert status_with(short_lived, body["accessToken"]) == 200
    wait_until(
        lambda: status_with(short_lived, body["accessToken"]) == 401,
        timeout=15,
        what="the access token to expire",
    )
    r = refresh(short_lived, body["refreshToken"])
    assert r.status_code == 200, r.text
    assert status_with(short_lived, r.json()["accessToken"]) == 200


def test_refresh_rotates_the_refresh_token(server: Server) -> None:
    first = exchange(server)
    r = refresh(server, first["refreshToken"])
    assert r.status_code == 200, r.text
    second = r.json()
    assert set(second) == {"accessToken", "refreshToken", "expires", "expiresIn"}
    assert second["refreshToken"] != first["refreshToken"]
    assert status_with(server, second["accessToken"]) == 200
    # The used refresh token is spent; the new one works once.
    assert refresh(server, first["refreshToken"]).status_code == 401
    assert refresh(server, second["refreshToken"]).status_code == 200
    assert refresh(server, second["refreshToken"]).status_code == 401


def test_revoked_refresh_token_is_rejected(server: Server) -> None:
    body = exchange(server)
    r = httpx.post(
        f"{server.url}/auth/access-token/revoke", json={"refresh_token": body["refreshToken"]}
    )
    assert r.status_code == 200
    assert refresh(server, body["refreshToken"]).status_code == 401
    assert refresh(server, "tfr_never-issued").status_code == 401


def test_revoking_a_credential_kills_its_tokens(server: Server, api: httpx.Client) -> None:
    cred = credential(api, "editor")
    body = exchange(server, cred["client_id"], cred["secret"])
    assert status_with(server, body["accessToken"]) == 200
    r = api.delete(f"/auth/credentials/{cred['client_id']}")
    assert r.status_code == 200
    assert r.json()["revoked_at"] is not None
    wait_until(
        lambda: status_with(server, body["accessToken"]) == 401,
        timeout=5,
        what="the revoked credential's access token to be rejected",
    )
    assert refresh(server, body["refreshToken"]).status_code == 401
    r = httpx.post(
        f"{server.url}/auth/access-token",
        json={"client_id": cred["client_id"], "secret": cred["secret"]},
    )
    assert r.status_code == 401


def test_credentials_admin(api: httpx.Client) -> None:
    cred = credential(api, "viewer")
    assert cred["role"] == "viewer" and cred["secret"]
    listed = {c["client_id"]: c for c in api.get("/auth/credentials").json()}
    assert cred["client_id"] in listed
    assert "secret" not in listed[cred["client_id"]]
    assert api.post("/auth/credentials", json={"role": "root"}).status_code == 422
    assert api.delete("/auth/credentials/no-such-client").status_code == 404


def test_viewer_reads_but_cannot_write(server: Server, api: httpx.Client) -> None:
    cred = credential(api, "viewer")
    with server.client(server.token(cred["client_id"], cred["secret"])) as viewer:
        assert viewer.get("/transforms").status_code == 200
        assert viewer.get("/tags").status_code == 200
        assert viewer.get("/api/streams").status_code == 200
        transform = {
            "transform": "map_filter",
            "config": {"transforms.name": unique("tr")},
        }
        r = viewer.post("/transforms", json=transform)
        assert r.status_code == 403
        assert "viewer" in r.json()["detail"]
        assert viewer.post("/tags", json={"name": unique("tag")}).status_code == 403
        r = viewer.post("/api/connections", json={"name": "x", "kind": "postgres", "host": "h"})
        assert r.status_code == 403
        assert r.json()["errors"][0]["code"] == "forbidden"
        assert viewer.get("/auth/credentials").status_code == 403
        assert viewer.get("/auth/api-keys").status_code == 403


def test_editor_writes_but_cannot_manage_credentials(server: Server, api: httpx.Client) -> None:
    cred = credential(api, "editor")
    with server.client(server.token(cred["client_id"], cred["secret"])) as editor:
        r = editor.post("/tags", json={"name": unique("tag"), "type": ["sources"]})
        assert r.status_code == 200, r.text
        assert editor.delete(f"/tags/{r.json()['id']}").status_code == 200
        assert editor.get("/auth/credentials").status_code == 403
        assert editor.post("/auth/credentials", json={"role": "admin"}).status_code == 403
        assert editor.delete(f"/auth/credentials/{ADMIN_ID}").status_code == 403
        assert editor.post("/auth/api-keys", json={"name": "k", "role": "admin"}).status_code == 403


def test_viewer_never_sees_secrets(server: Server, api: httpx.Client) -> None:
    src = create_source(api)
    cred = credential(api, "viewer")
    reveal = {"secret_returned": "true"}
    admin_view = api.get(f"/sources/{src['id']}", params=reveal).json()["result"][0]
    assert admin_view["config"]["database.password"] == SOURCE_PASSWORD
    with server.client(server.token(cred["client_id"], cred["secret"])) as viewer:
        shown = viewer.get(f"/sources/{src['id']}", params=reveal).json()["result"][0]
        assert shown["config"]["database.password"] == "********"
        listed = viewer.get("/sources", params={**reveal, "page_size": 100}).text
        assert SOURCE_PASSWORD not in listed
    r = api.post(
        "/api/connections",
        json={"name": unique("conn"), "kind": "postgres", "host": "h", "password": "pw-Zx81"},
    )
    assert r.status_code == 201, r.text
    conn_id = r.json()["data"]["id"]
    with server.client(server.token(cred["client_id"], cred["secret"])) as viewer:
        assert "pw-Zx81" not in viewer.get(f"/api/connections/{conn_id}").text
    assert "pw-Zx81" not in api.get(f"/api/connections/{conn_id}").text
    api.delete(f"/api/connections/{conn_id}")
    api.delete(f"/sources/{src['id']}")


def test_api_key_is_a_bearer_token_and_revocable(server: Server, api: httpx.Client) -> None:
    r = api.post("/auth/api-keys", json={"name": unique("key"), "role": "editor"})
    assert r.status_code == 200, r.text
    created = r.json()
    key = created["key"]
    assert key.startswith("tfk_")
    assert key.startswith(created["prefix"])
    listed = api.get("/auth/api-keys").json()
    assert any(k["id"] == created["id"] and "key" not in k for k in listed)
    for path in ("/api/streams", "/v1/api/streams", "/transforms", "/tags"):
        assert status_with(server, key, path) == 200, path
    r = httpx.post(
        f"{server.url}/tags", headers=bearer(key), json={"name": unique("tag"), "type": []}
    )
    assert r.status_code == 200, r.text
    assert api.delete(f"/auth/api-keys/{created['id']}").status_code == 200
    wait_until(
        lambda: status_with(server, key, "/api/streams") == 401,
        timeout=5,
        what="the revoked API key to be rejected",
    )
    assert api.delete("/auth/api-keys/000000000000000000000000").status_code == 404


def test_viewer_api_key_cannot_write(server: Server, api: httpx.Client) -> None:
    key = api.post("/auth/api-keys", json={"name": unique("key"), "role": "viewer"}).json()["key"]
    assert status_with(server, key, "/api/streams/summary") == 200
    r = httpx.post(f"{server.url}/tags", headers=bearer(key), json={"name": unique("tag")})
    assert r.status_code == 403


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    srv = Server(
        tmp_path / "rl",
        worker=False,
        extra_env={"TIDEFLOW_RATE_LIMIT_PER_SECOND": "1", "TIDEFLOW_RATE_LIMIT_BURST": "3"},
    )
    srv.start()
    try:
        token = srv.token()
        statuses = []
        limited: httpx.Response | None = None
        for _ in range(10):
            r = httpx.get(f"{srv.url}/transforms", headers=bearer(token))
            statuses.append(r.status_code)
            if r.status_code == 429:
                limited = r
                break
        assert limited is not None, statuses
        assert statuses[:3] == [200, 200, 200]
        assert int(limited.headers["Retry-After"]) >= 1
        assert limited.json()["code"] == "rate_limited"
        r = httpx.get(f"{srv.url}/api/streams", headers=bearer(token))
        assert r.status_code == 429
        assert r.headers["Retry-After"]
        assert r.json()["errors"][0]["status"] == "429"
        # The bucket refills at one request per second.
        wait_until(
            lambda: status_with(srv, token) == 200, timeout=10, what="the rate limit to pass"
        )
    finally:
        srv.stop()


def test_request_id_is_echoed_or_generated(server: Server, api: httpx.Client) -> None:
    r = api.get("/transforms", headers={"X-Request-Id": "req-abc-123"})
    assert r.headers["X-Request-Id"] == "req-abc-123"
    generated = api.get("/transforms").headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    # Also on errors, and without authentication.
    r = httpx.get(f"{server.url}/transforms", headers={"X-Request-Id": "req-401"})
    assert r.status_code == 401 and r.headers["X-Request-Id"] == "req-401"
    assert httpx.get(f"{server.url}/healthz").headers["X-Request-Id"]


@pytest.mark.parametrize("path", ["/healthz", "/docs", "/openapi.json"])
def test_public_endpoints_need_no_token(server: Server, path: str) -> None:
    assert httpx.get(f"{server.url}{path}").status_code == 200


def test_every_other_endpoint_needs_a_token(server: Server) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    checked = 0
    failures = []
    with httpx.Client(base_url=server.url) as anonymous:
        for path, operations in spec["paths"].items():
            for method in operations:
                if method.upper() not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                    continue
                if (method.upper(), path) in PUBLIC:
                    continue
                url = re.sub(r"\{[^}]+\}", "x", path)
                r = anonymous.request(method.upper(), url)
                checked += 1
                if r.status_code != 401:
                    failures.append(f"{method.upper()} {path}: {r.status_code}")
    assert checked > 40
    assert not failures, failures
